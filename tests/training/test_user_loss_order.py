"""Your own loss or metric: a Python function ``f(y_true, y_pred)`` is called in Keras's order and reduced as
Keras reduces it (the mean of what it returns); a torch ``nn.Module`` loss keeps PyTorch's ``(input, target)``.
Compared with Keras 3 itself (torch backend) on the same weights."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

from deepfield.models import Dense
from deepfield.training import Sequential

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

RNG = np.random.default_rng(3)
X = RNG.normal(size=(50, 4)).astype(np.float32)
Y = RNG.uniform(0.5, 2.0, size=(50, 2)).astype(np.float32)  # positive: used as weights by the loss below


def weighted_square(ops):
    """An asymmetric loss: the squared error weighted by the TRUE value, per sample (mean over outputs)."""
    return lambda y_true, y_pred: ops.mean(ops.square(y_true - y_pred) * y_true, axis=-1)


def twin_models():
    torch.manual_seed(0)
    ours = Sequential([Dense(2)], input_shape=(4,)).build()
    theirs = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    theirs.layers[0].set_weights([ours[0].weight.detach().numpy().T, ours[0].bias.detach().numpy()])
    return ours, theirs


class TorchOps:
    """The two keras.ops functions the loss uses, in torch."""
    square = staticmethod(torch.square)

    @staticmethod
    def mean(x, axis):
        return torch.mean(x, dim=axis)


def test_a_keras_style_function_gets_y_true_first_as_loss_and_metric():
    ours, theirs = twin_models()
    mine = weighted_square(TorchOps)

    def my_metric(y_true, y_pred):
        return TorchOps.mean(torch.abs(y_true - y_pred) * y_true, axis=-1)

    def their_metric(y_true, y_pred):
        return keras.ops.mean(keras.ops.abs(y_true - y_pred) * y_true, axis=-1)

    ours.compile(optimizer="sgd", loss=mine, metrics=[my_metric])
    theirs.compile(optimizer="sgd", loss=weighted_square(keras.ops), metrics=[their_metric])
    got = ours.evaluate(X, Y, batch_size=16, verbose=0)
    expected = theirs.evaluate(X, Y, batch_size=16, verbose=0, return_dict=True)
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert got["my_metric"] == pytest.approx(expected["their_metric"], rel=1e-5)
    swapped = np.mean(np.square(Y - ours.predict(X, verbose=0)) * ours.predict(X, verbose=0))
    assert abs(got["loss"] - swapped) > 1e-2  # the two orders really differ on these numbers


def test_one_training_step_with_a_function_loss_matches_keras():
    ours, theirs = twin_models()
    ours.compile(optimizer={"class_name": "sgd", "config": {"learning_rate": 0.1}}, loss=weighted_square(TorchOps))
    theirs.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss=weighted_square(keras.ops))
    ours.fit(X, Y, batch_size=50, epochs=1, shuffle=False, verbose=0)
    theirs.fit(X, Y, batch_size=50, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(ours[0].weight.detach().numpy().T, theirs.layers[0].kernel.numpy(), atol=1e-5)


def test_a_torch_module_loss_keeps_pytorchs_input_target_order():
    torch.manual_seed(0)
    labels = RNG.integers(0, 3, size=50)
    model = Sequential([Dense(3)], input_shape=(4,)).compile(optimizer="sgd", loss=nn.CrossEntropyLoss())
    got = model.evaluate(X, labels, batch_size=50, verbose=0)["loss"]
    logits = torch.from_numpy(model.predict(X, verbose=0))
    assert got == pytest.approx(float(nn.functional.cross_entropy(logits, torch.from_numpy(labels))), rel=1e-6)
