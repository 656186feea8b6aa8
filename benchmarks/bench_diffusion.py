"""Diffusion sampling speed: stamps per second of the ``diffusion`` preset's DDIM sampler at several step counts.

Issue 19's target: >= 20 stamps/s of 32x32x3 stamps with the few-step sampler on 2 CPU cores. The preset at its
default width and depth samples a batch of stamps (eval, no gradients, deterministic DDIM, eta 0) at each step
count, unconditionally (one network pass per step) and conditioned with classifier-free guidance w = 2 (one
batched pass of 2N per step), each in the NCHW layout (the model as loaded from a run) and channels_last (as
``Engine.fit`` leaves it on the CPU); rounds interleaved, medians reported. The weights are untrained: the speed
does not depend on them.

Quality per step count is NOT measured here: it needs a model trained on the simulated sky and the judging
module of issue 19 (the mean standardised Wasserstein distance of the astronomers' statistics); the "quality"
column of the section is where its figures go (``--write`` leaves "to be judged").

    python benchmarks/bench_diffusion.py              # a few minutes on 2 loaded CPU cores
    python benchmarks/bench_diffusion.py --steps 10 20 50 --batch 64 --rounds 3
    python benchmarks/bench_diffusion.py --filters 32 # another width (or --depth)
    python benchmarks/bench_diffusion.py --write      # also update benchmarks/RESULTS.md
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time

import torch

from results import add_section, device_arguments, device_name, machine, placed, synchronize
from deepfield.models import zoo
from deepfield.models.summary import summarize

SHAPE, CONDITIONS, GUIDANCE = (3, 32, 32), 4, 2.0


def main() -> None:
    defaults = zoo.parameters("diffusion")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=defaults["depth"].default)
    parser.add_argument("--filters", type=int, default=defaults["filters"].default)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    device_arguments(parser)
    args = parser.parse_args()
    device = placed(args)
    torch.manual_seed(0)
    models = {}
    for k in (0, CONDITIONS):
        model = zoo.get("diffusion", input_shape=SHAPE, depth=args.depth, filters=args.filters, condition_size=k)
        models[(k, "NCHW")] = model.to(device).eval()
        twin = zoo.get("diffusion", input_shape=SHAPE, depth=args.depth, filters=args.filters, condition_size=k)
        twin.load_state_dict(model.state_dict())
        models[(k, "channels_last")] = twin.to(device, memory_format=torch.channels_last).eval()
    parameters = {k: summarize(models[(k, "NCHW")]).total for k in (0, CONDITIONS)}
    conditions = {k: torch.randn(args.batch, k, generator=torch.Generator().manual_seed(1)) for k in (0, CONDITIONS)}

    def run(key: tuple[int, str], steps: int) -> tuple[float, float]:
        generator = torch.Generator().manual_seed(2)
        synchronize(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        models[key].sample(conditions[key[0]], generator=generator, steps=steps, guidance=GUIDANCE)
        synchronize(device)
        return time.perf_counter() - start, time.process_time() - start_cpu

    cases = [(key, steps) for steps in args.steps for key in models]
    for key in models:
        run(key, 2)  # warm-up
    wall: dict = {case: [] for case in cases}
    cpu: dict = {case: [] for case in cases}
    for round_ in range(args.rounds):
        for case in cases[::1 if round_ % 2 else -1]:
            seconds, cpu_seconds = run(*case)
            wall[case].append(seconds)
            cpu[case].append(cpu_seconds)
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    rows = []
    for (k, layout), steps in cases:
        rate = args.batch / statistics.median(wall[((k, layout), steps)])
        per_cpu = args.batch / statistics.median(cpu[((k, layout), steps)])
        kind = "unconditional" if not k else f"K={k}, guidance {GUIDANCE:g} (2N per step)"
        print(f"{steps:3d} steps  {kind:34s} {layout:13s} {rate:7.1f} stamps/s {per_cpu:7.1f} stamps/CPU-s",
              flush=True)
        rows.append(f"| {steps} | {kind} | {layout} | {rate:.1f} | {per_cpu:.1f} | to be judged |")
    print(f"parameters: {parameters[0]:,} (unconditional), {parameters[CONDITIONS]:,} (K={CONDITIONS}); threads "
          f"{torch.get_num_threads()}; load average {load}")
    if args.write:
        table = "\n".join(rows)
        add_section(f"""## Diffusion sampling speed (bench_diffusion.py, {torch.get_num_threads()} thread(s))

{datetime.date.today()}, {machine()}, torch {torch.__version__}, {device_name(device)},
{torch.get_num_threads()} thread(s), **load average {load}** (other processes on the machine: wall-clock
rates are low and noisy; stamps per CPU-second is the steadier figure). `diffusion` depth {args.depth},
filters {args.filters}, group norm ({parameters[0]:,} parameters unconditional, {parameters[CONDITIONS]:,} with
a condition of {CONDITIONS}), batches of {args.batch} stamps of 3x32x32, deterministic DDIM (eta 0); medians of
{args.rounds} interleaved rounds. NCHW: the model as loaded from a run; channels_last: as `Engine.fit` leaves
it on the CPU. Quality per step count: from the judging module of issue 19 (not yet run: "to be judged").

| DDIM steps | conditioning | layout | stamps/s | stamps per CPU-second | quality |
|---|---|---|---|---|---|
{table}

Target: >= 20 stamps/s on 2 cores with the few-step sampler.
""")


if __name__ == "__main__":
    main()
