"""orthogonal, truncated_normal, variance_scaling, identity: Keras 3's names, defaults and statistics."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from deepfield.errors import DeepfieldError
from deepfield.layers import Conv2D, Dense
from deepfield.models import initializers
from deepfield.training import Sequential

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")


def conv_kernel(init, filters: int = 16, channels: int = 8, size: int = 3) -> torch.Tensor:
    """The (filters, channels, size, size) kernel of a built Conv2D: fan_in = channels * size**2."""
    torch.manual_seed(0)
    model = Sequential([Conv2D(filters, size, kernel_initializer=init)], input_shape=(channels, 12, 12))
    model(torch.zeros(1, channels, 12, 12))
    return next(m for m in model.modules() if isinstance(m, Conv2D)).weight.detach()


def dense_kernel(init, units: int, inputs: int) -> torch.Tensor:
    """The (units, inputs) weight of a built Dense (Keras's kernel transposed)."""
    torch.manual_seed(0)
    model = Sequential([Dense(units, kernel_initializer=init)], input_shape=(inputs,))
    model(torch.zeros(1, inputs))
    return next(m for m in model.modules() if isinstance(m, Dense)).weight.detach()


@pytest.mark.parametrize(("name", "cls"), [("orthogonal", "Orthogonal"), ("truncated_normal", "TruncatedNormal"),
                                           ("variance_scaling", "VarianceScaling"), ("identity", "Identity")])
def test_names_and_defaults_are_keras(name: str, cls: str) -> None:
    ours = initializers.get(name)
    assert type(ours).__name__ == cls
    theirs = keras.initializers.get(name)
    assert ours.get_config() == {k: getattr(theirs, k) for k in ours.get_config()}
    assert set(theirs.get_config()) - set(ours.get_config()) <= {"seed", "input_axes", "output_axes"}
    again = initializers.get(initializers.serialize(ours))
    assert type(again) is type(ours) and again.get_config() == ours.get_config()


def test_orthogonal_dense_and_channels_first_conv_kernels_are_orthogonal_as_in_keras() -> None:
    w = dense_kernel("orthogonal", 64, 32).double()  # (64, 32): Keras's (32, 64) has orthonormal rows
    np.testing.assert_allclose(w.T @ w, np.eye(32), atol=1e-5)
    k = conv_kernel(initializers.Orthogonal(gain=2.0)).double()  # (16, 8, 3, 3)
    as_keras = k.permute(2, 3, 1, 0).reshape(72, 16)  # Keras's layout (3, 3, 8, 16) flattened as Keras does
    np.testing.assert_allclose(as_keras.T @ as_keras, 4.0 * np.eye(16), atol=1e-5)
    theirs = keras.ops.convert_to_numpy(keras.initializers.Orthogonal(gain=2.0)((3, 3, 8, 16))).reshape(72, 16)
    np.testing.assert_allclose(theirs.T @ theirs, 4.0 * np.eye(16), atol=1e-4)
    with pytest.raises(DeepfieldError, match="Orthogonal needs a tensor of rank 2 or more, got shape \\(5,\\)"):
        initializers.get("orthogonal")(torch.empty(5), 5, 5)


def test_truncated_normal_is_cut_at_two_stddev_and_not_rescaled() -> None:
    init = initializers.TruncatedNormal(mean=1.0, stddev=0.5)
    w = init(torch.empty(400, 500), 500, 400)
    assert float(w.min()) >= 0.0 and float(w.max()) <= 2.0
    assert float(w.mean()) == pytest.approx(1.0, abs=0.005)
    assert float(w.std()) == pytest.approx(0.5 * 0.87962566, rel=0.01)  # a cut normal's std, as Keras's
    theirs = keras.ops.convert_to_numpy(keras.initializers.TruncatedNormal(mean=1.0, stddev=0.5)((400, 500)))
    assert float(w.std()) == pytest.approx(float(theirs.std()), rel=0.01)
    assert float(initializers.get("truncated_normal")(torch.empty(400, 500), 1, 1).std()) == pytest.approx(
        0.05 * 0.87962566, rel=0.01)


@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
@pytest.mark.parametrize("distribution", ["truncated_normal", "untruncated_normal", "uniform"])
def test_variance_scaling_by_mode_and_distribution_on_a_channels_first_kernel(mode: str, distribution: str) -> None:
    init = initializers.VarianceScaling(scale=3.0, mode=mode, distribution=distribution)
    k = conv_kernel(init, filters=64, channels=32)  # fan_in 32*9 = 288, fan_out 64*9 = 576, as Keras counts them
    n = {"fan_in": 288, "fan_out": 576, "fan_avg": 432}[mode]
    std = math.sqrt(3.0 / n)
    assert float(k.std()) == pytest.approx(std, rel=0.03)
    bound = {"truncated_normal": 2 * std / 0.87962566, "uniform": math.sqrt(3) * std}.get(distribution)
    if bound is not None:
        assert float(k.abs().max()) <= bound + 1e-7
    else:
        assert float(k.abs().max()) > 2.5 * std  # not cut
    theirs = keras.initializers.VarianceScaling(scale=3.0, mode=mode, distribution=distribution)((3, 3, 32, 64))
    assert float(k.std()) == pytest.approx(float(keras.ops.convert_to_numpy(theirs).std()), rel=0.05)


def test_variance_scaling_takes_keras_normal_spelling_and_refuses_a_scale_of_zero() -> None:
    assert initializers.VarianceScaling(distribution="normal").distribution == "truncated_normal"
    with pytest.raises(DeepfieldError, match="VarianceScaling scale must be > 0, got 0"):
        initializers.VarianceScaling(scale=0)


def test_identity_equals_keras_on_a_dense_kernel_and_refuses_a_conv_kernel() -> None:
    w = dense_kernel(initializers.Identity(gain=0.5), 5, 3)
    keras_dense = keras.layers.Dense(5, kernel_initializer=keras.initializers.Identity(gain=0.5))
    keras_dense.build((None, 3))
    np.testing.assert_array_equal(w.numpy().T, keras.ops.convert_to_numpy(keras_dense.kernel))
    with pytest.raises(DeepfieldError, match=r"Identity needs a 2-d kernel \(Dense\), got shape \(16, 8, 3, 3\)"):
        conv_kernel("identity")


def test_new_initialisers_and_activations_round_trip_through_model_json(tmp_path) -> None:
    from deepfield.layers import Activation
    from deepfield.models.serialization import load_model, save_model

    model = Sequential([Dense(4, activation="mish", kernel_initializer=initializers.Orthogonal(gain=0.5)),
                        Activation("hard_sigmoid"),
                        Dense(2, kernel_initializer=initializers.VarianceScaling(2.0, "fan_out", "uniform"))],
                       input_shape=(3,))
    x = torch.randn(5, 3)
    want = model(x)
    save_model(model, tmp_path)
    again = load_model(tmp_path)
    assert torch.equal(again(x), want)
    first = next(m for m in again.modules() if isinstance(m, Dense))
    assert first.kernel_initializer.get_config() == {"gain": 0.5}
