"""Keras 3's metrics Precision, Recall, F1Score, RootMeanSquaredError, R2Score, TopKCategoricalAccuracy and MeanIoU:
names, arguments and defaults as Keras's, accumulated over several uneven batches and compared with keras.metrics
(torch backend) fed the same batches; per-pixel MeanIoU with the class axis first."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from deepfield.errors import DeepfieldError
from deepfield.training import metrics

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

RNG = np.random.default_rng(23)
N, C = 130, 4
BATCH = 48  # three uneven batches


def probabilities(shape=(N, C)) -> np.ndarray:
    p = RNG.uniform(0.0, 1.0, size=shape)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def one_hot() -> np.ndarray:
    return np.eye(C, dtype=np.float32)[RNG.integers(0, C, N)]


def binary(columns=1) -> np.ndarray:
    return RNG.integers(0, 2, size=(N, columns)).astype(np.float32)


def ours(metric, y_true, y_pred) -> float:
    metric.reset()
    for start in range(0, len(y_pred), BATCH):
        metric.update(torch.from_numpy(y_pred[start:start + BATCH]), torch.from_numpy(y_true[start:start + BATCH]))
    return metric.compute()


def theirs(metric, y_true, y_pred):
    for start in range(0, len(y_pred), BATCH):
        metric.update_state(y_true[start:start + BATCH], y_pred[start:start + BATCH])
    return keras.ops.convert_to_numpy(metric.result())


CASES = [
    ("Precision", {}, binary, lambda: RNG.uniform(size=(N, 1)).astype(np.float32)),
    ("Precision", {"thresholds": 0.3}, lambda: binary(3), lambda: RNG.uniform(size=(N, 3)).astype(np.float32)),
    ("Precision", {"top_k": 2}, one_hot, probabilities),
    ("Precision", {"class_id": 2}, one_hot, probabilities),
    ("Recall", {}, binary, lambda: RNG.uniform(size=(N, 1)).astype(np.float32)),
    ("Recall", {"thresholds": 0.7, "class_id": 1}, one_hot, probabilities),
    ("Recall", {"top_k": 1}, one_hot, probabilities),
    ("F1Score", {"average": "macro"}, one_hot, probabilities),
    ("F1Score", {"average": "micro", "threshold": 0.3}, one_hot, probabilities),
    ("F1Score", {"average": "weighted"}, one_hot, probabilities),
    ("F1Score", {"average": None}, one_hot, probabilities),
    ("RootMeanSquaredError", {}, lambda: RNG.normal(size=(N, 2)).astype(np.float32),
     lambda: RNG.normal(size=(N, 2)).astype(np.float32)),
    ("R2Score", {}, lambda: RNG.normal(size=(N, 3)).astype(np.float32) * [1, 2, 3],
     lambda: RNG.normal(size=(N, 3)).astype(np.float32)),
    ("R2Score", {"class_aggregation": "variance_weighted_average"},
     lambda: RNG.normal(size=(N, 3)).astype(np.float32) * [1, 2, 3],
     lambda: RNG.normal(size=(N, 3)).astype(np.float32)),
    ("R2Score", {"num_regressors": 3}, lambda: RNG.normal(size=(N, 1)).astype(np.float32),
     lambda: RNG.normal(size=(N, 1)).astype(np.float32)),
    ("TopKCategoricalAccuracy", {}, lambda: np.eye(8, dtype=np.float32)[RNG.integers(0, 8, N)],
     lambda: probabilities((N, 8))),
    ("TopKCategoricalAccuracy", {"k": 2}, one_hot, probabilities),
    ("MeanIoU", {"num_classes": C}, lambda: RNG.integers(0, C, N), lambda: RNG.integers(0, C, N)),
    ("MeanIoU", {"num_classes": C, "sparse_y_pred": False}, lambda: RNG.integers(0, C, N), probabilities),
    ("MeanIoU", {"num_classes": C, "sparse_y_true": False, "sparse_y_pred": False, "ignore_class": 0}, one_hot,
     probabilities),
]


@pytest.mark.parametrize("name, kwargs, truth, prediction", CASES)
def test_metrics_match_keras_over_uneven_batches(name, kwargs, truth, prediction):
    y_true, y_pred = truth(), prediction()
    expected = theirs(getattr(keras.metrics, name)(**kwargs), y_true, y_pred)
    got = ours(getattr(metrics, name)(**kwargs), y_true, y_pred)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_per_pixel_mean_iou_has_the_class_axis_first():
    labels = RNG.integers(0, C, (6, 5, 5))
    scores = probabilities((6, C, 5, 5))
    expected = theirs(keras.metrics.MeanIoU(C, sparse_y_pred=False), labels, scores.transpose(0, 2, 3, 1))
    assert ours(metrics.MeanIoU(C, sparse_y_pred=False), labels, scores) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("name, shown", [
    ("precision", "precision"), ("recall", "recall"), ("root_mean_squared_error", "root_mean_squared_error"),
    ("r2_score", "r2_score"), ("top_k_categorical_accuracy", "top_k_categorical_accuracy"),
    ("Precision", "precision"), ("RootMeanSquaredError", "root_mean_squared_error"),
])
def test_names_are_keras(name, shown):
    assert metrics.get(name).name == shown
    assert getattr(metrics, {"precision": "Precision", "recall": "Recall", "f1_score": "F1Score",
                             "root_mean_squared_error": "RootMeanSquaredError", "r2_score": "R2Score",
                             "top_k_categorical_accuracy": "TopKCategoricalAccuracy"}[shown])().name == shown


def test_metrics_that_need_arguments_or_give_vectors_say_so():
    assert metrics.MeanIoU(3).name == "mean_io_u"  # Keras's default name of its class
    with pytest.raises(DeepfieldError, match="mean_iou: needs arguments"):
        metrics.get("mean_iou")
    with pytest.raises(DeepfieldError, match="one score per class"):
        metrics.get(metrics.F1Score())  # average=None, Keras's default: a vector, not a training log
    assert metrics.get({"class_name": "F1Score", "config": {"average": "macro"}}).name == "f1_score"
    with pytest.raises(DeepfieldError, match="average must be one of"):
        metrics.F1Score(average="mean")


def test_a_fit_logs_them_per_epoch():
    from deepfield.models import Dense
    from deepfield.training import Sequential

    x = RNG.normal(size=(64, 5)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[(x[:, 0] > 0).astype(int) + (x[:, 1] > 1)]
    model = Sequential([Dense(3, activation="softmax")], input_shape=(5,))
    model.compile(optimizer="adam", loss="categorical_crossentropy",
                  metrics=["precision", "recall", {"class_name": "F1Score", "config": {"average": "macro"}},
                           "top_k_categorical_accuracy", metrics.TopKCategoricalAccuracy(k=1, name="top1")])
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, validation_split=0.25).history
    assert {"precision", "recall", "f1_score", "top_k_categorical_accuracy", "top1", "val_f1_score"} <= set(history)
    assert all(0.0 <= v <= 1.0 for v in history["val_f1_score"])
    assert history["top_k_categorical_accuracy"][-1] == 1.0  # k=5 of 3 classes
