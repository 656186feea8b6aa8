"""Additive Gaussian noise, with one sigma for all bands or one per band."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from deepfield.data.transforms.base import RandomTransform


class GaussianNoise(RandomTransform, name="gaussian_noise"):
    """Adds independent normal noise of standard deviation ``sigma`` (flux units) to every pixel.

    ``sigma`` is one number or one per band (length C); each sample of a batch gets its own draw.
    """

    def __init__(self, sigma: float | Sequence[float], generator: torch.Generator | None = None):
        super().__init__(generator)
        try:
            values = [float(s) for s in sigma] if isinstance(sigma, Sequence) else [float(sigma)]
        except (TypeError, ValueError):
            values = []
        if not values or not all(math.isfinite(s) and s >= 0 for s in values):
            raise self._error(f"sigma must be finite and >= 0 (one value or one per band), got {sigma!r}")
        self.sigma: float | list[float] = values if isinstance(sigma, Sequence) else values[0]

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(self.sigma, dtype=x.dtype, device=x.device)
        if sigma.ndim == 1:
            if len(sigma) != x.shape[1]:
                raise self._error(f"sigma has {len(sigma)} bands, the image has {x.shape[1]}")
            sigma = sigma[:, None, None]
        return x + self._randn(x) * sigma

    def _arguments(self) -> dict[str, Any]:
        return {"sigma": self.sigma}
