"""The Python API refuses what cannot be meant, naming the argument (issue 15): empty arrays, negative
epochs, layer sizes that are not sizes, networks too big to build."""
import numpy as np
import pytest
import torch

from deepfield.errors import DeepfieldError
from deepfield.models import Conv1D, Dense, Inception, Maxout, MaxPooling2D
from deepfield.training import Sequential


def model():
    torch.manual_seed(0)
    return Sequential([Dense(2)], input_shape=(3,)).compile(optimizer="sgd", loss="mse", device="cpu")


X, Y = np.ones((4, 3), np.float32), np.ones((4, 2), np.float32)
EMPTY_X, EMPTY_Y = np.zeros((0, 3), np.float32), np.zeros((0, 2), np.float32)


@pytest.mark.parametrize("call, name", [
    (lambda m: m.fit(EMPTY_X, EMPTY_Y, verbose=0), "x"),
    (lambda m: m.fit([], [], verbose=0), "x"),
    (lambda m: m.fit(X, EMPTY_Y, verbose=0), "y"),
    (lambda m: m.fit(X, Y, validation_data=(EMPTY_X, EMPTY_Y), verbose=0), "validation x"),
    (lambda m: m.evaluate(EMPTY_X, EMPTY_Y, verbose=0), "x"),
    (lambda m: m.predict(EMPTY_X, verbose=0), "x"),
    (lambda m: m.predict(np.zeros((0,)), verbose=0), "x"),
])
def test_empty_arrays_are_refused_naming_the_argument(call, name):
    with pytest.raises(DeepfieldError, match=rf"^{name} is empty \(0 samples\); expected an array with one row per sample$"):
        call(model())


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": -1}, "epochs must be an integer from 0 to 2147483648, got -1"),
    ({"epochs": 2.5}, "epochs must be an integer from 0 to 2147483648, got 2.5"),
    ({"epochs": "3"}, "epochs must be an integer from 0 to 2147483648, got '3'"),
    ({"epochs": True}, "epochs must be an integer from 0 to 2147483648, got True"),
    ({"initial_epoch": -2}, "initial_epoch must be an integer from 0 to 2147483648, got -2"),
])
def test_bad_epochs_are_errors_not_an_empty_history(kwargs, message):
    net = model()
    before = [p.clone() for p in net.parameters()]
    with pytest.raises(DeepfieldError, match=f"^{message}$"):
        net.fit(X, Y, verbose=0, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_zero_epochs_trains_nothing_as_in_keras():
    net = model()
    before = [p.clone() for p in net.parameters()]
    assert net.fit(X, Y, epochs=0, verbose=0).history == {}
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert len(net.fit(X, Y, epochs=2.0, verbose=0).history["loss"]) == 2  # an integral float is a count


@pytest.mark.parametrize("make, message", [
    (lambda: Dense(1e30), "Dense units must be an integer from 1 to 2147483648, got 1e+30"),
    (lambda: Dense("64"), "Dense units must be an integer from 1 to 2147483648, got '64'"),
    (lambda: Dense(True), "Dense units must be an integer from 1 to 2147483648, got True"),
    (lambda: Dense(float("nan")), "Dense units must be an integer from 1 to 2147483648, got nan"),
    (lambda: Conv1D(0, 3), "Conv1D filters must be an integer from 1 to 2147483648, got 0"),
    (lambda: Conv1D(4, 2.5), "Conv1D kernel_size must be an integer from"),
    (lambda: MaxPooling2D("2"), "MaxPooling2D pool_size must be an integer from"),
    (lambda: Maxout(-1), "Maxout units must be an integer from 1"),
    (lambda: Inception(8, 0), "Inception bottleneck must be an integer from 1"),
])
def test_layer_sizes_that_are_not_sizes_are_refused(make, message):
    with pytest.raises(DeepfieldError, match=message.replace("(", r"\(").replace("+", r"\+")):
        make()


def test_an_integral_float_is_a_size():
    assert Dense(64.0).units == 64 and isinstance(Dense(np.int64(3)).units, int)


def test_a_network_too_big_to_build_is_refused_before_anything_is_allocated():
    net = Sequential([Dense(2_000_000), Dense(2_000_000)], input_shape=(10,))  # 4e12 parameters: 16 TB
    with pytest.raises(DeepfieldError, match=r"the network would hold 4,000,024,000,000 parameters \('dense_1' alone "
                                             r"4,000,002,000,000\); deepfield builds at most 2,147,483,648"):
        net.build()
    assert not net.built and sum(p.numel() for p in net.parameters()) == 0
    with pytest.raises(DeepfieldError, match=r"input_shape \[100000, 100000\] holds 10,000,000,000 numbers per sample"):
        Sequential([Dense(2)]).build((100_000, 100_000))
