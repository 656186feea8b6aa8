"""Per-pixel classes and the sources they delimit, scored against the truth (``task: segment``).

Maps are integer arrays ``(N, H, W)``: a *class map* holds class indices (0 background), an *instance map*
0 for background and ``k ≥ 1`` for the pixels of source ``k`` (the blends file's ``segmentation``,
photutils' segmentation images).

Class scores: the intersection over union of each class, ``|P ∩ T| / |P ∪ T|`` over all pixels of all
stamps (NaN for a class absent from both), and their mean over the classes present.

Detection scores (:func:`match_sources`): a true source is *detected* when one predicted segment of the
same stamp overlaps it with IoU > :data:`MATCH_IOU` (0.5: then no other segment can, so matches are one
to one and a merged pair of sources counts as one miss at least); completeness is the detected fraction
of the true sources, purity the matched fraction of the predicted segments.

Instances from a network's probabilities: :func:`instances_from_probabilities` (seeded watershed). Instances
from classes (:func:`instances_from_classes`): with a ``boundary`` class (the pixels of a source
that touch another source, :func:`classes_from_instances`) the connected components of the interior class
are the sources, each grown back over the boundary pixels next to it; without one, the connected
components of the non-background pixels (4-connected: sources touching at a corner stay apart).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.segmentation import expand_labels, watershed

BACKGROUND, SOURCE, BOUNDARY = 0, 1, 2
"""The classes :func:`classes_from_instances` makes of an instance map."""
INSTANCE_CLASSES = ("background", "source", "boundary")
"""Their names, in class order."""
MATCH_IOU = 0.5
"""A predicted segment detects a true source when their IoU exceeds this."""
GROWTH = 2
"""Pixels an interior component grows over the boundary class (the boundary is two pixels wide)."""
SEED_LEVEL = 0.9
"""The least ``p(source) − p(boundary)`` of a seed of :func:`instances_from_probabilities`. Measured on 500
simulated 32×32 blends (a U-Net of 8 filters, 8 epochs): completeness 0.34, 0.39, 0.54, 0.61, 0.45 and purity
0.67, 0.63, 0.49, 0.56, 0.53 at levels 0 (the components of the argmax map), 0.6, 0.8, 0.9, 0.95. A run chooses
its own among :data:`SEED_LEVELS` on its validation part (:func:`choose_seed_level`); this is the level of a run
trained before it did."""
SEED_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
"""The seed levels :func:`choose_seed_level` tries."""
_FOUR = ndimage.generate_binary_structure(2, 1)


def classes_from_instances(instances: np.ndarray) -> np.ndarray:
    """(N, H, W) instance maps -> (N, H, W) int64 class maps: :data:`BOUNDARY` for a source pixel with a
    4-neighbour in another source, :data:`SOURCE` for its other pixels, :data:`BACKGROUND` elsewhere.

    Why a boundary class: in a blend two sources touch, and the connected components of a source/background
    map merge them into one; pixels marked where they touch (two pixels wide, one on each side) let the
    components of the interior come apart, one per source (:func:`instances_from_classes`)."""
    labels = np.asarray(instances)
    boundary = np.zeros(labels.shape, dtype=bool)
    for axis in (1, 2):
        a, b = (np.moveaxis(labels, axis, 0)[s] for s in (slice(None, -1), slice(1, None)))
        touch = (a != b) & (a > 0) & (b > 0)
        edge = np.moveaxis(boundary, axis, 0)
        edge[:-1] |= touch
        edge[1:] |= touch
    return np.where(labels > 0, np.where(boundary, BOUNDARY, SOURCE), BACKGROUND).astype(np.int64)


def instances_from_classes(classes: np.ndarray, boundary: int | None = None) -> np.ndarray:
    """(N, H, W) class maps -> (N, H, W) int64 instance maps (labels 1.. per stamp), as the module says:
    ``boundary`` is the boundary class's index (``None``: the map has none)."""
    classes = np.asarray(classes)
    out = np.zeros(classes.shape, dtype=np.int64)
    for i, stamp in enumerate(classes):
        foreground = stamp != BACKGROUND
        interior = foreground if boundary is None else foreground & (stamp != boundary)
        labels, _ = ndimage.label(interior, structure=_FOUR)
        if boundary is not None:
            labels = np.where(foreground, expand_labels(labels, GROWTH), 0)
        out[i] = labels
    return out


def instances_from_probabilities(probabilities: np.ndarray, boundary: int,
                                 seed_level: float = SEED_LEVEL) -> np.ndarray:
    """(N, K, H, W) class probabilities with a ``boundary`` class -> (N, H, W) int64 instance maps.

    A network rarely gives the thin boundary class the most probability, so the components of its argmax map
    merge touching sources; its probabilities still dip between them. Seeds are the 4-connected regions where
    ``p(source) − p(boundary)`` exceeds ``seed_level``; each grows by the watershed of that score
    (:func:`skimage.segmentation.watershed`) over the pixels whose most probable class is not the background;
    a region of those pixels without a seed is one source of its own."""
    probabilities = np.asarray(probabilities)
    out = np.zeros((len(probabilities), *probabilities.shape[2:]), dtype=np.int64)
    for i, stamp in enumerate(probabilities):
        foreground = np.argmax(stamp, axis=0) != BACKGROUND
        score = stamp[SOURCE] - stamp[boundary]
        seeds, n = ndimage.label((score > seed_level) & foreground, structure=_FOUR)
        labels = watershed(-score, seeds, mask=foreground)
        left = foreground & (labels == 0)
        unseeded, _ = ndimage.label(left, structure=_FOUR)
        labels[left] = unseeded[left] + n
        out[i] = labels
    return out


def choose_seed_level(probabilities: np.ndarray, true_sources: np.ndarray, boundary: int,
                      levels: Sequence[float] = SEED_LEVELS) -> tuple[float, dict[float, float]]:
    """The seed level of :func:`instances_from_probabilities` of highest detection F1, ``2 matched / (true +
    predicted)`` (the harmonic mean of completeness and purity), on ``probabilities`` (N, K, H, W) against the
    instance maps ``true_sources`` (N, H, W); the lowest level on a tie. Returns it and the F1 of every level."""
    scores = {}
    for level in sorted(levels):
        counts = match_sources(true_sources, instances_from_probabilities(probabilities, boundary, level))
        total = counts["n_true"] + counts["n_predicted"]
        scores[float(level)] = 2 * counts["n_matched"] / total if total else 0.0
    return max(scores, key=lambda level: scores[level]), scores


def connected_sources(classes: np.ndarray) -> np.ndarray:
    """(N, H, W) class maps without a boundary class -> their true sources: the 4-connected components
    of the non-background pixels, per stamp."""
    return instances_from_classes(classes, None)


def class_iou(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """(K,) IoU of each class over all pixels of ``truth`` and ``predicted`` (N, H, W); NaN: absent from both."""
    truth, predicted = np.asarray(truth).ravel(), np.asarray(predicted).ravel()
    counts = np.bincount(truth * n_classes + predicted, minlength=n_classes**2).reshape(n_classes, n_classes)
    intersection = np.diag(counts).astype(np.float64)
    union = counts.sum(axis=0) + counts.sum(axis=1) - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / union, np.nan)


def source_overlaps(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(T, P) IoU of every true source (labels 1..T) with every predicted segment (1..P) of one stamp (H, W)."""
    t, p = int(truth.max(initial=0)), int(predicted.max(initial=0))
    counts = np.bincount(truth.ravel() * (p + 1) + predicted.ravel(), minlength=(t + 1) * (p + 1))
    counts = counts.reshape(t + 1, p + 1).astype(np.float64)
    areas_t, areas_p = counts.sum(axis=1)[1:, None], counts.sum(axis=0)[None, 1:]
    intersection = counts[1:, 1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num(intersection / (areas_t + areas_p - intersection))


def match_sources(truth: np.ndarray, predicted: np.ndarray, min_iou: float = MATCH_IOU) -> dict[str, int]:
    """Instance maps (N, H, W) -> ``n_true``, ``n_predicted`` and ``n_matched``: the pairs of IoU > ``min_iou``
    (one to one when ``min_iou`` ≥ 0.5). Labels need not be consecutive: an absent label counts for nothing."""
    n_true = n_predicted = n_matched = 0
    for t, p in zip(np.asarray(truth), np.asarray(predicted)):
        n_true += np.count_nonzero(np.unique(t))
        n_predicted += np.count_nonzero(np.unique(p))
        n_matched += int(np.count_nonzero(source_overlaps(t, p) > min_iou))
    return {"n_true": n_true, "n_predicted": n_predicted, "n_matched": n_matched}


def source_class_purity(truth: np.ndarray, predicted: np.ndarray, true_sources: np.ndarray,
                        predicted_sources: np.ndarray, min_iou: float = MATCH_IOU) -> dict[str, Any]:
    """How often a detected source is given its true class: over the pairs of :func:`match_sources` (a true source
    and the predicted segment that overlaps it with IoU > ``min_iou``), the fraction whose segment's majority
    predicted class (``predicted``, (N, H, W) class maps) is the source's true class (the majority of ``truth`` over
    its pixels). ``source_class_purity`` (NaN without a detection) and ``n_classified``, the pairs that agree."""
    n_pairs = n_agree = 0
    for t, p, labels, found in zip(*(np.asarray(a) for a in (truth, predicted, true_sources, predicted_sources))):
        for i, j in zip(*np.nonzero(source_overlaps(labels, found) > min_iou)):
            n_pairs += 1
            n_agree += int(_majority(t[labels == i + 1]) == _majority(p[found == j + 1]))
    return {"source_class_purity": n_agree / n_pairs if n_pairs else float("nan"), "n_classified": n_agree}


def _majority(classes: np.ndarray) -> int:
    """The most frequent class of ``classes`` (1-D), the lowest on a tie."""
    return int(np.argmax(np.bincount(classes)))


def segmentation_metrics(truth: np.ndarray, predicted: np.ndarray, classes: Sequence[str],
                         true_sources: np.ndarray, predicted_sources: np.ndarray) -> dict[str, Any]:
    """The class and detection scores of the module: ``iou`` (class name -> IoU), ``mean_iou``,
    ``pixel_accuracy``, ``completeness``, ``purity`` and the counts of :func:`match_sources`.

    ``truth``, ``predicted``: class maps (N, H, W); ``true_sources``, ``predicted_sources``: instance maps."""
    iou = class_iou(truth, predicted, len(classes))
    counts = match_sources(true_sources, predicted_sources)
    return {"mean_iou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
            "iou": {name: float(v) for name, v in zip(classes, iou)},
            "pixel_accuracy": float(np.mean(np.asarray(truth) == np.asarray(predicted))),
            "completeness": counts["n_matched"] / counts["n_true"] if counts["n_true"] else float("nan"),
            "purity": counts["n_matched"] / counts["n_predicted"] if counts["n_predicted"] else float("nan"),
            **counts}
