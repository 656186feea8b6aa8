"""The demo's wall time and test accuracy (what `make demo` runs), for benchmarks/RESULTS.md.

    python benchmarks/bench_demo.py            # run it, print the figures
    python benchmarks/bench_demo.py --write    # and add a section to RESULTS.md
"""
from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console

from deepfield.tasks.demo import DEMO_SIZE, DEMO_STAMPS, run_demo
from results import add_section, machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="add a section to RESULTS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        run = run_demo(Path(folder), console=Console(file=io.StringIO()))
        metrics = json.loads((run / "metrics.json").read_text())
        seconds = time.perf_counter() - start
    print(f"demo: {seconds:.0f} s, test accuracy {metrics['accuracy']:.3f}, macro AUC {metrics['macro_auc']:.3f}, "
          f"{metrics['epochs_run']} epochs")
    if args.write:
        add_section(
            f"## {datetime.date.today().isoformat()} — the demo (`make demo`): {machine()}, torch {torch.__version__}\n\n"
            f"`python benchmarks/bench_demo.py --write`: simulate {DEMO_STAMPS:,} g,r,i stamps of "
            f"{DEMO_SIZE}x{DEMO_SIZE}, train the resnet preset (lr halved on plateaus, early stopping), evaluate, "
            "write the report. "
            f"Target: under 10 minutes on 2 CPU cores. Load average at the end {os.getloadavg()[0]:.2f}.\n\n"
            "| wall time (s) | epochs | test accuracy (5 classes) | macro AUC |\n|---|---|---|---|\n"
            f"| {seconds:.0f} | {metrics['epochs_run']} | {metrics['accuracy']:.3f} | {metrics['macro_auc']:.3f} |\n")


if __name__ == "__main__":
    main()
