"""Pixel concatenation: every (optionally block-averaged) pixel of every band is a feature."""
from __future__ import annotations

from typing import Any

import numpy as np

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.tasks.features.base import Extractor, FeatureSet, check_images


class Pixels(Extractor):
    """Stamps ``(N, C, H, W)`` flattened to ``(N, C * H/d * W/d)`` in C order (band, row, column),
    after averaging ``d x d`` blocks when ``downsample = d > 1`` (H and W must divide by d)."""

    name = "pixels"

    def __init__(self, downsample: int = 1):
        self.downsample = arguments.integer("features pixels: downsample", downsample, expected="an integer >= 1")

    def get_config(self) -> dict[str, Any]:
        return {"downsample": self.downsample}

    def extract(self, images: np.ndarray) -> FeatureSet:
        x = check_images(images, self.name)
        n, c, h, w = x.shape
        d = self.downsample
        if h % d or w % d:
            raise DeepfieldError(f"features pixels: downsample={d} does not divide {h}x{w} stamps")
        if d > 1:
            x = x.reshape(n, c, h // d, d, w // d, d).mean(axis=(3, 5))
        names = [f"pix_{b}_{i}_{j}" for b in range(c) for i in range(h // d) for j in range(w // d)]
        return FeatureSet(x.reshape(n, -1), names)
