"""Occlusion sensitivity: incremental inference vs captum's Occlusion vs one batch vs a naive loop.

The course's case: ``lecture-cnn`` on one 1x64x64 stamp, an 8x8 square moved by 4 pixels
(15 x 15 = 225 positions), the output probability at each. Four ways, interleaved round by
round after a warm-up, medians reported:

* ``loop``: one forward pass per occluded copy (what one writes first);
* ``captum``: ``captum.attr.Occlusion`` (all copies through the whole network, batched);
* ``batched``: all 225 copies in one batch through the whole network;
* ``incremental``: :func:`deepfield.analysis.explain.occlusion.occlusion`: each layer recomputes
  only the window the square changes (target: >= 5x the naive loop on 2 CPU cores).

    python benchmarks/bench_occlusion.py            # ~1 minute on 2 CPU cores
    python benchmarks/bench_occlusion.py --write    # also update benchmarks/RESULTS.md
    python benchmarks/bench_occlusion.py --profile  # where the incremental method spends its time
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import time

import numpy as np
import torch
from captum.attr import Occlusion as CaptumOcclusion

from results import add_section, device_name, machine, synchronize
from deepfield.analysis.explain.occlusion import occlusion
from deepfield.models import zoo
from deepfield.training.device import resolve_device

SIZE, STRIDE, SHAPE = 8, 4, (1, 64, 64)


def captum_scores(model: torch.nn.Module, stamp: torch.Tensor) -> np.ndarray:
    """captum's map (the drop of the output, averaged over the squares covering each pixel)."""
    attribution = CaptumOcclusion(model).attribute(stamp[None], sliding_window_shapes=(1, SIZE, SIZE),
                                                   strides=(1, STRIDE, STRIDE), baselines=0.0,
                                                   perturbations_per_eval=225)
    return attribution[0, 0].cpu().numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--device", help="cpu, cuda, ... (default: the best present)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = zoo.get("lecture-cnn", input_shape=SHAPE).eval().to(device)
    stamp = torch.randn(*SHAPE, generator=torch.Generator().manual_seed(1)).to(device)
    runs = {
        "loop": lambda: occlusion(model, stamp, size=SIZE, stride=STRIDE, method="loop"),
        "captum": lambda: captum_scores(model, stamp),
        "batched": lambda: occlusion(model, stamp, size=SIZE, stride=STRIDE, method="batched", batch_size=225),
        "incremental": lambda: occlusion(model, stamp, size=SIZE, stride=STRIDE),
    }
    if args.profile:
        from torch.profiler import ProfilerActivity, profile
        runs["incremental"]()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            runs["incremental"]()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
        return
    fast, slow = runs["incremental"](), runs["loop"]()
    error = float(np.abs(fast.scores - slow.scores).max())
    pixel_error = float(np.abs(fast.pixel_map() - captum_scores(model, stamp)).max())
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    for name, t in median.items():
        print(f"{name:12s} {t:.3f} s   loop / {name} = {median['loop'] / t:.2f}x", flush=True)
    print(f"max |incremental - loop| = {error:.2e}; max |pixel map - captum| = {pixel_error:.2e}")
    if args.write:
        rows = "\n".join(f"| {name} | {t:.3f} | {median['loop'] / t:.2f}x |" for name, t in median.items())
        add_section(f"""## Occlusion sensitivity: incremental inference (bench_occlusion.py)

{datetime.date.today()}, {machine()}, torch {torch.__version__}, {device_name(device)}. `lecture-cnn` on one 1x64x64 stamp,
8x8 square, stride 4, 225 positions; median of {args.rounds} interleaved rounds (seconds).

| method | time | naive loop / method |
|---|---|---|
{rows}

The incremental map equals the naive loop's to {error:.1e} (its pixel map equals captum's to
{pixel_error:.1e}). Target: >= 5x the naive loop.
""")


if __name__ == "__main__":
    main()
