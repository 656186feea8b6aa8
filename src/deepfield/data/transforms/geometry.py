"""Geometric transforms: centre crop, resize, the eight symmetries of the square, shifts.

Pixel axes are the last two, ``(H, W)`` = (rows, columns). Random ones draw one
variant per sample of a batch and apply all of them in one indexing operation
(no Python loop over samples).
"""
from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from deepfield import arguments
from deepfield.data.transforms.base import RandomTransform, Transform
from deepfield.errors import DeepfieldError


def _pair(transform: type[Transform], size: int | Sequence[int]) -> tuple[int, int]:
    """``size`` as ``(height, width)`` in pixels: an int means a square."""
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(arguments.is_integer(s) for s in pair):
        raise transform._error(f"size must be a positive int or (height, width), got {size!r}")
    return int(pair[0]), int(pair[1])  # type: ignore[arg-type]


class CenterCrop(Transform, name="center_crop"):
    """The central ``size`` = (height, width) pixels; an odd margin leaves its extra pixel at the bottom/right."""

    def __init__(self, size: int | Sequence[int]):
        self.size = _pair(type(self), size)

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        (h, w), (height, width) = self.size, x.shape[-2:]
        if h > height or w > width:
            raise self._error(f"crop {h}x{w} is larger than the image {height}x{width}")
        top, left = (height - h) // 2, (width - w) // 2
        return x[..., top : top + h, left : left + w]

    def _arguments(self) -> dict[str, Any]:
        return {"size": list(self.size)}


class Resize(Transform, name="resize"):
    """Resamples to ``size`` = (height, width) pixels with ``torch.nn.functional.interpolate``.

    ``mode="bilinear"`` interpolates between pixel centres (``align_corners=False``);
    ``mode="area"`` averages the input pixels under each output pixel, which keeps
    the mean surface brightness (not the total flux: that scales with the pixel area).
    """

    MODES = ("bilinear", "area")

    def __init__(self, size: int | Sequence[int], mode: str = "bilinear"):
        self.size = _pair(type(self), size)
        if mode not in self.MODES:
            raise self._error(f"mode {mode!r}; expected one of: {', '.join(self.MODES)}")
        self.mode = mode

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        align_corners = False if self.mode == "bilinear" else None  # "area" takes no align_corners
        return F.interpolate(x, size=self.size, mode=self.mode, align_corners=align_corners)

    def _arguments(self) -> dict[str, Any]:
        return {"size": list(self.size), "mode": self.mode}


def _element(k: object) -> int:
    """``k`` as an int in 0..7, or the error naming ``dihedral``."""
    try:
        element = operator.index(k)  # type: ignore[arg-type]
    except TypeError:
        element = -1
    if not 0 <= element < 8:
        raise DeepfieldError(f"dihedral: k must be an integer in 0..7, got {k!r}")
    return element


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Element ``k`` (0..7) of the dihedral group D4 applied to the last two axes of ``x`` (..., H, W).

    ``k = 0..3``: rotation by ``k`` quarter turns, as ``numpy.rot90(x, k, axes=(-2, -1))``;
    ``k = 4..7``: a left-right flip first, then rotation by ``k - 4`` quarter turns.
    Odd rotations of a non-square image swap ``H`` and ``W``.
    """
    k = _element(k)
    return torch.rot90(x.flip(-1) if k >= 4 else x, k % 4, dims=(-2, -1))


def inverse_dihedral(k: int) -> int:
    """The ``j`` with ``dihedral(dihedral(x, k), j) == x``: flips are their own inverse."""
    k = _element(k)
    return k if k >= 4 else (-k) % 4


def all_dihedral(x: torch.Tensor) -> torch.Tensor:
    """The eight variants of a square ``x`` (..., H, H), stacked as (8, ..., H, H) with index ``k``.

    For test-time augmentation: ``model(all_dihedral(x).flatten(0, 1)).unflatten(0, (8, -1)).mean(0)``.
    """
    if x.ndim < 2 or x.shape[-2] != x.shape[-1]:
        raise DeepfieldError(f"dihedral: all eight variants need square images, got shape {tuple(x.shape)}")
    return torch.stack([dihedral(x, k) for k in range(8)])


def _take(x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``out[n, c, p] = x[n, c, source[n, p]]`` for flat pixel indices ``source`` (N, H * W); out (N, C, H, W)."""
    n, c, h, w = x.shape
    return x.flatten(2).gather(2, source[:, None, :].expand(n, c, h * w)).view(n, c, h, w)


class RandomDihedral(RandomTransform, name="dihedral"):
    """One of the eight rotations/flips of the square, uniform and independent per sample.

    Galaxies have no preferred orientation, so this is the natural augmentation;
    images must be square (H == W) so that a batch keeps one shape.
    """

    planar = moves_pixels = True

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        if h != w:
            raise self._error(f"random rotations need square images, got {h}x{w}")
        pixels = torch.arange(h * w, device=x.device).view(h, w)
        variants = all_dihedral(pixels).flatten(1)  # (8, H * W): source pixel of each output pixel
        return _take(x, variants[self._randint(0, 8, n, x)])


class RandomShift(RandomTransform, name="shift"):
    """Moves each sample by whole pixels, ``dy, dx`` uniform in ``-max_shift..max_shift``.

    ``mode="roll"`` wraps around the edges (a permutation: the flux is kept exactly);
    ``mode="pad"`` fills the uncovered edge with 0 (the sky level after sky
    subtraction or :class:`RobustNormalize`); flux that leaves the frame is lost.
    A one-row image (a spectrum (C, L) seen as (C, 1, L)) moves along its row only.
    """

    MODES = ("roll", "pad")
    moves_pixels = True

    def __init__(self, max_shift: int = 4, mode: str = "roll", generator: torch.Generator | None = None):
        super().__init__(generator)
        if not arguments.is_integer(max_shift, 0):
            raise self._error(f"max_shift must be an int >= 0 (pixels), got {max_shift!r}")
        max_shift = int(max_shift)
        if mode not in self.MODES:
            raise self._error(f"mode {mode!r}; expected one of: {', '.join(self.MODES)}")
        self.max_shift, self.mode = max_shift, mode

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        vertical = self.max_shift if h > 1 else 0
        rows = torch.arange(h, device=x.device) - self._randint(-vertical, vertical + 1, n, x)[:, None]
        cols = torch.arange(w, device=x.device) - self._randint(-self.max_shift, self.max_shift + 1, n, x)[:, None]
        if self.mode == "roll":
            return _take(x, ((rows % h)[:, :, None] * w + (cols % w)[:, None, :]).flatten(1))
        inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]  # (N, H, W)
        source = rows.clamp(0, h - 1)[:, :, None] * w + cols.clamp(0, w - 1)[:, None, :]
        return torch.where(inside[:, None], _take(x, source.flatten(1)), 0.0)

    def _arguments(self) -> dict[str, Any]:
        return {"max_shift": self.max_shift, "mode": self.mode}
