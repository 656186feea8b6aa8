"""Segmentation maps beside their stamps: image, predicted classes, true classes per stamp."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.patches import Patch
from numpy.typing import ArrayLike

from deepfield.errors import DeepfieldError
from deepfield.plots.style import figure

__all__ = ["plot_segmentation_gallery"]

CLASS_COLOURS = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#999999")
"""Okabe–Ito colours, black first (class 0, the background); classes past the ninth cycle through them."""


def plot_segmentation_gallery(images: ArrayLike, predicted: ArrayLike, truth: ArrayLike, path: str | os.PathLike[str],
                              rows: Sequence[int], labels: Sequence[str], classes: Sequence[str]) -> Path:
    """One row per stamp of ``rows``: the image, the predicted class map and the true one, with a legend of
    ``classes``.

    ``images``: (N, H, W) what to show of each stamp (e.g. its stretched bands averaged), grey from its 1st
    to 99.5th percentile; ``predicted``, ``truth``: (N, H, W) class indices; ``labels``: one title per row
    (e.g. its IoU)."""
    images, predicted, truth = (np.asarray(a) for a in (images, predicted, truth))
    if not images.shape == predicted.shape == truth.shape or images.ndim != 3:
        raise DeepfieldError(f"segmentation gallery: images, predicted and true maps must be (N, H, W) alike, got "
                             f"{[a.shape for a in (images, predicted, truth)]}")
    if len(rows) != len(labels) or not rows:
        raise DeepfieldError("segmentation gallery: one label per row, at least one row")
    colours = [CLASS_COLOURS[k % len(CLASS_COLOURS)] for k in range(len(classes))]
    cmap = ListedColormap(colours)
    norm = BoundaryNorm(np.arange(len(classes) + 1) - 0.5, len(classes))
    path = Path(path)
    with figure(path, (6.6, 2.1 * len(rows) + 0.5)) as fig:
        axes = fig.subplots(len(rows), 3, squeeze=False)
        for r, (i, label) in enumerate(zip(rows, labels)):
            low, high = np.percentile(images[i], [1.0, 99.5])
            panels = [(images[i], dict(cmap="gray", vmin=low, vmax=max(high, low + 1e-12))),
                      (predicted[i], dict(cmap=cmap, norm=norm, interpolation="nearest")),
                      (truth[i], dict(cmap=cmap, norm=norm, interpolation="nearest"))]
            for c, (image, style) in enumerate(panels):
                ax = axes[r, c]
                ax.imshow(image, origin="lower", **style)
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(("image", "predicted", "truth")[c], fontsize=9)
                if c == 0:
                    ax.set_ylabel(label, fontsize=8)
        fig.legend(handles=[Patch(color=colours[k], label=name) for k, name in enumerate(classes)],
                   loc="outside lower center", ncol=min(len(classes), 5), fontsize=8, frameon=False)
    return path
