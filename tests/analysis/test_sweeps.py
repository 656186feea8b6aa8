"""Sweeps: divergence caught and stopped, the symmetry of zero weights, mini-batch noise."""
import numpy as np
import pytest

from deepfield.analysis.learning.sweeps import is_diverging, sweep
from deepfield.data.toy2d import make_toy
from deepfield.errors import DeepfieldError


@pytest.fixture(scope="module")
def circles():
    return make_toy("circles", n=160, seed=0)


def test_the_divergence_rule():
    assert not is_diverging(np.array([]), 0.7, 3.0, 4)
    assert is_diverging(np.array([0.7, np.nan]), 0.7, 3.0, 4)
    assert is_diverging(np.array([0.7, np.inf]), 0.7, 3.0, 4)
    assert not is_diverging(np.array([0.7, 9.0, 0.5]), 0.7, 3.0, 4)  # one bad batch, window not full
    assert not is_diverging(np.array([0.7, 6.0, 0.1, 0.1, 0.1]), 0.7, 3.0, 4)  # last 4: mean 1.575 <= 2.1
    assert is_diverging(np.array([0.7, 9.0, 0.1, 0.1, 0.1]), 0.7, 3.0, 4)  # last 4: mean 2.325 > 3 x 0.7
    assert is_diverging(np.array([0.7, 2.5, 2.5, 2.5, 2.5]), 0.7, 3.0, 4)


def test_a_rate_far_too_large_is_flagged_and_stopped_without_an_exception():
    x, y = make_toy("moons", n=120, seed=0)
    s = sweep(x, y, learning_rates=(0.5, 1000.0), initializers=("he_normal",), batch_sizes=("full", 16), steps=60)
    assert s.shape == (2, 1, 2) and s.losses.shape == (2, 1, 2, 60)
    assert not s.diverged[0].any() and (s.steps_run[0] == 60).all()
    assert s.diverged[1].all() and (s.steps_run[1] < 60).all()
    for b in range(2):
        stopped = s.steps_run[1, 0, b]
        assert np.isnan(s.losses[1, 0, b, stopped:]).all()  # nothing recorded after the stop
        assert np.isfinite(s.losses[0, 0, b]).all()
    assert (s.final_accuracy[0] > 0.8).all()
    np.testing.assert_array_equal(s.curve(0.5, "he_normal", 16), s.losses[0, 0, 1])


def test_zero_weights_keep_every_hidden_unit_identical(circles):
    x, y = circles
    s = sweep(x, y, learning_rates=(0.5,), initializers=("zeros", "glorot_uniform"), batch_sizes=("full",),
              hidden=(8, 8), steps=150)
    linear = sweep(x, y, learning_rates=(0.5,), initializers=("glorot_uniform",), batch_sizes=("full",), hidden=(),
                   steps=150)
    zeros, glorot = (0, 0, 0), (0, 1, 0)
    kernels = s.first_kernels[zeros]
    assert kernels.shape == (8, 2)
    np.testing.assert_array_equal(kernels, np.broadcast_to(kernels[0], kernels.shape))  # rows equal
    assert s.unit_spread()[zeros] == 0 and s.unit_spread()[glorot] > 0.1
    # a network of identical units draws a straight boundary: no better than a linear model on circles
    assert s.final_accuracy[zeros] <= linear.final_accuracy[0, 0, 0] + 0.02
    assert s.final_accuracy[glorot] > 0.9


def test_symmetric_units_stay_identical_even_while_they_learn():
    x, y = make_toy("xor", n=240, seed=1)
    keep = (y == 1) | (np.arange(len(y)) % 3 == 0)  # unbalanced, so zero weights are not a stationary point
    x, y = x[keep], y[keep]
    s = sweep(x, y, learning_rates=(2.0,), initializers=("zeros",), batch_sizes=("full", 16), activation="sigmoid",
              steps=120)
    linear = sweep(x, y, learning_rates=(2.0,), initializers=("glorot_uniform",), batch_sizes=("full", 16),
                   hidden=(), steps=120)
    for b in range(2):
        kernels = s.first_kernels[0, 0, b]
        assert np.abs(kernels).max() > 1e-4  # the weights moved...
        np.testing.assert_array_equal(kernels, np.broadcast_to(kernels[0], kernels.shape))  # ...all alike
        assert s.final_accuracy[0, 0, b] <= linear.final_accuracy[0, 0, b] + 0.02


def test_full_batch_curves_are_smoother_than_single_sample_ones(circles):
    x, y = circles
    s = sweep(x, y, learning_rates=(0.1,), initializers=("glorot_uniform",), batch_sizes=("full", 1), steps=120)
    assert not s.diverged.any()
    full, single = s.roughness()[0, 0]
    assert full < 0.02 and single > 10 * full
    # gradient descent on the whole set: the loss falls at nearly every step
    steps = np.diff(s.losses[0, 0, 0])
    assert (steps < 0).mean() > 0.9


def test_sweep_arguments_are_checked():
    x, y = make_toy("moons", n=40)
    with pytest.raises(DeepfieldError, match="learning_rates must be positive"):
        sweep(x, y, learning_rates=(0.1, -1.0))
    with pytest.raises(DeepfieldError, match="steps must be an integer >= 2"):
        sweep(x, y, steps=1)
    with pytest.raises(DeepfieldError, match="unknown initializer 'bogus'"):
        sweep(x, y, learning_rates=(0.1,), initializers=("bogus",), batch_sizes=("full",), steps=2)
    s = sweep(x, y, learning_rates=(0.1,), initializers=("zeros",), batch_sizes=("full",), steps=2)
    with pytest.raises(DeepfieldError, match="no initializer 'he_normal'"):
        s.index(0.1, "he_normal", "full")
    with pytest.raises(DeepfieldError, match=r"no learning rate 0.2 \(has \[0.1\]\)"):
        s.index(0.2, "zeros", "full")
    assert s.index(0.1, "zeros", "full") == (0, 0, 0)
