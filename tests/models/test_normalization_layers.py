"""LayerNormalization and GroupNormalization against Keras 3 (same arrays, same axes), defaults, configs, errors."""
import json

import numpy as np
import pytest
import torch

from deepfield.errors import DeepfieldError
from deepfield.models import GroupNormalization, LayerNormalization
from deepfield.models.sequential import Sequential
from deepfield.models.summary import summarize

from keras_layer_reference import keras, keras_params, run_keras

rng = np.random.default_rng(3)
X = (3 * rng.normal(size=(2, 4, 5, 6)) + 1).astype(np.float32)


def _randomise(layer):
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape))
    return [p.detach().numpy() for p in (layer.gamma, layer.beta) if p is not None]


@pytest.mark.parametrize("args", [dict(axis=1), dict(axis=-1), dict(axis=[1, 2, 3]), dict(axis=[2, 3]),
                                  dict(axis=[1, 3], epsilon=0.1), dict(axis=2, center=False),
                                  dict(axis=[-1, 1], scale=False)])
def test_layer_norm_matches_keras_on_the_same_axes(args):
    ours = LayerNormalization(**args)
    ours(torch.from_numpy(X))
    # Keras 3.15's torch backend fails on one axis that is not the last (F.layer_norm wants trailing axes):
    # there the same axis is moved last for Keras and back
    moved = isinstance(args["axis"], int) and args["axis"] % 4 != 3
    x = np.moveaxis(X, args["axis"], -1) if moved else X
    theirs = keras.layers.LayerNormalization(**{**args, "axis": -1 if moved else args["axis"]})
    theirs.build(x.shape)
    # Keras shapes gamma by the axes sorted as given ([-1, 1]: (W, C)) but lays it out by position, as here
    theirs.set_weights([w.reshape(v.shape) for w, v in zip(_randomise(ours), theirs.weights)])
    expected = run_keras(theirs, x)
    expected = np.moveaxis(expected, -1, args["axis"]) if moved else expected
    np.testing.assert_allclose(ours(torch.from_numpy(X)).detach().numpy(), expected, atol=1e-5)
    assert sum(p.numel() for p in ours.parameters()) == theirs.count_params()


def test_layer_norm_default_is_keras_default_in_channels_last():
    ours = LayerNormalization()
    assert ours.axis == 1
    ours(torch.from_numpy(X))
    theirs = keras.layers.LayerNormalization()  # axis=-1 on (N, H, W, C)
    theirs.build(X.transpose(0, 2, 3, 1).shape)
    theirs.set_weights(_randomise(ours))
    expected = run_keras(theirs, X.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(ours(torch.from_numpy(X)).detach().numpy(), expected, atol=1e-5)
    table = rng.normal(size=(3, 7)).astype(np.float32)  # a table: axis 1 is -1
    np.testing.assert_allclose(LayerNormalization()(torch.from_numpy(table)).detach().numpy(),
                               run_keras(keras.layers.LayerNormalization(), table), atol=1e-5)


@pytest.mark.parametrize("args", [dict(groups=2), dict(groups=4, epsilon=0.01), dict(groups=-1), dict(groups=1),
                                  dict(groups=2, axis=-1, center=False), dict(groups=3, axis=3)])
def test_group_norm_matches_keras_on_the_same_axis(args):
    keras_args = {"axis": 1, **args}
    ours = GroupNormalization(**args)
    ours(torch.from_numpy(X))
    theirs = keras.layers.GroupNormalization(**keras_args)
    theirs.build(X.shape)
    theirs.set_weights(_randomise(ours))
    np.testing.assert_allclose(ours(torch.from_numpy(X)).detach().numpy(), run_keras(theirs, X), atol=1e-5)
    assert sum(p.numel() for p in ours.parameters()) == keras_params(keras.layers.GroupNormalization(**keras_args),
                                                                     X.shape[1:])


def test_group_norm_default_is_keras_default_in_channels_last():
    x = rng.normal(size=(2, 64, 3, 3)).astype(np.float32)
    ours = GroupNormalization()
    assert (ours.groups, ours.axis, ours.epsilon) == (32, 1, 0.001)
    ours(torch.from_numpy(x))
    theirs = keras.layers.GroupNormalization()
    theirs.build(x.transpose(0, 2, 3, 1).shape)
    theirs.set_weights(_randomise(ours))
    expected = run_keras(theirs, x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(ours(torch.from_numpy(x)).detach().numpy(), expected, atol=1e-5)


def test_summary_and_json_round_trip():
    model = Sequential([LayerNormalization(axis=[1, 2], gamma_regularizer="l2"), GroupNormalization(2, epsilon=0.1)],
                       input_shape=(4, 5, 6))
    model.build()
    assert [row.params for row in summarize(model).rows] == [2 * 20, 8]
    config = json.loads(json.dumps(model.get_config()))
    again = Sequential.from_config(config)
    again.build()
    again.load_state_dict(model.state_dict())
    torch.testing.assert_close(again(torch.from_numpy(X)), model(torch.from_numpy(X)))
    assert again.get_config() == config


@pytest.mark.parametrize("make, shape, message", [
    (lambda: LayerNormalization(axis=0), (4, 5), "LayerNormalization 'layer_normalization': axis 0 is not a feature"),
    (lambda: LayerNormalization(axis="channels"), None, "LayerNormalization axis must be an int or a list of ints"),
    (lambda: GroupNormalization(3), (4, 5), "4 channels cannot be split into 3 equal groups"),
    (lambda: GroupNormalization(0), None, "GroupNormalization groups must be a positive integer or -1, got 0"),
    (lambda: LayerNormalization(epsilon=0), None, "LayerNormalization epsilon must be positive, got 0"),
])
def test_bad_arguments_give_one_line(make, shape, message):
    with pytest.raises(DeepfieldError) as err:
        layer = make()
        layer(torch.zeros(2, *shape))
    assert message in str(err.value) and "\n" not in str(err.value)
