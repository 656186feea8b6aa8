"""Tiled inference of a whole survey image streamed through FITS: time, tiles/s, and memory against the size.

A small U-Net-like network (plain torch: two 3x3 convolutions, a 2x2 max-pool, two convolutions at
half resolution, a 2x2 transposed convolution, the skip concatenated, two convolutions; 16 filters,
receptive-field radius 10 pixels) applied by :func:`deepfield.analysis.tiling_fits.predict_fits_tiled`
to single-band float32 FITS images of 1024x1024, 2048x2048 and 4096x4096 (tile 256, overlap 64, margin 16,
batch 8). Each measurement runs in a fresh process, so its peak resident memory (``VmHWM``) is
its own; ``tracemalloc`` gives the peak of the numpy buffers (bands, sums, strips). The baseline is
one forward pass over the whole image in memory (what one writes first): its time, its peak memory,
and how far the tiled output is from it (the tiling rule makes them equal: margin 16 >= radius 10, and
every tile starts on an even pixel).

    python benchmarks/bench_tiling.py            # ~6-10 minutes on 2 CPU cores; the one pass needs ~6.5 GB
    python benchmarks/bench_tiling.py --quick    # 512 and 1024 pixels, a smoke run
    python benchmarks/bench_tiling.py --write    # also update benchmarks/RESULTS.md
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch
from astropy.io import fits
from torch import nn

from results import add_section, device_name, machine, synchronize
from deepfield.analysis.tiling import tile_starts
from deepfield.analysis.tiling_fits import predict_fits_tiled
from deepfield.training.device import resolve_device

TILE, OVERLAP, MARGIN, BATCH, WIDTH = 256, 64, 16, 8, 16


class TinyUNet(nn.Module):
    """One down/up step with a skip: ``(N, 1, H, W) -> (N, 1, H, W)``, H and W even."""

    def __init__(self, width: int = WIDTH):
        super().__init__()

        def convs(n_in: int, n_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(n_in, n_out, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(n_out, n_out, 3, padding=1), nn.ReLU())

        self.encode, self.middle = convs(1, width), convs(width, 2 * width)
        self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.decode = nn.Sequential(convs(2 * width, width), nn.Conv2d(width, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.encode(x)
        return x + self.decode(torch.cat([self.up(self.middle(nn.functional.max_pool2d(skip, 2))), skip], 1))


def peak_rss_mib() -> float:
    """This process's peak resident set: Linux's ``VmHWM``, which starts afresh at ``exec`` (``ru_maxrss``
    starts at the parent's resident set when it forked: the parent's 64 MiB image and its copies showed)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def network(device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    return TinyUNet().to(device).eval()


def measure(method: str, path: str, device_name_: str | None) -> dict:
    """One measurement in this (fresh) process: ``tiled`` (streamed FITS to FITS) or ``one-pass``."""
    device = resolve_device(device_name_)
    net = network(device)
    with torch.inference_mode():  # warm-up: the first convolutions allocate oneDNN's buffers
        net(torch.zeros(1, 1, TILE, TILE, device=device))
    before = peak_rss_mib()
    tracemalloc.start()
    synchronize(device)
    start = time.perf_counter()
    if method == "tiled":
        out = predict_fits_tiled(net, path, path + ".out.fits", tile=TILE, overlap=OVERLAP, margin=MARGIN,
                                 batch_size=BATCH, device=device, overwrite=True)
    else:
        with torch.inference_mode():
            x = torch.from_numpy(fits.getdata(path).astype(np.float32))[None, None].to(device)
            one = net(x)[0, 0].cpu().numpy()
    synchronize(device)
    seconds = time.perf_counter() - start
    if method != "tiled":
        np.save(path + ".one.npy", one)
    numpy_peak = tracemalloc.get_traced_memory()[1] / 2**20
    result = {"seconds": seconds, "rss_before": before, "rss_peak": peak_rss_mib(), "numpy_peak": numpy_peak}
    if method == "tiled":
        with fits.open(out, memmap=True) as hdul:
            result["bytes"] = Path(out).stat().st_size
            one = Path(path + ".one.npy")
            if one.exists():
                result["max_diff"] = float(np.abs(hdul[0].data - np.load(one, mmap_mode="r")).max())
    return result


def run_child(method: str, path: Path, device: str | None) -> dict:
    """:func:`measure` in a fresh Python process (its peak memory is then its own)."""
    command = [sys.executable, __file__, "--child", method, str(path)] + (["--device", device] if device else [])
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="512 and 1024 pixels")
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    parser.add_argument("--device", help="cpu, cuda, ... (default: the best present)")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1], args.device)))
        return
    sizes = (512, 1024) if args.quick else (1024, 2048, 4096)
    device = resolve_device(args.device)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            path = Path(folder) / f"sky{size}.fits"
            sky = np.random.default_rng(size).normal(size=(size, size)).astype(np.float32)
            fits.PrimaryHDU(sky).writeto(path)
            del sky
            one = run_child("one-pass", path, args.device)
            tiled = run_child("tiled", path, args.device)
            tiles = len(tile_starts(size, TILE, OVERLAP)) ** 2
            bound = (TILE * size * (8 + 12 + 4) + 4 * BATCH * TILE**2) / 2**20  # the docstring's, C = C' = 1
            rows.append((size, tiles, tiled, one, bound))
            print(f"{size}x{size}: {tiles} tiles, tiled {tiled['seconds']:.1f} s ({tiles / tiled['seconds']:.1f} "
                  f"tiles/s, {tiled['seconds'] / (size**2 / 1e6):.2f} s/Mpx), peak RSS {tiled['rss_peak']:.0f} MiB "
                  f"(before {tiled['rss_before']:.0f}), numpy peak "
                  f"{tiled['numpy_peak']:.1f} MiB (bound {bound:.1f}); one pass {one['seconds']:.1f} s, peak RSS "
                  f"{one['rss_peak']:.0f} MiB; max |tiled - one pass| = {tiled.get('max_diff', float('nan')):.1e}",
                  flush=True)
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    if args.write:
        table = "\n".join(
            f"| {s}x{s} | {n} | {t['seconds']:.1f} | {t['seconds'] / (s**2 / 1e6):.2f} | {n / t['seconds']:.1f} | "
            f"{t['rss_peak']:.0f} ({t['rss_peak'] - t['rss_before']:+.0f}) | {t['numpy_peak']:.1f} (bound {b:.1f}) | "
            f"{o['seconds']:.1f} | "
            f"{o['rss_peak']:.0f} | {t.get('max_diff', float('nan')):.1e} |" for s, n, t, o, b in rows)
        add_section(f"""## Tiled inference of whole FITS images (bench_tiling.py)

{datetime.date.today()}, {machine()}, torch {torch.__version__}, {device_name(device)}, {torch.get_num_threads()} \
thread(s), **load average {load}** (other processes share the cores: the times are high and noisy; the memory \
figures do not depend on the load). A U-Net-like network ({WIDTH} filters, one down/up step, receptive-field \
radius 10) on single-band \
float32 FITS images, streamed FITS to FITS by `predict_fits_tiled` (tile {TILE}, overlap {OVERLAP}, margin \
{MARGIN}, batch {BATCH}), each measurement in a fresh process; the baseline is one forward pass over the whole \
image in memory. Memory in MiB: peak resident set (`VmHWM`; in brackets its rise during the prediction, \
over the process with torch loaded and the network warmed up), numpy buffers (`tracemalloc` peak) against the \
stated bound `T W (8 C + 12 C' + 4) + 4 B C T^2` bytes (T tile, W width, B batch).

The bound does not grow with the height (the file is read and written by bands of T rows) and grows with the \
width by 24 T bytes per column (a band of input, of float64 sums and of output: 24 MiB at W = 4096); the \
network's activations are those of one batch of B tiles of T x T whatever the image. So the peak resident set \
is that of the process, plus one batch's activations, plus the bands: flat once an image is B tiles wide (an \
image fewer than B tiles wide runs smaller batches, hence a lower peak), where one pass grows with the pixel \
count (its activations for the whole image).

| image | tiles | tiled (s) | s per Mpx | tiles/s | tiled peak RSS (rise) | numpy peak | one pass (s) | \
one-pass peak RSS | max diff |
|---|---|---|---|---|---|---|---|---|---|
{table}
""")


if __name__ == "__main__":
    main()
