"""Filter, feature-map and strongest-patch figures: their pixel size, their panels and colour scales, by hand."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from deepfield.analysis.explain.patches import ReceptiveField, StrongestPatches
from deepfield.errors import DeepfieldError
from deepfield.plots import explain_filters
from deepfield.plots.explain_filters import (
    BAND_ROOM,
    COLORBAR_ROOM,
    LABEL_ROOM,
    LINE_ASPECT,
    plot_feature_maps,
    plot_filter_mosaic,
    plot_strongest_patches,
)
from pngcheck import assert_png


RNG = np.random.default_rng(0)



@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """The figures the module draws, kept to look at their panels."""
    figures: list[Figure] = []
    write = explain_filters.figure

    @contextlib.contextmanager
    def keeping(path: Path, figsize: tuple[float, float]) -> Iterator[Figure]:
        with write(path, figsize) as fig:
            figures.append(fig)
            yield fig

    monkeypatch.setattr(explain_filters, "figure", keeping)
    return figures


def _images(fig: Figure) -> list:
    """Every image drawn in ``fig`` (its subfigures' included), in drawing order."""
    return [image for ax in fig.axes if ax.get_visible() for image in ax.images]


def test_one_band_filters_fill_rows_of_eight(tmp_path: Path, drawn: list[Figure]) -> None:
    kernels = RNG.normal(size=(32, 1, 6, 6))
    path = plot_filter_mosaic(kernels, tmp_path / "filters.png")
    assert_png(path, (8 * 0.8 + COLORBAR_ROOM, 4 * 0.8 + BAND_ROOM))  # 32 filters: 4 rows of 8
    images = _images(drawn[0])
    assert len(images) == 32
    np.testing.assert_array_equal(images[5].get_array(), kernels[5, 0])


def test_three_band_filters_have_a_block_each_on_its_own_symmetric_scale(tmp_path: Path,
                                                                         drawn: list[Figure]) -> None:
    kernels = RNG.normal(size=(10, 3, 5, 5)) * np.array([1.0, 10.0, 100.0])[:, None, None]
    path = plot_filter_mosaic(kernels, tmp_path / "filters.png", band_names="gri", ncols=4)
    assert_png(path, (4 * 0.8 + COLORBAR_ROOM, 3 * (3 * 0.8 + BAND_ROOM)))  # 10 filters: 3 rows of 4, per band
    images = _images(drawn[0])
    assert len(images) == 30
    for band in range(3):
        limit = np.abs(kernels[:, band]).max()
        assert {im.get_clim() for im in images[10 * band:10 * band + 10]} == {(-limit, limit)}
    assert [sub._suptitle.get_text() for sub in drawn[0].subfigs] == ["g", "r", "i"]


def test_one_dimensional_kernels_are_lines_per_band(tmp_path: Path, drawn: list[Figure]) -> None:
    kernels = RNG.normal(size=(12, 2, 7))
    path = plot_filter_mosaic(kernels, tmp_path / "filters_1d.png", band_names=["g", "r"])
    assert_png(path, (8 * LINE_ASPECT * 0.8, 2 * LABEL_ROOM * 0.8))  # 12 filters: 2 rows of 8
    panels = [ax for ax in drawn[0].axes if ax.get_visible()]
    assert len(panels) == 12
    np.testing.assert_array_equal(panels[3].lines[1].get_ydata(), kernels[3, 1])


def test_feature_maps_follow_the_input_stamp(tmp_path: Path, drawn: list[Figure]) -> None:
    maps = RNG.normal(size=(20, 8, 8))
    path = plot_feature_maps(maps, tmp_path / "maps.png", image=RNG.normal(size=(3, 16, 16)), max_maps=12)
    assert_png(path, (8 * 1.0, 2 * LABEL_ROOM * 1.0))  # the input and 12 maps: 2 rows of 8
    images = _images(drawn[0])
    assert len(images) == 13 and images[0].get_array().shape == (16, 16, 3)
    np.testing.assert_array_equal(images[12].get_array(), maps[11])
    assert drawn[0]._suptitle.get_text() == "(first 12 of 20 maps)"
    assert_png(plot_feature_maps(maps[:1], tmp_path / "one.png"), (1.0, LABEL_ROOM))


def test_strongest_patches_a_row_per_filter_titled_by_activation(tmp_path: Path, drawn: list[Figure]) -> None:
    patches = RNG.normal(size=(20, 4, 3, 7, 7)).astype(np.float32)
    values = np.arange(80, dtype=np.float32).reshape(20, 4)
    top = StrongestPatches("conv2d_3", values, np.zeros((20, 4), int), np.zeros((20, 4, 2), int), patches,
                           ReceptiveField((7, 7), (2, 2), (-3, -3)))
    path = plot_strongest_patches(top, tmp_path / "patches.png")
    assert_png(path, (4 * 0.9, 16 * LABEL_ROOM * 0.9))  # the first 16 filters, 4 patches each
    axes = [ax for ax in drawn[0].axes if ax.get_visible()]
    assert len(axes) == 64 and axes[6].get_title() == "6" and axes[4].get_ylabel() == "filter 1"
    one_band = plot_strongest_patches(patches[:, :, :1], tmp_path / "one.png", values=values, filters=[2, 5])
    assert_png(one_band, (4 * 0.9, 2 * LABEL_ROOM * 0.9))
    assert [ax.get_title() for ax in drawn[1].axes[4:]] == ["20", "21", "22", "23"]


def test_bad_figure_inputs_are_named(tmp_path: Path) -> None:
    with pytest.raises(DeepfieldError, match="expected kernels"):
        plot_filter_mosaic(np.zeros((4, 1, 3, 3, 3)), tmp_path / "x.png")
    with pytest.raises(DeepfieldError, match="band_names: 2 names for 3 bands"):
        plot_filter_mosaic(np.ones((4, 3, 3, 3)), tmp_path / "x.png", band_names=["g", "r"])
    with pytest.raises(DeepfieldError, match="expected maps \\(C, H, W\\)"):
        plot_feature_maps(np.zeros((2, 4, 8, 8)), tmp_path / "x.png")
    with pytest.raises(DeepfieldError, match="filters \\[7\\] must be indices below 3"):
        plot_strongest_patches(np.ones((3, 2, 1, 5, 5)), tmp_path / "x.png", filters=[7])
    with pytest.raises(DeepfieldError, match="values have shape \\(3,\\)"):
        plot_strongest_patches(np.ones((3, 2, 1, 5, 5)), tmp_path / "x.png", values=np.ones(3))
