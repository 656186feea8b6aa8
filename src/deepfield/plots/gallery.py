"""A gallery of predictions on real stamps: each titled true vs predicted, framed green (right) or red (wrong).

>>> right, wrong = select_examples(y_true, proba, k=6)   # the 6 most confident of each
>>> plot_gallery(images, y_true, proba, "figures/gallery.png", class_names=names, k=6)

Stamps are shown with an asinh stretch: one band in grey, or three bands as a colour
composite that keeps each pixel's colour (the ratios between bands) while compressing
its brightness, as Lupton et al. (2004, PASP 116, 133); here the brightness stretched is
the brightest band of the pixel, so colours saturate only above the chosen percentile.
Each band's median (the sky) is subtracted first. Spectra ``(N, C, L)`` are drawn as
curves instead (one line per channel, on panels twice as wide).
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from deepfield import arguments
from deepfield.analysis.classification import as_labels, as_scores, class_names_for, predict_labels
from deepfield.errors import DeepfieldError
from deepfield.plots.style import RIGHT_COLOUR, WRONG_COLOUR, figure

__all__ = ["MAX_COLUMNS", "MAX_PANELS", "asinh_composite", "plot_gallery", "select_examples"]

MAX_PANELS = 256
"""More stamps than this in one gallery is an error: pick them with ``k``."""

MAX_COLUMNS = 4
"""Panels per row by default: 4 × 1.8 in × 120 dpi = 864 px, shown at its natural size (titles
readable) in the report's column."""

TITLE_ROOM = 1.35
"""A panel is ``panel_size`` wide and ``TITLE_ROOM × panel_size`` high, to fit its two-line title."""

Channels = int | tuple[int, int, int] | None


def select_examples(y_true: ArrayLike, scores: ArrayLike, k: int,
                    threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``k`` most confident right and the ``k`` most confident wrong predictions.

    Confidence is the probability of the predicted class (see
    :func:`~deepfield.analysis.classification.predict_labels`); each array is ``(≤ k,)``,
    most confident first, ties in index order.

    Args:
        y_true: ``(N,)`` integer labels.
        scores: ``(N,)`` probability of class 1 or ``(N, K)`` class probabilities.
    """
    k = arguments.integer("select_examples: k", k, expected=">= 1")
    y = as_labels(y_true)
    predicted, confidence = predict_labels(as_scores(scores, len(y)), threshold)
    order = np.argsort(-confidence, kind="stable")
    right = predicted[order] == y[order]
    return order[right][:k], order[~right][:k]


def _default_channels(n_bands: int) -> tuple[int, ...]:
    if n_bands == 1:
        return (0,)
    if n_bands == 3:
        return (2, 1, 0)
    raise DeepfieldError(f"gallery: {n_bands} bands; pass channels= one band index or (red, green, blue) indices")


def asinh_composite(stamp: np.ndarray, channels: Channels = None, softening: float = 0.1,
                    percentile: float = 99.5) -> np.ndarray:
    """A display image in [0, 1] from one stamp ``(C, H, W)``: ``(H, W)`` for one band, ``(H, W, 3)`` RGB.

    Args:
        channels: a band index (grey), ``(red, green, blue)`` band indices, or ``None``:
            band 0 for one band, ``(2, 1, 0)`` for three bands ordered blue to red
            (e.g. g, r, i: i shown red).
        softening: asinh softening in units of the ``percentile`` brightness: smaller
            shows fainter structure.
        percentile: the percentile of the per-pixel brightest band mapped to 1 (brighter
            pixels saturate, keeping their colour).
    """
    picked = (channels,) if isinstance(channels, int) else tuple(channels or _default_channels(len(stamp)))
    if len(picked) not in (1, 3) or not all(-len(stamp) <= c < len(stamp) for c in picked):
        raise DeepfieldError(f"gallery: channels {channels!r} do not select 1 or 3 of {len(stamp)} bands")
    bands = np.asarray(stamp, dtype=np.float64)[list(picked)]
    finite = np.isfinite(bands)
    sky = np.array([np.median(b[f]) if f.any() else 0.0 for b, f in zip(bands, finite)])[:, None, None]
    bands = np.where(finite, bands - sky, 0.0)  # masked (NaN) pixels show as sky
    intensity = bands.max(axis=0)
    scale = np.percentile(intensity, percentile)
    if scale <= 0:
        scale = max(float(np.abs(intensity).max()), 1e-30)
    intensity, bands = intensity / scale, bands / scale
    stretched = np.arcsinh(intensity / softening) / np.arcsinh(1.0 / softening)
    gain = np.divide(stretched, intensity, out=np.zeros_like(intensity), where=intensity > 0)
    out = np.clip(bands * gain, 0.0, None)
    out = out / np.maximum(out.max(axis=0), 1.0)  # saturate without changing colour
    return out[0] if len(picked) == 1 else np.moveaxis(out, 0, -1)


def plot_gallery(images: ArrayLike, y_true: ArrayLike, scores: ArrayLike, path: str | os.PathLike[str],
                 class_names: Sequence[str] | None = None, k: int | None = None, channels: Channels = None,
                 ncols: int | None = None, panel_size: float = 1.8, threshold: float = 0.5,
                 title: str | None = None) -> Path:
    """Write a grid of stamps, each titled ``true`` / ``pred (p)``, framed green if right, red if wrong.

    Args:
        images: ``(N, C, H, W)`` stamps (any flux unit; each is stretched on its own), or
            spectra ``(N, C, L)``, drawn as curves against the sample index.
        y_true: ``(N,)`` integer labels.
        scores: ``(N,)`` probability of class 1 or ``(N, K)`` class probabilities.
        k: show only the ``k`` most confident right then the ``k`` most confident wrong
            (:func:`select_examples`); ``None`` shows all, in order.
        channels: see :func:`asinh_composite`.
        ncols: panels per row; default up to :data:`MAX_COLUMNS` (``k`` when it is smaller).
        panel_size: inches per panel; the figure is ``ncols × panel_size`` wide and
            ``rows × TITLE_ROOM × panel_size`` high.
    """
    stamps = np.asarray(images, dtype=np.float32)
    y = as_labels(y_true)
    s = as_scores(scores, len(y))
    if stamps.ndim not in (3, 4) or len(stamps) != len(y):
        raise DeepfieldError(f"gallery: expected images (N={len(y)}, C, H, W) or spectra (N, C, L), "
                             f"got shape {stamps.shape}")
    width = panel_size * (2 if stamps.ndim == 3 else 1)
    names = class_names_for(2 if s.ndim == 1 else s.shape[1], class_names)
    predicted, confidence = predict_labels(s, threshold)
    shown = np.concatenate(select_examples(y, s, k, threshold)) if k is not None else np.arange(len(y))
    if not 0 < len(shown) <= MAX_PANELS:
        raise DeepfieldError(f"gallery: {len(shown)} stamps to show; expected 1 to {MAX_PANELS} (choose with k=)")
    ncols = ncols or min(MAX_COLUMNS, k or len(shown), len(shown))
    nrows = math.ceil(len(shown) / ncols)
    path = Path(path)
    with figure(path, (ncols * width, nrows * TITLE_ROOM * panel_size)) as fig:
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax in axes[len(shown):]:
            ax.set_visible(False)
        for ax, i in zip(axes, shown):
            if stamps.ndim == 3:
                for channel in stamps[i]:
                    ax.plot(channel, linewidth=0.6)
            else:
                ax.imshow(asinh_composite(stamps[i], channels), cmap="gray", vmin=0.0, vmax=1.0,
                          interpolation="nearest")
            colour = RIGHT_COLOUR if predicted[i] == y[i] else WRONG_COLOUR
            ax.set_title(f"true {names[y[i]]}\npred {names[predicted[i]]} ({confidence[i]:.2f})",
                         fontsize=8, color=colour)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_color(colour)
                spine.set_linewidth(3)
        if title:
            fig.suptitle(title)
    return path
