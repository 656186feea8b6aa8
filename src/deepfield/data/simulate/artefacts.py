"""Image artefacts that a survey's data-quality step rejects, as pure numpy functions.

Every function takes ``image`` of shape (..., H, W) (one band, or several bands that
share the same detector geometry) and a ``numpy.random.Generator``, draws the artefact's
geometry once, applies it to every leading slice and returns a new float array; the
input is not changed. Positions are in pixels (x = column, y = row) and values in the
image's own units (e.g. sky-subtracted electrons). An amplitude given as a
``(low, high)`` pair is drawn log-uniformly.
"""
from __future__ import annotations

import math

import numpy as np

Amount = float | tuple[float, float]
"""A fixed value or a ``(low, high)`` range drawn log-uniformly."""


def _amount(rng: np.random.Generator, value: Amount) -> float:
    if isinstance(value, tuple):
        return float(np.exp(rng.uniform(np.log(value[0]), np.log(value[1]))))
    return float(value)


def _copy(image: np.ndarray) -> np.ndarray:
    return np.array(image, dtype=np.result_type(image.dtype, np.float32), copy=True)


def _grid(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(y, x)``, each (H, W) float."""
    height, width = image.shape[-2:]
    return np.mgrid[0:height, 0:width].astype(float)


def add_cosmic_rays(image: np.ndarray, rng: np.random.Generator, *, amplitude: Amount,
                    count: tuple[int, int] = (1, 5), max_length: int = 8) -> np.ndarray:
    """Cosmic-ray hits: ``count`` (inclusive range) events, half single pixels, half straight
    tracks 2–``max_length`` pixels long, one pixel wide, NOT convolved with the PSF.

    Each event deposits ``amplitude`` times U(0.5, 1) in each of its pixels.
    """
    out = _copy(image)
    height, width = image.shape[-2:]
    for _ in range(rng.integers(count[0], count[1] + 1)):
        length = 1 if rng.random() < 0.5 else int(rng.integers(2, max_length + 1))
        y0, x0, angle = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(0, math.pi)
        steps = np.arange(length)
        ys = np.floor(y0 + steps * math.sin(angle)).astype(int)
        xs = np.floor(x0 + steps * math.cos(angle)).astype(int)
        inside = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
        pixels = np.unique(ys[inside] * width + xs[inside])
        deposit = _amount(rng, amplitude) * rng.uniform(0.5, 1.0, len(pixels))
        out[..., pixels // width, pixels % width] += deposit
    return out


def add_satellite_trail(image: np.ndarray, rng: np.random.Generator, *, amplitude: Amount,
                        width: tuple[float, float] = (0.5, 1.5)) -> np.ndarray:
    """A satellite trail: a straight line across the whole stamp with a Gaussian cross-section.

    The line passes through a random point of the central half of the stamp at a random
    angle; its peak is ``amplitude``, its Gaussian sigma uniform in ``width`` pixels.
    """
    y, x = _grid(image)
    height, width_px = image.shape[-2:]
    cy, cx = rng.uniform(0.25, 0.75) * (height - 1), rng.uniform(0.25, 0.75) * (width_px - 1)
    angle, sigma = rng.uniform(0, math.pi), rng.uniform(*width)
    distance = (x - cx) * math.sin(angle) - (y - cy) * math.cos(angle)
    return _copy(image) + _amount(rng, amplitude) * np.exp(-0.5 * (distance / sigma) ** 2)


def add_bad_column(image: np.ndarray, rng: np.random.Generator, *, value: float) -> np.ndarray:
    """A bad column: one column set to ``value`` (hot: large, dead: the zero-signal level),
    over its whole height or (half the time) from a random defect row to one edge."""
    out = _copy(image)
    height, width = image.shape[-2:]
    column = int(rng.integers(width))
    rows = slice(None)
    if rng.random() < 0.5:
        defect = int(rng.integers(1, height - 1))
        rows = slice(defect, None) if rng.random() < 0.5 else slice(None, defect)
    out[..., rows, column] = value
    return out


def add_hot_pixels(image: np.ndarray, rng: np.random.Generator, *, value: float,
                   count: tuple[int, int] = (1, 10)) -> np.ndarray:
    """``count`` (inclusive range) distinct random pixels set to ``value`` (hot or dead pixels)."""
    out = _copy(image)
    height, width = image.shape[-2:]
    pixels = rng.choice(height * width, size=int(rng.integers(count[0], count[1] + 1)), replace=False)
    out[..., pixels // width, pixels % width] = value
    return out


def add_saturated_star(image: np.ndarray, rng: np.random.Generator, *, level: float, fwhm: float,
                       peak: tuple[float, float] = (3.0, 30.0)) -> np.ndarray:
    """A saturated star with charge bleeding along its columns, everything clipped at ``level``.

    The star (a Moffat, beta = 3, ``fwhm`` in pixels) lands anywhere in the stamp with a
    peak of ``peak`` (log-uniform) times ``level``. In each column the charge above
    ``level`` spills up and down from the saturated pixels, filling pixels to ``level``
    (charge is conserved until it runs off the stamp); finally the image is clipped at ``level``.
    """
    y, x = _grid(image)
    height, width = image.shape[-2:]
    cy, cx = rng.uniform(0, height - 1), rng.uniform(0, width - 1)
    alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / 3.0) - 1.0))
    star = _amount(rng, tuple(level * p for p in peak)) * (1.0 + ((x - cx) ** 2 + (y - cy) ** 2) / alpha**2) ** -3.0
    out = _copy(image) + star
    flat = out.reshape(-1, height, width)
    for plane in flat:
        for column in np.flatnonzero((plane > level).any(axis=0)):
            _bleed(plane[:, column], level)
    return np.minimum(out, level)


def _bleed(column: np.ndarray, level: float) -> None:
    """Spread the charge above ``level`` in ``column`` (H,) outward from its saturated run, in place."""
    saturated = np.flatnonzero(column > level)
    excess = float(np.sum(column[saturated] - level))
    column[saturated[0]:saturated[-1] + 1] = np.maximum(column[saturated[0]:saturated[-1] + 1], level)
    for rows in (range(saturated[-1] + 1, len(column)), range(saturated[0] - 1, -1, -1)):
        spill = excess / 2.0
        for row in rows:
            if spill <= 0:
                break
            room = max(level - column[row], 0.0)
            column[row] += min(room, spill)
            spill -= room


def add_ghost(image: np.ndarray, rng: np.random.Generator, *, amplitude: Amount) -> np.ndarray:
    """Scattered light: a large faint ring (an out-of-focus reflection) plus a linear gradient.

    The ring's centre may lie off the stamp; radius 0.3–1 and width 0.05–0.15 of the stamp
    height; ``amplitude`` is the ring's peak, the gradient rises from 0 to up to half of it.
    """
    y, x = _grid(image)
    height = image.shape[-2]
    cy, cx = rng.uniform(-0.5, 1.5, 2) * height
    radius, ring_width = rng.uniform(0.3, 1.0) * height, rng.uniform(0.05, 0.15) * height
    ring = np.exp(-0.5 * ((np.hypot(x - cx, y - cy) - radius) / ring_width) ** 2)
    direction = rng.uniform(0, 2 * math.pi)
    ramp = x * math.cos(direction) + y * math.sin(direction)
    ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
    return _copy(image) + _amount(rng, amplitude) * (ring + rng.uniform(0.0, 0.5) * ramp)
