"""Classification metrics checked against formulas, brute-force scans and scikit-learn."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from deepfield.analysis.classification import (
    classification_metrics,
    confusion,
    precision_at_recall,
    predict_labels,
    recall_at_precision,
    roc_curves,
)
from deepfield.errors import DeepfieldError


def _multiclass(n: int = 500, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``(n,)`` and softmax probabilities ``(n, k)`` that favour the true class."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.2
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


def _binary(n: int = 400, seed: int = 1, decimals: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores rounded to ``decimals`` (so that many scores tie)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.7).astype(int)
    score = np.clip(rng.normal(0.35 + 0.3 * y, 0.18), 0, 1).round(decimals)
    return y, score


def _brute_force(y: np.ndarray, score: np.ndarray) -> list[tuple[float, float, float]]:
    """(threshold, precision, recall) of ``score >= t`` for every distinct score t."""
    points = []
    for t in np.unique(score):
        chosen = score >= t
        tp = np.sum(chosen & (y == 1))
        points.append((float(t), tp / chosen.sum(), tp / np.sum(y == 1)))
    return points


def test_binary_metrics_match_the_formulas() -> None:
    y, score = _binary()
    m = classification_metrics(y, score, class_names=["bad", "good"], threshold=0.5)
    pred = (score >= 0.5).astype(int)
    tp, fp = np.sum((pred == 1) & (y == 1)), np.sum((pred == 1) & (y == 0))
    fn, tn = np.sum((pred == 0) & (y == 1)), np.sum((pred == 0) & (y == 0))
    assert m.confusion.tolist() == [[tn, fp], [fn, tp]]
    good = m.per_class["good"]
    assert good.precision == pytest.approx(tp / (tp + fp))
    assert good.recall == pytest.approx(tp / (tp + fn))
    assert good.f1 == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert (good.support, m.per_class["bad"].support) == (tp + fn, tn + fp)
    assert m.accuracy == pytest.approx((tp + tn) / len(y))
    assert m.macro.recall == pytest.approx((tp / (tp + fn) + tn / (tn + fp)) / 2)
    assert list(m.roc.curves) == ["good"]
    assert m.roc.macro_auc == pytest.approx(roc_auc_score(y, score))


def test_row_normalised_confusion_has_recall_on_its_diagonal() -> None:
    y, p = _multiclass()
    m = classification_metrics(y, p)
    np.testing.assert_allclose(m.confusion_normalised.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.diag(m.confusion_normalised), [s.recall for s in m.per_class.values()])
    assert m.confusion.sum() == len(y)
    assert m.accuracy == pytest.approx(np.trace(m.confusion) / len(y))


def test_empty_row_of_the_confusion_matrix_stays_zero() -> None:
    counts, normalised = confusion([0, 0, 2], [0, 2, 2], n_classes=3)
    assert counts.tolist() == [[1, 0, 1], [0, 0, 0], [0, 0, 1]]
    assert normalised.tolist() == [[0.5, 0.0, 0.5], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]


def test_multiclass_auc_matches_sklearn() -> None:
    y, p = _multiclass(k=4)
    roc = roc_curves(y, p, class_names=["E", "S0", "Sp", "Irr"])
    assert roc.macro_auc == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    for k, name in enumerate(["E", "S0", "Sp", "Irr"]):
        curve = roc.curves[name]
        assert curve.auc == pytest.approx(roc_auc_score(y == k, p[:, k]))
        assert curve.fpr[0] == 0 and curve.tpr[-1] == 1 and np.all(np.diff(curve.fpr) >= 0)


def test_a_class_without_examples_has_no_auc_and_json_says_null() -> None:
    y, p = _multiclass(k=3)
    y = np.where(y == 2, 0, y)  # class 2 never true
    m = classification_metrics(y, p)
    assert math.isnan(m.roc.curves["2"].auc)
    assert m.roc.macro_auc == pytest.approx(np.mean([m.roc.curves["0"].auc, m.roc.curves["1"].auc]))
    d = json.loads(json.dumps(m.to_dict(), allow_nan=False))
    assert d["roc"]["curves"]["2"]["auc"] is None
    assert d["confusion"][2] == [0, 0, 0]
    assert d["roc"]["curves"]["0"]["thresholds"][0] is None  # sklearn's first threshold is +inf


@pytest.mark.parametrize("target", [0.5, 0.8, 0.9, 0.95, 0.99, 1.0])
def test_precision_at_recall_matches_a_brute_force_scan(target: float) -> None:
    y, score = _binary()
    feasible = [p for p in _brute_force(y, score) if p[2] >= target]
    threshold, precision, recall = max(feasible, key=lambda p: (p[1], p[2]))
    op = precision_at_recall(y, score, recall=target)
    assert (op.threshold, op.precision, op.recall) == pytest.approx((threshold, precision, recall))
    assert op.recall >= target
    kept = score >= op.threshold
    assert np.mean(kept[y == 1]) == pytest.approx(op.recall)


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95])
def test_recall_at_precision_matches_a_brute_force_scan(target: float) -> None:
    y, score = _binary(decimals=3)
    feasible = [p for p in _brute_force(y, score) if p[1] >= target]
    threshold, precision, recall = max(feasible, key=lambda p: (p[2], p[1]))
    op = recall_at_precision(y, score, precision=target)
    assert (op.threshold, op.precision, op.recall) == pytest.approx((threshold, precision, recall))


def test_unreachable_precision_gives_no_threshold() -> None:
    op = recall_at_precision([1, 0, 1, 0], [0.1, 0.9, 0.2, 0.8], precision=0.9)
    assert op.threshold is None and op.recall == 0.0
    assert json.loads(json.dumps(op.to_dict(), allow_nan=False))["precision"] is None


def test_operating_points_for_another_positive_class() -> None:
    y, score = _binary()
    flipped = precision_at_recall(1 - y, 1 - score, recall=0.9, positive=1)
    direct = precision_at_recall(y, 1 - score, recall=0.9, positive=0)
    assert flipped == direct


def test_predict_labels_binary_and_multiclass() -> None:
    labels, confidence = predict_labels(np.array([0.2, 0.5, 0.9]))
    assert labels.tolist() == [0, 1, 1]
    np.testing.assert_allclose(confidence, [0.8, 0.5, 0.9])
    labels, confidence = predict_labels(np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]]))
    assert labels.tolist() == [1, 0] and confidence.tolist() == [0.7, 0.6]


@pytest.mark.parametrize("y, scores, match", [
    ([0, 1, 2], [0.1, 0.2, 0.3], "labels must lie in 0..1"),
    ([0, 1.5], [0.1, 0.2], "must be integers"),
    ([[0, 1]], [0.1, 0.2], "1-D array"),
    ([0, 1, 0], [0.1, 0.2], r"expected shape \(3,\)"),
    ([0, 1], [0.1, np.nan], "NaN"),
])
def test_bad_inputs_give_one_clear_error(y: list, scores: list, match: str) -> None:
    with pytest.raises(DeepfieldError, match=match):
        classification_metrics(y, scores)


def test_bad_names_and_targets_are_errors() -> None:
    y, p = _multiclass(k=3)
    with pytest.raises(DeepfieldError, match="expected 3 distinct names"):
        classification_metrics(y, p, class_names=["a", "b"])
    with pytest.raises(DeepfieldError, match=r"recall must lie in \(0, 1\]"):
        precision_at_recall([0, 1], [0.1, 0.9], recall=1.5)
    with pytest.raises(DeepfieldError, match="no example of the positive class"):
        precision_at_recall([0, 0], [0.1, 0.9])
    with pytest.raises(DeepfieldError, match="one score per object"):
        precision_at_recall(y, p)
