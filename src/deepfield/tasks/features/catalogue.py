"""Catalogue colours: the classical photometric-redshift features, from a ``Photometry``."""
from __future__ import annotations

from deepfield.data.photometry import Photometry
from deepfield.tasks.features.base import FeatureSet


def catalogue_features(photometry: Photometry, errors: bool = False) -> FeatureSet:
    """Magnitudes then colours (then, with ``errors``, magnitude errors) of N objects:
    ``(N, B + C)`` or ``(N, 2B + C)`` float64 AB mag, names ``g``, ``g-r``, ``g_err``.

    Unmeasured magnitudes arrive already filled as ``photometry``'s cleaning documents
    (``photometry.mask`` says which), so nothing is NaN and ``failed`` is empty.
    """
    return FeatureSet(photometry.features(errors), photometry.feature_names(errors))
