"""The 2-D playground: a real deepfield fit, snapshots of its decision boundary, and what they must equal."""
import numpy as np
import pytest
import torch

from deepfield.analysis.learning.playground import classifier, frame_schedule, learn_2d, mesh
from deepfield.data.toy2d import make_toy
from deepfield.errors import DeepfieldError
from deepfield.models.normalization import BatchNormalization

EPOCHS, FRAMES, GRID = 40, 6, 50


@pytest.fixture(scope="module")
def moons():
    x, y = make_toy("moons", n=240, seed=0)
    return x, y, learn_2d(x, y, hidden=(8, 8), activation="relu", epochs=EPOCHS, frames=FRAMES, grid=GRID, seed=3)


def test_a_relu_network_learns_the_moons(moons):
    x, y, play = moons
    assert play.frame_accuracy[-1] > 0.9
    assert play.model.evaluate(x, y, verbose=0)["accuracy"] > 0.9
    assert len(play.history["loss"]) == len(play.history["accuracy"]) == EPOCHS
    assert play.history["loss"][-1] < play.history["loss"][0]


def test_frames_shapes_and_schedule(moons):
    x, _, play = moons
    assert play.probabilities.shape == (FRAMES, GRID, GRID)
    assert play.frames == FRAMES and play.frame_epochs[0] == 0 and play.frame_epochs[-1] == EPOCHS
    assert np.all(np.diff(play.frame_epochs) > 0)
    assert ((play.probabilities >= 0) & (play.probabilities <= 1)).all()
    assert play.xx.shape == play.yy.shape == (GRID,)
    # the mesh covers the data with a margin
    assert play.xx[0] < x[:, 0].min() and play.xx[-1] > x[:, 0].max()
    assert play.yy[0] < x[:, 1].min() and play.yy[-1] > x[:, 1].max()


def test_frame_schedule_is_distinct_epochs_with_both_ends():
    np.testing.assert_array_equal(frame_schedule(10, 3), [0, 5, 10])
    np.testing.assert_array_equal(frame_schedule(3, 40), [0, 1, 2, 3])  # never more than epochs + 1
    for epochs, frames in [(7, 5), (100, 40), (39, 40)]:
        s = frame_schedule(epochs, frames)
        assert s[0] == 0 and s[-1] == epochs and len(s) == min(frames, epochs + 1) and np.all(np.diff(s) > 0)


def test_frame_zero_is_the_untrained_network(moons):
    x, _, play = moons
    torch.manual_seed(3)  # what fit(seed=3) does before the layers draw their weights
    untrained = classifier(2, (8, 8), "relu", "glorot_uniform")
    untrained.build((2,))
    _, _, points = mesh(x, GRID)
    np.testing.assert_allclose(untrained.predict(points, verbose=0).reshape(GRID, GRID), play.probabilities[0],
                               atol=1e-6)
    assert play.frame_accuracy[0] < 0.8 < 0.9 < play.frame_accuracy[-1]
    assert play.frame_loss[0] > 2 * play.frame_loss[-1]


def test_the_last_map_is_the_trained_model_and_its_contour_classifies_like_it(moons):
    x, _, play = moons
    _, _, points = mesh(x, GRID)
    np.testing.assert_allclose(play.model.predict(points, verbose=0).reshape(GRID, GRID), play.probabilities[-1],
                               atol=1e-6)
    # bilinear interpolation of the map at the training points: the side of the 0.5 contour
    p = play.probabilities[-1]
    fx = np.interp(x[:, 0], play.xx, np.arange(GRID))
    fy = np.interp(x[:, 1], play.yy, np.arange(GRID))
    i0, j0 = np.floor(fy).astype(int).clip(0, GRID - 2), np.floor(fx).astype(int).clip(0, GRID - 2)
    ty, tx = fy - i0, fx - j0
    on_map = ((1 - ty) * (1 - tx) * p[i0, j0] + (1 - ty) * tx * p[i0, j0 + 1]
              + ty * (1 - tx) * p[i0 + 1, j0] + ty * tx * p[i0 + 1, j0 + 1])
    by_model = play.model.predict(x, verbose=0).ravel()
    agree = (on_map > 0.5) == (by_model > 0.5)
    assert agree.mean() >= 0.98
    assert np.all(np.abs(by_model[~agree] - 0.5) < 0.2)  # any disagreement sits on the boundary
    assert play.frame_accuracy[-1] == pytest.approx(((by_model > 0.5) == moons[1]).mean())


def test_more_classes_get_a_softmax_head_and_a_map_per_class():
    x, y = make_toy("moons", n=120, seed=1)
    x = np.concatenate([x, x[:40] + [3.0, 0.0]])
    y = np.concatenate([y, np.full(40, 2)])
    play = learn_2d(x, y, hidden=(6,), epochs=8, frames=3, grid=20)
    assert play.probabilities.shape == (3, 20, 20, 3) and play.n_classes == 3
    np.testing.assert_allclose(play.probabilities.sum(axis=-1), 1.0, atol=1e-5)
    assert play.predicted_classes().shape == (20, 20)


def test_batch_norm_and_initializer_aliases_reach_the_layers():
    x, y = make_toy("xor", n=80)
    play = learn_2d(x, y, hidden=(4, 4), batch_norm=True, kernel_initializer="small_uniform", epochs=2, frames=2,
                    grid=10)
    assert sum(isinstance(m, BatchNormalization) for m in play.model.modules()) == 2
    first = play.model.dense.weight.detach()
    # RandomUniform(-0.05, 0.05), then 2 epochs x 3 batches of Adam steps of about lr = 0.01 at most
    assert first.abs().max() <= 0.05 + 6 * 0.01 + 1e-3
    assert play.settings["batch_norm"] is True


def test_bad_inputs_are_named():
    x, y = make_toy("moons", n=40)
    with pytest.raises(DeepfieldError, match=r"learn_2d: x must have shape \(N, 2\)"):
        learn_2d(np.c_[x, x[:, :1]], y)
    with pytest.raises(DeepfieldError, match="at least two classes"):
        learn_2d(x, np.zeros(40, dtype=int))
    with pytest.raises(DeepfieldError, match="hidden must be positive"):
        learn_2d(x, y, hidden=(8, 0))
    with pytest.raises(DeepfieldError, match="epochs must be a positive integer"):
        learn_2d(x, y, epochs=0)
