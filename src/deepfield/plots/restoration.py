"""Restored images beside what they came from: noisy input, output, truth, residual (and σ) per stamp."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import AsinhNorm, Normalize
from numpy.typing import ArrayLike

from deepfield.errors import DeepfieldError
from deepfield.plots.style import figure

__all__ = ["plot_restoration_gallery", "best_median_worst"]


def best_median_worst(scores: ArrayLike) -> list[int]:
    """Indices of the highest, the median and the lowest of ``scores`` (N,) (fewer when N < 3), NaN last."""
    order = np.argsort(-np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf, posinf=np.inf),
                       kind="stable")
    picks = [int(order[0]), int(order[len(order) // 2]), int(order[-1])]
    return list(dict.fromkeys(picks))


def plot_restoration_gallery(noisy: ArrayLike, output: ArrayLike, truth: ArrayLike, path: str | os.PathLike[str],
                             rows: Sequence[int], labels: Sequence[str], sigma: ArrayLike | None = None,
                             band: int = 0, unit: str = "", titles: Sequence[str] = ("input", "output", "truth"),
                             marks: ArrayLike | None = None) -> Path:
    """One row per stamp of ``rows``: noisy input, output, truth, residual (output − truth) and, when given,
    the per-pixel ``sigma``, all of band ``band``.

    ``noisy``, ``output``, ``truth`` (and ``sigma``): (N, C, H, W) in one flux unit ``unit``; the first three
    panels share one asinh stretch, linear within the input's noise σ (its 1.4826 · MAD against the truth), from
    -2σ (or the truth's 1st percentile) to the truth's 99.5th percentile (at least 3σ): a faint galaxy under
    its noise shows as a galaxy in grey noise, not as saturated black and white; the residual is centred on 0
    within ± the larger of σ and the residual's 99th percentile of |value|; ``labels``: one title per row
    (e.g. its PSNR); ``titles``: of the first three panels; ``marks``: (N, 2) a point (column, row in pixels)
    crossed on each input panel (a deblended target).
    """
    stacks = [np.asarray(a, dtype=np.float64) for a in (noisy, output, truth)]
    if len({a.shape for a in stacks}) != 1 or stacks[0].ndim != 4:
        raise DeepfieldError(f"restoration gallery: noisy, output and truth must be (N, C, H, W) alike, got "
                             f"{[a.shape for a in stacks]}")
    if len(rows) != len(labels) or not rows:
        raise DeepfieldError("restoration gallery: one label per row, at least one row")
    noisy, output, truth = (a[:, band] for a in stacks)
    sigma_maps = None if sigma is None else np.asarray(sigma, dtype=np.float64)[:, band]
    names = [*titles, "output − truth"] + ([] if sigma_maps is None else ["σ"])
    path = Path(path)
    with figure(path, (2.0 * len(names), 2.1 * len(rows))) as fig:
        axes = fig.subplots(len(rows), len(names), squeeze=False)
        for r, (i, label) in enumerate(zip(rows, labels)):
            low, high = np.percentile(truth[i], [1.0, 99.5])
            residual = output[i] - truth[i]
            noise = float(1.4826 * np.median(np.abs((noisy[i] - truth[i]) - np.median(noisy[i] - truth[i]))))
            reach = max(noise, float(np.percentile(np.abs(residual), 99))) or 1.0
            width = noise or max(float(high - low), 1e-12) / 10  # a noise-free input: linear over a tenth of the range
            stretch = AsinhNorm(linear_width=width, vmin=min(float(low), -2 * noise),
                                vmax=max(float(high), 3 * noise, float(low) + width))
            panels = [(noisy[i], stretch, "gray"), (output[i], stretch, "gray"), (truth[i], stretch, "gray"),
                      (residual, Normalize(-reach, reach), "RdBu_r")]
            if sigma_maps is not None:
                panels.append((sigma_maps[i], Normalize(0.0, float(sigma_maps[i].max()) or 1.0), "viridis"))
            for c, (image, norm, cmap) in enumerate(panels):
                ax = axes[r, c]
                shown = ax.imshow(image, origin="lower", norm=norm, cmap=cmap)
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(names[c], fontsize=9)
                if c == 0:
                    ax.set_ylabel(label, fontsize=8)
                    if marks is not None:
                        ax.plot(*np.asarray(marks, dtype=np.float64)[i], "+", color="#D55E00", markersize=10)
                if c >= 3:
                    fig.colorbar(shown, ax=ax, shrink=0.8).set_label(unit, fontsize=7)
    return path
