"""U-Net inference speed: the ``unet`` preset against the same network written as a plain torch module.

Issue 18's target: >= 100 stamps/s for 64x64 stamps in 3 bands on 2 CPU cores. The preset at its
default options (eval, no gradients, batches of 64) and a plain ``nn.Module`` (``nn.Conv2d``,
``nn.BatchNorm2d``, ``nn.ReLU``, ``nn.MaxPool2d``, ``nn.ConvTranspose2d``, ``torch.cat``) holding the
same weights, its outputs checked equal first, timed INTERLEAVED round by round after a warm-up,
medians reported; each in the NCHW layout and in channels_last (which deepfield's ``predict`` uses
on the CPU for convolutional networks: ``channels_last="auto"``).

    python benchmarks/bench_unet.py              # ~1 minute on 2 CPU cores
    python benchmarks/bench_unet.py --filters 32 # another width (or --depth)
    python benchmarks/bench_unet.py --threads 1  # one core
    python benchmarks/bench_unet.py --write      # also update benchmarks/RESULTS.md
    python benchmarks/bench_unet.py --profile    # torch.profiler table of one preset batch (channels_last)
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import time

import torch
from torch import nn

from results import add_section, device_name, machine, synchronize
from deepfield.models import zoo
from deepfield.training.device import resolve_device

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=zoo.parameters("unet")["depth"].default)
    parser.add_argument("--filters", type=int, default=zoo.parameters("unet")["filters"].default)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, one per core)")
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--device", help="cpu, cuda, ... (default: the best present)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    preset = zoo.get("unet", input_shape=SHAPE, depth=args.depth, filters=args.filters).eval()
    randomise_statistics(preset)
    plain = PlainUNet(SHAPE[0], args.depth, args.filters).eval()
    copy_weights(preset, plain, args.depth)
    x = torch.randn(BATCH, *SHAPE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        error = float((preset(x) - plain(x)).abs().max())
    nhwc = torch.channels_last
    runs = {
        "preset NCHW": (preset.to(device), x.to(device)),
        "plain NCHW": (plain.to(device), x.to(device)),
        "preset channels_last": (zoo.get("unet", input_shape=SHAPE, depth=args.depth, filters=args.filters)
                                 .eval().to(device, memory_format=nhwc), x.to(device, memory_format=nhwc)),
        "plain channels_last": (PlainUNet(SHAPE[0], args.depth, args.filters).eval().to(device, memory_format=nhwc),
                                x.to(device, memory_format=nhwc)),
    }
    runs["preset channels_last"][0].load_state_dict(preset.state_dict())
    runs["plain channels_last"][0].load_state_dict(plain.state_dict())
    if args.profile:
        from torch.profiler import ProfilerActivity, profile
        model, batch = runs["preset channels_last"]
        with torch.no_grad():
            model(batch)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                model(batch)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
        return
    times: dict[str, list[float]] = {name: [] for name in runs}
    layouts = ("NCHW", "channels_last")
    with torch.no_grad():
        for name, (model, batch) in runs.items():
            model(batch)  # warm-up
        for round_ in range(args.rounds):
            for layout in layouts:  # the two networks back to back, each first in every other round
                for name in (f"preset {layout}", f"plain {layout}")[::1 if round_ % 2 else -1]:
                    model, batch = runs[name]
                    synchronize(device)
                    start = time.perf_counter()
                    model(batch)
                    synchronize(device)
                    times[name].append(time.perf_counter() - start)
    rate = {name: BATCH / statistics.median(t) for name, t in times.items()}
    # the ratio from each round's back-to-back pair (the machine's load drifts less within a pair)
    ratio = {layout: statistics.median(plain / preset for preset, plain in zip(times[f"preset {layout}"],
                                                                            times[f"plain {layout}"]))
             for layout in layouts}
    for name, r in rate.items():
        print(f"{name:22s} {r:7.1f} stamps/s   preset / plain = {ratio[name.split(' ', 1)[1]]:.2f}", flush=True)
    print(f"max |preset - plain| = {error:.1e}; threads {torch.get_num_threads()}")
    if args.write:
        rows = "\n".join(f"| {name} | {r:.1f} |" for name, r in rate.items())
        add_section(f"""## U-Net inference (bench_unet.py)

{datetime.date.today()}, {machine()}, torch {torch.__version__}, {device_name(device)},
{torch.get_num_threads()} threads. `unet` depth {args.depth}, filters {args.filters}, batch norm, on {BATCH} stamps of
3x64x64 (eval, no gradients) against the same network as a plain torch module with the same weights
(outputs equal to {error:.1e}); medians of {args.rounds} interleaved rounds, the ratio the median of each
round's back-to-back pair.

| network, layout | stamps/s |
|---|---|
{rows}

preset / plain: {ratio['NCHW']:.2f} (NCHW), {ratio['channels_last']:.2f} (channels_last).
Target: >= 100 stamps/s on 2 cores.
""")


if __name__ == "__main__":
    main()
