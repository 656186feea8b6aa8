"""Optimiser-path figures: PNGs of the expected pixel size, an animation with the expected frames."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg
from PIL import Image

from deepfield.analysis.learning.paths import loss_grid, optimizer_paths
from deepfield.analysis.learning.surfaces import load_surface
from deepfield.errors import DeepfieldError
from deepfield.plots import DPI, animate_optimizer_paths, plot_loss_curves, plot_optimizer_paths
from deepfield.plots.paths import frame_steps


def _assert_png(path: Path, figsize: tuple[float, float]) -> None:
    assert path.is_file() and path.stat().st_size > 0
    pixels = mpimg.imread(path)
    assert pixels.shape[:2] == (round(figsize[1] * DPI), round(figsize[0] * DPI))
    assert pixels.std() > 0


@pytest.fixture(scope="module")
def quadratic():
    surface = load_surface("quadratic")
    # sgd at lr 10 diverges: a truncated path must draw as well as the full ones
    paths = optimizer_paths(surface, ["sgd", "adam", "newton"], learning_rates={"sgd": 10.0}, steps=20)
    assert paths["sgd"].diverged
    return surface, loss_grid(surface, n=40), paths


def test_the_paths_figure_has_its_pixel_size(tmp_path, quadratic):
    surface, grid, paths = quadratic
    out = plot_optimizer_paths(surface, grid, paths, tmp_path / "paths.png", figsize=(5.0, 4.5))
    assert out == tmp_path / "paths.png"
    _assert_png(out, (5.0, 4.5))


def test_a_linear_surface_plot_and_loss_curves_below_zero(tmp_path):
    saddle = load_surface("saddle")  # negative values: linear levels and a symlog loss axis
    paths = optimizer_paths(saddle, ["sgd", "adam"], steps=15)
    assert min(p.losses.min() for p in paths.values()) < 0
    _assert_png(plot_optimizer_paths(saddle, loss_grid(saddle, n=30), paths, tmp_path / "s.png", figsize=(4, 4)),
                (4, 4))
    _assert_png(plot_loss_curves(paths, tmp_path / "l.png", figsize=(4, 3)), (4, 3))


def test_loss_curves_have_their_pixel_size(tmp_path, quadratic):
    _, _, paths = quadratic
    out = plot_loss_curves(paths, tmp_path / "losses.png")
    assert out == tmp_path / "losses.png"
    _assert_png(out, (6.5, 4.5))


def test_frames_subsample_the_steps_evenly():
    paths = optimizer_paths("quadratic", ["adam"], steps=20)
    assert frame_steps(paths, 5).tolist() == [0, 5, 10, 15, 20]
    assert frame_steps(paths, 100).tolist() == list(range(21))  # one step per frame when fewer steps
    assert frame_steps(paths, 1).tolist() == [20]
    long = optimizer_paths("quadratic", ["sgd"], learning_rates=0.01, steps=200)
    steps = frame_steps(long, 60)
    assert len(steps) == 60 and steps[0] == 0 and steps[-1] == 200 and np.all(np.diff(steps) > 0)
    with pytest.raises(DeepfieldError, match="frames"):
        frame_steps(paths, 0)


def test_the_animation_has_one_frame_per_scheduled_step(tmp_path, quadratic):
    surface, grid, paths = quadratic
    out = animate_optimizer_paths(surface, grid, paths, tmp_path / "paths.gif", frames=4, figsize=(3.5, 3.5))
    assert out == tmp_path / "paths.gif"
    with Image.open(out) as image:
        assert image.n_frames == 4 and image.size == (round(3.5 * DPI), round(3.5 * DPI))
    short = {"adam": optimizer_paths(surface, ["adam"], steps=2)["adam"]}
    with Image.open(animate_optimizer_paths(surface, grid, short, tmp_path / "short.gif", frames=10,
                                            figsize=(3, 3))) as image:
        assert image.n_frames == 3  # steps 0, 1, 2


def test_bad_inputs_are_one_line_errors(tmp_path, quadratic):
    surface, grid, paths = quadratic
    with pytest.raises(DeepfieldError, match="non-empty"):
        plot_optimizer_paths(surface, grid, {}, tmp_path / "x.png")
    with pytest.raises(DeepfieldError, match="grid"):
        plot_optimizer_paths(surface, grid[:2], paths, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
