"""The merging layers against Keras 3 itself (torch backend) on the same inputs, and their errors."""
import os

import numpy as np
import pytest
import torch

from deepfield.errors import DeepfieldError
from deepfield.models import Add, Average, Concatenate, Dense, Functional, Input, Maximum, Minimum, Multiply, Subtract

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

RNG = np.random.default_rng(0)
SHAPE = (5, 3, 4, 6)  # (N, C, H, W): channels first


def arrays(k: int, shape=SHAPE) -> list[np.ndarray]:
    return [RNG.normal(size=shape).astype("float32") for _ in range(k)]


def keras_out(layer, xs):
    return keras.ops.convert_to_numpy(layer([keras.ops.convert_to_tensor(x) for x in xs]))


@pytest.mark.parametrize("name", ["Add", "Multiply", "Average", "Maximum", "Minimum"])
def test_elementwise_merges_equal_keras_on_three_inputs(name):
    xs = arrays(3)
    ours = {"Add": Add, "Multiply": Multiply, "Average": Average, "Maximum": Maximum, "Minimum": Minimum}[name]()
    got = ours([torch.from_numpy(x) for x in xs]).numpy()
    np.testing.assert_allclose(got, keras_out(getattr(keras.layers, name)(), xs), rtol=1e-6, atol=1e-6)


def test_subtract_equals_keras():
    xs = arrays(2)
    got = Subtract()([torch.from_numpy(x) for x in xs]).numpy()
    np.testing.assert_allclose(got, keras_out(keras.layers.Subtract(), xs), atol=1e-6)


def test_concatenate_joins_channels_by_default_as_keras_axis_1_does_on_channels_first():
    a, b = arrays(1)[0], RNG.normal(size=(5, 2, 4, 6)).astype("float32")
    got = Concatenate()([torch.from_numpy(a), torch.from_numpy(b)]).numpy()
    assert got.shape == (5, 5, 4, 6)
    np.testing.assert_array_equal(got, keras_out(keras.layers.Concatenate(axis=1), [a, b]))


def test_concatenate_axis_minus_one_is_keras_axis_minus_one():
    a, b = arrays(1)[0], RNG.normal(size=(5, 3, 4, 2)).astype("float32")
    got = Concatenate(axis=-1)([torch.from_numpy(a), torch.from_numpy(b)]).numpy()
    np.testing.assert_array_equal(got, keras_out(keras.layers.Concatenate(axis=-1), [a, b]))


def test_concatenate_of_rows_is_along_features():
    a, b = Input((4,)), Input((3,))
    assert Concatenate()([a, b]).shape == (None, 7)


def test_elementwise_merge_broadcasts_an_axis_of_one():
    x, scale = torch.randn(2, 3, 4), torch.randn(2, 3, 1)
    torch.testing.assert_close(Multiply()([x, scale]), x * scale)


def test_merge_in_a_functional_model_equals_keras_with_the_same_weights():
    inp = Input((6,), name="x")
    a, b = Dense(4, name="a")(inp), Dense(4, name="b")(inp)
    out = Concatenate()([Add()([a, b]), Subtract()([a, b]), Multiply()([a, b]), Maximum()([a, b])])
    model = Functional(inp, out)
    k_in = keras.Input((6,))
    ka, kb = keras.layers.Dense(4, name="a"), keras.layers.Dense(4, name="b")
    ya, yb = ka(k_in), kb(k_in)
    k_out = keras.layers.Concatenate()([keras.layers.Add()([ya, yb]), keras.layers.Subtract()([ya, yb]),
                                        keras.layers.Multiply()([ya, yb]), keras.layers.Maximum()([ya, yb])])
    k_model = keras.Model(k_in, k_out)
    for name, k_layer in (("a", ka), ("b", kb)):
        layer = model.get_layer(name)
        k_layer.set_weights([layer.weight.detach().numpy().T, layer.bias.detach().numpy()])
    x = RNG.normal(size=(7, 6)).astype("float32")
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(k_model(x)), atol=1e-5)


def test_concatenate_of_mismatched_maps_names_the_layer_and_shapes():
    a, b = Input((3, 8, 8)), Input((3, 4, 4))
    with pytest.raises(DeepfieldError) as err:
        Concatenate(name="join")([a, b])
    assert str(err.value) == ("Concatenate 'join' along axis 1 needs inputs equal on every other axis, "
                              "got (None, 3, 8, 8), (None, 3, 4, 4)")


def test_add_of_different_shapes_names_the_layer_and_shapes():
    with pytest.raises(DeepfieldError, match=r"Add 'add' needs inputs of one shape .*\(None, 4\), \(None, 5\)"):
        Add()([Input((4,)), Input((5,))])


def test_subtract_takes_exactly_two_inputs():
    with pytest.raises(DeepfieldError, match="Subtract 'subtract' takes 2 input tensors, got 3"):
        Subtract()([Input((4,))] * 3)


def test_a_merge_layer_called_on_one_tensor_says_it_takes_a_list():
    with pytest.raises(DeepfieldError, match=r"is called on a list of tensors, e.g. Add\(\)\(\[a, b\]\)"):
        Add()(Input((4,)))


def test_concatenate_axis_zero_is_the_batch_and_refused():
    with pytest.raises(DeepfieldError, match="axis 0 is not a sample axis"):
        Concatenate(axis=0)([Input((4,)), Input((4,))])


def test_merge_config_round_trips():
    layer = Concatenate(axis=2, name="c")
    assert layer.get_config() == {"axis": 2, "name": "c"}
    assert Concatenate.from_config(layer.get_config()).axis == 2
