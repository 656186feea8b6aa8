"""Pixel-value transforms: robust per-band normalisation, asinh and log stretches, clipping.

All keep the shape, device and dtype of ``x``: (C, H, W) or (N, C, H, W), in the
image's flux units on the way in.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from deepfield.data.transforms.base import Transform

# 1 / Phi^-1(3/4): the median absolute deviation of a Gaussian times this is its sigma.
MAD_TO_SIGMA = 1.4826


def _median(values: torch.Tensor) -> torch.Tensor:
    """Median over the last axis, the mean of the two middle values when their count is even (as numpy)."""
    ordered = values.sort(dim=-1).values
    n = values.shape[-1]
    return (ordered[..., (n - 1) // 2] + ordered[..., n // 2]) / 2


def robust_stats(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``median`` and robust ``sigma = 1.4826 * MAD`` over the last axis of ``values`` (..., P).

    Both have shape (...) in the units of ``values``. A sigma of 0 (more than half
    the values equal) is returned as 1, so that dividing by it only removes the median.
    """
    median = _median(values)
    sigma = MAD_TO_SIGMA * _median((values - median[..., None]).abs())
    return median, torch.where(sigma > 0, sigma, torch.ones_like(sigma))


class RobustNormalize(Transform, name="robust_normalize"):
    """Per band: ``(x - median) / (1.4826 * MAD)``, so that the sky has median 0 and robust sigma 1.

    Without statistics, each image is normalised by its own (per image, per band).
    :meth:`fit` measures one median and sigma per band over a training set and
    freezes them; ``median`` and ``sigma`` (one value per band, in flux units) can
    also be given directly, which is how :meth:`get_config` records a fitted one.
    Unlike mean and standard deviation, both statistics ignore a few bright
    stars or cosmic rays. A band whose MAD is 0 is only shifted (sigma taken as 1).
    """

    def __init__(self, median: Sequence[float] | None = None, sigma: Sequence[float] | None = None):
        if (median is None) != (sigma is None):
            raise self._error("give both median and sigma (frozen statistics) or neither (per image)")
        self.median: torch.Tensor | None = None
        self.sigma: torch.Tensor | None = None
        if median is not None and sigma is not None:
            self._freeze(torch.as_tensor(median, dtype=torch.float64), torch.as_tensor(sigma, dtype=torch.float64))

    def _freeze(self, median: torch.Tensor, sigma: torch.Tensor) -> None:
        if median.ndim != 1 or median.shape != sigma.shape:
            shapes = f"{list(median.shape)} and {list(sigma.shape)}"
            raise self._error(f"median and sigma need one value per band, got shapes {shapes}")
        if not bool(torch.isfinite(median).all() and torch.isfinite(sigma).all() and (sigma > 0).all()):
            values = f"{median.tolist()} and {sigma.tolist()}"
            raise self._error(f"median must be finite and sigma finite and > 0, got {values}")
        self.median, self.sigma = median, sigma

    def fit(self, images: torch.Tensor) -> RobustNormalize:
        """Measures and freezes each band's statistics over all pixels of ``images`` (N, C, H, W)."""
        batch = self._as_batch(images)
        median, sigma = robust_stats(batch.transpose(0, 1).reshape(batch.shape[1], -1))
        self._freeze(median.to("cpu", torch.float64), sigma.to("cpu", torch.float64))
        return self

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        if self.median is None or self.sigma is None:
            median, sigma = robust_stats(x.flatten(2))
            return (x - median[..., None, None]) / sigma[..., None, None]
        if x.shape[1] != len(self.median):
            raise self._error(f"statistics are for {len(self.median)} bands, the image has {x.shape[1]}")
        median = self.median.to(x.device, x.dtype)[:, None, None]
        return (x - median) / self.sigma.to(x.device, x.dtype)[:, None, None]

    def _arguments(self) -> dict[str, Any]:
        if self.median is None or self.sigma is None:
            return {}
        return {"median": self.median.tolist(), "sigma": self.sigma.tolist()}


def _positive(transform: type[Transform], argument: str, value: float) -> float:
    """``value`` as a float, or the transform's error if it is not finite and > 0."""
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise transform._error(f"{argument} must be finite and > 0, got {value}")
    return value


class AsinhStretch(Transform, name="asinh"):
    """``asinh(x / softening)``: linear below ``softening``, logarithmic above (Lupton et al. 1999).

    ``softening`` is in the image's flux units (about the sky noise: ``1`` after
    :class:`RobustNormalize`); negative noise stays negative, unlike a log. With
    ``preserve_colour`` the stretch follows Lupton et al. (2004): the band-mean
    intensity ``I`` is stretched and every band multiplied by ``asinh(I / softening) / I``,
    so the ratios between bands (the colours) are kept.
    astropy's ``AsinhStretch(a)`` on [0, 1] data is this with ``softening = a``,
    divided by ``asinh(1 / a)``; ``make_lupton_rgb(Q, stretch)`` uses ``softening = stretch / Q``.
    """

    def __init__(self, softening: float = 1.0, preserve_colour: bool = False):
        self.softening = _positive(type(self), "softening", softening)
        self.preserve_colour = bool(preserve_colour)

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        if not self.preserve_colour:
            return torch.asinh(x / self.softening)
        intensity = x.mean(dim=1, keepdim=True)
        dark = intensity == 0  # where asinh(I / s) / I takes its limit 1 / s
        safe = torch.where(dark, torch.ones_like(intensity), intensity)
        return x * torch.where(dark, 1 / self.softening, torch.asinh(safe / self.softening) / safe)

    def _arguments(self) -> dict[str, Any]:
        return {"softening": self.softening, "preserve_colour": self.preserve_colour}


class LogStretch(Transform, name="log"):
    """``log(1 + max(x, 0) / scale)`` (natural log): linear below ``scale``, logarithmic above.

    ``scale`` is in the image's flux units; negative pixels (sky noise) map to 0,
    use :class:`AsinhStretch` to keep them. astropy's ``LogStretch(a)`` on [0, 1]
    data is this with ``scale = 1 / a``, divided by ``log(1 + a)``.
    """

    def __init__(self, scale: float = 1.0):
        self.scale = _positive(type(self), "scale", scale)

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log1p(x.clamp(min=0) / self.scale)

    def _arguments(self) -> dict[str, Any]:
        return {"scale": self.scale}


class Clip(Transform, name="clip"):
    """Limits pixel values to ``[low, high]`` (flux units; ``None`` leaves that side open)."""

    def __init__(self, low: float | None = None, high: float | None = None):
        if low is None and high is None:
            raise self._error("give low, high or both")
        self.low = None if low is None else float(low)
        self.high = None if high is None else float(high)
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise self._error(f"low must be < high, got low={self.low}, high={self.high}")

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=self.low, max=self.high)

    def _arguments(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high}
