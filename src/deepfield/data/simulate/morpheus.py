"""Morpheus-style morphology classes of the blends' sources and their per-pixel class map (issue 18).

Morpheus (Hausen & Robertson 2020, ApJS 248, 20) gives every pixel of a survey image one of
:data:`MORPHOLOGY_CLASSES`. The blends simulator knows how it drew each source, so its class is a rule
on that truth (:func:`morphology_class`), in this order:

* a star (a point convolved with the PSF) is a ``point source``;
* an ``irregular`` (star-forming knots on a faint disk: no Sérsic profile) is ``irregular``;
* else a galaxy with a bulge fraction (the flux in de Vaucouleurs-like components) of at least
  :data:`BULGE_DOMINATED` is a ``spheroid``, below it a ``disk``. 0.5 is the usual line between
  bulge- and disk-dominated (B/T); the recipes of :mod:`~deepfield.data.simulate.morphology` fall on either
  side of it by construction (spheroids: one Sérsic n 3.5–4.5 profile, B/T 1; disks: an exponential disk with a
  de Vaucouleurs bulge of B/T 0.05–0.5), so the classes are the recipes' and no threshold is tuned.

The map (:func:`morphology_map`) follows the segmentation map: a pixel takes the class of the source that
dominates its band-summed noise-free flux above the segmentation threshold (the blends' segmentation rule),
else ``background``.
"""
from __future__ import annotations

import numpy as np

from deepfield.data.simulate.sources import Source

MORPHOLOGY_CLASSES = ("background", "spheroid", "disk", "irregular", "point source")
"""Morpheus's classes, in label order (0 background)."""

BULGE_DOMINATED = 0.5
"""The least bulge fraction (B/T) of a ``spheroid``; below it a galaxy with a Sérsic bulge and disk is a ``disk``."""


def morphology_class(source: Source) -> int:
    """The label (index in :data:`MORPHOLOGY_CLASSES`) of ``source`` by the module's rule."""
    if source.kind == "generated":  # a generated stamp has no recipe: its class is unknown, left out of the map
        return MORPHOLOGY_CLASSES.index("background")
    if source.kind == "star":
        return MORPHOLOGY_CLASSES.index("point source")
    if source.kind == "irregular":
        return MORPHOLOGY_CLASSES.index("irregular")
    return MORPHOLOGY_CLASSES.index("spheroid" if source.bulge_fraction >= BULGE_DOMINATED else "disk")


def morphology_map(segmentation: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(k, H, W) uint8 class maps: ``segmentation`` (k, H, W) instance labels (0 background, s + 1 source s)
    with each source's label replaced by its class, ``classes`` (k, S) (labels of :data:`MORPHOLOGY_CLASSES`)."""
    table = np.concatenate([np.zeros((len(classes), 1), dtype=np.uint8), np.asarray(classes, dtype=np.uint8)], axis=1)
    return np.take_along_axis(table, np.asarray(segmentation).reshape(len(table), -1), axis=1).reshape(
        np.shape(segmentation))
