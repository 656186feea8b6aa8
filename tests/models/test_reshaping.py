"""Shape layers against Keras 3 (channels_first where Keras has the option), configs and errors; every public
layer exported."""
import importlib
import inspect
import json
import pkgutil

import numpy as np
import pytest
import torch

import deepfield.layers
import deepfield.models
from deepfield.errors import DeepfieldError
from deepfield.models import (
    Cropping1D, Cropping2D, Cropping3D, Permute, RepeatVector, Reshape, UpSampling1D, UpSampling2D,
    UpSampling3D, ZeroPadding1D, ZeroPadding2D, ZeroPadding3D,
)
from deepfield.models.base import Layer, layer_from_config
from deepfield.models.sequential import Sequential

from keras_layer_reference import keras, run_keras

rng = np.random.default_rng(0)
X1 = rng.normal(size=(2, 3, 7)).astype(np.float32)
X2 = rng.normal(size=(2, 3, 5, 6)).astype(np.float32)
X3 = rng.normal(size=(2, 2, 4, 5, 3)).astype(np.float32)
CF = {"data_format": "channels_first"}

CASES = [  # (deepfield layer, keras layer, input)
    (Reshape((6, 15)), keras.layers.Reshape((6, 15)), X2),
    (Reshape((-1, 5)), keras.layers.Reshape((-1, 5)), X2),
    (Permute((2, 1)), keras.layers.Permute((2, 1)), X1),
    (Permute((3, 1, 2)), keras.layers.Permute((3, 1, 2)), X2),
    (ZeroPadding1D(), keras.layers.ZeroPadding1D(data_format="channels_first"), X1),
    (ZeroPadding1D((1, 3)), keras.layers.ZeroPadding1D((1, 3), data_format="channels_first"), X1),
    (ZeroPadding2D(), keras.layers.ZeroPadding2D(**CF), X2),
    (ZeroPadding2D((1, 2)), keras.layers.ZeroPadding2D((1, 2), **CF), X2),
    (ZeroPadding2D(((0, 1), (2, 3))), keras.layers.ZeroPadding2D(((0, 1), (2, 3)), **CF), X2),
    (ZeroPadding3D(), keras.layers.ZeroPadding3D(**CF), X3),
    (ZeroPadding3D(((0, 1), (2, 0), (1, 1))), keras.layers.ZeroPadding3D(((0, 1), (2, 0), (1, 1)), **CF), X3),
    (Cropping2D(((1, 0), (2, 1))), keras.layers.Cropping2D(((1, 0), (2, 1)), **CF), X2),
    (Cropping2D(1), keras.layers.Cropping2D(1, **CF), X2),
    (Cropping3D(), keras.layers.Cropping3D(**CF), X3),
    (Cropping3D((0, 1, 1)), keras.layers.Cropping3D((0, 1, 1), **CF), X3),
    (UpSampling2D(), keras.layers.UpSampling2D(**CF), X2),
    (UpSampling2D((2, 3)), keras.layers.UpSampling2D((2, 3), **CF), X2),
    (UpSampling2D((2, 3), interpolation="bilinear"),
     keras.layers.UpSampling2D((2, 3), interpolation="bilinear", **CF), X2),
    (UpSampling3D((1, 2, 3)), keras.layers.UpSampling3D((1, 2, 3), **CF), X3),
]


@pytest.mark.parametrize("ours, theirs, x", CASES, ids=lambda c: getattr(c, "label", None) and repr(c))
def test_matches_keras_channels_first(ours, theirs, x):
    expected = run_keras(theirs, x)
    got = ours(torch.from_numpy(x)).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_one_dimensional_layers_match_keras_on_channels_last_sequences():
    # Keras's Cropping1D and UpSampling1D are channels-last only: (N, L, C) there is (N, C, L) here
    last = X1.transpose(0, 2, 1)
    for ours, theirs in ((Cropping1D(), keras.layers.Cropping1D()),
                         (Cropping1D((0, 2)), keras.layers.Cropping1D((0, 2))),
                         (UpSampling1D(3), keras.layers.UpSampling1D(3)),
                         (UpSampling1D(), keras.layers.UpSampling1D())):
        np.testing.assert_allclose(ours(torch.from_numpy(X1)).numpy(), run_keras(theirs, last).transpose(0, 2, 1))


def test_repeat_vector_gives_features_by_steps():
    x = rng.normal(size=(2, 4)).astype(np.float32)
    got = RepeatVector(3)(torch.from_numpy(x)).numpy()
    assert got.shape == (2, 4, 3)  # (N, F, n): channels-first; Keras gives (N, n, F)
    np.testing.assert_allclose(got, run_keras(keras.layers.RepeatVector(3), x).transpose(0, 2, 1))


def test_keras_defaults():
    assert ZeroPadding2D().padding == ((1, 1), (1, 1)) and ZeroPadding1D().padding == ((1, 1),)
    assert Cropping1D().cropping == ((1, 1),) and Cropping2D().cropping == ((0, 0), (0, 0))
    assert UpSampling1D().size == (2,) and UpSampling2D().size == (2, 2) and UpSampling3D().size == (2, 2, 2)
    assert UpSampling2D().interpolation == "nearest"


def test_sequential_of_shape_layers_saves_and_loads_through_json():
    model = Sequential([ZeroPadding2D(((0, 1), (2, 3))), Cropping2D(1), UpSampling2D(2, interpolation="bilinear"),
                        Permute((1, 3, 2)), Reshape((-1,)), RepeatVector(2)], input_shape=(3, 5, 6))
    model.build()
    config = json.loads(json.dumps(model.get_config()))
    again = Sequential.from_config(config)
    x = torch.from_numpy(X2)
    torch.testing.assert_close(again(x), model(x))
    assert config == again.get_config()
    assert layer_from_config({"class_name": "ZeroPadding3D", "config": {}}).padding == ((1, 1),) * 3


@pytest.mark.parametrize("make, message", [
    (lambda: Reshape((2, -1, -1)), "at most one -1"),
    (lambda: Reshape("4x4"), "Reshape target_shape must be a list"),
    (lambda: Permute((0, 1)), "Permute dims must be a permutation of 1..n"),
    (lambda: ZeroPadding2D((1, 2, 3)), "ZeroPadding2D padding must be an int, 2 ints or 2 (before, after) pairs"),
    (lambda: Cropping2D(-1), "Cropping2D cropping must be made of non-negative integers"),
    (lambda: UpSampling2D(interpolation="bicubic"), "UpSampling2D interpolation must be 'nearest' or 'bilinear'"),
    (lambda: UpSampling3D((2, 2)), "UpSampling3D size must be an int or 3 ints"),
    (lambda: RepeatVector(0), "RepeatVector n must be"),
])
def test_bad_arguments_give_one_line(make, message):
    with pytest.raises(DeepfieldError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        make()
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("layer, shape, message", [
    (Reshape((7, 7)), (3, 5, 6), "cannot reshape samples of shape (3, 5, 6) (90 numbers) to (7, 7)"),
    (Permute((2, 1)), (3, 5, 6), "dims (2, 1) permute 2 axes, the input (N, 3, 5, 6) has 3"),
    (Cropping2D(3), (3, 5, 6), "leaves nothing"),
    (ZeroPadding2D(), (3, 5), "expects (N, C, H, W) input, got shape (N, 3, 5)"),
    (RepeatVector(2), (3, 5), "expects (N, features) input"),
])
def test_bad_inputs_name_the_layer(layer, shape, message):
    with pytest.raises(DeepfieldError) as err:
        layer(torch.zeros(1, *shape))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_every_public_layer_is_exported():
    names = set()
    for info in pkgutil.iter_modules(deepfield.models.__path__, "deepfield.models."):
        module = importlib.import_module(info.name)
        names |= {n for n, v in vars(module).items() if inspect.isclass(v) and issubclass(v, Layer)
                  and v.__module__ == module.__name__ and not n.startswith("_")}
    missing = sorted(n for n in names if n not in deepfield.models.__all__ or not hasattr(deepfield.layers, n))
    assert missing == []
