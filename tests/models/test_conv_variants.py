"""Transposed, depthwise and separable convolutions against Keras 3 (same weights, channels_first), against
the adjoint of deepfield's own convolution (TensorFlow's definition), parameter counts, configs and errors."""
import json

import numpy as np
import pytest
import torch

from deepfield.errors import DeepfieldError
from deepfield.models import (
    Conv1D, Conv1DTranspose, Conv2D, Conv2DTranspose, Conv3D, Conv3DTranspose, DepthwiseConv1D, DepthwiseConv2D,
    SeparableConv1D, SeparableConv2D, constraints,
)
from deepfield.models.sequential import Sequential
from deepfield.models.summary import summarize

from keras_layer_reference import keras, keras_params, run_keras

rng = np.random.default_rng(2)
TRANSPOSED = {1: (Conv1DTranspose, keras.layers.Conv1DTranspose, Conv1D),
              2: (Conv2DTranspose, keras.layers.Conv2DTranspose, Conv2D),
              3: (Conv3DTranspose, keras.layers.Conv3DTranspose, Conv3D)}

# (rank, input sample shape, arguments)
TRANSPOSE_CASES = [
    (2, (3, 5, 4), dict(filters=2, kernel_size=3)),
    (2, (3, 5, 4), dict(filters=2, kernel_size=3, strides=2)),
    (2, (3, 5, 4), dict(filters=2, kernel_size=3, strides=2, padding="same")),
    (2, (3, 5, 4), dict(filters=2, kernel_size=4, strides=2, padding="same")),
    (2, (3, 5, 4), dict(filters=2, kernel_size=(2, 3), strides=(3, 2), padding="same")),
    (2, (3, 5, 4), dict(filters=2, kernel_size=2, strides=3)),  # valid with s > k: zeros (and bias) at the end
    (2, (3, 5, 4), dict(filters=2, kernel_size=3, strides=2, output_padding=1)),
    (2, (3, 5, 4), dict(filters=2, kernel_size=3, strides=(2, 3), padding="same", output_padding=(1, 0))),
    (2, (3, 5, 4), dict(filters=2, kernel_size=3, padding="same", dilation_rate=2)),
    (2, (3, 5, 4), dict(filters=2, kernel_size=3, dilation_rate=(2, 1), activation="relu", use_bias=False)),
    (1, (3, 7), dict(filters=4, kernel_size=5, strides=2, padding="same")),
    (1, (3, 7), dict(filters=4, kernel_size=2, strides=2)),
    (3, (2, 3, 4, 3), dict(filters=2, kernel_size=3, strides=2, padding="same")),
    (3, (2, 3, 4, 3), dict(filters=2, kernel_size=(1, 2, 3), strides=(1, 2, 2))),
]


def _transposed(rank, shape, args):
    torch.manual_seed(0)
    layer = TRANSPOSED[rank][0](**args, bias_initializer="random_normal")
    x = torch.from_numpy(rng.normal(size=(2, *shape)).astype(np.float32))
    return layer, x, layer(x)


@pytest.mark.parametrize("rank, shape, args", TRANSPOSE_CASES)
def test_transposed_matches_keras(rank, shape, args):
    layer, x, got = _transposed(rank, shape, args)
    theirs = TRANSPOSED[rank][1](**args, data_format="channels_first")
    theirs.build((None, *shape))
    theirs.set_weights([constraints.conv_layout(rank).to_keras(layer.weight).detach().numpy()]
                       + ([layer.bias.detach().numpy()] if layer.use_bias else []))
    expected = run_keras(theirs, x.numpy())
    assert got.shape == expected.shape
    assert sum(p.numel() for p in layer.parameters()) == theirs.count_params()
    np.testing.assert_allclose(got.detach().numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("rank, shape, args", TRANSPOSE_CASES)
def test_transposed_is_the_adjoint_of_the_tensorflow_convolution(rank, shape, args):
    """TensorFlow's conv_transpose is the input gradient of its convolution of the output's size:
    deepfield's Conv (TensorFlow's 'same') with the transposed weights, differentiated."""
    layer, x, got = _transposed(rank, shape, {**args, "activation": None, "use_bias": False})
    out_shape = got.shape[2:]
    strides = layer.strides
    if args.get("padding") == "same" and any(-(-o // s) != n for o, s, n in zip(out_shape, strides, shape[1:])):
        pytest.skip("not the adjoint of a 'same' convolution of this size")
    conv = TRANSPOSED[rank][2](shape[0], layer.kernel_size, strides=strides, padding=args.get("padding", "valid"),
                               dilation_rate=layer.dilation_rate, use_bias=False)
    u = torch.zeros(2, layer.filters, *out_shape, requires_grad=True)
    conv(u)
    with torch.no_grad():
        conv.weight.copy_(layer.weight)  # (C, filters, *k): a convolution from filters to C channels
    adjoint, = torch.autograd.grad(conv(u), u, grad_outputs=x)
    torch.testing.assert_close(got, adjoint, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls, keras_cls, shape, args", [
    (DepthwiseConv2D, keras.layers.DepthwiseConv2D, (3, 6, 5), dict(kernel_size=3)),
    (DepthwiseConv2D, keras.layers.DepthwiseConv2D, (3, 6, 5),
     dict(kernel_size=(3, 2), strides=2, padding="same", depth_multiplier=2, activation="relu")),
    (DepthwiseConv2D, keras.layers.DepthwiseConv2D, (2, 7, 7),
     dict(kernel_size=3, dilation_rate=2, depth_multiplier=3)),
    (DepthwiseConv1D, keras.layers.DepthwiseConv1D, (3, 9), dict(kernel_size=3, strides=2, padding="same",
                                                                depth_multiplier=2)),
])
def test_depthwise_matches_keras(cls, keras_cls, shape, args):
    torch.manual_seed(0)
    layer = cls(**args, bias_initializer="random_normal")
    x = torch.from_numpy(rng.normal(size=(2, *shape)).astype(np.float32))
    got = layer(x)
    rank = len(shape) - 1
    theirs = keras_cls(**args, data_format="channels_first")
    theirs.build((None, *shape))
    layout = constraints.depthwise_layout(rank, layer.depth_multiplier)
    theirs.set_weights([layout.to_keras(layer.weight).detach().numpy(), layer.bias.detach().numpy()])
    np.testing.assert_allclose(got.detach().numpy(), run_keras(theirs, x.numpy()), atol=1e-5)
    assert sum(p.numel() for p in layer.parameters()) == keras_params(keras_cls(**args), shape[1:] + shape[:1])


@pytest.mark.parametrize("cls, keras_cls, shape, args", [
    (SeparableConv2D, keras.layers.SeparableConv2D, (3, 6, 5), dict(filters=4, kernel_size=3)),
    (SeparableConv2D, keras.layers.SeparableConv2D, (3, 6, 5),
     dict(filters=2, kernel_size=3, strides=2, padding="same", depth_multiplier=2, activation="tanh")),
    (SeparableConv1D, keras.layers.SeparableConv1D, (3, 9), dict(filters=5, kernel_size=2, dilation_rate=2)),
])
def test_separable_matches_keras(cls, keras_cls, shape, args):
    torch.manual_seed(0)
    layer = cls(**args, bias_initializer="random_normal")
    x = torch.from_numpy(rng.normal(size=(2, *shape)).astype(np.float32))
    got = layer(x)
    rank = len(shape) - 1
    theirs = keras_cls(**args, data_format="channels_first")
    theirs.build((None, *shape))
    m = layer.depth_multiplier
    theirs.set_weights([constraints.depthwise_layout(rank, m).to_keras(layer.depthwise.weight).detach().numpy(),
                        constraints.conv_layout(rank).to_keras(layer.pointwise_weight).detach().numpy(),
                        layer.bias.detach().numpy()])
    np.testing.assert_allclose(got.detach().numpy(), run_keras(theirs, x.numpy()), atol=1e-5)
    assert sum(p.numel() for p in layer.parameters()) == keras_params(keras_cls(**args), shape[1:] + shape[:1])


def test_summary_counts_and_json_round_trip():
    model = Sequential([Conv2DTranspose(4, 3, strides=2, padding="same", output_padding=1, kernel_regularizer="l2"),
                        DepthwiseConv2D(3, depth_multiplier=2, padding="same", depthwise_constraint="non_neg"),
                        SeparableConv2D(3, 3, pointwise_regularizer="l1", depthwise_constraint="unit_norm"),
                        Conv2DTranspose(1, 2)], input_shape=(2, 5, 5))
    model.build()
    summary = summarize(model)
    assert [row.params for row in summary.rows] == [2 * 4 * 9 + 4, 4 * 2 * 9 + 8, 8 * 9 + 8 * 3 + 3, 3 * 1 * 4 + 1]
    config = json.loads(json.dumps(model.get_config()))
    again = Sequential.from_config(config)
    again.build()
    again.load_state_dict(model.state_dict())
    x = torch.randn(2, 2, 5, 5)
    torch.testing.assert_close(again(x), model(x))
    assert sorted(model.state_dict()) == sorted(again.state_dict())
    assert "separable_conv2d.depthwise.weight" in model.state_dict()


@pytest.mark.parametrize("make, message", [
    (lambda: Conv2DTranspose(2, 3, padding="full"), "Conv2DTranspose padding must be 'valid' or 'same'"),
    (lambda: Conv2DTranspose(2, 3, strides=2, output_padding=2), "output_padding must be non-negative and smaller"),
    (lambda: Conv1DTranspose(2, 0), "Conv1DTranspose kernel_size must be positive"),
    (lambda: DepthwiseConv2D(3, depth_multiplier=0), "DepthwiseConv2D depth_multiplier must be"),
    (lambda: SeparableConv2D(0, 3), "SeparableConv2D filters must be"),
])
def test_bad_arguments_give_one_line(make, message):
    with pytest.raises(DeepfieldError) as err:
        make()
    assert message in str(err.value) and "\n" not in str(err.value)
