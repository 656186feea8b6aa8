"""Boolean masks of the data-quality simulator's detector defects, for in-painting and its tests.

Each defect is drawn by the very function (and default geometry) ``simulate quality`` uses
(:mod:`~deepfield.data.simulate.artefacts`), on an empty image, and the mask is where it put
light: cosmic-ray pixels, a satellite trail where it exceeds ``TRAIL_LEVEL`` of its peak, a bad
column, hot or dead pixels, a saturated star's saturated and bled pixels. Scattered light
(``ghost``) covers the whole stamp faintly and is not masked, so it is not offered.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from deepfield import arguments
from deepfield.data.simulate import artefacts as art
from deepfield.data.simulate.parallel import MASK_STREAM, stream_rng
from deepfield.errors import DeepfieldError, unknown_name

TRAIL_LEVEL = 0.01
"""A satellite trail is masked where it exceeds this fraction of its peak (3 Gaussian sigmas either side)."""

MASK_KINDS: dict[str, Callable[[np.ndarray, np.random.Generator, float], np.ndarray]] = {
    "cosmic_rays": lambda empty, rng, fwhm: art.add_cosmic_rays(empty, rng, amplitude=1.0) > 0,
    "satellite_trail": lambda empty, rng, fwhm: art.add_satellite_trail(empty, rng, amplitude=1.0) > TRAIL_LEVEL,
    "bad_column": lambda empty, rng, fwhm: art.add_bad_column(empty, rng, value=1.0) > 0,
    "hot_pixels": lambda empty, rng, fwhm: art.add_hot_pixels(empty, rng, value=1.0) > 0,
    "saturation": lambda empty, rng, fwhm: art.add_saturated_star(empty, rng, level=1.0, fwhm=fwhm) >= 1.0,
}
"""Defect kind -> its mask ``(empty (H, W), rng, seeing FWHM in pixels) -> (H, W) bool``."""


def artefact_masks(n: int, shape: int | tuple[int, int], kinds: Sequence[str] = ("cosmic_rays", "satellite_trail",
                                                                                 "bad_column"),
                   seed: int = 0, *, fwhm: float = 4.0) -> np.ndarray:
    """(n, H, W) bool, True where mask ``i`` has a defect: one of each of ``kinds`` (names of ``MASK_KINDS``)
    drawn from ``(seed, i)``; ``shape``: (H, W) or a side; ``fwhm``: the seeing in pixels (saturated stars)."""
    n = arguments.integer("n", n, expected="an integer >= 1")
    height, width = (shape, shape) if isinstance(shape, int) else tuple(shape)
    height = arguments.integer("mask height", height, 4, expected="an integer >= 4")
    width = arguments.integer("mask width", width, 4, expected="an integer >= 4")
    seed = arguments.integer("seed", seed, 0, math.inf, expected="an integer >= 0")
    if not kinds:
        raise DeepfieldError(f"kinds: name at least one of {', '.join(MASK_KINDS)}")
    for kind in kinds:
        if kind not in MASK_KINDS:
            raise unknown_name("mask kind", kind, tuple(MASK_KINDS))
    empty, masks = np.zeros((height, width)), np.zeros((n, height, width), dtype=bool)
    for index in range(n):
        rng = stream_rng(seed, MASK_STREAM, index)
        for kind in kinds:
            masks[index] |= MASK_KINDS[kind](empty, rng, fwhm)
    return masks
