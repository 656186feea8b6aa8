"""Looking inside a trained network: its learned filters, the maps they make, and what excites them most.

>>> plot_filter_mosaic(conv_filters(model), "figures/filters.png", band_names="gri")
>>> plot_feature_maps(feature_maps(model, x[:1], "activation")[0], "figures/maps.png", image=x[0])
>>> plot_strongest_patches(strongest_patches(model, x, "conv2d_3"), "figures/patches.png")

The arrays come from :mod:`deepfield.analysis.explain.filters` and
:mod:`deepfield.analysis.explain.patches`; every function writes one PNG and returns its path.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from deepfield import arguments
from deepfield.analysis.explain.patches import StrongestPatches
from deepfield.errors import DeepfieldError
from deepfield.plots.gallery import Channels, asinh_composite
from deepfield.plots.style import figure

__all__ = ["plot_feature_maps", "plot_filter_mosaic", "plot_strongest_patches"]

LABEL_ROOM = 1.25
"""A panel with a one-line title is ``panel_size`` wide and ``LABEL_ROOM × panel_size`` high."""

BAND_ROOM = 0.35
"""Inches above each band's block of filters in :func:`plot_filter_mosaic`, for its name."""

COLORBAR_ROOM = 0.8
"""Inches right of the filter panels in :func:`plot_filter_mosaic`, for the colour bar."""

LINE_ASPECT = 2.0
"""1-D kernels are drawn in panels ``LINE_ASPECT × panel_size`` wide."""

KERNEL_CMAP = "RdBu_r"
"""Diverging colours for kernels: red positive, blue negative, white zero."""


def plot_filter_mosaic(kernels: ArrayLike, path: str | os.PathLike[str], band_names: Sequence[str] | None = None,
                       ncols: int = 8, panel_size: float = 0.8, title: str | None = None) -> Path:
    """Write the filters of a convolution, one panel per filter and band.

    Args:
        kernels: ``(F, C, kh, kw)`` 2-D kernels (e.g. :func:`~deepfield.analysis.explain.filters.conv_filters`),
            or ``(F, C, k)`` 1-D kernels, drawn as lines (one per band).
        band_names: ``C`` names of the input bands (default ``band 0``, ``band 1``...).
        ncols: panels per row.
        panel_size: inches per panel.

    2-D: a block of ``ceil(F / ncols)`` rows of ``min(F, ncols)`` panels per band, under
    the band's name, with one colour scale per band, symmetric about zero (white) so
    that the sign of every weight reads the same in all of the band's filters. The figure
    is ``min(F, ncols) × panel_size + COLORBAR_ROOM`` wide and
    ``C × (rows × panel_size + BAND_ROOM)`` high. 1-D: ``ceil(F / ncols)`` rows of panels
    ``LINE_ASPECT × panel_size`` wide and ``LABEL_ROOM × panel_size`` high, one y scale for all.
    """
    weights = np.asarray(kernels, dtype=np.float64)
    if weights.ndim not in (3, 4) or min(weights.shape) < 1:
        raise DeepfieldError(f"plot_filter_mosaic: expected kernels (F, C, kh, kw) or (F, C, k), got {weights.shape}")
    names = _band_names(weights.shape[1], band_names)
    cols = min(ncols, len(weights))
    rows = math.ceil(len(weights) / cols)
    path = Path(path)
    if weights.ndim == 3:
        with figure(path, (cols * LINE_ASPECT * panel_size, rows * LABEL_ROOM * panel_size)) as fig:
            _draw_lines(fig, weights, names, rows, cols)
            if title:
                fig.suptitle(title)
        return path
    with figure(path, (cols * panel_size + COLORBAR_ROOM, len(names) * (rows * panel_size + BAND_ROOM))) as fig:
        for band, (name, sub) in enumerate(zip(names, fig.subfigures(len(names), 1, squeeze=False).ravel())):
            _draw_band(sub, weights[:, band], name, rows, cols)
        if title:
            fig.suptitle(title)
    return path


def _band_names(bands: int, band_names: Sequence[str] | None) -> list[str]:
    names = [f"band {b}" for b in range(bands)] if band_names is None else [str(n) for n in band_names]
    if len(names) != bands:
        raise DeepfieldError(f"band_names: {len(names)} names for {bands} bands")
    return names


def _draw_band(fig: Figure, kernels: np.ndarray, name: str, rows: int, cols: int) -> None:
    """One band's ``(F, kh, kw)`` kernels as a grid on one symmetric colour scale, with its colour bar."""
    limit = max(float(np.abs(kernels).max()), 1e-30)
    axes = _grid(fig, len(kernels), rows, cols)
    for i, (ax, kernel) in enumerate(zip(axes, kernels)):
        image = ax.imshow(kernel, cmap=KERNEL_CMAP, vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set_title(str(i), fontsize=6, pad=1)
    fig.colorbar(image, ax=list(axes), shrink=0.9, aspect=30).ax.tick_params(labelsize=6)
    fig.suptitle(name, fontsize=9)


def _draw_lines(fig: Figure, kernels: np.ndarray, names: list[str], rows: int, cols: int) -> None:
    """``(F, C, k)`` kernels, a panel per filter with a line per band, on one symmetric y scale."""
    limit = max(float(np.abs(kernels).max()), 1e-30) * 1.05
    taps = np.arange(kernels.shape[2])
    axes = _grid(fig, len(kernels), rows, cols, frame=True)
    for i, (ax, kernel) in enumerate(zip(axes, kernels)):
        for band, name in zip(kernel, names):
            ax.plot(taps, band, marker=".", markersize=3, linewidth=1, label=name)
        ax.axhline(0.0, color="grey", linewidth=0.5)
        ax.set_ylim(-limit, limit)
        ax.set_title(str(i), fontsize=7, pad=1)
        ax.tick_params(labelsize=6)
    if len(names) > 1:
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=len(names), fontsize=7)


def _grid(fig: Figure, panels: int, rows: int, cols: int, frame: bool = False) -> list[Axes]:
    """The first ``panels`` axes of a ``rows × cols`` grid (the rest hidden); bare unless ``frame``."""
    axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes[panels:]:
        ax.set_visible(False)
    if not frame:
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
    return axes[:panels]


def plot_feature_maps(maps: ArrayLike, path: str | os.PathLike[str], image: ArrayLike | None = None,
                      max_maps: int = 64, ncols: int = 8, panel_size: float = 1.0, channels: Channels = None,
                      title: str | None = None) -> Path:
    """Write the feature maps a layer makes from one input, optionally after the input itself.

    Args:
        maps: ``(C, H, W)`` maps of one input (one row of
            :func:`~deepfield.analysis.explain.filters.feature_maps`).
        image: the ``(C_in, H_in, W_in)`` input, shown first with an asinh stretch
            (:func:`~deepfield.plots.gallery.asinh_composite`, ``channels`` as there).
        max_maps: show the first ``max_maps`` maps only.
        ncols: panels per row; the figure is ``min(n, ncols) × panel_size`` wide and
            ``rows × LABEL_ROOM × panel_size`` high for ``n`` panels.

    Each map has its own linear colour scale (viridis, its minimum to its maximum), titled
    by its channel index.
    """
    stack = np.asarray(maps, dtype=np.float64)
    if stack.ndim != 3 or min(stack.shape) < 1:
        raise DeepfieldError(f"plot_feature_maps: expected maps (C, H, W) of one input, got shape {stack.shape}")
    max_maps = arguments.integer("plot_feature_maps: max_maps", max_maps, expected=">= 1")
    shown = stack[:max_maps]
    panels = len(shown) + (image is not None)
    cols = min(ncols, panels)
    rows = math.ceil(panels / cols)
    path = Path(path)
    with figure(path, (cols * panel_size, rows * LABEL_ROOM * panel_size)) as fig:
        axes = _grid(fig, panels, rows, cols)
        if image is not None:
            axes[0].imshow(asinh_composite(np.asarray(image), channels), cmap="gray", vmin=0.0, vmax=1.0,
                           interpolation="nearest")
            axes[0].set_title("input", fontsize=8)
        for i, (ax, feature) in enumerate(zip(axes[panels - len(shown):], shown)):
            ax.imshow(feature, cmap="viridis", interpolation="nearest")
            ax.set_title(str(i), fontsize=8)
        heading = title or ""
        if len(shown) < len(stack):
            heading = f"{heading} (first {len(shown)} of {len(stack)} maps)".strip()
        if heading:
            fig.suptitle(heading)
    return path


def plot_strongest_patches(patches: StrongestPatches | ArrayLike, path: str | os.PathLike[str],
                           values: ArrayLike | None = None, filters: Sequence[int] | None = None,
                           channels: Channels = None, panel_size: float = 0.9, title: str | None = None) -> Path:
    """Write, for each chosen filter, a row of the input patches that excite it most (Zeiler & Fergus 2014).

    Args:
        patches: a :class:`~deepfield.analysis.explain.patches.StrongestPatches`, or its
            ``(F, k, C, h, w)`` patches array, with ``values`` ``(F, k)`` to annotate them.
        filters: which filters, a row each, in this order; default the first 16.
        channels: bands shown, as for :func:`~deepfield.plots.gallery.asinh_composite`
            (each patch is stretched on its own).
        panel_size: the figure is ``k × panel_size`` wide and
            ``len(filters) × LABEL_ROOM × panel_size`` high.

    Each panel is titled with its activation; each row is labelled with its filter; the
    title names the layer and its receptive field in input pixels.
    """
    if isinstance(patches, StrongestPatches):
        stack, values = patches.patches, patches.values
        field = "×".join(str(n) for n in patches.field.size)
        step = "×".join(str(n) for n in patches.field.jump)
        title = title or f"strongest patches of {patches.layer!r}\nreceptive field {field} px, one every {step} px"
    else:
        stack = np.asarray(patches, dtype=np.float32)
    if stack.ndim != 5 or min(stack.shape) < 1:
        raise DeepfieldError(f"plot_strongest_patches: expected patches (F, k, C, h, w), got shape {stack.shape}")
    scores = None if values is None else np.asarray(values, dtype=np.float64)
    if scores is not None and scores.shape != stack.shape[:2]:
        raise DeepfieldError(f"plot_strongest_patches: values have shape {scores.shape}; expected {stack.shape[:2]}")
    rows = list(range(min(16, len(stack)))) if filters is None else [int(f) for f in filters]
    if not rows or not all(0 <= f < len(stack) for f in rows):
        raise DeepfieldError(f"plot_strongest_patches: filters {filters!r} must be indices below {len(stack)}")
    k = stack.shape[1]
    path = Path(path)
    with figure(path, (k * panel_size, len(rows) * LABEL_ROOM * panel_size)) as fig:
        axes = np.reshape(_grid(fig, len(rows) * k, len(rows), k), (len(rows), k))
        for row, f in zip(axes, rows):
            row[0].set_ylabel(f"filter {f}", fontsize=8)
            for j, ax in enumerate(row):
                ax.imshow(asinh_composite(stack[f, j], channels), cmap="gray", vmin=0.0, vmax=1.0,
                          interpolation="nearest")
                if scores is not None:
                    ax.set_title(f"{scores[f, j]:.3g}", fontsize=7, pad=2)
        if title:
            fig.suptitle(title)
    return path
