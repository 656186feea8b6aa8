"""Explanations of a network whose output is an image: which input pixels make the flux of one output region.

>>> region = Aperture(x=31.5, y=31.5, radius=6.0)        # or Window(x0=24, x1=40, y0=24, y1=40)
>>> ig = region_integrated_gradients(model, x, region)   # Attribution: (N, C, H, W) and the completeness check
>>> occ = region_occlusion(model, x[0], region, size=8, stride=4)
>>> occ.pixel_map()                                       # (H, W): the region's flux lost by hiding each pixel

The explained number is a *readout* of the model's image output ``(N, K, H, W)``:
``flux = Σ_k Σ_pixels w(pixel) · output[k, pixel]`` over the chosen output channels ``k``, with
``w`` the region's pixel weights (:meth:`Aperture.weights`: the exact overlap of each pixel with
the circle, as photutils' aperture photometry weighs it; :meth:`Window.weights`: 1 inside the
rectangle). :class:`RegionFlux` wraps the model into that ``(N, C, H, W) -> (N,)`` function, an
``nn.Module``, so any attribution method takes it: deepfield's
:func:`~deepfield.analysis.explain.attribution.integrated_gradients` (captum's
``IntegratedGradients``, whose attributions add up to ``flux(x) − flux(baseline)``) and
:func:`~deepfield.analysis.explain.occlusion.occlusion`, or captum's own classes directly.

Pixel coordinates: ``x`` is the column, ``y`` the row, 0 the centre of the first pixel (photutils'
convention); a window's ``x0:x1`` and ``y0:y1`` are half-open ranges of columns and rows, as slices.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from photutils.aperture import CircularAperture
from torch import nn

from deepfield.analysis.explain.attribution import Attribution, as_tensor, integrated_gradients
from deepfield.analysis.explain.occlusion import Occlusion, occlusion
from deepfield.errors import DeepfieldError

__all__ = ["Aperture", "Region", "RegionFlux", "Window", "parse_aperture", "parse_window",
           "region_integrated_gradients", "region_occlusion"]

OUTLINE_POINTS = 64
"""Vertices of a circular aperture's outline (:meth:`Aperture.outline`)."""


@dataclass(frozen=True)
class Aperture:
    """A circle of ``radius`` pixels centred on column ``x``, row ``y``."""

    x: float
    y: float
    radius: float
    kind: Literal["aperture"] = "aperture"

    def check(self, shape: tuple[int, int], what: str = "region") -> None:
        """An error unless the centre lies on a stamp of ``shape`` ``(H, W)`` and the radius is positive."""
        height, width = shape
        if not (self.radius > 0 and -0.5 <= self.x < width - 0.5 and -0.5 <= self.y < height - 0.5):
            raise DeepfieldError(f"{what} {self.x:g},{self.y:g},{self.radius:g}: the aperture's centre must lie on "
                                 f"the {width}×{height} stamp (x from 0 to {width - 1}, y from 0 to {height - 1}) "
                                 "and its radius be positive")

    def weights(self, shape: tuple[int, int]) -> np.ndarray:
        """``(H, W)`` float32: each pixel's overlap with the circle (0 to 1; photutils' ``exact`` method)."""
        mask = CircularAperture((self.x, self.y), r=self.radius).to_mask(method="exact")
        return mask.to_image(shape).astype(np.float32)

    def outline(self) -> np.ndarray:
        """``(K, 2)`` closed polygon of ``(x, y)`` pixel coordinates along the circle."""
        angle = np.linspace(0.0, 2 * np.pi, OUTLINE_POINTS + 1)
        return np.column_stack([self.x + self.radius * np.cos(angle), self.y + self.radius * np.sin(angle)])


@dataclass(frozen=True)
class Window:
    """A rectangle of columns ``x0 .. x1 − 1`` and rows ``y0 .. y1 − 1`` (half-open, as slices)."""

    x0: int
    x1: int
    y0: int
    y1: int
    kind: Literal["window"] = "window"

    def check(self, shape: tuple[int, int], what: str = "window") -> None:
        """An error unless ``0 ≤ x0 < x1 ≤ W`` and ``0 ≤ y0 < y1 ≤ H`` on a stamp of ``shape`` ``(H, W)``."""
        height, width = shape
        if not (0 <= self.x0 < self.x1 <= width and 0 <= self.y0 < self.y1 <= height):
            raise DeepfieldError(f"{what} {self.x0}:{self.x1},{self.y0}:{self.y1}: the window must lie on the "
                                 f"{width}×{height} stamp, non-empty (0 ≤ x0 < x1 ≤ {width}, 0 ≤ y0 < y1 ≤ {height})")

    def weights(self, shape: tuple[int, int]) -> np.ndarray:
        """``(H, W)`` float32: 1 inside the window, 0 outside."""
        w = np.zeros(shape, dtype=np.float32)
        w[self.y0:self.y1, self.x0:self.x1] = 1.0
        return w

    def outline(self) -> np.ndarray:
        """``(5, 2)`` closed polygon of ``(x, y)`` along the window's outer pixel edges."""
        left, right, bottom, top = self.x0 - 0.5, self.x1 - 0.5, self.y0 - 0.5, self.y1 - 0.5
        return np.array([(left, bottom), (right, bottom), (right, top), (left, top), (left, bottom)])


Region = Aperture | Window

_NUMBER = r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*"
_INTEGER = r"\s*([-+]?\d+)\s*"


def parse_aperture(text: str, what: str = "region") -> Aperture:
    """``"x,y,r"`` (pixels) as an :class:`Aperture`; a one-line error naming ``what`` otherwise."""
    found = re.fullmatch(",".join([_NUMBER] * 3), str(text))
    if found is None:
        raise DeepfieldError(f"{what} {text!r}: expected x,y,r in pixels (the aperture's centre column and row, "
                             "and its radius), e.g. 31.5,31.5,6")
    return Aperture(*(float(v) for v in found.groups()))


def parse_window(text: str, what: str = "window") -> Window:
    """``"x0:x1,y0:y1"`` (pixel columns and rows, half-open) as a :class:`Window`; a one-line error otherwise."""
    found = re.fullmatch(f"{_INTEGER}:{_INTEGER},{_INTEGER}:{_INTEGER}", str(text))
    if found is None:
        raise DeepfieldError(f"{what} {text!r}: expected x0:x1,y0:y1 in whole pixels (columns x0 to x1 - 1, rows "
                             "y0 to y1 - 1), e.g. 24:40,24:40")
    return Window(*(int(v) for v in found.groups()))


class RegionFlux(nn.Module):
    """``model``'s image output summed in a region: ``(N, C, H, W) -> (N,)``, ``Σ w · output[:, channels]``.

    Args:
        model: maps ``(N, C, H, W)`` to an image ``(N, K, H, W)`` (any ``K``; same ``H, W`` as ``weights``).
        weights: ``(H, W)`` pixel weights of the region (:meth:`Aperture.weights`, :meth:`Window.weights`).
        channels: the output channels summed (default: all ``K``).
    """

    def __init__(self, model: nn.Module, weights: Any, channels: Sequence[int] | None = None):
        super().__init__()
        self.model = model
        self.channels = None if channels is None else [int(c) for c in channels]
        self.register_buffer("weights", as_tensor(weights).float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if out.ndim != 4 or tuple(out.shape[-2:]) != tuple(self.weights.shape):
            raise DeepfieldError(f"region flux: the model's output of shape {tuple(out.shape)} is not a batch of "
                                 f"images (N, K, {', '.join(map(str, self.weights.shape))})")
        if self.channels is not None:
            if max(self.channels, default=-1) >= out.shape[1] or min(self.channels, default=0) < 0:
                raise DeepfieldError(f"region flux: channels {self.channels} are not all among the model's "
                                     f"{out.shape[1]} output channels")
            out = out[:, self.channels]
        # summed in float64: a float32 sum of a stamp's many pixels rounds differently with each batch layout,
        # and the occlusion maps are differences of these sums
        return (out.double() * self.weights.double()).sum(dim=(1, 2, 3))


def _regions(region: Region | Sequence[Region], n: int) -> list[Region]:
    """One region per stamp: the same ``region`` for all, or one each."""
    regions = [region] * n if isinstance(region, (Aperture, Window)) else list(region)
    if len(regions) != n:
        raise DeepfieldError(f"region flux: {len(regions)} regions for {n} stamps; give one, or one per stamp")
    return regions


def _readout(model: nn.Module, region: Region, shape: tuple[int, int], channels: Sequence[int] | None) -> RegionFlux:
    region.check(shape)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    return RegionFlux(model, region.weights(shape), channels).to(device)


def region_integrated_gradients(model: nn.Module, x: Any, region: Region | Sequence[Region], *,
                                channels: Sequence[int] | None = None,
                                baseline: float | np.ndarray | Literal["blur"] = 0.0, steps: int = 64,
                                batch_size: int = 64) -> Attribution:
    """Integrated gradients of each stamp's region flux (:class:`RegionFlux`), with their completeness check.

    ``x``: ``(N, C, H, W)`` stamps; ``region``: one for all or one per stamp; ``baseline``,
    ``steps``, ``batch_size``: as :func:`~deepfield.analysis.explain.attribution.integrated_gradients`
    (an array baseline is one sample's ``(C, H, W)``). The :class:`Attribution` is in the output's
    unit: ``attributions`` ``(N, C, H, W)`` add up to ``score − baseline_score``, the region's flux
    of the stamp minus that of the baseline, up to ``delta``.
    """
    stamps = as_tensor(x)
    if stamps.ndim != 4:
        raise DeepfieldError(f"region flux: x must be stamps (N, C, H, W), got shape {tuple(stamps.shape)}")
    shape = tuple(stamps.shape[-2:])
    if isinstance(region, (Aperture, Window)):
        return integrated_gradients(_readout(model, region, shape, channels), stamps, baseline=baseline,
                                    steps=steps, batch_size=batch_size)
    parts = [integrated_gradients(_readout(model, r, shape, channels), stamps[i:i + 1], baseline=baseline,
                                  steps=steps, batch_size=batch_size)
             for i, r in enumerate(_regions(region, len(stamps)))]
    return Attribution(*(np.concatenate([getattr(p, name) for p in parts])
                         for name in ("attributions", "delta", "relative_error", "score", "baseline_score")))


def region_occlusion(model: nn.Module, image: Any, region: Region, *, channels: Sequence[int] | None = None,
                     size: int = 8, stride: int = 4, fill: float | Sequence[float] = 0.0,
                     batch_size: int = 256) -> Occlusion:
    """Occlusion sensitivity of one stamp's region flux: a square of ``fill`` at each position (every copy
    through the whole network: :func:`~deepfield.analysis.explain.occlusion.occlusion`, ``method="batched"``).

    ``image``: one stamp ``(C, H, W)``; the :class:`Occlusion`'s ``clean`` is the region's flux and
    ``pixel_map()`` the mean flux lost when each pixel is hidden (in the output's unit).
    """
    stamp = as_tensor(image)
    if stamp.ndim not in (3, 4):
        raise DeepfieldError(f"region occlusion takes one stamp (C, H, W), got shape {tuple(stamp.shape)}")
    readout = _readout(model, region, tuple(stamp.shape[-2:]), channels)
    return occlusion(readout, stamp, None, size=size, stride=stride, fill=fill, method="batched",
                     batch_size=batch_size)
