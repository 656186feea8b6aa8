"""The pixel scale of the image-to-image tasks (denoise, deblend): file flux units <-> network units.

A run's ``info`` (:class:`~deepfield.tasks.prepared_info.DenoiseInfo`, ``DeblendInfo``) records
``normalize`` (each band's robust median and σ of the training inputs, or ``None``) and ``stretch``.
Stamps in the file's flux unit ``x`` become ``v = (x − median) / σ`` (:func:`normalise`), then with
``stretch: asinh`` ``asinh(v / s)``, ``s`` = :data:`~deepfield.tasks.imaging.ASINH_SOFTENING` sky σ
(linear within ``s`` σ, logarithmic above, as the classifiers' stretch): :func:`to_network`. Both are
undone exactly on the outputs, ``s sinh(o)`` then ``o · σ + median`` (:func:`from_network`,
:func:`restore`), so metrics and predictions are in the file's flux unit. :class:`NetworkScale` does the
same on tensors, for whole-image (tiled) inference.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from deepfield.tasks.imaging import ASINH_SOFTENING


def normalise(stamps: np.ndarray, info: Any) -> np.ndarray:
    """Raw stamps (N, C, H, W) in the file's unit -> ``(x − median) / σ`` (float32; unchanged without ``normalize``)."""
    if info.normalize is None:
        return stamps.astype(np.float32)
    median, sigma = (np.asarray(v, dtype=np.float64)[None, :, None, None]
                     for v in (info.normalize.median, info.normalize.sigma))
    return ((stamps - median) / sigma).astype(np.float32)


def restore(values: np.ndarray, info: Any, offset: bool = True) -> np.ndarray:
    """The inverse of :func:`normalise`: normalised values (N, C, H, W) -> the file's flux unit (float64);
    ``offset=False`` for a spread (σ scales, it does not shift)."""
    values = np.asarray(values, dtype=np.float64)
    if info.normalize is None:
        return values
    sigma = np.asarray(info.normalize.sigma)[None, :, None, None]
    median = np.asarray(info.normalize.median)[None, :, None, None] if offset else 0.0
    return values * sigma + median


def to_network(stamps: np.ndarray, info: Any) -> np.ndarray:
    """Raw stamps (N, C, H, W) in the file's unit -> network units (float32): normalised, then stretched."""
    values = normalise(stamps, info)
    return np.arcsinh(values / ASINH_SOFTENING) if info.stretch == "asinh" else values


def from_network(values: np.ndarray, info: Any) -> np.ndarray:
    """The inverse of :func:`to_network`: network units (N, C, H, W) -> the file's flux unit (float64)."""
    values = np.asarray(values, dtype=np.float64)
    return restore(ASINH_SOFTENING * np.sinh(values) if info.stretch == "asinh" else values, info)


class NetworkScale(nn.Module):
    """:func:`to_network` (``forward``) and :func:`from_network` (``inverse``) on float32 tensors (N, C, H, W)."""

    def __init__(self, info: Any, channels: int):
        super().__init__()
        stats = info.normalize
        median = stats.median if stats is not None else [0.0] * channels
        sigma = stats.sigma if stats is not None else [1.0] * channels
        self.stretched = info.stretch == "asinh"
        self.register_buffer("median", torch.tensor(median, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("sigma", torch.tensor(sigma, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = (x - self.median) / self.sigma
        return torch.asinh(v / ASINH_SOFTENING) if self.stretched else v

    def inverse(self, o: torch.Tensor) -> torch.Tensor:
        v = ASINH_SOFTENING * torch.sinh(o) if self.stretched else o
        return v * self.sigma + self.median
