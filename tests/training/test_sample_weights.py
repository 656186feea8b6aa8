"""``fit(class_weight=..., sample_weight=...)`` and ``evaluate(sample_weight=...)`` with Keras 3's meaning: a
weighted loss is ``sum(w * loss) / N`` per batch; class weights are looked up from sparse, one-hot or binary
labels; metrics stay unweighted (Keras's ``metrics``, not ``weighted_metrics``). Compared with Keras 3 itself."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from deepfield.errors import DeepfieldError
from deepfield.models import Dense
from deepfield.training import Sequential

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

RNG = np.random.default_rng(9)
N = 60
X = RNG.normal(size=(N, 4)).astype(np.float32)
LABELS = RNG.integers(0, 3, N)
WEIGHTS = RNG.uniform(0.0, 3.0, N).astype(np.float32)


def twins(units: int, activation: str | None):
    torch.manual_seed(2)
    ours = Sequential([Dense(units, activation=activation)], input_shape=(4,)).build()
    theirs = keras.Sequential([keras.Input((4,)), keras.layers.Dense(units, activation=activation)])
    theirs.layers[0].set_weights([ours[0].weight.detach().numpy().T, ours[0].bias.detach().numpy()])
    return ours, theirs


def fit_both(loss, y, units=3, activation="softmax", metrics=(), **weights):
    ours, theirs = twins(units, activation)
    ours.compile(optimizer={"class_name": "sgd", "config": {"learning_rate": 0.2}}, loss=loss, metrics=list(metrics))
    theirs.compile(optimizer=keras.optimizers.SGD(learning_rate=0.2), loss=loss, metrics=list(metrics))
    got = ours.fit(X, y, batch_size=16, epochs=2, shuffle=False, verbose=0, **weights).history
    expected = theirs.fit(X, y, batch_size=16, epochs=2, shuffle=False, verbose=0, **weights).history
    np.testing.assert_allclose(ours[0].weight.detach().numpy().T, theirs.layers[0].kernel.numpy(), atol=1e-5)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, err_msg=key)
    return ours, theirs


@pytest.mark.parametrize("loss, y", [
    ("sparse_categorical_crossentropy", LABELS),
    ("categorical_crossentropy", np.eye(3, dtype=np.float32)[LABELS]),
])
def test_class_weight_as_keras(loss, y):
    fit_both(loss, y, metrics=["accuracy"], class_weight={0: 1.0, 1: 3.0, 2: 0.5})


def test_class_weight_of_binary_labels_as_keras():
    y = (LABELS == 1).astype(np.float32)[:, None]
    fit_both("binary_crossentropy", y, units=1, activation="sigmoid", class_weight={0: 0.3, 1: 2.0})


def test_sample_weight_in_fit_and_evaluate_as_keras():
    y = RNG.normal(size=(N, 2)).astype(np.float32)
    ours, theirs = fit_both("mse", y, units=2, activation=None, metrics=["mae"], sample_weight=WEIGHTS)
    got = ours.evaluate(X, y, batch_size=16, verbose=0, sample_weight=WEIGHTS)
    expected = theirs.evaluate(X, y, batch_size=16, verbose=0, sample_weight=WEIGHTS, return_dict=True)
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert got["mae"] == pytest.approx(expected["mae"], rel=1e-5)  # metrics are not weighted
    unweighted = ours.evaluate(X, y, batch_size=16, verbose=0)
    assert unweighted["loss"] != pytest.approx(got["loss"], rel=1e-3)


def test_sample_weights_follow_validation_split_and_validation_data():
    y = RNG.normal(size=(N, 2)).astype(np.float32)
    fit_both("mse", y, units=2, activation=None, sample_weight=WEIGHTS, validation_split=0.25)
    cut = 45
    ours, theirs = twins(2, None)
    ours.compile(optimizer="sgd", loss="mse")
    theirs.compile(optimizer="sgd", loss="mse")
    val = (X[cut:], y[cut:], WEIGHTS[cut:])
    got = ours.fit(X[:cut], y[:cut], batch_size=16, epochs=1, shuffle=False, verbose=0, validation_data=val).history
    expected = theirs.fit(X[:cut], y[:cut], batch_size=16, epochs=1, shuffle=False, verbose=0,
                          validation_data=val).history
    np.testing.assert_allclose(got["val_loss"], expected["val_loss"], rtol=1e-5)
    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-5)


def test_bad_weights_are_one_line_errors():
    model = Sequential([Dense(3, activation="softmax")], input_shape=(4,))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(DeepfieldError, match="give class_weight or sample_weight, not both"):
        model.fit(X, LABELS, class_weight={0: 2.0}, sample_weight=WEIGHTS, verbose=0)
    with pytest.raises(DeepfieldError, match=r"sample_weight has 59 values for 60 samples"):
        model.fit(X, LABELS, sample_weight=WEIGHTS[:-1], verbose=0)
    with pytest.raises(DeepfieldError, match="sample_weight must be finite and >= 0"):
        model.fit(X, LABELS, sample_weight=-WEIGHTS, verbose=0)
    with pytest.raises(DeepfieldError, match="class_weight must map class indices to weights"):
        model.fit(X, LABELS, class_weight=[1.0, 2.0], verbose=0)
