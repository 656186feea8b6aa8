"""The depth study: sigmoid stacks starve their first layers of gradient; ReLU + He and batch norm do not."""
import numpy as np
import pytest

from deepfield.analysis.learning.depth import depth_study, parse_variant
from deepfield.data.toy2d import make_toy
from deepfield.errors import DeepfieldError

DEPTH, WIDTH, EPOCHS, N, BATCH = 8, 16, 2, 128, 32


@pytest.fixture(scope="module")
def study():
    x, y = make_toy("moons", n=N, seed=0)
    return depth_study(x, y, depth=DEPTH, width=WIDTH, variants=("sigmoid", "relu+he", "sigmoid+bn", "relu+he+bn"),
                       epochs=EPOCHS, batch_size=BATCH, seed=0)


def test_every_dense_layer_is_logged_at_every_step(study):
    steps = EPOCHS * (N // BATCH)
    for run in study.runs.values():
        assert run.names == ["dense"] + [f"dense_{k}" for k in range(1, DEPTH + 1)]  # hidden layers, then the head
        assert run.norms.shape == (steps, DEPTH + 1) and (run.norms > 0).all()
        np.testing.assert_array_equal(run.steps, np.arange(steps))
        assert np.isfinite(run.final_loss) and 0 <= run.final_accuracy <= 1
    assert study.variants == ("sigmoid", "relu+he", "sigmoid+bn", "relu+he+bn")


def test_sigmoid_gradients_vanish_towards_the_input(study):
    run = study.runs["sigmoid"]
    assert run.first_to_last < 1e-3  # sigma' <= 1/4 per layer: orders of magnitude over 8 layers
    mean = run.mean_norms[:-1]
    assert (np.diff(np.log(mean)) > 0).mean() >= 0.85  # growing layer by layer towards the output


def test_relu_with_he_weights_keeps_them_the_same_size(study):
    assert 0.1 < study.runs["relu+he"].first_to_last < 10


def test_batch_norm_brings_the_sigmoid_gradients_back(study):
    sigmoid, normalised = study.runs["sigmoid"].first_to_last, study.runs["sigmoid+bn"].first_to_last
    assert normalised > 1000 * sigmoid
    assert 0.1 < normalised < 10
    assert 0.1 < study.runs["relu+he+bn"].first_to_last < 10


def test_variant_names():
    assert parse_variant("relu+he+bn") == ("relu", "he_normal", True)
    assert parse_variant("sigmoid") == ("sigmoid", "glorot_uniform", False)
    assert parse_variant("tanh+lecun_uniform") == ("tanh", "lecun_uniform", False)
    with pytest.raises(DeepfieldError, match="unknown activation 'sigmod'"):
        parse_variant("sigmod+bn")
    with pytest.raises(DeepfieldError, match="'hee' is neither 'bn' nor an initializer"):
        parse_variant("relu+hee")
    with pytest.raises(DeepfieldError, match="variants must be distinct"):
        depth_study(*make_toy("moons", n=N, seed=0), variants=("relu", "relu"))
