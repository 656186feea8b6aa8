"""Fit the classical learners on features, score them on the test part, add them to a run's table.

A row is one model's test scores, the shape ``metrics.json["baselines"]`` holds and the
HTML report shows as a comparison table (best value of each column in bold):

- always ``model`` (``"hog + svm_rbf"``), ``features``, ``n_features``, ``fit_time_s`` (grid
  search and refit), ``predict_time_s`` (test part), in seconds;
- ``classification``: ``accuracy``, ``macro_auc`` (one-vs-rest, from :func:`~deepfield.tasks.
  baselines.learners.class_scores`);
- ``redshift`` (a regression whose target is z): ``sigma_nmad``, ``outlier_fraction_0.15``,
  ``bias`` (median Δz/(1+z)) from :func:`deepfield.analysis.photoz.photoz_metrics`;
- ``regression``: ``mae`` (target units) and ``r2``.

:func:`image_baselines` adds ``extract_time_s`` (train + test) and ``n_failed`` (stamps whose
features could not be measured; the learners impute them); given a folder, it lists those
stamps with their reasons in ``<folder>/<features>_failures.csv`` (:func:`write_failures`).
"""
from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepfield import atomic
from deepfield.analysis.classification import jsonable, roc_curves
from deepfield.analysis.photoz import photoz_metrics
from deepfield.analysis.regression import regression_scores
from deepfield.errors import DeepfieldError
from deepfield.tasks.base import Prepared
from deepfield.tasks.baselines.learners import NAMES, class_scores, make_learner

TASKS = ("classification", "regression", "redshift")
OUTLIER_THRESHOLD = 0.15
FAILURES_SUFFIX = "_failures.csv"
"""``RUN/baselines/<features>_failures.csv``: the stamps a feature extractor could not (fully) measure."""
FAILURE_COLUMNS = ("part", "index", "id", "reason")


def _matrices(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    train, test = np.asarray(x_train, dtype=np.float64), np.asarray(x_test, dtype=np.float64)
    if train.ndim != 2 or test.ndim != 2 or train.shape[1] != test.shape[1]:
        raise DeepfieldError(f"baselines: features must be (N, F) with one F for train and test, "
                             f"got {train.shape} and {test.shape}")
    return train, test


def _targets(y: np.ndarray, task: str, part: str) -> np.ndarray:
    """``y`` as ``(N,)``: int64 class labels, or float64 values; no NaN."""
    values = np.asarray(y, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(values)):
        raise DeepfieldError(f"baselines: the {part} targets contain NaN or infinite values")
    return values.astype(np.int64) if task == "classification" else values


def classification_scores(model: Any, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy and macro one-vs-rest AUC of a fitted classifier on ``x (N, F)``, labels ``y (N,)``."""
    classes = model.classes_
    position = np.searchsorted(classes, y)
    if np.any(position >= len(classes)) or np.any(classes[np.minimum(position, len(classes) - 1)] != y):
        raise DeepfieldError(f"baselines: the test part has classes the training part lacks "
                             f"(trained on {classes.tolist()})")
    accuracy = float(np.mean(model.predict(x) == y))
    return {"accuracy": accuracy, "macro_auc": roc_curves(position, class_scores(model, x)).macro_auc}


def baseline_scores(truth: np.ndarray, predicted: np.ndarray, task: str) -> dict[str, float]:
    """Photo-z scores (``task="redshift"``) or the mean absolute error and R² of ``predicted (N,)``."""
    if task == "redshift":
        scores = photoz_metrics(truth, predicted, outlier_thresholds=(OUTLIER_THRESHOLD,))
        return {"sigma_nmad": scores.sigma_nmad,
                f"outlier_fraction_{OUTLIER_THRESHOLD:g}": scores.outlier_fractions[OUTLIER_THRESHOLD],
                "bias": scores.bias_median}
    scores = regression_scores(truth, predicted)
    return {"mae": scores["mae"], "r2": scores["r2"]}


def run_baselines(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, *,
                  task: str, learners: Sequence[str] = NAMES, seed: int = 0,
                  feature_name: str = "features") -> list[dict[str, Any]]:
    """One row per learner: fitted on ``x_train (N, F)``, ``y_train (N,)``, scored on the test part.

    ``task`` is ``"classification"`` (integer labels), ``"regression"`` or ``"redshift"``
    (the target is z); NaN features are imputed with the training medians.
    """
    if task not in TASKS:
        raise DeepfieldError(f"baselines: task must be one of {', '.join(TASKS)}, got {task!r}")
    x_train, x_test = _matrices(x_train, x_test)
    y_train, y_test = _targets(y_train, task, "train"), _targets(y_test, task, "test")
    if len(y_train) != len(x_train) or len(y_test) != len(x_test):
        raise DeepfieldError(f"baselines: {len(x_train)}/{len(x_test)} train/test rows of features but "
                             f"{len(y_train)}/{len(y_test)} targets")
    problem = "classification" if task == "classification" else "regression"
    rows = []
    for name in learners:
        model = make_learner(name, problem, seed)
        started = time.perf_counter()
        model.fit(x_train, y_train)
        fitted = time.perf_counter()
        if problem == "classification":
            scores = classification_scores(model, x_test, y_test)
        else:
            scores = baseline_scores(y_test, model.predict(x_test), task)
        rows.append({"model": f"{feature_name} + {name}", "features": feature_name, "n_features": x_train.shape[1],
                     **scores, "fit_time_s": round(fitted - started, 3),
                     "predict_time_s": round(time.perf_counter() - fitted, 3)})
    return rows


def prepared_targets(prepared: Prepared, part: str) -> tuple[np.ndarray, str]:
    """The targets ``(N,)`` of ``part`` and the task: class labels when ``info`` names classes,
    the true redshifts when the prepared data keeps them (photo-z), else the values."""
    if "classes" in prepared.info:
        return prepared.y[part], "classification"
    z = getattr(prepared, "z", None)
    if z is not None:
        return z[part], "redshift"
    return prepared.y[part], "regression"


def write_failures(path: str | Path, failed: dict[str, Sequence[tuple[int, str]]],
                   ids: dict[str, np.ndarray] | None = None) -> Path:
    """Write the stamps a feature extractor could not (fully) measure as a CSV, atomically.

    Args:
        path: the CSV to write; columns ``part, index, id, reason`` (``index``: the stamp's
            position in its part, ``id``: the object's identifier where ``ids`` has that part).
        failed: part name (``"train"``, ``"test"``) -> ``(index, reason)`` pairs, as
            :attr:`~deepfield.tasks.features.base.FeatureSet.failed` lists them.
        ids: part name -> ``(N,)`` object identifiers.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FAILURE_COLUMNS)
    for part, pairs in failed.items():
        part_ids = (ids or {}).get(part)
        for index, reason in pairs:
            writer.writerow([part, index, "" if part_ids is None else _text(part_ids[index]), reason])
    path = Path(path)
    atomic.write_text(path, buffer.getvalue())
    return path


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def image_baselines(prepared: Prepared, extractors: Sequence[str] = ("hog", "morphology"),
                    learners: Sequence[str] = ("svm_rbf",), seed: int = 0,
                    failures: str | Path | None = None) -> list[dict[str, Any]]:
    """Hand-made image features + classical learners on the network's own split.

    For each extractor of :mod:`deepfield.tasks.features` (fitted on the training stamps
    when it needs fitting), features of ``prepared.x["train"]`` and ``["test"]``
    ``(N, C, H, W)`` are computed once and every learner of ``learners`` is scored on them.

    ``failures``: a folder (``RUN/baselines``) where each extractor that could not measure
    some stamps lists them, with the reasons, in ``<name>_failures.csv`` (:func:`write_failures`);
    an older list of an extractor that now measured every stamp is removed.
    """
    from deepfield.tasks import features  # imported here so tests can swap in a stand-in module

    images = {part: prepared.x[part] for part in ("train", "test")}
    if any(v.ndim != 4 for v in images.values()):
        raise DeepfieldError(f"image baselines: the prepared inputs are not images (N, C, H, W) but "
                             f"{images['train'].shape}")
    (y_train, task), (y_test, _) = prepared_targets(prepared, "train"), prepared_targets(prepared, "test")
    rows = []
    for name in extractors:
        extractor = features.get(name)
        started = time.perf_counter()
        if hasattr(extractor, "fit"):
            extractor.fit(images["train"])
        train, test = extractor.extract(images["train"]), extractor.extract(images["test"])
        extract_time = round(time.perf_counter() - started, 3)
        if failures is not None:
            listed = Path(failures) / f"{extractor.name}{FAILURES_SUFFIX}"
            if train.failed or test.failed:
                write_failures(listed, {"train": train.failed, "test": test.failed}, prepared.ids)
            else:
                listed.unlink(missing_ok=True)
        for row in run_baselines(train.values, y_train, test.values, y_test, task=task, learners=learners,
                                 seed=seed, feature_name=extractor.name):
            rows.append({**row, "extract_time_s": extract_time, "n_failed": len(train.failed) + len(test.failed)})
    return rows


def append_rows(run_dir: str | Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Add ``rows`` to ``RUN/metrics.json["baselines"]`` (atomically, :func:`merge_rows`) and return
    that file's path. Render the report again to show them."""
    path = Path(run_dir) / "metrics.json"
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DeepfieldError(f"{path}: cannot add baselines, the run's metrics are unreadable ({exc})") from None
    merge_rows(metrics, rows, path)
    atomic.write_text(path, json.dumps(jsonable(metrics), indent=2, allow_nan=False) + "\n")
    return path


def merge_rows(metrics: dict[str, Any], rows: Sequence[dict[str, Any]], source: str | Path = "metrics") -> None:
    """Put ``rows`` in ``metrics["baselines"]``: a row whose ``model`` is already in the table replaces
    the old one, so running the baselines again does not duplicate them."""
    table = metrics.get("baselines") or []
    if not isinstance(table, list):
        raise DeepfieldError(f"{source}: baselines is not a list of rows")
    new = {row["model"] for row in rows}
    metrics["baselines"] = [row for row in table if row.get("model") not in new] + list(rows)
