"""Figures of learning: boundary snapshots and animation, the sweep, gradients by depth."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg
from PIL import Image

from deepfield.analysis.learning.depth import depth_study
from deepfield.analysis.learning.playground import learn_2d
from deepfield.analysis.learning.sweeps import sweep
from deepfield.data.toy2d import make_toy
from deepfield.errors import DeepfieldError
from deepfield.plots import (
    DPI,
    animate_decision_boundary,
    plot_decision_boundary,
    plot_gradient_norms_by_depth,
    plot_sweep,
)
from deepfield.plots.style import WRONG_COLOUR


def _pixels(path: Path, figsize: tuple[float, float]) -> np.ndarray:
    """The PNG's RGB pixels, after checking it is ``figsize × DPI`` and not blank."""
    assert path.is_file() and path.stat().st_size > 0
    pixels = mpimg.imread(path)
    assert pixels.shape[:2] == (round(figsize[1] * DPI), round(figsize[0] * DPI))
    assert pixels.std() > 0
    return pixels[..., :3]


def _red_pixels(pixels: np.ndarray) -> int:
    """Pixels of the colour that crosses out diverged runs."""
    red = np.array([int(WRONG_COLOUR[i:i + 2], 16) for i in (1, 3, 5)]) / 255
    return int((np.abs(pixels - red).max(axis=-1) < 0.06).sum())


@pytest.fixture(scope="module")
def play():
    x, y = make_toy("moons", n=120, seed=0)
    return learn_2d(x, y, hidden=(6, 6), epochs=12, frames=5, grid=30)


def test_a_boundary_snapshot_is_a_png_of_the_asked_size(play, tmp_path):
    _pixels(plot_decision_boundary(play, tmp_path / "last.png", figsize=(4.0, 3.5)), (4.0, 3.5))
    _pixels(plot_decision_boundary(play, tmp_path / "first.png", frame=0), (5.5, 5.0))
    with pytest.raises(DeepfieldError, match="frame 5 is out of range: the playground recorded 5 frames"):
        plot_decision_boundary(play, tmp_path / "x.png", frame=5)


def test_the_animation_has_one_frame_per_snapshot(play, tmp_path):
    path = animate_decision_boundary(play, tmp_path / "boundary.gif", figsize=(6.0, 3.0))
    image = Image.open(path)
    assert image.n_frames == play.frames == 5
    assert image.size == (6 * DPI, 3 * DPI)


def test_loss_and_accuracy_curves_have_colours_of_their_own(play, tmp_path):
    """In the animation's curve panel the loss and the accuracy are told apart at a glance (CIEDE2000
    distance > 45), and neither takes a class colour of the map beside them (distance > 35)."""
    from matplotlib.colors import to_rgb
    from skimage.color import deltaE_ciede2000, rgb2lab

    from deepfield.plots.learning_dynamics import ACCURACY_COLOUR, LOSS_COLOUR, _class_colours

    lab = {name: rgb2lab(np.array([[to_rgb(c)]]))[0, 0]
           for name, c in [("loss", LOSS_COLOUR), ("accuracy", ACCURACY_COLOUR),
                           *((f"class {k}", c) for k, c in enumerate(_class_colours(2)))]}
    assert float(deltaE_ciede2000(lab["loss"], lab["accuracy"])) > 45
    for curve in ("loss", "accuracy"):
        for k in (0, 1):
            assert float(deltaE_ciede2000(lab[curve], lab[f"class {k}"])) > 35, (curve, k)
    path = animate_decision_boundary(play, tmp_path / "boundary.gif", figsize=(8.0, 3.5))
    frame = Image.open(path)
    frame.seek(frame.n_frames - 1)
    right = np.asarray(frame.convert("RGB"), dtype=float)[:, frame.size[0] // 2:] / 255
    for colour in (LOSS_COLOUR, ACCURACY_COLOUR):  # both curves are drawn, each in its colour
        assert (np.abs(right - to_rgb(colour)).max(axis=-1) < 0.08).sum() > 40, colour


def test_three_classes_draw_too(tmp_path):
    x, y = make_toy("moons", n=90, seed=2)
    x, y = np.concatenate([x, x[:30] + [3.0, 0.0]]), np.concatenate([y, np.full(30, 2)])
    play3 = learn_2d(x, y, hidden=(6,), epochs=4, frames=2, grid=20)
    _pixels(plot_decision_boundary(play3, tmp_path / "three.png", figsize=(4.0, 4.0)), (4.0, 4.0))
    assert Image.open(animate_decision_boundary(play3, tmp_path / "three.gif", figsize=(5.0, 2.5))).n_frames == 2


def test_the_sweep_figure_crosses_out_diverged_runs_only(tmp_path):
    x, y = make_toy("moons", n=80, seed=0)
    calm = sweep(x, y, learning_rates=(0.05, 0.5), initializers=("zeros", "he_normal"), batch_sizes=("full", 8),
                 steps=16)
    wild = sweep(x, y, learning_rates=(0.5, 1000.0), initializers=("zeros", "he_normal"), batch_sizes=("full", 8),
                 steps=16)
    assert not calm.diverged.any() and wild.diverged.any()
    quiet = _pixels(plot_sweep(calm, tmp_path / "calm.png", figsize=(7.0, 8.0)), (7.0, 8.0))
    loud = _pixels(plot_sweep(wild, tmp_path / "wild.png", figsize=(7.0, 8.0)), (7.0, 8.0))
    assert _red_pixels(quiet) == 0 and _red_pixels(loud) > 50
    _pixels(plot_sweep(wild, tmp_path / "default.png", curves_initializer="zeros"), (3.4 * 2 + 1.2, 10.0))
    with pytest.raises(DeepfieldError, match="no initializer 'ones'"):
        plot_sweep(wild, tmp_path / "x.png", curves_initializer="ones")


def test_gradient_norms_by_depth(tmp_path):
    x, y = make_toy("moons", n=64, seed=0)
    study = depth_study(x, y, depth=4, width=8, variants=("sigmoid", "relu+he"), epochs=1)
    _pixels(plot_gradient_norms_by_depth(study, tmp_path / "depth.png", figsize=(8.0, 6.0)), (8.0, 6.0))
    _pixels(plot_gradient_norms_by_depth(study, tmp_path / "default.png"), (8.0, 7.5))
    empty = dataclasses.replace(study, runs={k: dataclasses.replace(r, norms=r.norms[:0], steps=r.steps[:0])
                                             for k, r in study.runs.items()})
    with pytest.raises(DeepfieldError, match="recorded no gradient norms"):
        plot_gradient_norms_by_depth(empty, tmp_path / "none.png")
