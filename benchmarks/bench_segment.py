"""Segmentation of blends: the U-Net of examples/segment.yaml against threshold-and-watershed detection
(photutils), on one split of simulated blends (issue 18).

    python benchmarks/bench_segment.py              # 1,000 blends of 32x32 in g, r, i
    python benchmarks/bench_segment.py --write      # and add a section to RESULTS.md
    python benchmarks/bench_segment.py --n 400 --epochs 8 --boundary-weights 1,5   # a network per boundary weight

Rows: the network (one per ``training.class_weight`` of the boundary class, on the same split) and the watershed
baseline (its threshold tuned on the validation part), scored on the same test part: mean IoU, IoU per class
(background / source / boundary), completeness and purity of the sources found (a true source is found when one
segment overlaps it with IoU > 0.5), the network's at the seed level chosen on the validation part and, beside it,
at the fixed level 0.9 that runs used before.
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

from deepfield.analysis.segmentation import SEED_LEVEL, instances_from_probabilities, match_sources
from deepfield.data.simulate import simulate_blends
from deepfield.tasks.config import load_config
from deepfield.tasks.pipeline import train
from deepfield.tasks.run import load_run
from results import add_section, machine

EXAMPLE = Path(__file__).parents[1] / "examples" / "segment.yaml"
COLUMNS = ("mean_iou", "iou_background", "iou_source", "iou_boundary", "completeness", "purity")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="blends")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--boundary-weights", default="1", help="a network per weight of the boundary class, 1,5")
    parser.add_argument("--write", action="store_true", help="add a section to RESULTS.md")
    args = parser.parse_args()
    weights = [float(w) for w in args.boundary_weights.split(",")]
    header = ["| model | parameter | mean IoU | IoU background | IoU source | IoU boundary | completeness | purity |"
              " completeness, purity at seed 0.9 |", "|---|---|---|---|---|---|---|---|---|"]
    networks, baselines = [], []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        data = simulate_blends(args.n, Path(folder) / "blends.h5", size=32, bands="gri", seed=0, progress=False)
        for k, weight in enumerate(weights):
            config = load_config(EXAMPLE, [f"data.path={data}", f"out={Path(folder) / f'run{k}'}",
                                           f"training.epochs={args.epochs}", f"training.device={args.device}",
                                           f"baselines.run={k == 0}", f"training.class_weight={{boundary: {weight}}}"])
            out = train(config, verbose=0)
            metrics = json.loads((out / "metrics.json").read_text())
            fixed = fixed_level_scores(out)
            network = {"model": "network (unet)", **{f"iou_{c}": v for c, v in metrics["iou"].items()},
                       **{key: metrics[key] for key in COLUMNS if key in metrics}}
            networks.append(row_line(network, f"boundary weight {weight:g}, seed {metrics['seed_level']} "
                                              f"(validation)", f"{fixed[0]:.3f}, {fixed[1]:.3f}"))
            baselines += [row_line(row, row["parameter"], "-") for row in metrics.get("baselines", [])[1:]]
    seconds = time.perf_counter() - started
    table = "\n".join(header + networks + baselines)
    print(table)
    print(f"train + analysis + baseline: {seconds:.0f} s on {args.device}, load average {os.getloadavg()[0]:.2f}")
    if args.write:
        weighted = f" (boundary weights {args.boundary_weights})" if weights != [1.0] else ""
        add_section(
            f"## {datetime.date.today().isoformat()} — segmentation of blends: U-Net{weighted} against watershed: "
            f"{machine()}, torch {torch.__version__}, photutils {photutils.__version__}\n\n"
            f"`python benchmarks/bench_segment.py --n {args.n} --epochs {args.epochs} --boundary-weights "
            f"{args.boundary_weights} --write`: {args.n:,} simulated blends (2 to 4 sources, 32x32, g,r,i, "
            f"100 visits) from `deepfield simulate blends`, one seeded split (70/15/15); the network is "
            f"examples/segment.yaml's U-Net ({metrics['epochs_run']} epochs run of {args.epochs}; one per "
            f"`training.class_weight` of the boundary class: {args.boundary_weights}); the baseline's "
            "n_sigma is chosen on the validation part. A source is found when one segment overlaps it with "
            f"IoU > 0.5. Train, analysis and baseline took {seconds:.0f} s on {args.device} (the machine shared "
            f"with other jobs: load average {os.getloadavg()[0]:.2f} at the end).\n\n" + table + "\n")


def row_line(row: dict, parameter: str, fixed: str) -> str:
    cells = " | ".join("-" if row.get(key) is None else f"{row[key]:.3f}" for key in COLUMNS)
    return f"| {row['model']} | {parameter or '-'} | {cells} | {fixed} |"


def fixed_level_scores(out: Path) -> tuple[float, float]:
    """(completeness, purity) of the run ``out`` on its test part with the watershed seeds at :data:`SEED_LEVEL`."""
    run = load_run(out)
    prepared = run.training_data()
    found = instances_from_probabilities(run.predictive(prepared.x["test"]).mean, 2, SEED_LEVEL)
    counts = match_sources(prepared.sources["test"], found)
    return counts["n_matched"] / counts["n_true"], counts["n_matched"] / counts["n_predicted"]


if __name__ == "__main__":
    main()
