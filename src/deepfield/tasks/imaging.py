"""Image classification tasks: galaxy morphology and image data-quality selection.

Stamps are read with any reader of :mod:`deepfield.data`, normalised per band with
statistics fitted on the training part only (median/MAD, in units of the sky noise),
then asinh-stretched so bright cores do not swamp faint structure. With
``data.kind: spectra`` the same tasks classify spectra ``(N, C, L)`` instead
(:mod:`deepfield.tasks.spectra`).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepfield.analysis.classification import classification_metrics, precision_at_recall
from deepfield.data.images import ImageReader
from deepfield.data.splits import make_split
from deepfield.data.transforms import AsinhStretch, RobustNormalize
from deepfield.errors import DeepfieldError
from deepfield.plots import plot_confusion_matrix, plot_gallery, plot_precision_recall, plot_roc
from deepfield.tasks.base import PARTS, NewData, Prepared, Task
from deepfield.tasks.config import DataConfig, RunConfig
from deepfield.tasks.reading import open_data
from deepfield.tasks.prepared_info import ImagingInfo, PreparedInfo, RobustStatistics, StampsInfo
from deepfield.tasks.spectra import check_grid, spectra_info, transform_spectra
from deepfield.tasks.uncertainty import classification_uncertainty, uncertainty_columns
from deepfield.training.mc_dropout import MCPrediction

ASINH_SOFTENING = 3.0  # in units of the sky noise: linear below ~3σ, logarithmic above


def read_stamps(data: DataConfig, path: Path, labelled: bool = True, bands: list[str] | None = None,
                classes: list[str] | None = None) -> tuple[np.ndarray, np.ndarray | None, ImageReader]:
    """All stamps (and labels) of one file or folder, ``(N, C, H, W)`` float32 and ``(N,)``;
    with ``data.kind: spectra``, spectra ``(N, C, L)``.

    ``bands``: the bands the network needs, in its order; the file's own (``data.bands``,
    in the file's channel order, or the names it records) are picked and reordered to them.
    ``classes``: the run's class names, for a label table of names.
    """
    reader = open_data(data, path, labelled=labelled, bands=bands, classes=classes)
    images, labels = reader.load()
    if labelled and labels is None:
        raise DeepfieldError(f"{path}: no labels to learn from; name them with data.labels")
    if bands is not None and list(reader.bands) != list(bands):
        missing = [b for b in bands if b not in reader.bands]
        if missing:
            raise DeepfieldError(f"{path}: the run needs bands {', '.join(bands)}; this file's are "
                                 f"{', '.join(reader.bands)} (name them in channel order with --bands)")
        images = images[:, [reader.bands.index(b) for b in bands]]
    if data.limit:
        images = images[: data.limit]
        labels = None if labels is None else labels[: data.limit]
    labels = None if labels is None else np.asarray(labels)
    if classes is not None and labels is not None:
        check_classes(labels, classes, path)
    return images, labels, reader


def check_classes(labels: np.ndarray, classes: list[str], path: Path) -> None:
    """Class indices ``(N,)`` of the file ``path`` within the run's ``classes``, or the error naming both."""
    outside = (labels < 0) | (labels >= len(classes))
    if labels.ndim == 1 and outside.any():
        row = int(np.argmax(outside))
        raise DeepfieldError(f"{path}: data.labels: label {labels[row]:g} (row {row}) is not one of the run's "
                             f"{len(classes)} classes (0..{len(classes) - 1}: {', '.join(classes[:10])})")


def split_stamps(config: RunConfig, data: DataConfig | None = None,
                 strata: Callable[[np.ndarray], np.ndarray] | None = None,
                 ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], ImageReader]:
    """Train/validation/test arrays: from separate files when given, else a seeded (stratified) split.

    ``data``: read as this instead of ``config.data``; ``strata``: labels (N,) → the groups
    stratified on (default: the labels themselves, i.e. classes).
    """
    data = data or config.data
    images, labels, reader = read_stamps(data, data.path)
    x, y = {}, {}
    held = {part: getattr(data, part) for part in ("validation", "test")}
    fractions = [0.0 if held["validation"] else data.split.validation, 0.0 if held["test"] else data.split.test]
    stratify = (strata or np.asarray)(labels) if data.split.stratify and labels.ndim == 1 else None
    split = make_split(len(images), (1.0 - sum(fractions), *fractions), seed=config.seed, stratify=stratify)
    for part, index in zip(PARTS, split.parts()):
        x[part], y[part] = images[index], labels[index]
    for part, path in held.items():
        if path is not None:
            x[part], y[part], _ = read_stamps(data, path, bands=list(reader.bands),
                                              classes=list(reader.classes) if reader.classes else None)
    if len(x["validation"]) == 0 or len(x["test"]) == 0:
        raise DeepfieldError("data.split: the validation and test parts must not be empty")
    return x, y, reader


class ImageClassification(Task):
    """Classify stamps into the classes the file names (binary: one sigmoid output)."""

    name = "image-classification"
    info_model = ImagingInfo

    def prepare(self, config: RunConfig) -> Prepared:
        x, y, reader = split_stamps(config)
        n_classes = int(max(int(v.max()) for v in y.values())) + 1
        classes = list(reader.classes) if reader.classes else [str(k) for k in range(n_classes)]
        fields: dict[str, Any] = {"bands": list(reader.bands), "classes": classes,
                                  "skipped": [(s.where, s.reason) for s in reader.skipped]}
        if config.data.kind == "spectra":
            fields |= spectra_info(config.data, reader)
        else:
            if config.data.normalize == "robust":
                fields["normalize"] = RobustNormalize().fit(torch.from_numpy(x["train"])).get_config()
            fields["stretch"] = config.data.stretch or "asinh"
        prepared = Prepared(x=x, y={k: self.targets(v, len(classes)) for k, v in y.items()},
                            info=ImagingInfo(**fields))
        prepared.x = {k: self.transform(v, prepared.info) for k, v in x.items()}
        return prepared

    @staticmethod
    def transform(images: np.ndarray, info: StampsInfo) -> np.ndarray:
        """The normalisation recorded in ``info`` applied to raw stamps ``(N, C, H, W)`` (or spectra)."""
        if info.is_spectra:
            return transform_spectra(images, info)
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        if isinstance(info.normalize, RobustStatistics):
            x = RobustNormalize(info.normalize.median, info.normalize.sigma)(x)
        if info.stretch == "asinh":
            x = AsinhStretch(ASINH_SOFTENING)(x)
        return x.numpy()

    @staticmethod
    def targets(labels: np.ndarray, n_classes: int) -> np.ndarray:
        """Binary labels as float (N, 1) for a sigmoid; multi-class as int64 (N,)."""
        if n_classes == 2:
            return labels.astype(np.float32).reshape(-1, 1)
        return labels.astype(np.int64)

    def read_new(self, config: RunConfig, info: ImagingInfo, path: Path, labelled: bool) -> NewData:
        images, labels, reader = read_stamps(config.data, path, labelled, bands=info.bands,
                                             classes=info.classes)
        check_grid(images, reader.wavelength, info, path)
        y = None if labels is None else self.targets(labels, len(info.classes))
        n = len(images)  # after data.limit
        return NewData(x=self.transform(images, info), y=y, ids=np.asarray(reader.ids)[:n],
                       columns={name: values[:n] for name, values in reader.metadata().items()})

    def read_values(self, config: RunConfig, info: ImagingInfo, values: Any) -> NewData:
        """Raw stamps held in memory (:meth:`raw_stamps`), normalised as :meth:`read_new` does a file's."""
        stamps = self.raw_stamps(values, config, info)
        return NewData(x=self.transform(stamps, info), y=None, ids=np.arange(len(stamps)))

    @staticmethod
    def raw_stamps(values: Any, config: RunConfig, info: StampsInfo) -> np.ndarray:
        """``values`` as raw stamps ``(N, C, H, W)`` float32, the channels the run's bands in order:
        given so, or ``(N, H, W, C)`` when the run's ``data.channels`` is ``last``, or ``(N, H, W)`` for one band."""
        stamps = np.asarray(values, dtype=np.float32)
        bands = info.bands
        if stamps.ndim == 3 and len(bands) == 1:
            stamps = stamps[:, None]
        elif stamps.ndim == 4 and config.data.channels == "last":
            stamps = stamps.transpose(0, 3, 1, 2)
        if stamps.ndim != 4 or stamps.shape[1] != len(bands):
            raise DeepfieldError(f"raw stamps of shape {stamps.shape}: expected (N, {len(bands)}, H, W), "
                                 f"channels first, the run's bands {', '.join(bands)} in that order")
        return stamps

    def describe(self, outputs: np.ndarray, info: PreparedInfo) -> dict[str, np.ndarray]:
        """``predicted`` (the class name) and ``p_<class>`` for each of ``info.classes`` (a tabular run's too)."""
        classes = info.classes
        if len(classes) == 2:
            probabilities = np.column_stack([1.0 - outputs.reshape(-1), outputs.reshape(-1)])
        else:
            probabilities = outputs
        columns = {"predicted": np.asarray(classes)[probabilities.argmax(axis=1)]}
        columns.update({f"p_{name}": probabilities[:, k] for k, name in enumerate(classes)})
        return columns

    def output_kind(self, info: ImagingInfo) -> str:
        return "probabilities"

    def calibrates(self, info: ImagingInfo) -> bool:
        return True

    def analyse_uncertainty(self, prediction: MCPrediction, prepared: Prepared, part: str, figures: Path,
                            temperature: float | None = None) -> dict[str, Any]:
        """Calibration (ECE, reliability, temperature), entropy flagging mistakes, the most uncertain stamps."""
        return classification_uncertainty(prepared.y[part], prediction, figures, temperature=temperature,
                                          images=prepared.x[part], class_names=prepared.info.classes)

    def describe_uncertainty(self, prediction: MCPrediction, info: ImagingInfo,
                             temperature: float | None = None) -> dict[str, np.ndarray]:
        return uncertainty_columns(prediction, temperature)

    def head(self, prepared: Prepared) -> tuple[int, str | None]:
        n_classes = len(prepared.info.classes)
        return (1, "sigmoid") if n_classes == 2 else (n_classes, "softmax")

    def default_loss(self, prepared: Prepared) -> str:
        return "binary_crossentropy" if len(prepared.info.classes) == 2 else "sparse_categorical_crossentropy"

    def default_metrics(self, prepared: Prepared) -> list[str]:
        return ["accuracy", "auc"] if len(prepared.info.classes) == 2 else ["accuracy"]

    def analyse(self, outputs: np.ndarray, prepared: Prepared, part: str, figures: Path) -> dict[str, Any]:
        classes = prepared.info.classes
        labels = prepared.y[part].reshape(-1).astype(np.int64)
        scores = outputs.reshape(-1) if len(classes) == 2 else outputs
        result = classification_metrics(labels, scores, class_names=classes)
        plot_confusion_matrix(result.confusion, figures / "confusion_matrix.png", classes)
        plot_roc(labels, scores, figures / "roc.png", classes)
        plot_gallery(prepared.x[part], labels, scores, figures / "gallery.png", classes, k=8)
        per_class = {}
        for name, class_scores in result.per_class.items():
            per_class[name] = class_scores.to_dict()
            if name in result.roc.curves:
                per_class[name]["auc"] = result.roc.curves[name].auc
        return {"accuracy": result.accuracy, "macro_auc": result.roc.macro_auc, "per_class": per_class,
                "confusion": result.confusion.tolist()}


class Morphology(ImageClassification):
    """Galaxy morphology: spheroid, disk, irregular, point source, merger (or the file's classes)."""

    name = "morphology"


class Quality(ImageClassification):
    """Data-quality selection: clean (0) vs spoiled (1); reports precision at a fixed recall."""

    name = "quality"
    recall = 0.99  # a pipeline must keep almost every good image

    def analyse(self, outputs: np.ndarray, prepared: Prepared, part: str, figures: Path) -> dict[str, Any]:
        metrics = super().analyse(outputs, prepared, part, figures)
        labels = prepared.y[part].reshape(-1).astype(np.int64)
        if len(prepared.info.classes) == 2:
            # positive = clean (0): keep 99% of good images, and see how pure the kept set is
            clean = 1.0 - outputs.reshape(-1)
            point = precision_at_recall(labels, clean, recall=self.recall, positive=0)
            metrics["clean_selection"] = point.to_dict()
            plot_precision_recall(labels, clean, figures / "precision_recall.png", recall=self.recall, positive=0,
                                  positive_name=prepared.info.classes[0])
        return metrics
