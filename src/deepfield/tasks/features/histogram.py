"""Colour histograms: the distribution of pixel values in each band and of pixel colours.

Bin edges are fixed by the options (never fitted per image), so a bin means the same
brightness for every object. Values outside the range are counted in the end bins, so
each histogram sums to the number of finite pixels (``H * W`` without NaN).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.tasks.features.base import Extractor, FeatureSet, check_images


class ColourHistogram(Extractor):
    """Per-band intensity histograms, plus (with >= 2 bands) band-ratio histograms.

    The band-ratio histogram of bands ``(b, b+1)`` bins the per-pixel difference
    ``x[b] - x[b+1]``: on asinh-stretched stamps (as :mod:`deepfield.tasks.imaging`
    prepares them, a logarithm of flux away from the sky) that is the log of the flux
    ratio, i.e. a pixel colour, and it stays defined where a band's flux is near zero.
    ``images: (N, C, H, W) -> (N, C * bins + (C - 1) * bins)`` counts (or fractions with ``density``).
    """

    name = "colour_histogram"

    def __init__(self, bins: int = 16, value_range: tuple[float, float] = (-3.0, 10.0),
                 ratio_range: tuple[float, float] = (-3.0, 3.0), density: bool = False):
        self.bins = arguments.integer("features colour_histogram: bins", bins, expected="an integer >= 1")
        self.value_range = _range(value_range, "value_range")
        self.ratio_range = _range(ratio_range, "ratio_range")
        self.density = bool(density)

    def get_config(self) -> dict[str, Any]:
        return {"bins": self.bins, "value_range": list(self.value_range),
                "ratio_range": list(self.ratio_range), "density": self.density}

    def extract(self, images: np.ndarray) -> FeatureSet:
        x = check_images(images, self.name)
        c = x.shape[1]
        parts = [self.histograms(x, self.value_range)]
        names = [f"hist_band{b}_{k}" for b in range(c) for k in range(self.bins)]
        if c >= 2:
            parts.append(self.histograms(x[:, :-1] - x[:, 1:], self.ratio_range))
            names += [f"hist_band{b}-band{b + 1}_{k}" for b in range(c - 1) for k in range(self.bins)]
        return FeatureSet(np.concatenate(parts, axis=1), names)

    def edges(self, value_range: tuple[float, float]) -> np.ndarray:
        """The ``bins + 1`` fixed bin edges over ``value_range``."""
        return np.linspace(*value_range, self.bins + 1)

    def histograms(self, planes: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
        """``planes: (N, P, H, W) -> (N, P * bins)``: one histogram per plane, end bins open."""
        n, p = planes.shape[:2]
        flat = planes.reshape(n * p, -1)
        finite = np.isfinite(flat)
        index = np.clip(np.searchsorted(self.edges(value_range), np.where(finite, flat, 0.0), side="right") - 1,
                        0, self.bins - 1)
        index += np.arange(n * p)[:, None] * self.bins
        counts = np.bincount(index[finite], minlength=n * p * self.bins).reshape(n * p, self.bins).astype(float)
        if self.density:
            with np.errstate(invalid="ignore", divide="ignore"):
                counts /= finite.sum(axis=1, keepdims=True)
        return counts.reshape(n, p * self.bins)


def _range(value: tuple[float, float], option: str) -> tuple[float, float]:
    low, high = (float(v) for v in value)
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise DeepfieldError(f"features colour_histogram: {option} must be finite (low, high) with low < high, "
                             f"got {value!r}")
    return low, high
