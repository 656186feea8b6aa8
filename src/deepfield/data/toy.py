"""Toy galaxy stamps drawn with numpy: a quick two-class problem for demos and tests.

Spheroids are round-ish Sérsic n=4 profiles, disks are flattened exponential
(n=1) profiles seen at random inclination. Both get random size, orientation,
brightness and Gaussian sky noise. (The full simulated sky, with GalSim, PSFs and
more classes, lives in the simulators.)
"""
from __future__ import annotations

import numpy as np

CLASSES = ("spheroid", "disk")


def toy_galaxies(n: int, size: int = 32, snr: float = 30.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` one-band stamps and their labels.

    Returns ``images``: (n, 1, size, size) float32, sky-subtracted, in units of the
    sky noise divided by ``snr`` (peak pixel ≈ 1); ``labels``: (n,) int64, 0 = spheroid, 1 = disk.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    sersic_n = np.where(labels == 0, 4.0, 1.0)
    b_n = 2.0 * sersic_n - 1.0 / 3.0
    r_e = rng.uniform(0.08, 0.16, n) * size
    axis_ratio = np.where(labels == 0, rng.uniform(0.75, 1.0, n), rng.uniform(0.2, 0.6, n))
    angle = rng.uniform(0, np.pi, n)
    centre = (size - 1) / 2 + rng.normal(0, 0.5, (2, n))

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dx = xx[None] - centre[0][:, None, None]
    dy = yy[None] - centre[1][:, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    major = dx * cos + dy * sin
    minor = (-dx * sin + dy * cos) / axis_ratio[:, None, None]
    radius = np.sqrt(major**2 + minor**2) / r_e[:, None, None]
    profile = np.exp(-b_n[:, None, None] * (radius ** (1.0 / sersic_n[:, None, None]) - 1.0))
    profile /= profile.max(axis=(1, 2), keepdims=True)
    images = profile + rng.normal(0.0, 1.0 / snr, profile.shape)
    return images[:, None].astype(np.float32), labels.astype(np.int64)
