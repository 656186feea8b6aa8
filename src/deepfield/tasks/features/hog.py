"""Histogram of oriented gradients (Dalal & Triggs 2005) through ``skimage.feature.hog``.

Each stamp is cut into cells of ``pixels_per_cell``; each cell becomes a histogram of
``orientations`` gradient directions weighted by gradient magnitude; histograms are
normalised over blocks of ``cells_per_block`` cells (``block_norm``).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from skimage.feature import hog

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.tasks.features.base import Extractor, FeatureSet, band_mean, check_images, progress

BLOCK_NORMS = ("L1", "L1-sqrt", "L2", "L2-Hys")
BANDS = ("mean", "each")


class HOG(Extractor):
    """HOG of the band-mean image (``bands="mean"``) or of each band concatenated (``"each"``).

    For an ``H x W`` image the length per image is ``bx * by * cx * cy * orientations`` with
    ``b = H // p - c + 1`` blocks per axis (``p`` pixels per cell, ``c`` cells per block).
    """

    name = "hog"

    def __init__(self, orientations: int = 9, pixels_per_cell: tuple[int, int] | int = (8, 8),
                 cells_per_block: tuple[int, int] | int = (2, 2), block_norm: str = "L2-Hys",
                 bands: str = "mean"):
        if block_norm not in BLOCK_NORMS:
            raise DeepfieldError(f"features hog: block_norm must be one of {', '.join(BLOCK_NORMS)}, "
                                 f"got {block_norm!r}")
        if bands not in BANDS:
            raise DeepfieldError(f"features hog: bands must be 'mean' or 'each', got {bands!r}")
        self.orientations = arguments.integer("features hog: orientations", orientations, expected=">= 1")
        self.pixels_per_cell = _pair(pixels_per_cell, "pixels_per_cell")
        self.cells_per_block = _pair(cells_per_block, "cells_per_block")
        self.block_norm = block_norm
        self.bands = bands

    def get_config(self) -> dict[str, Any]:
        return {"orientations": self.orientations, "pixels_per_cell": list(self.pixels_per_cell),
                "cells_per_block": list(self.cells_per_block), "block_norm": self.block_norm,
                "bands": self.bands}

    def extract(self, images: np.ndarray) -> FeatureSet:
        """``images: (N, C, H, W)`` -> ``(N, F)``, F = per-image HOG length (times C for ``"each"``)."""
        x = check_images(images, self.name)
        n, c, h, w = x.shape
        cells = (h // self.pixels_per_cell[0], w // self.pixels_per_cell[1])
        if cells[0] < self.cells_per_block[0] or cells[1] < self.cells_per_block[1]:
            raise DeepfieldError(f"features hog: {h}x{w} stamps hold {cells[0]}x{cells[1]} cells of "
                                 f"{self.pixels_per_cell} pixels, fewer than one block of {self.cells_per_block}")
        planes = band_mean(x)[:, None] if self.bands == "mean" else x
        rows = [np.concatenate([self.describe(plane) for plane in stamp])
                for stamp in progress(planes, n, "HOG")]
        blocks = [cells[k] - self.cells_per_block[k] + 1 for k in (0, 1)]
        per_image = blocks[0] * blocks[1] * self.cells_per_block[0] * self.cells_per_block[1] * self.orientations
        labels = ["mean"] if self.bands == "mean" else [f"band{k}" for k in range(c)]
        names = [f"hog_{label}_{k}" for label in labels for k in range(per_image)]
        return FeatureSet(np.stack(rows) if rows else np.empty((0, len(names))), names)

    def describe(self, image: np.ndarray) -> np.ndarray:
        """The flat HOG vector of one 2-D image ``(H, W)`` (NaN pixels set to 0)."""
        return hog(np.nan_to_num(image), orientations=self.orientations, pixels_per_cell=self.pixels_per_cell,
                   cells_per_block=self.cells_per_block, block_norm=self.block_norm, feature_vector=True)


def _pair(value: tuple[int, int] | int, option: str) -> tuple[int, int]:
    pair = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2 or not all(arguments.is_integer(v) for v in pair):
        raise DeepfieldError(f"features hog: {option} must be a positive int or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])
