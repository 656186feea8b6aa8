"""How fast do ``simulate_denoise`` and ``simulate_blends`` draw stamps, against ``simulate_morphology``?

Draws N three-band (g, r, i) 64x64 stamps of each simulator, in turns, into temporary HDF5
files with ``--workers`` processes (default 1: the cost per core), and prints stamps per
second and the ratio to the morphology stamps drawn in the same run (the machine's load
changes the seconds, much less the ratios).

    python benchmarks/bench_simulate_pairs.py               # 1,000 stamps each, one worker
    python benchmarks/bench_simulate_pairs.py --workers 2   # every core
    python benchmarks/bench_simulate_pairs.py --write       # also add a section to benchmarks/RESULTS.md
"""
from __future__ import annotations

import argparse
import datetime
import os
import tempfile
import time
from pathlib import Path

import galsim

from results import add_section, machine
from deepfield.data.simulate import simulate_blends, simulate_denoise, simulate_morphology

CASES = {
    "morphology": (simulate_morphology, {}),
    "denoise (noise-free target)": (simulate_denoise, {}),
    "denoise (deep target, sharper PSF)": (simulate_denoise, dict(target="deep", target_psf=0.4)),
    "blends (2-4 sources)": (simulate_blends, {}),
    "blends (two galaxies)": (simulate_blends, dict(min_sources=2, max_sources=2, star_fraction=0.0)),
}


def run(n: int, workers: int) -> dict[str, tuple[float, int]]:
    """Seconds and file bytes of each case."""
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, (simulate, options) in CASES.items():
            start = time.perf_counter()
            path = simulate(n, Path(folder) / "bench.h5", workers=workers, progress=False, **options)
            results[name] = (time.perf_counter() - start, path.stat().st_size)
    return results


def table(n: int, results: dict[str, tuple[float, int]]) -> str:
    base = results["morphology"][0]
    rows = [f"| {name} | {seconds:.1f} | {n / seconds:,.0f} | {base / seconds:.2f} | {size / 1e6:,.0f} |"
            for name, (seconds, size) in results.items()]
    header = "| simulator | seconds | stamps/s | speed vs morphology | file MB |\n|---|---|---|---|---|\n"
    return header + "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="stamps per simulator (default 1,000)")
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    parser.add_argument("--write", action="store_true", help="add the result to RESULTS.md")
    args = parser.parse_args()
    results = run(args.n, args.workers)
    text = table(args.n, results)
    print(text)
    if args.write:
        add_section(f"## {datetime.date.today().isoformat()} — simulate denoise and blends: {machine()}, galsim "
                    f"{galsim.__version__}\n\n`python benchmarks/bench_simulate_pairs.py --n {args.n} --workers "
                    f"{args.workers} --write`: {args.n:,} stamps of 3 bands (g, r, i) x 64x64 per simulator, HDF5 "
                    f"write included; load average at the end {os.getloadavg()[0]:.2f}.\n\n{text}\n")


if __name__ == "__main__":
    main()
