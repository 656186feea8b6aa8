"""Photo-z settings of the photoz task next to k-nearest neighbours and a random forest, on one split.

Two catalogues are simulated separately (``simulate_photoz``: LSST ugrizy 10-year depths,
i < 25.3, magnitude errors from the depths, fluxes below 5σ written as 99 = non-detection):
a training catalogue (seed 0; 85 % train, 15 % validation) and a test catalogue (seed 1).
Every method sees the same features (magnitudes + colours, non-detections filled and every
feature standardised as the photoz task does) and is scored on the whole test catalogue:
σ_NMAD, the median bias of Δz = (z_phot − z)/(1 + z), and the outlier fractions
|Δz| > 0.15 (catastrophic) and > 0.05.

* ``kNN``: scikit-learn's ``KNeighborsRegressor`` on train + validation, k and the weighting
  chosen by 5-fold cross-validation (mean absolute error);
* ``random forest``: scikit-learn's ``RandomForestRegressor`` (100 trees grown in full, the
  ``deepfield baseline`` learner without its depth search) on train + validation;
* the photoz task's runs (``deepfield.tasks.pipeline.train``; best epoch by the validation part,
  early stopping): the previous example (64-64 MAE regression), PDFs over 100 bins with the
  median, mean, mode, peak and peak mean as point estimates (``photoz.point_estimate``), a wider
  network with dropout, training on magnitudes resampled within their errors
  (``photoz.resample_errors``), the errors as features, bins smoothed by a Gaussian of
  σ = 0.02 (1 + z) (``photoz.label_smoothing``) and ensembles of 3. A PDF run is trained once;
  its five point estimates are read from the same predictions.
  Fit times include data preparation, per-epoch validation and checkpoints.

    python benchmarks/bench_photoz.py            # 20,000 + 10,000 galaxies, ~20 min on 1 thread of a quiet CPU, more on a busy one
    python benchmarks/bench_photoz.py --only mlp # the rows whose label starts so (all but the ensemble)
    python benchmarks/bench_photoz.py --quick    # a smoke run (2,000 + 1,000 galaxies, 3 epochs)
    python benchmarks/bench_photoz.py --write    # also update benchmarks/RESULTS.md
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import torch
from rich.console import Console
from sklearn.ensemble import RandomForestRegressor
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsRegressor

from results import RESULTS, add_section, machine
from deepfield.analysis.photoz import photoz_metrics
from deepfield.data.catalogues import read_catalogue
from deepfield.data.simulate import simulate_photoz
from deepfield.tasks.config import load_config
from deepfield.tasks.photoz import PhotoZ
from deepfield.tasks.run import load_run, train

SEEDS = {"train": 0, "test": 1}
PDF = {"training": {"loss": "sparse_categorical_crossentropy"}, "model": {"options": {"n_outputs": 100}}}
WIDE = {"model": {"options": {"n_outputs": 100, "hidden": [128, 128, 128], "dropout": 0.1}}}
RESAMPLED = {"photoz": {"resample_errors": True}}
SMOOTHED = {"photoz": {"label_smoothing": 0.02}}
ERRORS = {"data": {"features": ["magnitudes", "colours", "errors"]}}
ESTIMATES = ("median", "mean", "mode", "peak", "peak_mean")
RUNS: dict[str, dict[str, Any]] = {  # label -> what the run changes in the base document
    "mlp 64-64, MAE regression (previous example)": {"training": {"learning_rate": 1e-3, "reduce_lr": None,
                                                                  "early_stopping": 20}},
    "mlp 64-64, PDF": PDF,
    "mlp 128x3 + dropout 0.1, PDF": PDF | WIDE,
    "mlp 128x3 + dropout 0.1, PDF, resampled errors": PDF | WIDE | RESAMPLED,
    "mlp 128x3 + dropout 0.1, PDF, errors as features": PDF | WIDE | ERRORS,
    "mlp 128x3 + dropout 0.1, PDF, label smoothing 0.02": PDF | WIDE | SMOOTHED,
    "ensemble of 3: mlp 128x3 + dropout 0.1, PDF": PDF | WIDE | {"ensemble": 3},
    "ensemble of 3: mlp 128x3 + dropout 0.1, PDF, label smoothing 0.02": PDF | WIDE | SMOOTHED | {"ensemble": 3},
}
K_GRID = {"n_neighbors": [5, 10, 20, 40, 80], "weights": ["uniform", "distance"]}


@dataclass
class Row:
    method: str
    sigma_nmad: float
    bias: float
    outliers_15: float
    outliers_05: float
    seconds: float
    note: str


def document(train_file: Path, test_file: Path, out: Path, epochs: int, run: dict[str, Any]) -> dict[str, Any]:
    """The photoz run: the training catalogue split 85/15, the test catalogue held out, seeded."""
    doc: dict[str, Any] = {
        "task": "photoz", "seed": 0, "out": str(out),
        "data": {"path": str(train_file), "test": str(test_file), "mag": "mag_{band}_lsst",
                 "err": "mag_err_{band}_lsst", "split": {"validation": 0.15, "test": 0.0}},
        "model": {"preset": "mlp"},
        "training": {"epochs": epochs, "batch_size": 128, "learning_rate": 2e-3, "reduce_lr": 8,
                     "early_stopping": 20},
    }
    for key, value in run.items():
        doc[key] = doc[key] | value if isinstance(value, dict) and isinstance(doc.get(key), dict) else value
    return doc


def scored(method: str, z: np.ndarray, z_phot: np.ndarray, seconds: float, note: str) -> Row:
    m = photoz_metrics(z, z_phot)
    return Row(method, m.sigma_nmad, m.bias_median, m.outlier_fractions[0.15], m.outlier_fractions[0.05], seconds,
               note)


def classical_rows(train_file: Path, test_file: Path, folder: Path) -> list[Row]:
    """kNN and the random forest on the photoz task's prepared (standardised) features."""
    prepared = PhotoZ().prepare(load_config(None, document=document(train_file, test_file, folder, 1, {})))
    x = np.concatenate([prepared.x["train"], prepared.x["validation"]])
    z = np.concatenate([prepared.z["train"], prepared.z["validation"]])
    rows = []
    start = time.perf_counter()
    knn = GridSearchCV(KNeighborsRegressor(), K_GRID, cv=5, scoring="neg_mean_absolute_error").fit(x, z)
    best = knn.best_params_
    rows.append(scored("kNN", prepared.z["test"], knn.predict(prepared.x["test"]), time.perf_counter() - start,
                       f"k = {best['n_neighbors']}, {best['weights']} weights"))
    print(table(rows[-1:]).splitlines()[-1], flush=True)
    start = time.perf_counter()
    forest = RandomForestRegressor(n_estimators=100, n_jobs=1, random_state=0).fit(x, z)
    rows.append(scored("random forest", prepared.z["test"], forest.predict(prepared.x["test"]),
                       time.perf_counter() - start, "100 trees"))
    print(table(rows[-1:]).splitlines()[-1], flush=True)
    return rows


def network_rows(method: str, doc: dict[str, Any], test_file: Path) -> list[Row]:
    """One photoz run; a PDF gives a row per point estimate (median, mean, mode) of the same predictions."""
    config = load_config(None, document=doc)
    with contextlib.redirect_stdout(io.StringIO()):  # the model summary train() prints
        out = train(config, console=Console(quiet=True), verbose=0)
    metrics = json.loads((out / "metrics.json").read_text())
    opened = load_run(out)
    new = opened.inputs(test_file, labelled=True)
    columns = opened.task.describe(opened.predictive(new.x).mean, opened.info)
    epochs = metrics["epochs_run"]
    note = f"{epochs} epochs" if isinstance(epochs, int) else f"{'/'.join(map(str, epochs))} epochs"
    if opened.info.mode != "pdf":
        return [scored(method, new.z, columns["z_phot"], metrics["time_s"], note)]
    note += f", CRPS {metrics['crps']:.4f}"
    return [scored(f"{method}, {estimate}", new.z, columns[f"z_{estimate}"], metrics["time_s"], note)
            for estimate in ESTIMATES]


def table(rows: list[Row]) -> str:
    lines = ["| method | σ_NMAD | bias (median Δz) | outliers >0.15 | outliers >0.05 | fit time (s) | notes |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.method} | {r.sigma_nmad:.4f} | {r.bias:+.4f} | {r.outliers_15:.2%} | {r.outliers_05:.2%} | "
              f"{r.seconds:.1f} | {r.note} |" for r in rows]
    return "\n".join(lines)


def catalogue_notes(train_file: Path) -> str:
    """Non-detections per band and the median i-band error at the faint end, of the training catalogue."""
    t = read_catalogue(train_file)
    missing = ", ".join(f"{b} {np.mean(np.asarray(t[f'mag_{b}_lsst']) == 99.0):.1%}" for b in "ugrizy")
    i, err = np.asarray(t["mag_i_lsst"]), np.asarray(t["mag_err_i_lsst"])
    faint = np.median(err[(i > 24.8) & (i < 99)])
    return f"non-detections (99): {missing}; median i error at i > 24.8: {faint:.3f} mag"


def write_results(n: int, n_test: int, epochs: int, notes: str, rows: list[Row]) -> None:
    add_section(
        f"## {datetime.date.today().isoformat()} — photo-z: settings against kNN and a random forest: {machine()}, "
        f"torch {torch.__version__}, scikit-learn {sklearn.__version__}, {torch.get_num_threads()} thread(s)\n\n"
        f"`python benchmarks/bench_photoz.py --write`: a training catalogue of {n:,} simulated galaxies "
        f"(seed {SEEDS['train']}) and a test catalogue of {n_test:,} drawn separately (seed {SEEDS['test']}); LSST "
        f"ugrizy 10-year depths, i < 25.3, errors from the depths, {notes}. Magnitudes + colours standardised on "
        f"the training part. kNN and the forest fit train + validation; the networks train on 85 % and keep their "
        f"best epoch by the other 15 % (at most {epochs} epochs, batch 128, Adam 2e-3 halved after 8 epochs "
        f"without progress, early stopping patience 20; the previous example: Adam 1e-3, no halving). "
        f"A PDF (100 bins) is trained once and scored with each point estimate. Load average at the end "
        f"{os.getloadavg()[0]:.2f}.\n\n" + table(rows) + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="training galaxies (default 20,000; test: half)")
    parser.add_argument("--epochs", type=int, default=300, help="most epochs of each network (default 300)")
    parser.add_argument("--quick", action="store_true", help="2,000 + 1,000 galaxies and 3 epochs")
    parser.add_argument("--only", nargs="*", help="run only the network rows whose label starts with one of these")
    parser.add_argument("--write", action="store_true", help=f"add the result to {RESULTS.name}")
    args = parser.parse_args()
    torch.set_num_threads(1)  # a shared machine; every method single-threaded
    n, epochs = (2_000, 3) if args.quick else (args.n, args.epochs)
    print(f"{n:,} + {n // 2:,} galaxies, {machine()}, torch {torch.__version__}, 1 thread")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        train_file = simulate_photoz(n, folder / "train.h5", seed=SEEDS["train"], progress=False)
        test_file = simulate_photoz(n // 2, folder / "test.h5", seed=SEEDS["test"], progress=False)
        notes = catalogue_notes(train_file)
        print(notes)
        rows = classical_rows(train_file, test_file, folder / "classical")
        for k, (method, run) in enumerate(RUNS.items()):
            if args.only and not any(method.startswith(prefix) for prefix in args.only):
                continue
            rows += network_rows(method, document(train_file, test_file, folder / f"run{k}", epochs, run), test_file)
            print("\n".join(table(rows).splitlines()[-(len(ESTIMATES) if "PDF" in method else 1):]), flush=True)
    print(table(rows))
    if args.write:
        write_results(n, n // 2, epochs, notes, rows)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
