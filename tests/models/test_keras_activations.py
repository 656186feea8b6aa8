"""relu6, hard_sigmoid, mish, softsign, silu/swish, gelu (and hard_silu): Keras 3's definitions, in every layer."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from deepfield.layers import Activation, Conv2D, Dense
from deepfield.models import activations
from deepfield.training import Sequential

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

NAMES = ["relu6", "hard_sigmoid", "mish", "softsign", "silu", "swish", "gelu", "hard_silu", "hard_swish"]
# Dense around the kinks (0, +-3, 6) and the tails.
X = np.concatenate([np.linspace(-8, 8, 801), [-3, -3 + 1e-4, 3 - 1e-4, 3, 6, 6 + 1e-4, -20, 20]]).astype("float32")


@pytest.mark.parametrize("name", NAMES)
def test_values_equal_keras_activations(name: str) -> None:
    ours = activations.get(name)(torch.from_numpy(X)).numpy()
    theirs = keras.ops.convert_to_numpy(keras.activations.get(name)(keras.ops.convert_to_tensor(X)))
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)


def test_keras_3_slopes_and_defaults() -> None:
    """Keras 3's hard_sigmoid is relu6(x + 3) / 6 (Keras 2's was 0.2 x + 0.5); its gelu is the exact erf form."""
    hard = activations.get("hard_sigmoid")(torch.tensor([-3.0, 0.0, 1.5, 3.0]))
    assert hard.tolist() == pytest.approx([0.0, 0.5, 0.75, 1.0])
    x = torch.tensor([1.0])
    assert float(activations.get("gelu")(x)) == pytest.approx(float(0.5 * (1 + torch.erf(x / 2**0.5))), abs=1e-7)
    assert float(activations.get("gelu")(x)) != pytest.approx(float(torch.nn.functional.gelu(x, approximate="tanh")),
                                                               abs=1e-5)


@pytest.mark.parametrize("name", ["relu6", "hard_sigmoid", "mish", "softsign", "swish", "gelu"])
def test_usable_in_every_layer_and_as_an_activation_layer(name: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3, 6, 6)).astype("float32") * 3
    ours = Sequential([Conv2D(2, 3, activation=name), Activation(name)], input_shape=(3, 6, 6))
    out = ours(torch.from_numpy(x)).detach().numpy()
    conv = next(m for m in ours.modules() if isinstance(m, Conv2D))
    theirs = keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Conv2D(2, 3, activation=name),
                               keras.layers.Activation(name)])
    theirs.layers[0].set_weights([conv.weight.detach().permute(2, 3, 1, 0).numpy(), conv.bias.detach().numpy()])
    want = keras.ops.convert_to_numpy(theirs(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-5)
    dense = Sequential([Dense(5, activation=name)], input_shape=(3,))
    assert dense(torch.from_numpy(x[:, :, 0, 0])).shape == (4, 5)
