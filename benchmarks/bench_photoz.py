"""Photo-z quality of the ``mlp`` preset next to k-nearest neighbours, on the same colours and split.

A simulated catalogue (``simulate_photoz``, LSST ugrizy, i < 25.3) is prepared once by the
photoz task: magnitudes + colours, unmeasured values filled and every feature standardised
with statistics of the training half. The test half (50 %) is scored by σ_NMAD, the median
bias of Δz = (z_phot − z)/(1 + z) and the outlier fractions |Δz| > 0.15 and > 0.05.

* ``kNN``: scikit-learn's ``KNeighborsRegressor`` on the training half (train + validation
  parts), k and the weighting chosen by 5-fold cross-validation (mean absolute error);
* ``mlp``: the photoz task's pipeline (``deepfield.tasks.run.train``) with the ``mlp``
  preset (64-64 relu) on the training part (40 %), its best epoch by the validation
  part (10 %) kept, early stopping after 20 epochs without progress: as a regression with
  MAE (the task's default) and with MSE, and as a PDF over 100 redshift bins (point
  estimate: the PDF's median). Its fit time includes the data preparation and the
  per-epoch validation and checkpoints.

    python benchmarks/bench_photoz.py            # 20,000 galaxies, ~2-4 minutes on 2 CPU cores
    python benchmarks/bench_photoz.py --quick    # a smoke run (2,000 galaxies, 20 epochs)
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
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsRegressor

from results import RESULTS, add_section, machine
from deepfield.analysis.photoz import photoz_metrics
from deepfield.data.simulate import simulate_photoz
from deepfield.tasks.config import RunConfig, load_config
from deepfield.tasks.photoz import PhotoZ
from deepfield.tasks.run import train

SEED = 0
K_GRID = {"n_neighbors": [5, 10, 20, 40, 80], "weights": ["uniform", "distance"]}
MLP_RUNS = {  # row label -> (training.loss, model.options)
    "mlp, regression (MAE)": ("mae", {}),
    "mlp, regression (MSE)": ("mse", {}),
    "mlp, PDF over 100 bins": ("sparse_categorical_crossentropy", {"n_outputs": 100}),
}


@dataclass
class Row:
    method: str
    sigma_nmad: float
    bias: float
    outliers_15: float
    outliers_05: float
    seconds: float
    note: str


def run_config(catalogue: Path, out: Path, epochs: int, loss: str = "mae",
               options: dict[str, Any] | None = None) -> RunConfig:
    """The photoz run: train 40 %, validation 10 %, test 50 % of ``catalogue``, seeded."""
    return load_config(None, document={
        "task": "photoz", "seed": SEED, "out": str(out),
        "data": {"path": str(catalogue), "mag": "mag_{band}_lsst", "err": "mag_err_{band}_lsst",
                 "split": {"validation": 0.1, "test": 0.5}},
        "model": {"preset": "mlp", "options": options or {}},
        "training": {"epochs": epochs, "batch_size": 128, "learning_rate": 1e-3, "loss": loss,
                     "early_stopping": 20},
    })


def knn_row(catalogue: Path, folder: Path) -> Row:
    """k-nearest neighbours on the photoz task's prepared (standardised) features."""
    prepared = PhotoZ().prepare(run_config(catalogue, folder, 1))
    x = np.concatenate([prepared.x["train"], prepared.x["validation"]])
    z = np.concatenate([prepared.z["train"], prepared.z["validation"]])
    start = time.perf_counter()
    search = GridSearchCV(KNeighborsRegressor(), K_GRID, cv=5, scoring="neg_mean_absolute_error").fit(x, z)
    seconds = time.perf_counter() - start
    m = photoz_metrics(prepared.z["test"], search.predict(prepared.x["test"]))
    best = search.best_params_
    return Row("kNN", m.sigma_nmad, m.bias_median, m.outlier_fractions[0.15], m.outlier_fractions[0.05], seconds,
               f"k = {best['n_neighbors']}, {best['weights']} weights, {len(search.cv_results_['params'])}x5 fits")


def mlp_row(method: str, config: RunConfig) -> Row:
    """The photoz task's own run (``train``) and its metrics.json."""
    with contextlib.redirect_stdout(io.StringIO()):  # the model summary train() prints
        out = train(config, console=Console(quiet=True), verbose=0)
    m = json.loads((out / "metrics.json").read_text())
    return Row(method, m["sigma_nmad"], m["bias_median"], m["outlier_fraction_0.15"], m["outlier_fraction_0.05"],
               m["time_s"], f"{m['epochs_run']} epochs" + (f", CRPS {m['crps']:.4f}" if "crps" in m else ""))


def table(rows: list[Row]) -> str:
    lines = ["| method | σ_NMAD | bias (median Δz) | outliers >0.15 | outliers >0.05 | fit time (s) | notes |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.method} | {r.sigma_nmad:.4f} | {r.bias:+.4f} | {r.outliers_15:.2%} | {r.outliers_05:.2%} | "
              f"{r.seconds:.1f} | {r.note} |" for r in rows]
    return "\n".join(lines)


def write_results(n: int, epochs: int, rows: list[Row]) -> None:
    add_section(
        f"## {datetime.date.today().isoformat()} — photo-z: mlp against kNN: {machine()}, torch {torch.__version__}, "
        f"scikit-learn {sklearn.__version__}, {torch.get_num_threads()} threads\n\n"
        f"`python benchmarks/bench_photoz.py --write`: {n:,} simulated galaxies (LSST ugrizy, i < 25.3, seed "
        f"{SEED}), magnitudes + colours standardised on the training half; test on the other half "
        f"({n // 2:,}). kNN fits the whole training half; the mlp trains on 40 % and keeps its best epoch by the "
        f"remaining 10 % (at most {epochs} epochs, early stopping patience 20). Load average at the end "
        f"{os.getloadavg()[0]:.2f}.\n\n" + table(rows) + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="galaxies to simulate (default 20,000)")
    parser.add_argument("--epochs", type=int, default=200, help="most epochs of each mlp run (default 200)")
    parser.add_argument("--quick", action="store_true", help="2,000 galaxies and 20 epochs")
    parser.add_argument("--write", action="store_true", help=f"add the result to {RESULTS.name}")
    args = parser.parse_args()
    n, epochs = (2_000, 20) if args.quick else (args.n, args.epochs)
    print(f"{n:,} galaxies, {machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        catalogue = simulate_photoz(n, folder / "photoz.h5", seed=SEED, progress=False)
        rows = [knn_row(catalogue, folder / "knn")]
        print(table(rows[-1:]).splitlines()[-1], flush=True)
        for k, (method, (loss, options)) in enumerate(MLP_RUNS.items()):
            rows.append(mlp_row(method, run_config(catalogue, folder / f"mlp{k}", epochs, loss, options)))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(table(rows))
    if args.write:
        write_results(n, epochs, rows)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
