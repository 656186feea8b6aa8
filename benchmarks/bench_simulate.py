"""How fast does ``simulate_morphology`` draw stamps? Throughput of a full run on every core.

Draws N three-band (g, r, i) 64x64 morphology stamps into a temporary HDF5 file with all
cores (or ``--workers``) and prints stamps per second and the total time, the file write
included. The target is 10,000 stamps in under 2 minutes on 2 cores.

    python benchmarks/bench_simulate.py                  # 10,000 stamps
    python benchmarks/bench_simulate.py --n 1000         # a smoke run
    python benchmarks/bench_simulate.py --write          # also append a section to benchmarks/RESULTS.md
    python benchmarks/bench_simulate.py --profile 300    # cProfile of 300 stamps in this process instead
"""
from __future__ import annotations

import argparse
import cProfile
import datetime
import os
import pstats
import tempfile
import time
from pathlib import Path

import galsim

from results import RESULTS, add_section, machine
from deepfield.data.simulate.morphology import class_labels, draw_chunk, simulate_morphology, stamp_job

def run(n: int, workers: int | None, size: int) -> tuple[float, int]:
    """Seconds for one full run and the size of the file it wrote (bytes)."""
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        path = simulate_morphology(n, Path(folder) / "bench.h5", size=size, workers=workers, progress=True)
        return time.perf_counter() - start, path.stat().st_size


def profile(n: int, size: int) -> None:
    """cProfile of drawing ``n`` stamps in this process (no file, no pool), top functions by own time."""
    job = stamp_job(n, size, "gri", 0, (20.0, 200.0), 0.2, (0.5, 1.1))
    labels = class_labels(n, None, 0)
    draw_chunk((job, range(5), labels[:5]))  # GalSim's one-off tables outside the profile
    profiler = cProfile.Profile()
    profiler.runcall(draw_chunk, (job, range(n), labels))
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def write_results(n: int, workers: int, size: int, seconds: float, file_bytes: int) -> None:
    add_section(
        f"## {datetime.date.today().isoformat()} — simulate_morphology: {machine()}, galsim {galsim.__version__}\n\n"
        f"`python benchmarks/bench_simulate.py --write`: {n:,} stamps of 3 bands (g, r, i) x {size}x{size} "
        f"pixels, {workers} worker processes, HDF5 write included; load average at the end "
        f"{os.getloadavg()[0]:.2f}. Target: 10,000 stamps in under 120 s on 2 cores.\n\n"
        "| stamps | workers | seconds | stamps/s | file MB |\n|---|---|---|---|---|\n"
        f"| {n:,} | {workers} | {seconds:.1f} | {n / seconds:,.0f} | {file_bytes / 1e6:,.0f} |\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="stamps to draw (default 10,000)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--size", type=int, default=64, help="stamp side in pixels (default 64)")
    parser.add_argument("--write", action="store_true", help=f"append the result to {RESULTS.name}")
    parser.add_argument("--profile", type=int, metavar="N", help="profile N stamps in this process instead")
    args = parser.parse_args()
    if args.profile:
        profile(args.profile, args.size)
        return
    workers = args.workers or os.cpu_count() or 1
    print(f"galsim {galsim.__version__}, {workers} workers, {machine()}")
    seconds, file_bytes = run(args.n, workers, args.size)
    print(f"{args.n:,} stamps in {seconds:.1f} s: {args.n / seconds:,.0f} stamps/s")
    if args.write:
        write_results(args.n, workers, args.size, seconds, file_bytes)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
