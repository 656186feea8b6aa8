"""Segmentation of blends: the U-Net of examples/segment.yaml against threshold-and-watershed detection
(photutils), on one split of simulated blends (issue 18).

    python benchmarks/bench_segment.py              # 1,000 blends of 32x32 in g, r, i
    python benchmarks/bench_segment.py --write      # and add a section to RESULTS.md

Rows: the network and the watershed baseline (its threshold tuned on the validation part), scored on the same
test part: mean IoU, IoU per class (background / source / boundary), completeness and purity of the sources
found (a true source is found when one segment overlaps it with IoU > 0.5).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import tempfile
import time
from pathlib import Path

import photutils
import torch

from deepfield.data.simulate import simulate_blends
from deepfield.tasks.config import load_config
from deepfield.tasks.pipeline import train
from results import add_section, machine

EXAMPLE = Path(__file__).parents[1] / "examples" / "segment.yaml"
COLUMNS = ("mean_iou", "iou_background", "iou_source", "iou_boundary", "completeness", "purity")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="blends")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--write", action="store_true", help="add a section to RESULTS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data = simulate_blends(args.n, Path(folder) / "blends.h5", size=32, bands="gri", seed=0, progress=False)
        config = load_config(EXAMPLE, [f"data.path={data}", f"out={Path(folder) / 'run'}",
                                       f"training.epochs={args.epochs}", f"training.device={args.device}"])
        started = time.perf_counter()
        out = train(config, verbose=0)
        seconds = time.perf_counter() - started
        metrics = json.loads((out / "metrics.json").read_text())
    lines = ["| model | parameter | mean IoU | IoU background | IoU source | IoU boundary | completeness | purity |",
             "|---|---|---|---|---|---|---|---|"]
    for row in metrics["baselines"]:
        cells = " | ".join("-" if row.get(key) is None else f"{row[key]:.3f}" for key in COLUMNS)
        lines.append(f"| {row['model']} | {row['parameter'] or '-'} | {cells} |")
    table = "\n".join(lines)
    print(table)
    print(f"train + analysis + baseline: {seconds:.0f} s on {args.device}")
    if args.write:
        add_section(
            f"## {datetime.date.today().isoformat()} — segmentation of blends: U-Net against watershed: "
            f"{machine()}, torch {torch.__version__}, photutils {photutils.__version__}\n\n"
            f"`python benchmarks/bench_segment.py --write`: {args.n:,} simulated blends (2 to 4 sources, 32x32, g,r,i, "
            f"100 visits) from `deepfield simulate blends`, one seeded split (70/15/15); the network is "
            f"examples/segment.yaml's U-Net ({metrics['epochs_run']} epochs run of {args.epochs}); the baseline's "
            "n_sigma is chosen on the validation part. A source is found when one segment overlaps it with "
            f"IoU > 0.5. Train, analysis and baseline took {seconds:.0f} s on {args.device} (the machine shared "
            f"with other jobs: load average {os.getloadavg()[0]:.2f} at the end).\n\n" + table + "\n")


if __name__ == "__main__":
    main()
