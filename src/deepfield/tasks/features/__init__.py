"""Classical hand-made features, the baselines a network is measured against.

``get(name, **options)`` builds an image extractor; every extractor has ``name``,
``get_config()``, ``fit(images)`` and ``extract(images) -> FeatureSet`` on stamps
``(N, C, H, W)``. Catalogue photometry goes through :func:`catalogue_features` instead.

- ``hog``: histograms of oriented gradients (scikit-image)
- ``pixels``: pixel concatenation, optionally block-averaged
- ``colour_histogram``: per-band and band-ratio histograms on fixed bins
- ``texture``: grey-level co-occurrence statistics
- ``sift_bovw``: SIFT descriptors pooled into a bag of visual words (needs ``fit``)
- ``morphology``: concentration, asymmetry, smoothness, Gini, M20, Sérsic n (statmorph)
"""
from __future__ import annotations

from typing import Any

from deepfield.errors import DeepfieldError
from deepfield.registry import Registry
from deepfield.tasks.features.base import Extractor, FeatureSet
from deepfield.tasks.features.catalogue import catalogue_features
from deepfield.tasks.features.histogram import ColourHistogram
from deepfield.tasks.features.hog import HOG
from deepfield.tasks.features.morphology import Morphology
from deepfield.tasks.features.pixels import Pixels
from deepfield.tasks.features.sift import SiftBagOfWords
from deepfield.tasks.features.texture import Texture

EXTRACTORS: Registry[type[Extractor]] = Registry("feature extractor", {
    cls.name: cls for cls in (HOG, Pixels, ColourHistogram, Texture, SiftBagOfWords, Morphology)
}, any_case=True, class_names=True)
EXTRACTORS.alias("color_histogram", "colour_histogram")
EXTRACTORS.alias("sift", "sift_bovw")
EXTRACTORS.alias("glcm", "texture")


def get(name: str, **options: Any) -> Extractor:
    """The extractor registered as ``name`` built with ``options``; bad names or options raise one line."""
    cls = EXTRACTORS.lookup(name)
    try:
        return cls(**options)
    except TypeError as exc:
        raise DeepfieldError(f"feature extractor {cls.name}: bad options ({exc})") from None


def names() -> list[str]:
    """The registered extractor names, sorted."""
    return list(EXTRACTORS.names())


__all__ = ["Extractor", "FeatureSet", "catalogue_features", "get", "names", "EXTRACTORS",
           "HOG", "Pixels", "ColourHistogram", "Texture", "SiftBagOfWords", "Morphology"]
