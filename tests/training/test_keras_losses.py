"""Keras 3's losses by name and class, with its arguments, defaults and numbers: label smoothing on the
cross-entropies, kl_divergence, poisson, log_cosh, hinge and the focal cross-entropies, compared to keras.losses
(torch backend) on random inputs to 1e-5; and every loss's per-sample values, whose mean is the loss."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from deepfield.errors import DeepfieldError
from deepfield.training import losses

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

RNG = np.random.default_rng(17)
N, C = 48, 4


def probabilities() -> np.ndarray:
    p = RNG.uniform(0.01, 1.0, size=(N, C))
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def one_hot() -> np.ndarray:
    return np.eye(C, dtype=np.float32)[RNG.integers(0, C, N)]


def binary() -> np.ndarray:
    return RNG.integers(0, 2, size=(N, 3)).astype(np.float32)


def keras_value(loss, y_true, y_pred) -> float:
    return float(keras.ops.convert_to_numpy(loss(y_true, y_pred)))


def ours(spec, y_pred, y_true) -> float:
    return float(losses.get(spec)(torch.from_numpy(y_pred), torch.from_numpy(y_true)))


CASES = [
    # (our class name, arguments, Keras class, y_true, y_pred)
    ("BinaryCrossentropy", {"label_smoothing": 0.1}, binary, lambda: RNG.uniform(0.01, 0.99, (N, 3))),
    ("BinaryCrossentropy", {"label_smoothing": 0.2, "from_logits": True}, binary, lambda: RNG.normal(size=(N, 3)) * 3),
    ("CategoricalCrossentropy", {"label_smoothing": 0.1}, one_hot, probabilities),
    ("CategoricalCrossentropy", {"label_smoothing": 0.3, "from_logits": True}, one_hot,
     lambda: RNG.normal(size=(N, C)) * 2),
    ("KLDivergence", {}, probabilities, probabilities),
    ("Poisson", {}, lambda: RNG.poisson(3.0, (N, 2)), lambda: RNG.uniform(0.5, 6.0, (N, 2))),
    ("LogCosh", {}, lambda: RNG.normal(size=(N, 3)), lambda: RNG.normal(size=(N, 3)) * 4),
    ("Hinge", {}, binary, lambda: RNG.normal(size=(N, 3))),  # 0/1 labels become -1/1
    ("Hinge", {}, lambda: RNG.choice([-1.0, 1.0], (N, 3)), lambda: RNG.normal(size=(N, 3))),
    ("BinaryFocalCrossentropy", {}, binary, lambda: RNG.uniform(0.01, 0.99, (N, 3))),
    ("BinaryFocalCrossentropy", {"apply_class_balancing": True, "alpha": 0.4, "gamma": 1.5, "label_smoothing": 0.1},
     binary, lambda: RNG.uniform(0.01, 0.99, (N, 3))),
    ("BinaryFocalCrossentropy", {"from_logits": True, "gamma": 3.0}, binary, lambda: RNG.normal(size=(N, 3)) * 2),
    ("CategoricalFocalCrossentropy", {}, one_hot, probabilities),
    ("CategoricalFocalCrossentropy", {"alpha": 0.5, "gamma": 1.0, "from_logits": True, "label_smoothing": 0.1},
     one_hot, lambda: RNG.normal(size=(N, C)) * 2),
]


@pytest.mark.parametrize("name, kwargs, truth, prediction", CASES)
def test_losses_match_keras(name, kwargs, truth, prediction):
    y_true, y_pred = np.asarray(truth(), np.float32), np.asarray(prediction(), np.float32)
    expected = keras_value(getattr(keras.losses, name)(**kwargs), y_true, y_pred)
    assert ours({"class_name": name, "config": kwargs}, y_pred, y_true) == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("name", ["kl_divergence", "poisson", "log_cosh", "hinge", "binary_focal_crossentropy",
                                  "categorical_focal_crossentropy"])
def test_names_and_defaults_are_keras(name):
    loss = losses.get(name)
    keras_loss = keras.losses.get(name)  # Keras's function of that name, with its defaults
    y_true, y_pred = (one_hot(), probabilities()) if "categorical" in name else (binary(), RNG.uniform(
        0.05, 0.95, (N, 3)).astype(np.float32))
    expected = float(np.mean(keras.ops.convert_to_numpy(keras_loss(y_true, y_pred))))
    assert float(loss(torch.from_numpy(y_pred), torch.from_numpy(y_true))) == pytest.approx(expected, rel=1e-5)


def test_the_classes_carry_keras_arguments_and_defaults():
    focal = losses.BinaryFocalCrossentropy()
    assert (focal.apply_class_balancing, focal.alpha, focal.gamma, focal.from_logits, focal.label_smoothing) == (
        False, 0.25, 2.0, False, 0.0)
    categorical = losses.CategoricalFocalCrossentropy()
    assert (categorical.alpha, categorical.gamma, categorical.from_logits, categorical.label_smoothing) == (
        0.25, 2.0, False, 0.0)
    assert losses.get({"class_name": "BinaryFocalCrossentropy", "config": focal.get_config()}).gamma == 2.0
    with pytest.raises(DeepfieldError, match="label_smoothing must be in"):
        losses.BinaryCrossentropy(label_smoothing=1.5)
    with pytest.raises(TypeError):  # Keras 3's sparse cross-entropy has no label smoothing either
        losses.SparseCategoricalCrossentropy(label_smoothing=0.1)


@pytest.mark.parametrize("spec, truth, prediction", [
    ("mse", binary, lambda: RNG.normal(size=(N, 3))),
    ("mae", binary, lambda: RNG.normal(size=(N, 3))),
    ("huber", binary, lambda: RNG.normal(size=(N, 3)) * 3),
    ("half_sse", binary, lambda: RNG.normal(size=(N, 3))),
    ("binary_crossentropy", binary, lambda: RNG.uniform(0.01, 0.99, (N, 3))),
    ({"class_name": "binary_crossentropy", "config": {"from_logits": True, "label_smoothing": 0.1}}, binary,
     lambda: RNG.normal(size=(N, 3))),
    ("categorical_crossentropy", one_hot, probabilities),
    ("sparse_categorical_crossentropy", lambda: RNG.integers(0, C, N), probabilities),
    ("gaussian_nll", lambda: RNG.normal(size=(N, 2)), lambda: RNG.normal(size=(N, 4))),
    ("kl_divergence", probabilities, probabilities),
    ("poisson", lambda: RNG.poisson(2.0, (N, 2)), lambda: RNG.uniform(0.5, 4.0, (N, 2))),
    ("log_cosh", binary, lambda: RNG.normal(size=(N, 3))),
    ("hinge", binary, lambda: RNG.normal(size=(N, 3))),
    ("binary_focal_crossentropy", binary, lambda: RNG.uniform(0.01, 0.99, (N, 3))),
    ("categorical_focal_crossentropy", one_hot, probabilities),
])
def test_every_loss_has_per_sample_values_whose_mean_is_the_loss(spec, truth, prediction):
    y_true, y_pred = torch.from_numpy(np.asarray(truth())), torch.from_numpy(np.asarray(prediction(), np.float32))
    if not y_true.dtype.is_floating_point and "sparse" not in str(spec):
        y_true = y_true.float()
    loss = losses.get(spec)
    values = loss.values(y_pred, y_true)
    assert values.shape[0] == N
    torch.testing.assert_close(values.mean(), loss(y_pred, y_true), rtol=1e-6, atol=1e-7)
