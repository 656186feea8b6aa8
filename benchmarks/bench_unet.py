"""U-Net inference speed: the ``unet`` preset against the same network written as a plain torch module.

Issue 18's target: >= 100 stamps/s for 64x64 stamps in 3 bands on 2 CPU cores. The preset at its
default options (eval, no gradients, batches of 64) and a plain ``nn.Module`` (``nn.Conv2d``,
``nn.BatchNorm2d``, ``nn.ReLU``, ``nn.MaxPool2d``, ``nn.ConvTranspose2d``, ``torch.cat``) holding the
same weights, its outputs checked equal first, timed INTERLEAVED round by round after a warm-up,
medians reported; each in the NCHW layout and in channels_last, and the preset as ``Engine.predict`` runs
it on the CPU (channels_last, ``channels_last="auto"``, with its batch norms folded into the convolutions).

    python benchmarks/bench_unet.py              # ~1 minute on 2 CPU cores
    python benchmarks/bench_unet.py --filters 32 # another width (or --depth)
    python benchmarks/bench_unet.py --threads 1  # one core
    python benchmarks/bench_unet.py --write      # also update benchmarks/RESULTS.md
    python benchmarks/bench_unet.py --profile    # torch.profiler tables of one batch, unfolded and folded;
                                                 # transposed against resize up-convolutions
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time

import torch
from torch import nn

from results import add_section, device_arguments, device_name, machine, placed, synchronize
from deepfield.models import zoo
from deepfield.models.folding import fold_batch_norm

SHAPE, BATCH = (3, 64, 64), 64


class PlainUNet(nn.Module):
    """The preset's default network as a PyTorch user writes it (batch norm, transposed up-convolutions)."""

    def __init__(self, bands: int, depth: int, filters: int):
        super().__init__()
        widths = [filters * 2**level for level in range(depth + 1)]
        self.down = nn.ModuleList(self._block(c_in, c_out) for c_in, c_out in zip([bands, *widths], widths))
        self.up = nn.ModuleList(nn.ConvTranspose2d(2 * w, w, 2, stride=2) for w in widths[:-1])
        self.decode = nn.ModuleList(self._block(2 * w, w) for w in widths[:-1])
        self.pool = nn.MaxPool2d(2)
        self.output = nn.Conv2d(filters, bands, 1)

    @staticmethod
    def _block(c_in: int, c_out: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out, eps=1e-3),
                             nn.ReLU(), nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                             nn.BatchNorm2d(c_out, eps=1e-3), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down[:-1]:
            skips.append(block(x))
            x = self.pool(skips[-1])
        x = self.down[-1](x)
        for level in reversed(range(len(skips))):
            x = self.decode[level](torch.cat([skips[level], self.up[level](x)], dim=1))
        return self.output(x)


def copy_weights(preset: nn.Module, plain: PlainUNet, depth: int) -> None:
    """The preset's weights into the plain network (same layouts: torch's)."""
    def block(target: nn.Sequential, name: str) -> None:
        for i, (conv, bn) in enumerate(((0, 1), (3, 4)), start=1):
            target[conv].weight.data.copy_(preset.get_layer(f"{name}_conv{i}").weight)
            source = preset.get_layer(f"{name}_conv{i}_bn")
            for ours, theirs in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                                 ("running_var", "moving_variance")):
                getattr(target[bn], ours).data.copy_(getattr(source, theirs))

    for level in range(1, depth + 1):
        block(plain.down[level - 1], f"down{level}")
        block(plain.decode[level - 1], f"up{level}_block")
        plain.up[level - 1].weight.data.copy_(preset.get_layer(f"up{level}").weight)
        plain.up[level - 1].bias.data.copy_(preset.get_layer(f"up{level}").bias)
    block(plain.down[depth], "bottleneck")
    plain.output.weight.data.copy_(preset.get_layer("output").weight)
    plain.output.bias.data.copy_(preset.get_layer("output").bias)


def randomise_statistics(model: nn.Module) -> None:
    """Batch-norm statistics and scales away from 0 and 1, so that the equality check means something."""
    generator = torch.Generator().manual_seed(1)
    for name, tensor in model.state_dict().items():
        if name.endswith(("moving_mean", "beta", "bias")):
            tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
        elif name.endswith(("moving_variance", "gamma")):
            tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))


def profile_table(model: nn.Module, batch: torch.Tensor, rows: int) -> str:
    """torch.profiler's table of one forward pass (after one warm-up), operators by their own CPU time."""
    from torch.profiler import ProfilerActivity, profile
    with torch.no_grad():
        model(batch)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model(batch)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def cpu_time(model: nn.Module, batch: torch.Tensor, repeats: int = 5) -> float:
    """The median CPU seconds (all threads) of ``model(batch)`` after a warm-up."""
    with torch.no_grad():
        model(batch)
        times = []
        for _ in range(repeats):
            start = time.process_time()
            model(batch)
            times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=zoo.parameters("unet")["depth"].default)
    parser.add_argument("--filters", type=int, default=zoo.parameters("unet")["filters"].default)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    parser.add_argument("--profile", action="store_true")
    device_arguments(parser)
    args = parser.parse_args()
    device = placed(args)
    torch.manual_seed(0)

    def preset_model(upsampling: str = "transpose") -> nn.Module:
        return zoo.get("unet", input_shape=SHAPE, depth=args.depth, filters=args.filters, upsampling=upsampling).eval()

    preset = preset_model()
    randomise_statistics(preset)
    plain = PlainUNet(SHAPE[0], args.depth, args.filters).eval()
    copy_weights(preset, plain, args.depth)
    x = torch.randn(BATCH, *SHAPE, generator=torch.Generator().manual_seed(2))
    nhwc = torch.channels_last
    preset_cl = preset_model().to(device, memory_format=nhwc)
    preset_cl.load_state_dict(preset.state_dict())
    plain_cl = PlainUNet(SHAPE[0], args.depth, args.filters).eval().to(device, memory_format=nhwc)
    plain_cl.load_state_dict(plain.state_dict())
    x_cl = x.to(device, memory_format=nhwc)
    runs = {
        "preset NCHW": (preset.to(device), x.to(device)),
        "plain NCHW": (plain.to(device), x.to(device)),
        "preset channels_last": (preset_cl, x_cl),
        "plain channels_last": (plain_cl, x_cl),
        # what Engine.predict runs on the CPU: channels_last, batch norms folded into the convolutions
        "preset predict path": (fold_batch_norm(preset_cl), x_cl),
    }
    with torch.no_grad():
        reference = plain(x.to(device))
        error = {name: float((model(batch) - reference).abs().max()) for name, (model, batch) in runs.items()}
    scale = float(reference.abs().max())
    if args.profile:
        for name in ("preset channels_last", "preset predict path"):
            print(f"{name}, one batch of {BATCH}, {torch.get_num_threads()} thread(s):")
            print(profile_table(*runs[name], 10))
        print("the up-convolutions, CPU ms per batch (median of 5): transposed 2x2 stride 2 | resize + 2x2 convolution")
        resize = fold_batch_norm(preset_model("resize").to(device, memory_format=nhwc))
        transpose = runs["preset predict path"][0]
        for level in range(args.depth, 0, -1):
            size = SHAPE[1] // 2**level
            below = torch.randn(BATCH, 2 * args.filters * 2 ** (level - 1), size, size).to(device, memory_format=nhwc)
            ups = (transpose.get_layer(f"up{level}"),
                   nn.Sequential(resize.get_layer(f"up{level}_resize"), resize.get_layer(f"up{level}")))
            print(f"level {level}, {tuple(below.shape[1:])} in: " + " | ".join(f"{1e3 * cpu_time(up, below):.1f}"
                                                                        for up in ups))
        return
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    with torch.no_grad():
        for name, (model, batch) in runs.items():
            model(batch)  # warm-up
        for round_ in range(args.rounds):
            for name in list(runs)[::1 if round_ % 2 else -1]:  # each first in every other round
                model, batch = runs[name]
                synchronize(device)
                start, start_cpu = time.perf_counter(), time.process_time()
                model(batch)
                synchronize(device)
                times[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    rate = {name: BATCH / statistics.median(t) for name, t in times.items()}
    per_cpu = {name: BATCH / statistics.median(t) for name, t in cpu.items()}

    def ratio(name: str, baseline: str, clock: dict[str, list[float]] = times) -> float:
        """plain's time over ``name``'s, the median over rounds (the load drifts less within a round)."""
        return statistics.median(b / t for t, b in zip(clock[name], clock[baseline]))

    baseline = {name: "plain NCHW" if "NCHW" in name else "plain channels_last" for name in runs}
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    for name in runs:
        print(f"{name:22s} {rate[name]:7.1f} stamps/s {per_cpu[name]:7.1f} stamps/CPU-s   "
              f"against {baseline[name]} {ratio(name, baseline[name]):.2f} (CPU time "
              f"{ratio(name, baseline[name], cpu):.2f})   max |diff| {error[name]:.1e}", flush=True)
    print(f"outputs up to {scale:.1f}; threads {torch.get_num_threads()}; load average {load}")
    if args.write:
        rows = "\n".join(f"| {name} | {rate[name]:.1f} | {per_cpu[name]:.1f} | {ratio(name, baseline[name]):.2f} | "
                         f"{ratio(name, baseline[name], cpu):.2f} | {error[name]:.1e} |" for name in runs)
        add_section(f"""## U-Net inference (bench_unet.py, {torch.get_num_threads()} thread(s))

{datetime.date.today()}, {machine()}, torch {torch.__version__}, {device_name(device)},
{torch.get_num_threads()} thread(s), **load average {load}** (other processes on the machine: wall-clock
rates are low and noisy; stamps per CPU-second and the ratios are the steadier figures). `unet` depth
{args.depth}, filters {args.filters}, batch norm, on {BATCH} stamps of 3x64x64 (eval, no gradients) against
the same network as a plain torch module with the same weights (outputs up to {scale:.1f}); medians of
{args.rounds} interleaved rounds, the ratio (plain's time over the preset's) the median of each round's pair.
"predict path" is what `Engine.predict` runs on the CPU: channels_last, every batch norm folded into the
convolution before it (`deepfield.models.folding.fold_batch_norm`, on a copy).

| network, layout | stamps/s | stamps per CPU-second | against plain, same layout | in CPU time | max abs diff |
|---|---|---|---|---|---|
{rows}

Target: >= 100 stamps/s on 2 cores.
""")


if __name__ == "__main__":
    main()
