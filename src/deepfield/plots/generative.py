"""What a generative model draws: the sample grid (samples per condition beside real stamps) and a latent
interpolation between two stamps. Stamps are shown as :func:`~deepfield.plots.gallery.asinh_composite`
(RGB for three bands or more, grey for one or two), one scale per row: brightness compares along a row."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from deepfield.errors import DeepfieldError
from deepfield.plots.gallery import asinh_composite
from deepfield.plots.style import figure

__all__ = ["plot_sample_grid", "plot_interpolation"]


def _row(stamps: list[np.ndarray]) -> list[np.ndarray]:
    """Display images of ``stamps`` (C, H, W) on ONE asinh scale (sky and brightness of all of them), so that a row
    shows their relative brightness: the stamps side by side go through one composite, then apart again."""
    strip = np.concatenate(stamps, axis=-1)
    shown = asinh_composite(strip, channels=None if len(strip) >= 3 else 0)
    return np.split(shown, len(stamps), axis=1)


def _panel(ax: object, image: np.ndarray, title: str | None = None) -> None:
    ax.imshow(image, origin="lower", cmap=None if image.ndim == 3 else "gray")  # type: ignore[attr-defined]
    ax.set_xticks([])  # type: ignore[attr-defined]
    ax.set_yticks([])  # type: ignore[attr-defined]
    if title:
        ax.set_title(title, fontsize=8)  # type: ignore[attr-defined]


def plot_sample_grid(real: ArrayLike, samples: ArrayLike, path: str | os.PathLike[str],
                     labels: Sequence[str]) -> Path:
    """One row per condition: the real stamp ``real[r]`` (C, H, W), then its samples ``samples[r]`` (S, C, H, W),
    all on the row's one display scale.

    ``labels``: one per row (the condition, e.g. ``half_light_radius=0.6, mag=-9.1``), shown left of the row.
    """
    real, samples = np.asarray(real, dtype=np.float64), np.asarray(samples, dtype=np.float64)
    if real.ndim != 4 or samples.ndim != 5 or len(real) != len(samples) or len(labels) != len(real):
        raise DeepfieldError(f"sample grid: real (R, C, H, W), samples (R, S, C, H, W) and R labels; got "
                             f"{real.shape}, {samples.shape}, {len(labels)} labels")
    rows, columns = len(real), 1 + samples.shape[1]
    path = Path(path)
    with figure(path, (1.4 * columns, 1.5 * rows + 0.3)) as fig:
        axes = fig.subplots(rows, columns, squeeze=False)
        for r in range(rows):
            shown = _row([real[r], *samples[r]])
            _panel(axes[r, 0], shown[0], "real" if r == 0 else None)
            axes[r, 0].set_ylabel(labels[r], fontsize=7)
            for s in range(samples.shape[1]):
                _panel(axes[r, 1 + s], shown[1 + s], f"sample {s + 1}" if r == 0 else None)
    return path


def plot_interpolation(start: ArrayLike, path_images: ArrayLike, end: ArrayLike,
                       path: str | os.PathLike[str]) -> Path:
    """A real stamp ``start``, the decoded stamps along a line in latent space ``path_images`` (T, C, H, W), and the
    real stamp ``end``, in one row."""
    stamps = [np.asarray(start, dtype=np.float64), *np.asarray(path_images, dtype=np.float64),
              np.asarray(end, dtype=np.float64)]
    path = Path(path)
    with figure(path, (1.3 * len(stamps), 1.8)) as fig:
        axes = fig.subplots(1, len(stamps), squeeze=False)[0]
        steps = len(stamps) - 2
        for k, (ax, image) in enumerate(zip(axes, _row(stamps))):
            title = "real A" if k == 0 else "real B" if k == len(stamps) - 1 else f"t={(k - 1) / max(steps - 1, 1):.2f}"
            _panel(ax, image, title)
    return path
