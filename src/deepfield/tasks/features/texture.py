"""Texture: grey-level co-occurrence (Haralick) statistics through ``skimage.feature.graycomatrix``.

The band-mean image is quantised to ``levels`` grey levels over its own min..max (or over a
fixed ``value_range``), the symmetric normalised co-occurrence matrix is counted for each
distance and angle, and ``graycoprops`` reduces it to six statistics.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from skimage.feature import graycomatrix, graycoprops

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.tasks.features.base import Extractor, FeatureSet, band_mean, check_images, progress

PROPERTIES = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")


class Texture(Extractor):
    """``images: (N, C, H, W) -> (N, 6 * len(distances) * len(angles))``, named
    ``{property}_d{distance}_a{angle in degrees}``. A constant image quantises to one level:
    contrast 0, homogeneity 1, energy 1 (skimage sets its correlation to 1)."""

    name = "texture"

    def __init__(self, levels: int = 16, distances: tuple[int, ...] = (1, 2, 4),
                 angles: tuple[float, ...] = (0.0, 45.0, 90.0, 135.0),
                 value_range: tuple[float, float] | None = None):
        levels = arguments.integer("features texture: levels", levels, 2, 256, expected="an integer in 2..256")
        if not distances or not all(arguments.is_integer(d) for d in distances):
            raise DeepfieldError(f"features texture: distances must be positive integers, got {distances!r}")
        if not angles:
            raise DeepfieldError("features texture: angles (degrees) must not be empty")
        if value_range is not None and not float(value_range[0]) < float(value_range[1]):
            raise DeepfieldError(f"features texture: value_range must be (low, high) with low < high, "
                                 f"got {value_range!r}")
        self.levels = int(levels)
        self.distances = tuple(int(d) for d in distances)
        self.angles = tuple(float(a) for a in angles)
        self.value_range = None if value_range is None else (float(value_range[0]), float(value_range[1]))

    def get_config(self) -> dict[str, Any]:
        return {"levels": self.levels, "distances": list(self.distances), "angles": list(self.angles),
                "value_range": None if self.value_range is None else list(self.value_range)}

    def extract(self, images: np.ndarray) -> FeatureSet:
        planes = band_mean(check_images(images, self.name))
        names = [f"{p}_d{d}_a{a:g}" for p in PROPERTIES for d in self.distances for a in self.angles]
        values = np.empty((len(planes), len(names)))
        for i, plane in enumerate(progress(planes, len(planes), "texture")):
            matrix = graycomatrix(self.quantise(plane), self.distances, np.deg2rad(self.angles),
                                  levels=self.levels, symmetric=True, normed=True)
            values[i] = np.concatenate([graycoprops(matrix, p).ravel() for p in PROPERTIES])
        return FeatureSet(values, names)

    def quantise(self, image: np.ndarray) -> np.ndarray:
        """One image ``(H, W)`` as uint8 grey levels ``0..levels-1`` (NaN -> 0; constant -> 0)."""
        finite = np.isfinite(image)
        if self.value_range is not None:
            low, high = self.value_range
        else:
            low, high = (image[finite].min(), image[finite].max()) if finite.any() else (0.0, 0.0)
        if high <= low:
            return np.zeros(image.shape, dtype=np.uint8)
        scaled = np.floor((np.where(finite, image, low) - low) / (high - low) * self.levels)
        return np.clip(scaled, 0, self.levels - 1).astype(np.uint8)
