"""Tabular learning: any catalogue with a target column, regression or classification.

- **Data**: any table :func:`~deepfield.data.catalogues.read_catalogue` reads (FITS, CSV/ECSV,
  Parquet, HDF5; ``data.group`` picks the HDF5 table). ``data.target`` is the column to
  learn; ``data.features`` the inputs, by default every other numeric or boolean column.
- **Missing values**: NaN, a blank cell or one of ``data.sentinels`` (99, -99, -9999) in a
  feature or in the target *drops the row*; ``info.dropped`` counts the dropped rows per
  file. Dropping was chosen over mean-filling: a filled value is one the network trusts
  as measured, a dropped row is visible. Set ``data.sentinels: []`` when 99 is a real value.
- **Problem**: a text or boolean target, or an integer one with at most :data:`MAX_CLASSES`
  distinct values, is a class label (classes sorted, names in ``info.classes``, heads,
  losses and metrics as in :mod:`deepfield.tasks.imaging`); any other target is regressed
  (one linear output, mse loss, mae metric).
- **Standardisation**: every feature, and a regressed target, to zero mean and unit
  variance with the statistics of the training part (``info.standardize``,
  ``info.target_scale``). The loss and mae of ``history.csv`` and of ``metrics["test"]``
  are therefore in units of the target's standard deviation; ``mae``, ``rmse``, ``bias`` of
  ``metrics.json`` are in the target's own units.
- **Feature groups** (the course's "Model A vs Model B"): for each group of
  ``data.feature_groups`` a model without that group is trained after the main one (same
  preset, seed, epochs and batch size, its best epoch by ``val_loss`` kept, as the main
  model's is), and ``metrics["baselines"]`` lists the test scores of all, one row per model.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from astropy.table import Table

from deepfield.analysis.classification import classification_metrics
from deepfield.analysis.regression import regression_scores
from deepfield.data.catalogues import numeric_column, preview, read_catalogue, require_columns, row_columns
from deepfield.data.splits import make_split
from deepfield.errors import DeepfieldError
from deepfield.plots import plot_confusion_matrix, plot_roc
from deepfield.plots.regression import plot_regression
from deepfield.tasks.base import PARTS, NewData, Prepared, Task, make_optimizer
from deepfield.tasks.config import DataConfig, RunConfig
from deepfield.tasks.imaging import ImageClassification
from deepfield.tasks.prepared_info import FeatureScale, TableColumns, TabularInfo, TargetScale
from deepfield.tasks.uncertainty import classification_uncertainty, regression_uncertainty, uncertainty_columns
from deepfield.training import EarlyStopping, Engine
from deepfield.training.mc_dropout import MCPrediction

MAX_CLASSES = 20
"""An integer target with at most this many distinct values is a class label; with more, a quantity."""

ROW_METRICS = {"regression": ("mae", "rmse", "r2"), "classification": ("accuracy", "macro_auc")}
"""The test scores shown for each model in the feature-group comparison."""

_classifier = ImageClassification()  # its head, loss, metrics and targets read only info.classes


# -- reading a table ------------------------------------------------------------------------------

def load_table(data: DataConfig, path: Path) -> Table:
    """The catalogue at ``path``, cut to its first ``data.limit`` rows when given."""
    table = read_catalogue(path, group=data.group)
    return table[: data.limit] if data.limit else table


def target_name(data: DataConfig, table: Table) -> str:
    """``data.target``, checked to be a column of ``table`` (the error lists the columns)."""
    if not data.target:
        raise DeepfieldError(f"{data.path}: data.target is not set; name the column to learn, one of: "
                             f"{preview(table.colnames)}")
    require_columns(table, [data.target], source=str(data.path))
    return data.target


def feature_names(data: DataConfig, table: Table, target: str) -> list[str]:
    """``data.features``, or every other numeric/boolean 1-D column; each group's columns must be among them."""
    source = str(data.path)
    if data.features is not None:
        require_columns(table, data.features, source=source)
        names = list(data.features)
    else:
        names = [name for name in table.colnames if name != target and table[name].ndim == 1
                 and np.ma.getdata(table[name]).dtype.kind in "biuf"]
    if target in names:
        raise DeepfieldError(f"{source}: the target {target!r} is also listed in data.features")
    if not names:
        raise DeepfieldError(f"{source}: no numeric feature columns besides {target!r}; name them with data.features")
    for group, columns in data.feature_groups.items():
        require_columns(table, columns, source=source)
        outside = [c for c in columns if c not in names]
        if outside:
            raise DeepfieldError(f"data.feature_groups.{group}: {', '.join(outside)} not among the features "
                                 f"({preview(names)})")
        if set(columns) >= set(names):
            raise DeepfieldError(f"data.feature_groups.{group}: dropping it would leave no features")
    return names


def feature_matrix(table: Table, names: list[str], sentinels: list[float], source: str) -> np.ndarray:
    """The ``names`` columns as ``(N, F)`` float64; blank cells and ``sentinels`` become NaN.

    Booleans, also written as text (``True``/``False``, as CSV files hold them), become 1/0.
    """
    columns = []
    for name in names:
        column = table[name]
        data, blank = np.ma.getdata(column), np.ma.getmaskarray(column)
        if data.dtype.kind in "US" and set(np.char.lower(data[~blank].astype(str))) <= {"true", "false"}:
            data = np.char.lower(data.astype(str)) == "true"
        if data.dtype.kind == "b":
            columns.append(np.where(blank, np.nan, data.astype(np.float64)))
        else:
            columns.append(numeric_column(table, name, source=source))
    x = np.column_stack(columns)
    x[np.isin(x, sentinels)] = np.nan
    return x


def is_classification(column: Any) -> bool:
    """A text or boolean column, or integers with at most :data:`MAX_CLASSES` distinct values."""
    values = np.ma.getdata(column)
    if values.dtype.kind in "USOb":
        return True
    present = values[~np.ma.getmaskarray(column)]
    return values.dtype.kind in "iu" and len(np.unique(present)) <= MAX_CLASSES


def class_names(column: Any) -> list[str]:
    """The distinct values of a label column, sorted (numerically for integers), as names."""
    values = np.ma.getdata(column)[~np.ma.getmaskarray(column)]
    return [str(v) for v in np.unique(values.astype(str) if values.dtype.kind in "SO" else values)]


def targets(table: Table, info: TableColumns, source: str) -> np.ndarray:
    """The target ``(N,)``: class indices as float (NaN where blank) or values (NaN where missing)."""
    name = info.target
    require_columns(table, [name], source=source)
    column = table[name]
    if info.problem == "regression":
        values = numeric_column(table, name, source=source)
        values[np.isin(values, info.sentinels)] = np.nan
        return values
    index = {label: k for k, label in enumerate(info.classes)}
    blank = np.ma.getmaskarray(column)
    labels = np.ma.getdata(column).astype(str)
    unknown = sorted({label for label, b in zip(labels, blank) if not b and label not in index})
    if unknown:
        raise DeepfieldError(f"{source}: column {name!r} holds classes {preview(unknown)} not in the training "
                             f"file's {', '.join(info.classes)}")
    return np.array([np.nan if b else index[label] for label, b in zip(labels, blank)], dtype=np.float64)


def complete_rows(table: Table, info: TableColumns, source: str,
                  labelled: bool = True) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Raw features ``(M, F)``, targets ``(M,)`` (``None`` unless ``labelled``) and the row indices
    ``(M,)`` of the rows with no feature (and, if labelled, no target) missing."""
    x = feature_matrix(table, info.features, info.sentinels, source)
    keep = np.isfinite(x).all(axis=1)
    y = targets(table, info, source) if labelled else None
    if y is not None:
        keep &= np.isfinite(y)
    rows = np.flatnonzero(keep)
    return x[rows], None if y is None else y[rows], rows


def encode_targets(y: np.ndarray, info: TabularInfo) -> np.ndarray:
    """What the network learns: standardised values ``(N, 1)`` float32, or class labels as for images."""
    if info.problem == "regression":
        return standardize(y, info.target_scale).reshape(-1, 1)
    return _classifier.targets(y.astype(np.int64), len(info.classes))


# -- splitting and scaling ------------------------------------------------------------------------

def split_rows(config: RunConfig, columns: TableColumns) -> tuple[dict[str, np.ndarray], ...]:
    """Raw features, targets and row indices (in their file) of the train/validation/test parts:
    from separate files when given, else a seeded (stratified) split; and the rows dropped for a
    missing value, file -> count.
    """
    data = config.data
    x, y, ids, dropped = {}, {}, {}, {}

    def read(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        table = load_table(data, path)
        rows_x, rows_y, rows = complete_rows(table, columns, str(path))
        dropped[str(path)] = len(table) - len(rows)
        return rows_x, rows_y, rows

    rows_x, rows_y, rows = read(data.path)
    held = {part: getattr(data, part) for part in ("validation", "test")}
    fractions = [0.0 if held["validation"] else data.split.validation, 0.0 if held["test"] else data.split.test]
    stratify = rows_y.astype(np.int64) if columns.problem == "classification" and data.split.stratify else None
    split = make_split(len(rows_y), (1.0 - sum(fractions), *fractions), seed=config.seed, stratify=stratify)
    for part, index in zip(PARTS, split.parts()):
        x[part], y[part], ids[part] = rows_x[index], rows_y[index], rows[index]
    for part, path in held.items():
        if path is not None:
            x[part], y[part], ids[part] = read(path)
    if len(x["validation"]) == 0 or len(x["test"]) == 0:
        raise DeepfieldError("data.split: the validation and test parts must not be empty")
    return x, y, ids, dropped


def scale(values: np.ndarray) -> dict[str, Any]:
    """Mean and standard deviation of ``values`` ``(N, ...)`` along rows (a constant column gets std 1):
    lists for features ``(N, F)`` (a :class:`FeatureScale`), numbers for a target ``(N,)`` (a :class:`TargetScale`)."""
    mean, std = values.mean(axis=0), values.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return {"mean": mean.tolist(), "std": std.tolist()}


def standardize(values: np.ndarray, stats: FeatureScale | TargetScale) -> np.ndarray:
    """``(values - mean) / std`` as float32."""
    return ((values - np.asarray(stats.mean)) / np.asarray(stats.std)).astype(np.float32)


def unscale(values: np.ndarray, stats: FeatureScale | TargetScale) -> np.ndarray:
    """Standardised values back in their own units, float64."""
    return np.asarray(values, dtype=np.float64) * np.asarray(stats.std) + np.asarray(stats.mean)


# -- the task -------------------------------------------------------------------------------------

class Tabular(Task):
    """Learn ``data.target`` from the other columns of a table; compare models without feature groups."""

    name = "tabular"
    info_model = TabularInfo

    def __init__(self) -> None:
        self.config: RunConfig | None = None  # kept by prepare: the feature-group models train with it

    def prepare(self, config: RunConfig) -> Prepared:
        self.config = config
        data = config.data
        if data.kind != "images":
            raise DeepfieldError(f"data.kind: {data.kind!r} is for the classification tasks and photoz; "
                                 "tabular reads a table (leave data.kind out)")
        table = load_table(data, data.path)
        target = target_name(data, table)
        fields: dict[str, Any] = {"target": target, "features": feature_names(data, table, target),
                                  "feature_groups": dict(data.feature_groups), "sentinels": list(data.sentinels)}
        if is_classification(table[target]):
            fields.update(problem="classification", classes=class_names(table[target]))
            if len(fields["classes"]) < 2:
                raise DeepfieldError(f"{data.path}: column {target!r} holds a single class "
                                     f"({', '.join(fields['classes']) or 'none'}); nothing to learn")
        else:
            fields["problem"] = "regression"
        x, y, ids, dropped = split_rows(config, TableColumns(**fields))
        info = TabularInfo(**fields, dropped=dropped, standardize=scale(x["train"]))
        if info.problem == "regression":
            info.target_scale = scale(y["train"])
        return Prepared(x={part: standardize(v, info.standardize) for part, v in x.items()},
                        y={part: encode_targets(v, info) for part, v in y.items()}, ids=ids, info=info)

    def read_new(self, config: RunConfig, info: TabularInfo, path: Path, labelled: bool) -> NewData:
        """Rows of ``path`` with every feature (and, if ``labelled``, the target); ``ids`` are the
        ``data.ids`` column, else their row indices; ``columns`` every 1-D column of those rows."""
        return self.new_rows(load_table(config.data, path), config, info, str(path), labelled)

    def read_values(self, config: RunConfig, info: TabularInfo, values: Any) -> NewData:
        """Rows of a table held in memory (an astropy ``Table``, or anything it takes: a dict of
        columns, a structured array), read as :meth:`read_new` reads a file's."""
        return self.new_rows(values if isinstance(values, Table) else Table(values), config, info, "<table>", False)

    @staticmethod
    def new_rows(table: Table, config: RunConfig, info: TabularInfo, source: str, labelled: bool) -> NewData:
        """The complete rows of ``table``, standardised as in the run; ``ids`` are the ``data.ids``
        column, else their row indices."""
        x, y, rows = complete_rows(table, info, source, labelled)
        ids = rows
        if config.data.ids:
            require_columns(table, [config.data.ids], source=f"{source} (data.ids)")
            ids = np.asarray(table[config.data.ids])[rows]
        return NewData(x=standardize(x, info.standardize), y=None if y is None else encode_targets(y, info),
                       ids=ids, columns={name: values[rows] for name, values in row_columns(table).items()})

    def describe(self, outputs: np.ndarray, info: TabularInfo) -> dict[str, np.ndarray]:
        if info.problem == "regression":
            return {f"predicted_{info.target}": unscale(outputs.reshape(-1), info.target_scale)}
        return _classifier.describe(outputs, info)

    @staticmethod
    def transform(table: Table, info: TabularInfo, source: str = "<table>") -> np.ndarray:
        """Every row of ``table`` prepared as in the run: standardised features ``(N, F)`` float32.

        For when each row must be predicted (a forecast): a missing feature is an error naming the first such row.
        """
        x = feature_matrix(table, info.features, info.sentinels, source)
        bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
        if len(bad):
            raise DeepfieldError(f"{source}: {len(bad)} row(s) miss a feature (blank, NaN or a sentinel), "
                                 f"the first is row {bad[0]}")
        return standardize(x, info.standardize)

    @staticmethod
    def is_regression(prepared: Prepared) -> bool:
        return prepared.info.problem == "regression"

    def head(self, prepared: Prepared) -> tuple[int, str | None]:
        if self.is_regression(prepared):
            return (2 if prepared.info.heteroscedastic else 1), None
        return _classifier.head(prepared)

    def default_loss(self, prepared: Prepared) -> str:
        if self.is_regression(prepared):
            return "gaussian_nll" if prepared.info.heteroscedastic else "mse"
        return _classifier.default_loss(prepared)

    def default_metrics(self, prepared: Prepared) -> list[str]:
        if self.is_regression(prepared):
            return [] if prepared.info.heteroscedastic else ["mae"]
        return _classifier.default_metrics(prepared)

    # -- uncertainty: a classifier's as for images; a regression's in the target's units --------
    def output_kind(self, info: TabularInfo) -> str:
        return super().output_kind(info) if info.problem == "regression" else "probabilities"

    def calibrates(self, info: TabularInfo) -> bool:
        return info.problem == "classification"

    @staticmethod
    def in_target_units(prediction: MCPrediction, info: TabularInfo) -> MCPrediction:
        """A regression prediction with its mean and σ back in the target's units."""
        std = info.target_scale.std
        rescaled = {name: getattr(prediction, name) * std for name in ("std", "aleatoric", "total")
                    if getattr(prediction, name) is not None}
        return replace(prediction, mean=unscale(prediction.mean, info.target_scale), **rescaled)

    def analyse_uncertainty(self, prediction: MCPrediction, prepared: Prepared, part: str, figures: Path,
                            temperature: float | None = None) -> dict[str, Any]:
        info = prepared.info
        if not self.is_regression(prepared):
            return classification_uncertainty(prepared.y[part], prediction, figures, temperature=temperature,
                                              class_names=info.classes)
        if float(prediction.total.max()) == 0.0:
            return {}
        truth = unscale(prepared.y[part].reshape(-1), info.target_scale)
        return regression_uncertainty(truth, self.in_target_units(prediction, info), figures, name=info.target)

    def describe_uncertainty(self, prediction: MCPrediction, info: TabularInfo,
                             temperature: float | None = None) -> dict[str, np.ndarray]:
        """Classification: as for images; regression: ``sigma_<target>`` and its epistemic / aleatoric parts."""
        if info.problem != "regression":
            return uncertainty_columns(prediction, temperature)
        if float(prediction.total.max()) == 0.0:
            return {}
        scaled, target = self.in_target_units(prediction, info), info.target
        columns = {f"sigma_{target}": scaled.total[:, 0], f"sigma_{target}_epistemic": scaled.std[:, 0]}
        if scaled.aleatoric is not None:
            columns[f"sigma_{target}_aleatoric"] = scaled.aleatoric[:, 0]
        return columns

    @staticmethod
    def values(outputs: np.ndarray, prepared: Prepared, part: str) -> tuple[np.ndarray, np.ndarray]:
        """Regression: the true and the predicted targets of ``part``, ``(N,)`` each, in the target's units."""
        stats = prepared.info.target_scale
        return unscale(prepared.y[part].reshape(-1), stats), unscale(outputs.reshape(-1), stats)

    def scores(self, outputs: np.ndarray, prepared: Prepared, part: str) -> dict[str, Any]:
        """The science metrics of ``outputs`` on ``part``: regression in the target's units, or classification."""
        if self.is_regression(prepared):
            return regression_scores(*self.values(outputs, prepared, part))
        classes = prepared.info.classes
        labels = prepared.y[part].reshape(-1).astype(np.int64)
        result = classification_metrics(labels, outputs.reshape(-1) if len(classes) == 2 else outputs, classes)
        return {"accuracy": result.accuracy, "macro_auc": result.roc.macro_auc,
                "per_class": {name: s.to_dict() for name, s in result.per_class.items()},
                "confusion": result.confusion.tolist()}

    def analyse(self, outputs: np.ndarray, prepared: Prepared, part: str, figures: Path) -> dict[str, Any]:
        metrics = self.scores(outputs, prepared, part)
        info = prepared.info
        if self.is_regression(prepared):
            plot_regression(*self.values(outputs, prepared, part), figures / "regression.png", info.target)
        else:
            labels = prepared.y[part].reshape(-1).astype(np.int64)
            scores = outputs.reshape(-1) if len(info.classes) == 2 else outputs
            plot_confusion_matrix(np.asarray(metrics["confusion"]), figures / "confusion_matrix.png", info.classes)
            plot_roc(labels, scores, figures / "roc.png", info.classes)
        if info.feature_groups and "train" in prepared.x:  # not when scoring a new file
            metrics["baselines"] = self.compare_groups(outputs, prepared, part, metrics)
        return metrics

    # -- Model A vs Model B ----------------------------------------------------------------------

    def compare_groups(self, outputs: np.ndarray, prepared: Prepared, part: str,
                       metrics: dict[str, Any]) -> list[dict[str, Any]]:
        """One row per model: all features (``outputs``, scored in ``metrics``), then one without each group."""
        names = prepared.info.features
        keys = ROW_METRICS[prepared.info.problem]
        rows = [{"model": "all features", "features": preview(names, limit=8), "n_features": len(names),
                 **{k: metrics[k] for k in keys}}]
        for group, columns in prepared.info.feature_groups.items():
            kept = [name for name in names if name not in columns]
            reduced = self.fit_without(prepared, [names.index(name) for name in kept], part)
            scores = self.scores(reduced, prepared, part)
            rows.append({"model": f"without {group}", "features": preview(kept, limit=8), "n_features": len(kept),
                         **{k: scores[k] for k in keys}})
        return rows

    def fit_without(self, prepared: Prepared, keep: list[int], part: str) -> np.ndarray:
        """Train the configured model on feature columns ``keep`` only; its outputs on ``part``."""

        config = self.config
        reduced = Prepared(x={p: v[:, keep] for p, v in prepared.x.items()}, y=prepared.y, info=prepared.info)
        torch.manual_seed(config.seed)
        model = self.build_model(config, reduced)
        engine = Engine(model, loss=self.loss(config, reduced),
                        optimizer=make_optimizer(config), device=config.training.device,
                        precision=config.training.precision)
        best = EarlyStopping(patience=config.training.early_stopping or config.training.epochs,
                             restore_best_weights=True)
        engine.fit(reduced.x["train"], reduced.y["train"], batch_size=config.training.batch_size,
                   epochs=config.training.epochs, verbose=0, callbacks=[best],
                   validation_data=(reduced.x["validation"], reduced.y["validation"]), seed=config.seed)
        outputs = engine.predict(reduced.x[part], batch_size=256, verbose=0)
        return outputs[:, :1] if prepared.info.heteroscedastic else outputs  # the mean of a Gaussian head
