"""Streaming metrics against numpy and exact formulas; streaming equals one-shot."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from deepfield.errors import DeepfieldError
from deepfield.training import metrics
from deepfield.training.metrics import AUC, BinaryAccuracy

RNG = np.random.default_rng(5)


def streamed(metric: metrics.Metric, pred: np.ndarray, true: np.ndarray, batch: int = 37) -> float:
    """The metric fed in uneven batches."""
    metric.reset()
    for start in range(0, len(pred), batch):
        metric.update(torch.tensor(pred[start : start + batch]), torch.tensor(true[start : start + batch]))
    return metric.compute()


def exact_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney: the probability a random positive outscores a random negative."""
    ranks = np.empty(len(scores))
    ranks[np.argsort(scores)] = np.arange(1, len(scores) + 1)
    positives = labels == 1
    n_pos, n_neg = positives.sum(), (~positives).sum()
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def test_accuracy_multiclass_sparse_and_one_hot() -> None:
    scores = RNG.normal(size=(500, 4))
    classes = RNG.integers(0, 4, size=500)
    expected = np.mean(scores.argmax(1) == classes)
    assert streamed(metrics.get("accuracy"), scores, classes) == pytest.approx(expected)
    assert streamed(metrics.get("accuracy"), scores, np.eye(4)[classes]) == pytest.approx(expected)
    assert streamed(metrics.get("accuracy"), scores, classes[:, None]) == pytest.approx(expected)


def test_accuracy_on_one_column_thresholds_like_binary_accuracy() -> None:
    probabilities = RNG.random((300, 1))
    labels = (RNG.random(300) < 0.5).astype(np.float32)
    expected = np.mean((probabilities[:, 0] > 0.5) == (labels == 1))
    assert streamed(metrics.get("accuracy"), probabilities, labels) == pytest.approx(expected)
    assert streamed(metrics.get("binary_accuracy"), probabilities, labels) == pytest.approx(expected)
    high = np.mean((probabilities[:, 0] > 0.8) == (labels == 1))
    assert streamed(BinaryAccuracy(threshold=0.8), probabilities, labels) == pytest.approx(high)


def test_binary_accuracy_is_elementwise_over_outputs() -> None:
    probabilities, labels = RNG.random((200, 3)), (RNG.random((200, 3)) < 0.5).astype(float)
    expected = np.mean((probabilities > 0.5) == (labels == 1))
    assert streamed(metrics.get("binary_accuracy"), probabilities, labels) == pytest.approx(expected)


def test_mae_and_mse_stream_equal_one_shot() -> None:
    pred, true = RNG.normal(size=(401, 2)), RNG.normal(size=(401, 2))
    assert streamed(metrics.get("mae"), pred, true) == pytest.approx(np.mean(np.abs(pred - true)), rel=1e-12)
    assert streamed(metrics.get("mse"), pred, true) == pytest.approx(np.mean((pred - true) ** 2), rel=1e-12)
    one_shot = metrics.get("mse")
    one_shot.update(torch.tensor(pred), torch.tensor(true))
    assert streamed(metrics.get("mse"), pred, true, batch=13) == pytest.approx(one_shot.compute(), rel=1e-12)


def test_auc_is_close_to_the_exact_rank_auc() -> None:
    labels = (RNG.random(4000) < 0.3).astype(np.float32)
    scores = 1 / (1 + np.exp(-(RNG.normal(size=4000) + 1.2 * labels)))  # overlapping classes
    value = streamed(metrics.get("auc"), scores.astype(np.float32), labels, batch=256)
    assert value == pytest.approx(exact_auc(scores, labels), abs=0.01)
    assert 0.7 < value < 0.9


def test_auc_perfect_and_random_separation() -> None:
    labels = np.repeat([0.0, 1.0], 1000)
    separated = np.concatenate([RNG.uniform(0.0, 0.4, 1000), RNG.uniform(0.6, 1.0, 1000)])
    assert streamed(AUC(), separated, labels) == 1.0
    assert streamed(AUC(), 1 - separated, labels) == 0.0
    assert streamed(AUC(), RNG.random(2000), labels) == pytest.approx(0.5, abs=0.03)


def test_reset_and_empty_metrics() -> None:
    metric = metrics.get("auc")
    assert np.isnan(metric.compute())
    metric.update(torch.tensor([0.9, 0.1]), torch.tensor([1.0, 0.0]))
    assert metric.compute() == 1.0
    metric.reset()
    assert np.isnan(metric.compute())
    assert np.isnan(metrics.get("accuracy").compute())


def test_update_keeps_state_on_the_device_without_graph() -> None:
    metric = metrics.get("mae")
    pred = torch.rand(8, 1, requires_grad=True)
    metric.update(pred, torch.rand(8))
    assert isinstance(metric._total, torch.Tensor) and not metric._total.requires_grad


def test_get_aliases_instances_configs_functions_and_errors() -> None:
    assert metrics.get("acc").name == "acc"  # shown as typed, as in Keras
    assert isinstance(metrics.get("mean_absolute_error"), metrics.MeanAbsoluteError)
    instance = AUC(num_thresholds=50)
    assert metrics.get(instance) is instance
    rebuilt = metrics.get({"class_name": "AUC", "config": instance.get_config()})
    assert rebuilt.num_thresholds == 50 and rebuilt.name == "auc"

    def double_error(y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:  # Keras's order, per sample
        return 2 * (y_pred - y_true).abs().mean(dim=-1)

    wrapped = metrics.get(double_error)
    pred, true = RNG.random((90, 1)), RNG.random((90, 1))
    assert wrapped.name == "double_error"
    assert streamed(wrapped, pred, true, batch=40) == pytest.approx(2 * np.mean(np.abs(pred - true)))
    with pytest.raises(DeepfieldError, match="unknown metric 'accuracyy'; expected one of: acc, accuracy"):
        metrics.get("accuracyy")
    with pytest.raises(DeepfieldError, match="auc: num_thresholds must be an integer > 1"):
        AUC(num_thresholds=1)


def test_shape_mismatch_names_the_metric() -> None:
    with pytest.raises(DeepfieldError, match=r"^mae: labels of shape \(8, 3\) do not match predictions of shape \(8, 1\)$"):
        metrics.get("mae").update(torch.rand(8, 1), torch.rand(8, 3))
    with pytest.raises(DeepfieldError, match=r"accuracy: labels of shape \(8, 2\) .* expected class indices \(8,\)"):
        metrics.get("accuracy").update(torch.rand(8, 4), torch.rand(8, 2))
