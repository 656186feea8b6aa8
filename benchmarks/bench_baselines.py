"""Hand-made features + SVM against the network, on one split of the simulated sky (issue: baselines).

    python benchmarks/bench_baselines.py            # 5,000 stamps, 5 classes
    python benchmarks/bench_baselines.py --write    # and add a section to RESULTS.md

Rows: HOG + SVM, CAS (statmorph concentration, asymmetry, smoothness, Gini, M20, Sersic n)
+ SVM, the network's own penultimate-layer features + SVM, and the network itself, all on
the exact train/test split the network used.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import tempfile
import time
from pathlib import Path

import sklearn
from rich.console import Console

from deepfield.analysis.layer_features import default_layer, layer_features
from deepfield.data.simulate import simulate_morphology
from deepfield.models.serialization import load_network
from deepfield.tasks.baselines.runner import image_baselines, prepared_targets, run_baselines
from deepfield.tasks.config import load_config
from deepfield.tasks.pipeline import task_for, train
from results import add_section, machine

KEYS = ("accuracy", "macro_auc", "n_features", "fit_time_s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000, help="stamps (5 classes)")
    parser.add_argument("--write", action="store_true", help="add a section to RESULTS.md")
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as folder:
        data = simulate_morphology(args.n, Path(folder) / "sky.h5", size=32, seed=0)
        config = load_config(None, document={
            "task": "morphology", "out": str(Path(folder) / "run"), "seed": 0, "data": {"path": str(data)},
            "model": {"preset": "resnet", "options": {"filters": [16, 32, 64], "blocks": 1}},
            "training": {"epochs": 25, "early_stopping": 5, "reduce_lr": 2},
        })
        started = time.perf_counter()
        out = train(config, console=console, verbose=0)
        network_seconds = time.perf_counter() - started
        prepared = task_for(config).prepare(config)  # the same seeded split the network used
        rows = image_baselines(prepared, ("hog", "morphology"), ("svm_rbf",), seed=0)
        model = load_network(out)  # the bare network, on the prepared split
        layer = default_layer(model)
        transfer = {part: layer_features(model, prepared.x[part], layer) for part in ("train", "test")}
        (y_train, kind), (y_test, _) = prepared_targets(prepared, "train"), prepared_targets(prepared, "test")
        rows += run_baselines(transfer["train"], y_train, transfer["test"], y_test, task=kind, learners=("svm_rbf",),
                              seed=0, feature_name=f"network features ({layer})")
        metrics = json.loads((out / "metrics.json").read_text())
        rows.append({"model": "network (resnet)", "features": "learned", "accuracy": metrics["accuracy"],
                     "macro_auc": metrics["macro_auc"], "n_features": "-", "fit_time_s": round(network_seconds, 1)})
    lines = ["| model | accuracy | macro AUC | features | fit time (s) |", "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['model']} | {row['accuracy']:.3f} | {row['macro_auc']:.3f} | {row['n_features']} | "
                     f"{row['fit_time_s']} |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        add_section(
            f"## {datetime.date.today().isoformat()} — classical features against the network: {machine()}, "
            f"scikit-learn {sklearn.__version__}\n\n"
            f"`python benchmarks/bench_baselines.py --write`: {args.n:,} simulated g,r,i stamps of 32x32, "
            "5 classes, one seeded split (70/15/15); SVM (RBF) with a 3-fold grid over C; the network is the "
            "resnet preset (16-32-64, lr halved on plateaus, early stopping), its fit time includes the "
            f"evaluation and report. Load average at the end {os.getloadavg()[0]:.2f}.\n\n" + table + "\n")


if __name__ == "__main__":
    main()
