"""Functional models (``df.Input``, layers on symbolic tensors, ``df.Model(inputs, outputs)``) against Keras 3
itself (torch backend, channels_first) with the same weights; their training, summary, files and errors."""
import os

import numpy as np
import pytest
import torch

import deepfield as df
from deepfield.errors import DeepfieldError
from deepfield.layers import (Add, BatchNormalization, Concatenate, Conv2D, Dense, Dropout, Flatten, MaxPooling2D)

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

RNG = np.random.default_rng(1)


def copy_weights(model, k_model) -> None:
    """Put deepfield's weights into the Keras model's layers of the same names (kernels to Keras's order)."""
    for name, layer in model.named_modules():
        if not hasattr(layer, "weight") or layer.weight is None or not name:
            continue
        k_layer = k_model.get_layer(name.split(".")[-1])
        w = layer.weight.detach().numpy()
        if isinstance(layer, Dense):
            values = [w.T, layer.bias.detach().numpy()]
        elif isinstance(layer, Conv2D):
            values = [w.transpose(2, 3, 1, 0), layer.bias.detach().numpy()]
        elif isinstance(layer, BatchNormalization):
            values = [w, layer.bias.detach().numpy(), layer.running_mean.numpy(), layer.running_var.numpy()]
        else:
            raise AssertionError(type(layer))
        k_layer.set_weights(values)


def keras_numpy(outputs):
    if isinstance(outputs, (list, tuple)):
        return [keras.ops.convert_to_numpy(o) for o in outputs]
    return keras.ops.convert_to_numpy(outputs)


def residual_two_input_pair():
    """The same two-input, two-output graph (skip connection, merge, shared Dense) in deepfield and in Keras."""
    image, ebv = df.Input((2, 8, 8), name="image"), df.Input((1,), name="ebv")
    x = Conv2D(4, 3, padding="same", activation="relu", name="c1")(image)
    y = Conv2D(4, 3, padding="same", name="c2")(x)
    x = MaxPooling2D(name="pool")(Add(name="skip")([x, y]))
    x = Concatenate(name="join")([Flatten(name="flat")(x), ebv])
    shared = Dense(6, activation="tanh", name="shared")
    h = shared(Dense(6, name="pre")(x))
    h2 = shared(h)  # the same layer twice: one set of weights
    z = Dense(1, name="z")(h2)
    cls = Dense(3, activation="softmax", name="cls")(h)
    model = df.Model([image, ebv], [z, cls], name="pair")

    k_image, k_ebv = keras.Input((2, 8, 8), name="image"), keras.Input((1,), name="ebv")
    kx = keras.layers.Conv2D(4, 3, padding="same", activation="relu", data_format="channels_first", name="c1")(k_image)
    ky = keras.layers.Conv2D(4, 3, padding="same", data_format="channels_first", name="c2")(kx)
    kx = keras.layers.MaxPooling2D(data_format="channels_first", name="pool")(keras.layers.Add(name="skip")([kx, ky]))
    kx = keras.layers.Concatenate(name="join")([keras.layers.Flatten(name="flat")(kx), k_ebv])
    k_shared = keras.layers.Dense(6, activation="tanh", name="shared")
    kh = k_shared(keras.layers.Dense(6, name="pre")(kx))
    kz = keras.layers.Dense(1, name="z")(k_shared(kh))
    kc = keras.layers.Dense(3, activation="softmax", name="cls")(kh)
    k_model = keras.Model([k_image, k_ebv], [kz, kc])
    copy_weights(model, k_model)
    return model, k_model


def data(n=16):
    x = [RNG.normal(size=(n, 2, 8, 8)).astype("float32"), RNG.normal(size=(n, 1)).astype("float32")]
    y = [RNG.normal(size=(n, 1)).astype("float32"), np.eye(3, dtype="float32")[RNG.integers(0, 3, n)]]
    return x, y


# -- the graph ------------------------------------------------------------------------------

def test_a_two_input_two_output_graph_equals_keras_with_the_same_weights():
    model, k_model = residual_two_input_pair()
    x, _ = data()
    with torch.no_grad():
        got = model(*map(torch.from_numpy, x))
    for ours, theirs in zip(got, keras_numpy(k_model(x))):
        np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-5)


def test_a_shared_layer_has_one_set_of_weights_named_by_the_layer():
    model, _ = residual_two_input_pair()
    keys = list(model.state_dict())
    assert keys == ["c1.weight", "c1.bias", "c2.weight", "c2.bias", "pre.weight", "pre.bias",
                    "shared.weight", "shared.bias", "z.weight", "z.bias", "cls.weight", "cls.bias"]
    assert sum(p.numel() for p in model.parameters()) == keras.Model.count_params(residual_two_input_pair()[1])


def test_inputs_by_position_list_or_dict_give_the_same_outputs():
    model, _ = residual_two_input_pair()
    x = [torch.from_numpy(a) for a in data()[0]]
    with torch.no_grad():
        a = model(*x)
        b = model(x)
        c = model({"ebv": x[1], "image": x[0]})
    for u, v, w in zip(a, b, c):
        torch.testing.assert_close(u, v)
        torch.testing.assert_close(u, w)


def test_symbolic_shapes_and_names_follow_keras():
    image = df.Input((3, 16, 16))
    assert image.shape == (None, 3, 16, 16)
    x = Conv2D(8, 3, strides=2)(image)
    assert x.shape == (None, 8, 7, 7)
    out = Dense(2)(Flatten()(x))
    model = df.Model(inputs=image, outputs=out)
    assert model.input_names == ["input_layer"]
    assert model.output_names == ["dense"]
    assert [name for name, _ in model.named_children()] == ["conv2d", "flatten", "dense"]
    assert model.input_shape == (3, 16, 16) and model.output_shape == (2,)
    assert isinstance(model, df.Model) and isinstance(model, df.Functional) and isinstance(model, torch.nn.Module)


def test_a_dict_of_outputs_names_them_and_returns_a_dict():
    inp = df.Input((4,))
    model = df.Model(inp, {"mag": Dense(1)(inp), "kind": Dense(2)(inp)})
    assert model.output_names == ["mag", "kind"]
    out = model(torch.randn(3, 4))
    assert list(out) == ["mag", "kind"] and out["kind"].shape == (3, 2)


def test_model_of_a_module_still_wraps_it():
    module = torch.nn.Linear(3, 2)
    model = df.Model(module)
    assert type(model) is df.Model and model.module is module


def test_a_nested_functional_model_is_one_layer_with_its_weights_under_its_name():
    inp = df.Input((4,))
    encoder = df.Model(inp, Dense(3, activation="relu", name="code")(inp), name="encoder")
    outer_in = df.Input((4,))
    model = df.Model(outer_in, Dense(1, name="out")(encoder(outer_in)))
    assert list(model.state_dict()) == ["encoder.code.weight", "encoder.code.bias", "out.weight", "out.bias"]
    x = torch.randn(5, 4)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.out(encoder(x)))


def test_a_sequential_is_a_layer_of_a_functional_model():
    inp = df.Input((4,))
    stack = df.Sequential([Dense(6, activation="relu"), Dense(2)], name="stack")
    model = df.Model(inp, Add()([stack(inp), Dense(2, name="linear")(inp)]))
    x = torch.randn(5, 4)
    with torch.no_grad():
        torch.testing.assert_close(model(x), stack(x) + model.linear(x))


def test_a_built_layer_called_on_tensors_costs_one_test_more_than_before_nothing_symbolic():
    layer = Dense(2)
    layer(torch.randn(1, 3))  # built
    calls = []
    original = df.layers.Dense.build_for
    try:
        df.layers.Dense.build_for = lambda *a, **k: calls.append(a)
        layer(torch.randn(4, 3))
    finally:
        df.layers.Dense.build_for = original
    assert calls == []


# -- errors -----------------------------------------------------------------------------------

def test_a_layer_on_an_incompatible_shape_is_one_line_naming_it_and_the_shape():
    inp = df.Input((3, 2, 2))
    with pytest.raises(DeepfieldError) as err:
        Conv2D(4, 5, name="big")(inp)
    message = str(err.value)
    assert message.startswith("Conv2D 'big' cannot take inputs of shape (None, 3, 2, 2): ")
    assert "\n" not in message


def test_a_dense_on_a_wrong_width_after_sharing_names_the_layer():
    shared = Dense(2, name="shared")
    shared(df.Input((4,)))
    with pytest.raises(DeepfieldError, match=r"Dense 'shared' cannot take inputs of shape \(None, 5\)"):
        shared(df.Input((5,)))


def test_an_output_not_reachable_from_the_inputs_is_refused():
    a, b = df.Input((4,), name="a"), df.Input((3,), name="b")
    out = Dense(1)(Concatenate()([a, b]))
    with pytest.raises(DeepfieldError, match=r"output 0 \(\(None, 1\)\) is not connected to the model's inputs: "
                                             r"it needs the Input 'b' of shape \(None, 3\), which is not among them"):
        df.Model(a, out)


def test_an_input_not_used_is_refused():
    a, b = df.Input((4,), name="a"), df.Input((3,), name="b")
    with pytest.raises(DeepfieldError, match=r"model input b \(None, 3\) is not used by any output"):
        df.Model([a, b], Dense(1)(a))


def test_two_layers_with_one_name_are_refused():
    a = df.Input((4,), name="a")
    with pytest.raises(DeepfieldError, match=r"the name 'h' is used twice \(a Dense and a Dense\)"):
        df.Model(a, Dense(1, name="h")(Dense(2, name="h")(a)))


def test_a_layer_named_like_an_input_is_refused():
    a = df.Input((4,), name="x")
    with pytest.raises(DeepfieldError, match=r"the name 'x' is used twice \(an Input and a Dense\)"):
        df.Model(a, Dense(1, name="x")(a))


def test_inputs_must_be_inputs():
    a = df.Input((4,))
    h = Dense(2)(a)
    with pytest.raises(DeepfieldError, match="model inputs must come from df.Input"):
        df.Model(h, Dense(1)(h))


def test_a_layer_too_big_is_refused_before_anything_is_allocated():
    with pytest.raises(DeepfieldError, match=r"Dense 'huge' would hold .* parameters"):
        Dense(2**30, name="huge")(df.Input((1000,)))


def test_extra_call_arguments_are_refused():
    with pytest.raises(DeepfieldError, match="is called on its input tensor"):
        Dropout(0.5)(df.Input((4,)), training=True)
