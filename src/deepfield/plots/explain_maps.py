"""Attribution maps over their stamps, and class models, as figures.

>>> plot_attributions(x[:4], {"saliency": s, "integrated gradients": ig.attributions,
...                           "occlusion": occ}, "figures/attributions.png", titles=names)
>>> plot_class_models({"star": class_model(model, 0, shape), "galaxy": class_model(model, 1, shape)},
...                   "figures/class_models.png")

The maps come from :mod:`deepfield.analysis.explain`. As in the gallery, stamps are drawn
with an asinh stretch (:func:`~deepfield.plots.gallery.asinh_composite`) and
row 0 at the bottom (the astronomical convention).
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from numpy.typing import ArrayLike

from deepfield.errors import DeepfieldError
from deepfield.plots.gallery import Channels, asinh_composite
from deepfield.plots.style import PALETTE, figure

__all__ = ["COLORBAR_ROOM", "CURVE_ROOM", "MAX_ROWS", "map_scale", "plot_attributions", "plot_class_models"]

MAX_ROWS = 32
""":func:`plot_attributions` shows at most this many stamps (one row each)."""

COLORBAR_ROOM = 0.6
"""Extra height of :func:`plot_attributions`, in panels, for the column titles and colour bars."""

BAR_HEIGHT = 0.08
"""Height of the colour-bar row of :func:`plot_attributions`, relative to a stamp's row (its
ticks and label take the rest of :data:`COLORBAR_ROOM`)."""

CURVE_ROOM = 1.4
"""Height of the score-curve row of :func:`plot_class_models`, in panels (images and titles take one)."""

OUTLINE_COLOUR = "#00d0ff"
"""The colour of a region's outline (:func:`plot_attributions` ``outlines``): cyan, apart from the maps' red and blue."""

SCALE_PERCENTILE = 99.0
"""Each map is scaled to this percentile of its own absolute values (one hot pixel does not
wash the rest out); brighter pixels saturate."""


def plot_attributions(images: ArrayLike, maps: Mapping[str, ArrayLike], path: str | os.PathLike[str],
                      titles: list[str] | None = None, channels: Channels = None, cmap: str | None = None,
                      panel_size: float = 1.8, alpha: float = 0.85,
                      outlines: Sequence[ArrayLike | None] | None = None) -> Path:
    """Write one row per stamp: the stamp, then each map drawn over it.

    A map is reduced over bands to one plane per stamp: a signed map (any negative value,
    e.g. integrated gradients) is *summed* over bands, keeping its additive meaning; a
    non-negative one (saliency) takes the band *maximum*, as Simonyan et al. (2014).
    Each method is a column; each map in it has its own scale (:data:`SCALE_PERCENTILE` of
    its absolute values, printed in the panel's corner), so a stamp whose effects are small
    (an occlusion map of a faint irregular) is not washed out by a bright one. The column's
    colour bar is in units of that scale: signed maps symmetric about 0 (blue negative, red
    positive), non-negative ones from 0. The map is opaque where it is strong and transparent
    where it is weak (opacity ``alpha × |value| / scale``), so the stamp shows through.

    Args:
        images: ``(N, C, H, W)`` stamps, 1 ≤ N ≤ :data:`MAX_ROWS`.
        maps: method name → ``(N, C', H, W)`` or ``(N, H, W)`` maps of those stamps (e.g.
            occlusion maps, one plane per stamp).
        titles: one label per stamp (e.g. its true and predicted class and score), left of its row.
        channels: the stamp's bands to show, see :func:`asinh_composite`.
        cmap: a matplotlib colour map for every map; default ``"RdBu_r"`` for signed maps
            and ``"inferno"`` for non-negative ones.
        panel_size: inches per panel: the figure is ``(1 + len(maps)) × panel_size`` wide and
            ``(N + COLORBAR_ROOM) × panel_size`` high.
        outlines: per stamp, ``None`` or a polygon ``(K, 2)`` of ``(x, y)`` pixel coordinates (0: the
            first pixel's centre) drawn on each panel of its row: the explained region of an image output.
    """
    stamps = np.asarray(images, dtype=np.float32)
    if stamps.ndim != 4 or not 1 <= len(stamps) <= MAX_ROWS:
        raise DeepfieldError(f"plot_attributions: images must be (N, C, H, W) with 1 ≤ N ≤ {MAX_ROWS}, "
                             f"got shape {stamps.shape}")
    if not maps:
        raise DeepfieldError("plot_attributions: maps is empty; pass {method name: (N, C, H, W) maps}")
    if titles is not None and len(titles) != len(stamps):
        raise DeepfieldError(f"plot_attributions: {len(titles)} titles for {len(stamps)} stamps")
    if outlines is not None and len(outlines) != len(stamps):
        raise DeepfieldError(f"plot_attributions: {len(outlines)} outlines for {len(stamps)} stamps")
    planes = {name: _plane(name, m, stamps.shape) for name, m in maps.items()}
    backgrounds = [asinh_composite(stamp, channels) for stamp in stamps]
    path = Path(path)
    with figure(path, ((1 + len(planes)) * panel_size, (len(stamps) + COLORBAR_ROOM) * panel_size)) as fig:
        # the colour bars get their own grid row, so the layout makes room for their ticks and labels
        grid = fig.add_gridspec(len(stamps) + 1, 1 + len(planes), height_ratios=[1.0] * len(stamps) + [BAR_HEIGHT])
        axes = np.array([[fig.add_subplot(grid[r, c]) for c in range(1 + len(planes))] for r in range(len(stamps))])
        for ax, background, title in zip(axes[:, 0], backgrounds, titles or [None] * len(stamps)):
            ax.imshow(background, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_ylabel(title or "", fontsize=8)
        axes[0, 0].set_title("stamp", fontsize=9)
        for c, (column, (name, plane)) in enumerate(zip(axes.T[1:], planes.items()), start=1):
            signed = bool((plane < 0).any())
            norm = Normalize(-1.0 if signed else 0.0, 1.0)
            colours = colormaps[cmap or ("RdBu_r" if signed else "inferno")]
            for ax, background, values in zip(column, backgrounds, plane):
                scale = map_scale(values)
                grey = background if background.ndim == 2 else background.mean(axis=-1)
                overlay = colours(norm(values / scale))
                overlay[..., 3] = alpha * np.clip(np.abs(values) / scale, 0.0, 1.0)
                ax.imshow(grey, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
                ax.imshow(overlay, interpolation="nearest")
                ax.text(0.03, 0.97, f"{'±' if signed else ''}{scale:.2g}", transform=ax.transAxes, fontsize=6,
                        va="top", ha="left", color="black", bbox={"facecolor": "white", "alpha": 0.7, "pad": 1,
                                                                  "linewidth": 0})
            column[0].set_title(name, fontsize=9)
            bar = fig.colorbar(ScalarMappable(norm, colours), cax=fig.add_subplot(grid[-1, c]),
                               orientation="horizontal",
                               ticks=[-1.0, 0.0, 1.0] if signed else [0.0, 0.5, 1.0])
            bar.set_label("× the map's scale", fontsize=7)
            bar.ax.tick_params(labelsize=7)
        for row, outline in zip(axes, outlines or []):
            if outline is not None:
                polygon = np.asarray(outline, dtype=np.float64)
                for ax in row:
                    ax.plot(polygon[:, 0], polygon[:, 1], color=OUTLINE_COLOUR, linewidth=0.8)
                    ax.set_xlim(-0.5, stamps.shape[3] - 0.5)
                    ax.set_ylim(-0.5, stamps.shape[2] - 0.5)
        for ax in axes.ravel():
            _bare(ax)
    return path


def map_scale(values: np.ndarray) -> float:
    """The scale of one map ``(H, W)``: the :data:`SCALE_PERCENTILE` of its absolute values
    (else their maximum, else 1 for an all-zero map)."""
    magnitude = np.abs(values)
    return float(np.percentile(magnitude, SCALE_PERCENTILE)) or float(magnitude.max()) or 1.0


def _plane(name: str, values: ArrayLike, shape: tuple[int, ...]) -> np.ndarray:
    """``(N, H, W)``: a map's one plane per stamp (band sum if signed, band maximum if not)."""
    m = np.asarray(values, dtype=np.float64)
    n, _, h, w = shape
    if m.ndim == 3:
        m = m[:, None]
    if m.ndim != 4 or (m.shape[0], *m.shape[2:]) != (n, h, w):
        raise DeepfieldError(f"plot_attributions: map {name!r} has shape {np.shape(values)}; expected "
                             f"({n}, C, {h}, {w}) or ({n}, {h}, {w}) for images of shape {shape}")
    if not np.isfinite(m).all():
        raise DeepfieldError(f"plot_attributions: map {name!r} has non-finite values")
    return m.sum(axis=1) if (m < 0).any() else m.max(axis=1)


def plot_class_models(results: Mapping[str, Any], path: str | os.PathLike[str], channels: Channels = None,
                      panel_size: float = 2.0) -> Path:
    """Write each class's optimised image (top row) and the class scores along the optimisation (below).

    Args:
        results: class name → a :class:`~deepfield.analysis.explain.class_model.ClassModel`
            (anything with ``image`` ``(C, H, W)`` and ``scores`` ``(steps,)``) or an
            ``(image, scores)`` pair.
        channels: the bands to show, see :func:`asinh_composite`.
        panel_size: inches per image: the figure is ``max(len(results), 2) × panel_size``
            wide and ``(1 + CURVE_ROOM) × panel_size`` high.
    """
    items = {name: _image_and_scores(name, value) for name, value in results.items()}
    if not items:
        raise DeepfieldError("plot_class_models: results is empty; pass {class name: ClassModel}")
    ncols = max(len(items), 2)
    path = Path(path)
    with figure(path, (ncols * panel_size, (1 + CURVE_ROOM) * panel_size)) as fig:
        grid = fig.add_gridspec(2, ncols, height_ratios=[1.0, CURVE_ROOM])
        curve = fig.add_subplot(grid[1, :])
        for i, (name, (image, scores)) in enumerate(items.items()):
            ax = fig.add_subplot(grid[0, i])
            ax.imshow(asinh_composite(image, channels), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_title(name, fontsize=9)
            _bare(ax)
            curve.plot(np.arange(1, len(scores) + 1), scores, color=PALETTE[i % len(PALETTE)], label=name)
        curve.set_xlabel("step")
        curve.set_ylabel("class score")
        curve.legend()
    return path


def _image_and_scores(name: str, value: Any) -> tuple[np.ndarray, np.ndarray]:
    pair = (value.image, value.scores) if hasattr(value, "image") and hasattr(value, "scores") else value
    if not isinstance(pair, tuple) or len(pair) != 2:
        raise DeepfieldError(f"plot_class_models: {name!r} is a {type(value).__name__}; expected a ClassModel "
                             "or an (image, scores) pair")
    image, scores = np.asarray(pair[0], dtype=np.float32), np.asarray(pair[1], dtype=np.float64)
    if image.ndim != 3 or scores.ndim != 1:
        raise DeepfieldError(f"plot_class_models: {name!r} needs an image (C, H, W) and scores (steps,), "
                             f"got shapes {image.shape} and {scores.shape}")
    return image, scores


def _bare(ax: Any) -> None:
    """No ticks, no grid: an image panel."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
