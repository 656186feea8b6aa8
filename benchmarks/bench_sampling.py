"""Sampling speed of a generative preset (issue 19: VAE >= 2,000 stamps/s, diffusion >= 20 stamps/s with the
few-step sampler, on 32x32x3 stamps and 2 CPU cores).

Any preset meeting the generative-model contract (:mod:`deepfield.models.generative`) is measured by name, as
``deepfield sample`` draws from it: ``sample_in_batches`` over conditions ``(N, K)`` with one seeded generator.
Speed does not depend on the weights, so the network is untrained. For ``cvae`` the same decoder written as a
plain ``torch.nn`` stack (``nn.Linear``, ``nn.ConvTranspose2d``) with the same weights is timed beside it, its
outputs checked equal first; rounds are interleaved, medians reported.

    python benchmarks/bench_sampling.py                          # cvae, 5 conditions, 2 threads (~1 minute)
    python benchmarks/bench_sampling.py --preset diffusion --sample-options '{"steps": 10}'
    python benchmarks/bench_sampling.py --options '{"latent_dim": 32}' --threads 1
    python benchmarks/bench_sampling.py --write                  # also update benchmarks/RESULTS.md
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from results import add_section, machine
from deepfield.models import zoo
from deepfield.models.generative import check_generative, sample_in_batches


class PlainDecoder(nn.Module):
    """The cvae's decoder as a PyTorch user writes it, holding the preset's weights."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.latent_dim, self.shape = model.latent_dim, model.reshape._shape
        dense = model.decoder_dense
        self.dense = nn.Linear(dense.weight.shape[1], dense.weight.shape[0])
        self.dense.weight.data.copy_(dense.weight)
        self.dense.bias.data.copy_(dense.bias)
        self.deconvs = nn.ModuleList()
        for name in [f"deconv{k}" for k in range(len(model.filters), 0, -1)]:
            layer = getattr(model, name)
            deconv = nn.ConvTranspose2d(layer.weight.shape[0], layer.weight.shape[1], 3, stride=2)
            deconv.weight.data.copy_(layer.weight)
            deconv.bias.data.copy_(layer.bias)
            self.deconvs.append(deconv)

    def forward(self, z: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.dense(torch.cat([z, conditions], dim=1))).reshape(len(z), *self.shape)
        for k, deconv in enumerate(self.deconvs):
            x = deconv(x)[:, :, :-1, :-1]  # 'same' at stride 2: the full 2n + 1 cropped to 2n at the end (Keras)
            x = x if k == len(self.deconvs) - 1 else F.relu(x)
        return x

    def sample(self, conditions: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn((len(conditions), self.latent_dim), generator=generator)
        with torch.no_grad():
            return self(z, conditions)


def rate(draw, n: int) -> tuple[float, float]:
    """Stamps per second of wall time and per second of this process's CPU time (all threads): on a machine
    shared with other work the second depends far less on the load."""
    wall, cpu = time.perf_counter(), time.process_time()
    draw()
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cvae", help="any generative preset of the zoo")
    parser.add_argument("--options", default="{}", help="the preset's options, JSON")
    parser.add_argument("--sample-options", default="{}", help="options of sample(), JSON (diffusion: steps...)")
    parser.add_argument("--shape", default="3x32x32", help="C x H x W")
    parser.add_argument("--conditions", type=int, default=5, help="K (0: unconditional)")
    parser.add_argument("--n", type=int, default=4096, help="samples per round")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shape = tuple(int(s) for s in args.shape.split("x"))
    options, sample_options = json.loads(args.options), json.loads(args.sample_options)
    torch.manual_seed(0)
    model = check_generative(zoo.get(args.preset, input_shape=shape, condition_size=args.conditions, **options))
    conditions = torch.randn(args.n, args.conditions)

    def ours() -> torch.Tensor:
        return sample_in_batches(model, conditions, generator=torch.Generator().manual_seed(0),
                                 batch_size=args.batch, **sample_options)

    plain = PlainDecoder(model) if args.preset == "cvae" else None

    def reference() -> torch.Tensor:
        generator = torch.Generator().manual_seed(0)
        return torch.cat([plain.sample(part, generator) for part in conditions.split(args.batch)])

    timed = {"deepfield": ours}
    if plain is not None:
        assert torch.allclose(ours(), reference(), atol=1e-5), "the plain decoder differs from the preset's"
        timed["plain torch"] = reference
    for draw in timed.values():  # warm-up
        draw()
    rates: dict[str, list[tuple[float, float]]] = {name: [] for name in timed}
    load = os.getloadavg()[0]
    for _ in range(args.rounds):
        for name, draw in timed.items():
            rates[name].append(rate(draw, args.n))
    load = (load + os.getloadavg()[0]) / 2
    medians = {name: statistics.median(w for w, _ in r) for name, r in rates.items()}
    per_cpu = {name: statistics.median(c for _, c in r) for name, r in rates.items()}
    for name, value in medians.items():
        print(f"{name}: {value:,.0f} stamps/s, {per_cpu[name]:,.0f} per CPU-second "
              f"(median of {args.rounds} rounds of {args.n})")
    if not args.write:
        return
    rows = "\n".join(f"| {name} | {value:,.0f} | {per_cpu[name]:,.0f} | {value / medians['deepfield']:.2f} |"
                     for name, value in medians.items())
    ratio = (f" The preset samples at {medians['deepfield'] / medians['plain torch']:.2f}x the plain torch decoder "
             "with the same weights." if plain is not None else "")
    add_section(f"""## Sampling speed: {args.preset}, {args.threads} thread(s) (bench_sampling.py)

{datetime.date.today()}, {machine()}, {args.threads} thread(s), load average {load:.1f} while measuring (the machine
shared with other work: the rates are lower bounds of a quiet machine's). `{args.preset}` with options
{json.dumps(options)} on {args.shape} stamps, K = {args.conditions} conditions, sample options
{json.dumps(sample_options)}, batches of {args.batch}, {args.n} samples per round, median of {args.rounds}
interleaved rounds, untrained weights (speed does not depend on them).{ratio} Per CPU-second: the stamps
drawn per second of the process's CPU time over all its threads (on a loaded machine far less affected than the
wall-clock rate; {args.threads} thread(s) on a quiet machine give at most {args.threads}x it).

| sampler | stamps/s (wall clock) | stamps per CPU-second | relative (wall clock) |
|---|---|---|---|
{rows}
""")


if __name__ == "__main__":
    main()
