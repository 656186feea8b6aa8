"""The demo's network trained without and with ``training.augment`` on one simulated sky, for RESULTS.md.

    python benchmarks/bench_augment.py                     # none against [dihedral], the demo's settings
    python benchmarks/bench_augment.py --augment "[dihedral, {name: shift, max_shift: 2}]" --write

Both runs use the demo's config (:func:`deepfield.tasks.demo.demo_config`: same stamps, split,
network, epochs, early stopping and seed), without the explain step; only ``training.augment``
differs. Test accuracy, macro AUC and the expected calibration error (before and after the
temperature fitted on the validation part) come from each run's ``metrics.json``.
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
from typing import Any

import torch
import yaml
from rich.console import Console

from deepfield.data.simulate import simulate_morphology
from deepfield.tasks.config import load_config
from deepfield.tasks.demo import DEMO_SIZE, DEMO_STAMPS, demo_config
from deepfield.tasks.run import train
from results import add_section, machine


def run(folder: Path, data: Path, augment: list[Any], epochs: int, seed: int) -> dict[str, Any]:
    """Train the demo's config with ``training.augment = augment``; its metrics and wall time."""
    config = demo_config(folder, data, epochs, seed)
    config["explain"]["run"] = False
    config["training"]["augment"] = augment
    start = time.perf_counter()
    out = train(load_config(None, document=config), console=Console(file=io.StringIO()), verbose=0)
    metrics = json.loads((out / "metrics.json").read_text())
    return {"augment": augment, "seconds": time.perf_counter() - start, "epochs": metrics["epochs_run"],
            "accuracy": metrics["accuracy"], "macro_auc": metrics["macro_auc"],
            "ece": metrics["uncertainty"]["ece"], "ece_calibrated": metrics["uncertainty"]["ece_calibrated"],
            "nll_calibrated": metrics["uncertainty"]["nll_calibrated"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--augment", default="[dihedral]", help="the training.augment list to compare (YAML)")
    parser.add_argument("--stamps", type=int, default=DEMO_STAMPS)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="add a section to RESULTS.md")
    args = parser.parse_args()
    augment = yaml.safe_load(args.augment)
    with tempfile.TemporaryDirectory() as folder:
        data = simulate_morphology(args.stamps, Path(folder) / "sky.h5", size=DEMO_SIZE, seed=args.seed,
                                   progress=False)
        rows = [run(Path(folder) / name, data, spec, args.epochs, args.seed)
                for name, spec in (("plain", []), ("augmented", augment))]
    lines = [f"| {json.dumps(r['augment'])} | {r['accuracy']:.3f} | {r['macro_auc']:.3f} | {r['ece']:.3f} | "
             f"{r['ece_calibrated']:.3f} | {r['nll_calibrated']:.3f} | {r['epochs']} | {r['seconds']:.0f} |" for r in rows]
    table = ("| training.augment | test accuracy | macro AUC | ECE | ECE calibrated | NLL calibrated | epochs | "
             "wall time (s) |\n|---|---|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n")
    print(table)
    if args.write:
        add_section(
            "## Augmentation on the demo (bench_augment.py)\n\n"
            f"{datetime.date.today().isoformat()}, {machine()}, torch {torch.__version__}. "
            f"`python benchmarks/bench_augment.py --write`: {args.stamps:,} simulated g,r,i stamps of "
            f"{DEMO_SIZE}x{DEMO_SIZE} (seed {args.seed}), the demo's resnet, split and schedule ({args.epochs} epochs "
            "at most, early stopping), trained without and with `training.augment`. "
            f"Load average at the end {os.getloadavg()[0]:.2f}.\n\n" + table)


if __name__ == "__main__":
    main()
