"""Tiled inference of a whole survey image streamed through FITS: time, tiles/s, and memory against the size.

A small U-Net-like network (plain torch: two 3x3 convolutions, a 2x2 max-pool, two convolutions at
half resolution, a 2x2 transposed convolution, the skip concatenated, two convolutions; 16 filters,
receptive-field radius 10 pixels) applied by :func:`deepfield.analysis.tiling_fits.predict_fits_tiled`
to single-band float32 FITS images of 1024x1024, 2048x2048, 4096x4096 and a wide 1024x8192 (tile 256,
overlap 64, margin 16, batch 8). Each measurement runs in a fresh process, so its peak resident memory
(``VmHWM``) is its own; ``tracemalloc`` gives the peak of the numpy buffers (blocks, sums). The baseline is
one forward pass over the whole image in memory (what one writes first): its time, its peak memory,
and how far the tiled output is from it (the tiling rule makes them equal: margin 16 >= radius 10, and
every tile starts on an even pixel). ``--before SRC`` also times the tiled path of another deepfield
source tree (``SRC`` holds the ``deepfield`` package; e.g. ``git archive`` of an earlier commit's ``src``)
on the same files, interleaved, for a before/after on the same machine.

    python benchmarks/bench_tiling.py            # ~10 minutes on 2 CPU cores; the one pass needs ~6.5 GB
    python benchmarks/bench_tiling.py --quick    # 512x512 and 512x2048, a smoke run
    python benchmarks/bench_tiling.py --sizes 1024x1024,1024x8192 --before /tmp/old/src --write
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


def run_child(method: str, path: Path, device: str | None, source: str | None = None) -> dict:
    """:func:`measure` in a fresh Python process (its peak memory is then its own), with the deepfield of
    the source tree ``source`` if given."""
    command = [sys.executable, __file__, "--child", method, str(path)] + (["--device", device] if device else [])
    env = dict(os.environ, PYTHONPATH=os.path.abspath(source)) if source else None
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def bound_mib(width: int) -> float:
    """The module notes' bound on the numpy buffers, ``T Wb (8 C + 16 C') + 4 B C T^2 + 8 (C' + 1) T^2`` bytes
    with ``Wb = min(W, (B - 1) (T - overlap) + T)`` and ``C = C' = 1``, in MiB."""
    block = min(width, (BATCH - 1) * (TILE - OVERLAP) + TILE)
    return (TILE * block * 24 + 4 * BATCH * TILE**2 + 16 * TILE**2) / 2**20


def size(text: str) -> tuple[int, int]:
    """``"HxW"`` as ``(H, W)``."""
    height, _, width = text.partition("x")
    return int(height), int(width or height)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="512x512 and 512x2048")
    parser.add_argument("--sizes", help="images as HxW, comma-separated (default 1024x1024,2048x2048,4096x4096,"
                                        "1024x8192)")
    parser.add_argument("--before", metavar="SRC", help="also time the tiled path of this deepfield source tree")
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    parser.add_argument("--device", help="cpu, cuda, ... (default: the best present)")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1], args.device)))
        return
    default = "512x512,512x2048" if args.quick else "1024x1024,2048x2048,4096x4096,1024x8192"
    sizes = [size(text) for text in (args.sizes or default).split(",")]
    device = resolve_device(args.device)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for height, width in sizes:
            path = Path(folder) / f"sky{height}x{width}.fits"
            sky = np.random.default_rng(height * width).normal(size=(height, width)).astype(np.float32)
            fits.PrimaryHDU(sky).writeto(path)
            del sky
            one = run_child("one-pass", path, args.device)
            before = run_child("tiled", path, args.device, args.before) if args.before else None
            tiled = run_child("tiled", path, args.device)
            tiles = len(tile_starts(height, TILE, OVERLAP)) * len(tile_starts(width, TILE, OVERLAP))
            rows.append(((height, width), tiles, tiled, one, bound_mib(width), before))
            was = (f"; before: {tiles / before['seconds']:.1f} tiles/s, numpy peak {before['numpy_peak']:.1f} MiB, "
                   f"peak RSS {before['rss_peak']:.0f} MiB" if before else "")
            print(f"{height}x{width}: {tiles} tiles, tiled {tiled['seconds']:.1f} s ({tiles / tiled['seconds']:.1f} "
                  f"tiles/s, {tiled['seconds'] / (height * width / 1e6):.2f} s/Mpx), peak RSS "
                  f"{tiled['rss_peak']:.0f} MiB (before {tiled['rss_before']:.0f}), numpy peak "
                  f"{tiled['numpy_peak']:.1f} MiB (bound {bound_mib(width):.1f}); one pass {one['seconds']:.1f} s, "
                  f"peak RSS {one['rss_peak']:.0f} MiB; max |tiled - one pass| = "
                  f"{tiled.get('max_diff', float('nan')):.1e}{was}", flush=True)
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    if args.write:
        write(rows, device, load, bool(args.before))


def write(rows: list, device: torch.device, load: str, compared: bool) -> None:
    """This run's section of benchmarks/RESULTS.md."""
    def line(shape: tuple[int, int], n: int, t: dict, o: dict, b: float, was: dict | None) -> str:
        (height, width), before = shape, (f" {n / was['seconds']:.1f} / {was['numpy_peak']:.1f} / "
                                          f"{was['rss_peak']:.0f} |" if was else "")
        return (f"| {height}x{width} | {n} | {t['seconds']:.1f} | {t['seconds'] / (height * width / 1e6):.2f} | "
                f"{n / t['seconds']:.1f} |{before} {t['rss_peak']:.0f} ({t['rss_peak'] - t['rss_before']:+.0f}) | "
                f"{t['numpy_peak']:.1f} (bound {b:.1f}) | {o['seconds']:.1f} | {o['rss_peak']:.0f} | "
                f"{t.get('max_diff', float('nan')):.1e} |")

    table = "\n".join(line(*row) for row in rows)
    before = (" before: tiles/s / numpy peak / peak RSS |", "---|") if compared else ("", "")
    add_section(f"""## Tiled inference of whole FITS images (bench_tiling.py)

{datetime.date.today()}, {machine()}, torch {torch.__version__}, {device_name(device)}, {torch.get_num_threads()} \
thread(s), **load average {load}** (other processes share the cores: the times are high and noisy; the memory \
figures do not depend on the load). A U-Net-like network ({WIDTH} filters, one down/up step, receptive-field \
radius 10) on single-band \
float32 FITS images, streamed FITS to FITS by `predict_fits_tiled` (tile {TILE}, overlap {OVERLAP}, margin \
{MARGIN}, batch {BATCH}), each measurement in a fresh process; the baseline is one forward pass over the whole \
image in memory. Memory in MiB: peak resident set (`VmHWM`; in brackets its rise during the prediction, \
over the process with torch loaded and the network warmed up), numpy buffers (`tracemalloc` peak) against the \
stated bound `T Wb (8 C + 16 C') + 4 B C T^2 + 8 (C' + 1) T^2` bytes (T tile, B batch, \
Wb = min(W, (B - 1)(T - overlap) + T) = min(W, {(BATCH - 1) * (TILE - OVERLAP) + TILE}) columns a block).

The bound depends on neither the height nor the width: the file is read by blocks of T rows and one batch of \
B tiles' columns, the output written by blocks at their places, and the float64 sums a band shares with the \
next wait in a temporary file (8 C' T W bytes on disk, in the kernel's page cache, not the process's memory); \
the network's activations are those of one batch of B tiles of T x T whatever the image. So the peak resident \
set is that of the process, plus one batch's activations, plus one block: flat once an image is B tiles wide \
(an image fewer than B tiles wide runs smaller batches and blocks, hence a lower peak), where one pass grows \
with the pixel count (its activations for the whole image).{
" The before columns run the previous tiled path (whole bands of T rows: 24 T bytes a column) on the same "
"files in the same run, interleaved." if compared else ""}

| image | tiles | tiled (s) | s per Mpx | tiles/s |{before[0]} tiled peak RSS (rise) | numpy peak | \
one pass (s) | one-pass peak RSS | max diff |
|---|---|---|---|---|{before[1]}---|---|---|---|---|
{table}
""")


if __name__ == "__main__":
    main()
