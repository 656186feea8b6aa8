"""Segmentation: a network gives every pixel of a stamp a class (``task: segment``; issue 18).

Data (``data.path``): stamps and their label maps read by :func:`~deepfield.data.label_maps.read_label_maps`:
the HDF5 that ``deepfield simulate blends`` writes (``images`` and the instance map ``segmentation``) or a
user's HDF5 / .npz holding stamps named by ``data.images`` (default ``images``) and ``(N, H, W)`` integer maps
named by ``data.target`` (default ``segmentation``). ``data.label_map`` says what the maps are:

* ``instances`` (the blends file's; SExtractor-like maps, 0 background, k source k): learnt as three classes,
  background / source / boundary (:func:`~deepfield.analysis.segmentation.classes_from_instances`). Why not
  background / source: two touching sources are then one connected region and the map cannot tell a blend
  from one galaxy; nor background / central / other: the other sources still merge. The boundary class marks
  where sources touch, so that the sources come apart (grown from seeds of high ``p(source) − p(boundary)``:
  :func:`~deepfield.analysis.segmentation.instances_from_probabilities`) and the network's map is a
  detection and deblending catalogue that completeness and purity can score.
* ``classes`` (Morpheus-like morphology maps, 0 background): learnt as they are; the class names come from the
  labels' ``classes`` attribute, else ``background``, ``class 1``, ... up to the largest label.
* ``morphology`` (a blends file's ``morphology`` maps: background, spheroid, disk, irregular, point source, after
  Hausen & Robertson 2020; :mod:`~deepfield.data.simulate.morpheus`): class maps learnt as they are, whose true
  sources are the file's instance map ``segmentation`` (two touching sources of one class stay two).

Inputs are normalised as the classifiers' stamps (``data.normalize: robust``, ``data.stretch: asinh``;
:class:`~deepfield.tasks.prepared_info.SegmentInfo`). Network: ``model.preset`` defaults to ``unet`` with one
softmax output channel per class (probabilities over axis 1, ``(N, K, H, W)``), trained with the per-pixel
``sparse_categorical_crossentropy``.

Metrics on the test part (:func:`~deepfield.analysis.segmentation.segmentation_metrics`, definitions there):
IoU per class and their mean, pixel accuracy, completeness and purity of the sources (IoU > 0.5 matching of the
predicted segments to the true sources: the file's instances, or for class maps the connected regions of the
non-background classes). For class maps, ``source_class_purity``: the fraction of the detected sources whose
segment's majority class is the source's true class. Classical baseline: :mod:`deepfield.tasks.baselines.watershed`.

Predictions (``deepfield predict RUN blends.h5 --out segmented.h5``): ``segmentation`` (N, H, W) int16 class
indices, ``sources`` (N, H, W) int16 the sources it delimits (0 background, 1.. per stamp) and
``probability`` (N, K, H, W) float32 per class.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepfield.analysis.segmentation import (INSTANCE_CLASSES, SEED_LEVEL, choose_seed_level, class_iou,
                                             classes_from_instances, connected_sources, instances_from_classes,
                                             instances_from_probabilities, segmentation_metrics, source_class_purity)
from deepfield.data.label_maps import LabelMaps, read_label_maps
from deepfield.data.transforms import RobustNormalize
from deepfield.errors import DeepfieldError, unknown_name
from deepfield.models import zoo
from deepfield.plots import best_median_worst, plot_segmentation_gallery
from deepfield.tasks.base import PARTS, Calibration, NewData, Prepared, Task
from deepfield.tasks.baselines.watershed import SCORES, per_class, watershed_baseline
from deepfield.tasks.config import DataConfig, RunConfig
from deepfield.tasks.denoise import fits_tiling
from deepfield.tasks.image_options import image_task_checks
from deepfield.tasks.imaging import ImageClassification
from deepfield.tasks.parts import split_parts
from deepfield.tasks.prepared_info import SegmentInfo
from deepfield.tasks.segment_whole import segment_fits
from deepfield.training.losses import ClassWeightedCrossentropy, LossFn
from deepfield.training.mc_dropout import MCPrediction

DEFAULT_TARGETS = "segmentation"
MORPHOLOGY = "morphology"
"""The blends file's Morpheus class maps (``data.label_map: morphology``: the default ``data.target``)."""


@dataclass
class SegmentPrepared(Prepared):
    """:class:`Prepared` (``y[part]``: (N, H, W) int64 class maps) plus, per part, ``sources[part]`` (N, H, W)
    the true instance maps and ``raw[part]`` (N, C, H, W) the stamps in the file's flux unit (for the baseline)."""

    sources: dict[str, np.ndarray] = field(default_factory=dict)
    raw: dict[str, np.ndarray] = field(default_factory=dict)


def read(data: DataConfig, path: Path, labelled: bool, info: SegmentInfo | None = None) -> LabelMaps:
    """The stamps and label maps of ``path`` as ``data`` (or a run's record ``info``) says to read them (for
    morphology maps, the instance map ``segmentation`` as well)."""
    morphology = (info.label_map if info else data.label_map) == MORPHOLOGY
    return read_label_maps(path, images=info.inputs if info else data.images,
                           labels=info.targets if info else data.target or default_targets(data), labelled=labelled,
                           bands=info.bands if info else data.bands, channels=data.channels, ids=data.ids,
                           limit=data.limit, instances=DEFAULT_TARGETS if morphology else None)


def default_targets(data: DataConfig) -> str:
    """The label maps read without ``data.target``: ``morphology`` for ``data.label_map: morphology``, else
    ``segmentation``."""
    return MORPHOLOGY if data.label_map == MORPHOLOGY else DEFAULT_TARGETS


def label_kind(data: DataConfig, maps: LabelMaps) -> str:
    """``data.label_map``, else ``instances`` for a blends file and ``classes`` for any other."""
    return data.label_map or ("instances" if maps.instances else "classes")


def class_names(maps: list[LabelMaps], kind: str) -> list[str]:
    """The classes of ``kind`` maps: :data:`INSTANCE_CLASSES`, the file's names, or one per label up to the largest."""
    if kind == "instances":
        return list(INSTANCE_CLASSES)
    if maps[0].classes is not None:
        return list(maps[0].classes)
    largest = max(int(m.labels.max()) for m in maps)  # type: ignore[union-attr]
    return ["background", *(f"class {k}" for k in range(1, max(largest, 1) + 1))]


def targets(maps: LabelMaps, info: SegmentInfo, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(class maps, instance maps), (N, H, W) int64 each, of a file's labels; labels past the classes are an error."""
    labels = maps.labels
    if info.label_map == "instances":
        return classes_from_instances(labels), labels
    if labels.max() >= len(info.classes):
        raise DeepfieldError(f"{path}: label maps {info.targets!r} hold label {int(labels.max())}, outside the "
                             f"{len(info.classes)} classes {info.classes} (0 to {len(info.classes) - 1})")
    return labels, connected_sources(labels) if maps.sources is None else maps.sources


def check_options(config: RunConfig) -> None:
    """Options other tasks take that would break a stamp and its map."""
    image_task_checks(config, "segment", takes="stamps and label maps",
                      heteroscedastic="a mean and log-variance head is for regression; task segment is a per-pixel "
                                      "classification")


class Segment(Task):
    """Stamp -> a class per pixel, and the sources those classes delimit, scored against the file's maps."""

    name = "segment"
    augments_targets = True
    info_model = SegmentInfo

    def prepare(self, config: RunConfig) -> SegmentPrepared:
        check_options(config)
        data = config.data
        maps = read(data, data.path, labelled=True)
        parts = split_parts(config, len(maps.images), lambda index: _take(maps, index),
                            lambda path: read(data, path, labelled=True), lambda part: len(part.images))
        kind = label_kind(data, maps)
        info = SegmentInfo(bands=list(maps.bands), classes=class_names(list(parts.values()), kind),
                           unit=maps.unit, inputs=data.images, targets=data.target or default_targets(data),
                           label_map=kind, stretch=data.stretch or "asinh")
        if data.normalize == "robust":
            info.normalize = RobustNormalize().fit(torch.from_numpy(parts["train"].images)).get_config()
        files = {"validation": data.validation, "test": data.test}
        labels = {part: targets(p, info, files.get(part) or data.path) for part, p in parts.items()}
        return SegmentPrepared(x={part: ImageClassification.transform(p.images, info) for part, p in parts.items()},
                               y={part: labels[part][0] for part in PARTS},
                               ids={part: p.ids for part, p in parts.items()}, info=info,
                               sources={part: labels[part][1] for part in PARTS},
                               raw={part: p.images for part, p in parts.items()})

    def read_new(self, config: RunConfig, info: SegmentInfo, path: Path, labelled: bool) -> NewData:
        """A file's stamps (and, labelled, its class maps in ``y`` and true sources in ``columns["sources"]``)."""
        maps = read(config.data, path, labelled, info)
        x = ImageClassification.transform(maps.images, info)
        if not labelled:
            return NewData(x=x, y=None, ids=maps.ids)
        classes, sources = targets(maps, info, path)
        return NewData(x=x, y=classes, ids=maps.ids, columns={"sources": sources})

    def read_values(self, config: RunConfig, info: SegmentInfo, values: Any) -> NewData:
        """Raw stamps in the run's flux unit, as :meth:`ImageClassification.raw_stamps` reads them."""
        stamps = ImageClassification.raw_stamps(values, config, info)
        return NewData(x=ImageClassification.transform(stamps, info), y=None, ids=np.arange(len(stamps)))

    def new_prepared(self, new: NewData, info: SegmentInfo) -> SegmentPrepared:  # type: ignore[override]
        return SegmentPrepared(x={"test": new.x}, y={"test": new.y}, ids={"test": new.ids}, info=info,
                               sources={"test": new.columns["sources"]})

    # -- the network ---------------------------------------------------------------------------
    def head(self, prepared: Prepared) -> tuple[int, str | None]:
        return len(prepared.info.classes), "softmax"

    def default_loss(self, prepared: Prepared) -> str:
        return "sparse_categorical_crossentropy"

    def loss(self, config: RunConfig, prepared: Prepared) -> str | LossFn:
        """The per-pixel sparse cross-entropy, each class's pixels weighted by ``training.class_weight`` (class name ->
        weight, the others 1: :class:`~deepfield.training.losses.ClassWeightedCrossentropy`) when it is given."""
        weights = config.training.class_weight
        if weights is None:
            return super().loss(config, prepared)
        if config.training.loss not in (None, self.default_loss(prepared)):
            raise DeepfieldError(f"training.class_weight weighs the per-pixel cross-entropy, not training.loss "
                                 f"{config.training.loss!r}: leave one of them out")
        classes = prepared.info.classes
        for name in weights:
            if name not in classes:
                raise unknown_name("training.class_weight class", name, classes)
        return ClassWeightedCrossentropy([weights.get(name, 1.0) for name in classes])

    def default_metrics(self, prepared: Prepared) -> list[str]:
        return ["accuracy"]

    def build_model(self, config: RunConfig, prepared: Prepared) -> torch.nn.Module:
        """The preset with one softmax output channel per class (presets taking ``output_channels``, as ``unet``)."""
        options = dict(config.model.options)
        if "output_channels" in zoo.parameters(config.model.preset):
            options.setdefault("output_channels", len(prepared.info.classes))
        model = config.model.model_copy(update={"options": options})
        return super().build_model(config.model_copy(update={"model": model}), prepared)

    def maps(self, outputs: np.ndarray, info: SegmentInfo) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (N, K, H, W) -> (class maps, the sources they delimit), (N, H, W) int64 each."""
        predicted = np.argmax(outputs, axis=1)
        if info.label_map == "instances":
            return predicted, instances_from_probabilities(outputs, INSTANCE_CLASSES.index("boundary"),
                                                           seed_level(info))
        return predicted, instances_from_classes(predicted, None)

    recalibrates = chooses_on_validation = True

    def fit_calibration(self, prediction: MCPrediction, prepared: Prepared) -> dict[str, Any] | None:
        """For background / source / boundary classes, ``{"seed_level": level, "detection_f1": {level: F1}}``:
        the watershed's seed level chosen on the validation part (:func:`~deepfield.analysis.segmentation.
        choose_seed_level`), as the watershed baseline's threshold is; ``None`` for class maps or no validation."""
        if prepared.info.label_map != "instances" or not len(prediction.mean):
            return None
        truth = prepared.sources["validation"]  # type: ignore[attr-defined]
        level, scores = choose_seed_level(prediction.mean, truth, INSTANCE_CLASSES.index("boundary"))
        return {"seed_level": level, "detection_f1": {str(k): v for k, v in scores.items()}}

    def calibrated_info(self, info: SegmentInfo, calibration: Calibration) -> SegmentInfo:  # type: ignore[override]
        """``info`` with the seed level of ``calibration`` (:meth:`fit_calibration`), where it holds one."""
        if isinstance(calibration, dict) and "seed_level" in calibration:
            return info.model_copy(update={"seed_level": float(calibration["seed_level"])})
        return info

    # -- what the run says ---------------------------------------------------------------------
    def analyse(self, outputs: np.ndarray, prepared: Prepared, part: str, figures: Path) -> dict[str, Any]:
        """The class and detection scores of the network's maps on ``part`` and the gallery of the stamps of
        best, median and worst mean IoU."""
        info = prepared.info
        truth, true_sources = prepared.y[part], prepared.sources[part]  # type: ignore[attr-defined]
        predicted, sources = self.maps(outputs, info)
        result = segmentation_metrics(truth, predicted, info.classes, true_sources, sources)
        if info.label_map != "instances":
            result |= source_class_purity(truth, predicted, true_sources, sources)
        else:
            result["seed_level"] = seed_level(info)
        scores = [np.nanmean(np.nan_to_num(class_iou(t[None], p[None], len(info.classes)), nan=1.0))
                  for t, p in zip(truth, predicted)]  # a class absent from both is no error
        shown = best_median_worst(scores)
        plot_segmentation_gallery(prepared.x[part].mean(axis=1), predicted, truth, figures / "segment_gallery.png",
                                  shown, [f"mean IoU {scores[i]:.2f}" for i in shown], info.classes)
        return result

    def classical_baselines(self, config: RunConfig, prepared: Prepared,
                            metrics: dict[str, Any]) -> list[dict[str, Any]]:
        """The network's row, then threshold-and-watershed detection on the same validation and test parts
        (only for maps of sources: background / source / boundary, or background / source)."""
        info = prepared.info
        network = {"model": f"network ({config.model.preset})", "parameter": "",
                   **{key: metrics[key] for key in SCORES if key in metrics}, **per_class(metrics.get("iou", {}))}
        if info.label_map != "instances" and len(info.classes) > 2:
            return [network]
        parts = {part: (prepared.raw[part], prepared.y[part], prepared.sources[part])  # type: ignore[attr-defined]
                 for part in ("validation", "test")}
        return [network, watershed_baseline(parts["validation"], parts["test"], info.classes)]

    def predict_whole_image(self, models: list[torch.nn.Module], config: RunConfig, info: SegmentInfo,  # type: ignore
                            data: Path, out: Path, overwrite: bool = False) -> Path | None:
        """A FITS image (``(H, W)`` one band or a ``(C, H, W)`` cube in the run's band order) of any size, segmented by
        overlapping tiles into the FITS file ``out`` (HDUs ``CLASSES``, ``SOURCES`` for background / source /
        boundary classes, ``PROBABILITY``, each with the input's header and WCS:
        :mod:`~deepfield.tasks.segment_whole`). Sides that do not divide by ``2**depth`` are mirrored beyond
        the far edges to multiples of it, then cropped."""
        tiling = fits_tiling(config, data, out, "segmented")
        if tiling is None:
            return None
        tile, overlap, margin, multiple = tiling
        return segment_fits(models, info, data, out, tile=tile, overlap=overlap, margin=margin, multiple=multiple,
                            seed_level=seed_level(info), device=config.training.device)

    def describe(self, outputs: np.ndarray, info: SegmentInfo) -> dict[str, np.ndarray]:
        """``segmentation`` and ``sources`` (N, H, W) int16; ``probability`` (N, K, H, W) float32."""
        predicted, sources = self.maps(outputs, info)
        return {"segmentation": predicted.astype(np.int16), "sources": sources.astype(np.int16),
                "probability": np.asarray(outputs, dtype=np.float32)}


def seed_level(info: SegmentInfo) -> float:
    """The run's watershed seed level: chosen on its validation part, else :data:`SEED_LEVEL` (an older run)."""
    return SEED_LEVEL if info.seed_level is None else info.seed_level


def _take(maps: LabelMaps, index: np.ndarray) -> LabelMaps:
    return LabelMaps(maps.images[index], maps.labels[index], maps.bands, maps.unit, maps.ids[index],  # type: ignore
                     maps.classes, maps.instances, None if maps.sources is None else maps.sources[index])
