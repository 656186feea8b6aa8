"""Classification metrics for science: confusion matrix, per-class scores, ROC and operating points.

Inputs are numpy arrays: ``y_true (N,)`` integer class labels ``0 .. K-1`` and either
``scores (N,)`` (binary: the score of class 1, higher means more likely) or
``scores (N, K)`` (class probabilities or any per-class scores). Outputs are plain
dataclasses of numbers; ``to_dict()`` makes them JSON-ready (arrays become lists,
NaN and infinities become ``None``).

>>> m = classification_metrics(y_true, proba, class_names=["elliptical", "spiral", "merger"])
>>> m.accuracy, m.roc.macro_auc, m.per_class["merger"].recall
>>> op = precision_at_recall(is_good, p_good, recall=0.99)   # keep 99 % of the good images
>>> keep = p_good >= op.threshold

scikit-learn computes the curves and counts; what it lacks (precision at a fixed recall,
recall at a fixed precision, one-vs-rest curves per class) is written here.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn import metrics as skm

from deepfield.errors import DeepfieldError

__all__ = [
    "ClassScores",
    "ClassificationMetrics",
    "JsonReady",
    "OperatingPoint",
    "RocCurve",
    "RocCurves",
    "as_labels",
    "as_scores",
    "class_names_for",
    "classification_metrics",
    "confusion",
    "jsonable",
    "precision_at_recall",
    "precision_recall_points",
    "predict_labels",
    "recall_at_precision",
    "roc_curves",
]


def jsonable(value: Any) -> Any:
    """``value`` with arrays as lists, numpy scalars as Python ones and NaN/inf as ``None``."""
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


class JsonReady:
    """Mixin for result dataclasses: ``to_dict()`` gives their fields JSON-ready."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return jsonable(dataclasses.asdict(self))  # type: ignore[call-overload]


@dataclass(frozen=True)
class ClassScores(JsonReady):
    """Precision, recall, F1 (fractions in [0, 1]) and support (number of true members) of one class."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class RocCurve(JsonReady):
    """One ROC curve: ``fpr``, ``tpr`` and ``thresholds`` ``(P,)`` (score >= threshold is positive).

    ``auc`` is NaN (``None`` in JSON) and the arrays empty when the class has no
    positive or no negative example.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auc: float


@dataclass(frozen=True)
class RocCurves(JsonReady):
    """ROC curves by class name (one-vs-rest; binary scores give one curve, for class 1).

    ``macro_auc`` is the unweighted mean of the defined per-class AUCs.
    """

    curves: dict[str, RocCurve]
    macro_auc: float


@dataclass(frozen=True)
class OperatingPoint(JsonReady):
    """A score threshold and what it gives: select ``score >= threshold`` as positive.

    ``target`` is the required recall (or precision); ``threshold`` is ``None`` when no
    threshold reaches it, and then ``recall`` is 0 and ``precision`` NaN (nothing selected).
    """

    target: float
    threshold: float | None
    precision: float
    recall: float


@dataclass(frozen=True)
class ClassificationMetrics(JsonReady):
    """Everything :func:`classification_metrics` measures.

    ``confusion`` ``(K, K)`` counts, row = true class, column = predicted class;
    ``confusion_normalised`` the same divided by each row's total (an empty row stays 0),
    so its diagonal is the per-class recall. ``macro`` averages the per-class scores
    without weights (its support is N).
    """

    class_names: list[str]
    accuracy: float
    confusion: np.ndarray
    confusion_normalised: np.ndarray
    per_class: dict[str, ClassScores]
    macro: ClassScores
    roc: RocCurves


def as_labels(y_true: ArrayLike, name: str = "y_true") -> np.ndarray:
    """``y_true`` as an ``(N,)`` int64 array; integral floats and booleans are accepted."""
    y = np.asarray(y_true)
    if y.ndim != 1 or y.size == 0:
        raise DeepfieldError(f"{name}: expected a non-empty 1-D array of class labels, got shape {y.shape}")
    if y.dtype == bool:
        return y.astype(np.int64)
    if not np.issubdtype(y.dtype, np.number) or not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
        raise DeepfieldError(f"{name}: class labels must be integers, got dtype {y.dtype}")
    return y.astype(np.int64)


def as_scores(scores: ArrayLike, n: int, name: str = "scores") -> np.ndarray:
    """``scores`` as float64 ``(n,)`` or ``(n, K)`` with ``K >= 2``, all finite."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim not in (1, 2) or len(s) != n or (s.ndim == 2 and s.shape[1] < 2):
        raise DeepfieldError(f"{name}: expected shape ({n},) or ({n}, K>=2) to match the labels, got {s.shape}")
    if not np.all(np.isfinite(s)):
        raise DeepfieldError(f"{name}: contains NaN or infinite values")
    return s


def class_names_for(n_classes: int, class_names: Sequence[str] | None) -> list[str]:
    """``class_names`` checked against ``n_classes``, or ``"0" .. "K-1"`` when not given."""
    if class_names is None:
        return [str(k) for k in range(n_classes)]
    names = [str(c) for c in class_names]
    if len(names) != n_classes or len(set(names)) != n_classes:
        raise DeepfieldError(f"class_names: expected {n_classes} distinct names, got {names}")
    return names


def _checked(y_true: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray, int]:
    """Labels, scores and the number of classes K, with every label in ``0 .. K-1``."""
    y = as_labels(y_true)
    s = as_scores(scores, len(y))
    k = 2 if s.ndim == 1 else s.shape[1]
    if y.min() < 0 or y.max() >= k:
        raise DeepfieldError(f"y_true: labels must lie in 0..{k - 1} for {k} classes, got {y.min()}..{y.max()}")
    return y, s, k


def predict_labels(scores: ArrayLike, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Predicted labels ``(N,)`` and the probability of the predicted class ``(N,)``.

    ``scores (N,)``: class 1 where ``score >= threshold``, confidence ``score`` or
    ``1 - score`` (so the scores should be probabilities). ``scores (N, K)``: the arg-max
    class and its score.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        labels = (s >= threshold).astype(np.int64)
        return labels, np.where(labels == 1, s, 1.0 - s)
    labels = np.argmax(s, axis=1)
    return labels, s[np.arange(len(s)), labels]


def confusion(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Confusion matrix ``(K, K)`` counts (row true, column predicted) and its row-normalised form."""
    counts = skm.confusion_matrix(as_labels(y_true), as_labels(y_pred, "y_pred"), labels=np.arange(n_classes))
    rows = counts.sum(axis=1, keepdims=True)
    return counts, np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)


def _roc(positive: np.ndarray, score: np.ndarray) -> RocCurve:
    if positive.all() or not positive.any():
        empty = np.zeros(0)
        return RocCurve(empty, empty, empty, math.nan)
    fpr, tpr, thresholds = skm.roc_curve(positive, score)
    return RocCurve(fpr, tpr, thresholds, float(skm.roc_auc_score(positive, score)))


def roc_curves(y_true: ArrayLike, scores: ArrayLike, class_names: Sequence[str] | None = None) -> RocCurves:
    """ROC curves and AUCs: one for class 1 from ``scores (N,)``, one-vs-rest per class from ``(N, K)``."""
    y, s, k = _checked(y_true, scores)
    names = class_names_for(k, class_names)
    if s.ndim == 1:
        curves = {names[1]: _roc(y == 1, s)}
    else:
        curves = {names[c]: _roc(y == c, s[:, c]) for c in range(k)}
    aucs = [c.auc for c in curves.values() if not math.isnan(c.auc)]
    return RocCurves(curves, float(np.mean(aucs)) if aucs else math.nan)


def classification_metrics(y_true: ArrayLike, scores: ArrayLike, class_names: Sequence[str] | None = None,
                           threshold: float = 0.5) -> ClassificationMetrics:
    """Accuracy, confusion matrix, per-class and macro precision/recall/F1, ROC curves.

    Args:
        y_true: ``(N,)`` integer labels ``0 .. K-1``.
        scores: ``(N,)`` probability of class 1 (binary) or ``(N, K)`` class probabilities.
        class_names: ``K`` names (default ``"0" .. "K-1"``).
        threshold: binary only, ``score >= threshold`` predicts class 1; ``(N, K)`` uses arg-max.
    """
    y, s, k = _checked(y_true, scores)
    names = class_names_for(k, class_names)
    y_pred, _ = predict_labels(s, threshold)
    counts, normalised = confusion(y, y_pred, k)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y, y_pred, labels=np.arange(k), zero_division=0.0)
    per_class = {names[c]: ClassScores(float(precision[c]), float(recall[c]), float(f1[c]), int(support[c]))
                 for c in range(k)}
    macro = ClassScores(float(precision.mean()), float(recall.mean()), float(f1.mean()), len(y))
    return ClassificationMetrics(names, float(np.mean(y_pred == y)), counts, normalised, per_class, macro,
                                 roc_curves(y, s, names))


def precision_recall_points(y_true: ArrayLike, score: ArrayLike,
                            positive: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and threshold ``(T,)`` at every distinct score (``score >= t`` selected).

    ``y_true (N,)`` labels, of which ``positive`` is the positive class; ``score (N,)``.
    Thresholds increase, so recall falls along the arrays.
    """
    y = as_labels(y_true) == positive
    s = as_scores(score, len(y), "score")
    if s.ndim != 1:
        raise DeepfieldError(f"score: expected one score per object, shape ({len(y)},), got {s.shape}")
    if not y.any():
        raise DeepfieldError(f"y_true: no example of the positive class {positive}; precision and recall are undefined")
    precision, recall, thresholds = skm.precision_recall_curve(y, s)
    return precision[:-1], recall[:-1], thresholds  # the last point (recall 0) has no threshold


def _best(primary: np.ndarray, feasible: np.ndarray, secondary: np.ndarray,
          thresholds: np.ndarray) -> tuple[float | None, int]:
    """Threshold and index maximising ``primary`` then ``secondary`` among ``feasible`` points."""
    candidates = np.flatnonzero(feasible)
    if not len(candidates):
        return None, -1
    best = candidates[np.lexsort((secondary[candidates], primary[candidates]))[-1]]
    return float(thresholds[best]), int(best)


_TOLERANCE = 1e-12  # a recall or precision this close below the target still counts as reaching it


def precision_at_recall(y_true: ArrayLike, score: ArrayLike, recall: float = 0.99, positive: int = 1) -> OperatingPoint:
    """The highest precision among thresholds that keep at least ``recall`` of the positives.

    For data-quality selection: positives are the good images, ``score`` their probability
    of being good; ``score >= threshold`` keeps a fraction ``>= recall`` of the good ones,
    as cleanly as possible. Ties in precision go to the higher recall (lower threshold).

    Args:
        y_true: ``(N,)`` labels; ``positive`` marks the positive class (others are negative).
        score: ``(N,)`` higher means more likely positive.
        recall: required recall, a fraction in (0, 1].
    """
    if not 0.0 < recall <= 1.0:
        raise DeepfieldError(f"precision_at_recall: recall must lie in (0, 1], got {recall}")
    precisions, recalls, thresholds = precision_recall_points(y_true, score, positive)
    threshold, i = _best(precisions, recalls >= recall - _TOLERANCE, recalls, thresholds)
    assert threshold is not None  # the lowest threshold selects everything: recall 1
    return OperatingPoint(recall, threshold, float(precisions[i]), float(recalls[i]))


def recall_at_precision(y_true: ArrayLike, score: ArrayLike, precision: float = 0.99,
                        positive: int = 1) -> OperatingPoint:
    """The highest recall among thresholds whose selection has at least ``precision`` purity.

    Ties in recall go to the higher precision. When no threshold is pure enough the
    point has ``threshold=None``. Arguments as :func:`precision_at_recall`.
    """
    if not 0.0 < precision <= 1.0:
        raise DeepfieldError(f"recall_at_precision: precision must lie in (0, 1], got {precision}")
    precisions, recalls, thresholds = precision_recall_points(y_true, score, positive)
    threshold, i = _best(recalls, precisions >= precision - _TOLERANCE, precisions, thresholds)
    if threshold is None:
        return OperatingPoint(precision, None, math.nan, 0.0)
    return OperatingPoint(precision, threshold, float(precisions[i]), float(recalls[i]))
