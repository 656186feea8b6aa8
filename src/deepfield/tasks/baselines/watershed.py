"""Threshold-and-watershed detection beside the segmentation network (``task: segment``, ``baselines.run``).

Per stamp, as SExtractor-like pipelines do with photutils: the bands summed (raw fluxes), smoothed by a
Gaussian of σ :data:`SMOOTHING` pixels (the matched filter of a compact source), a threshold of ``n_sigma``
times the sigma-clipped noise above the sigma-clipped background (:func:`photutils.segmentation.detect_threshold`),
the connected regions of at least :data:`MIN_PIXELS` pixels above it (``detect_sources``), each split by the
multi-threshold watershed deblender (``deblend_sources``, 32 levels, contrast 0.001). ``n_sigma`` is chosen on
the validation part from :data:`N_SIGMAS` as the value of highest mean IoU, then scored on the test part with
the network's metrics (:func:`~deepfield.analysis.segmentation.segmentation_metrics`).
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from photutils.segmentation import deblend_sources, detect_sources, detect_threshold
from photutils.utils import NoDetectionsWarning
from scipy import ndimage

from deepfield.analysis.segmentation import (BACKGROUND, INSTANCE_CLASSES, SOURCE, classes_from_instances,
                                             segmentation_metrics)

N_SIGMAS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
"""The detection thresholds tried, in sigmas of the smoothed stamp's noise."""
SMOOTHING = 1.0
"""σ (pixels) of the Gaussian the summed stamp is smoothed by before detection."""
MIN_PIXELS = 5
"""The fewest connected pixels a detection (and a deblended part) has."""
SCORES = ("mean_iou", "completeness", "purity")
"""The metrics of a baselines row (and the network's row beside them)."""


def watershed_sources(images: np.ndarray, n_sigma: float) -> np.ndarray:
    """(N, C, H, W) stamps -> (N, H, W) int64 instance maps (0 background, 1.. the deblended sources)."""
    smoothed = ndimage.gaussian_filter(np.asarray(images, dtype=np.float64).sum(axis=1), (0, SMOOTHING, SMOOTHING))
    out = np.zeros(smoothed.shape, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        for i, stamp in enumerate(smoothed):
            segments = detect_sources(stamp, detect_threshold(stamp, n_sigma), MIN_PIXELS)
            if segments is None:
                continue
            deblended = deblend_sources(stamp, segments, MIN_PIXELS, progress_bar=False)
            out[i] = deblended.data
    return out


def as_classes(instances: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Instance maps -> class maps of ``classes``: the background / source / boundary ones, or background / source."""
    if tuple(classes) == INSTANCE_CLASSES:
        return classes_from_instances(instances)
    return np.where(instances > 0, SOURCE, BACKGROUND).astype(np.int64)


def watershed_baseline(validation: tuple[np.ndarray, np.ndarray, np.ndarray],
                       test: tuple[np.ndarray, np.ndarray, np.ndarray], classes: Sequence[str]) -> dict[str, Any]:
    """The row of ``metrics.json["baselines"]`` of the watershed detection, ``n_sigma`` chosen on ``validation``.

    ``validation``, ``test``: ``(images (N, C, H, W) in the file's flux unit, true class maps (N, H, W),
    true instance maps (N, H, W))``; ``classes``: background / source / boundary or background / source."""

    def scores(part: tuple[np.ndarray, np.ndarray, np.ndarray], n_sigma: float) -> dict[str, Any]:
        images, truth, sources = part
        found = watershed_sources(images, n_sigma)
        return segmentation_metrics(truth, as_classes(found, classes), classes, sources, found)

    n_sigma = max(N_SIGMAS, key=lambda value: np.nan_to_num(scores(validation, value)["mean_iou"], nan=-1.0))
    result = scores(test, n_sigma)
    return {"model": "threshold + watershed (photutils)", "parameter": f"n_sigma {n_sigma}",
            **{key: result[key] for key in SCORES}, **per_class(result["iou"])}


def per_class(iou: dict[str, float]) -> dict[str, float]:
    """A row's IoU of each class, as columns ``iou_<class>``."""
    return {f"iou_{name}": value for name, value in iou.items()}
