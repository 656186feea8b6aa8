"""statmorph's non-parametric morphology of the source at a stamp's centre (CAS, Gini-M20, a Sérsic index).

One image ``(H, W)``: the sky level is either given (``sky``, e.g. 0.0 for stamps already
sky-subtracted) or estimated by sigma clipping, refined on pixels outside every detected source,
and subtracted; the sky sigma is always estimated the same way. On small stamps the estimated
level absorbs the wings of extended (high-n) profiles and biases ``sersic_n`` low, so give ``sky``
when it is known. photutils then detects sources above ``threshold`` sigma (``n_pixels`` connected
pixels) and the segment under the stamp centre is measured by ``statmorph.SourceMorphology`` with a
constant weight map (the sky sigma: background-limited noise) and, optionally, a PSF for the Sérsic fit.

Only the quantities asked for are computed (statmorph 0.7 computes all ~50 of them and has no
option to choose: the MID statistics alone take about 60 % of its time on a 32×32 stamp), so
the flags are those of what was measured; a quantity statmorph gives as -99 (its "not measured") is NaN.
Used by the ``morphology`` feature extractor and by :mod:`deepfield.analysis.galaxy_statistics`.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import statmorph
from astropy.stats import sigma_clipped_stats
from photutils.segmentation import SegmentationImage, detect_sources
from photutils.utils.exceptions import NoDetectionsWarning
from scipy.ndimage import binary_dilation

FLAGS = {0: "good", 1: "suspect", 2: "bad", 4: "catastrophic"}
"""statmorph's ``flag`` values and their meaning."""

MIN_SKY_PIXELS = 16
"""Pixels outside every source needed to refine the sky estimate on them."""

SENTINEL = -99.0
"""statmorph's value for a quantity it could not measure."""


class _Measured(statmorph.SourceMorphology):
    """statmorph measuring only ``quantities`` (its ``_calculate_morphology`` evaluates every lazy
    property; this one evaluates those asked for, and the sky its background check reads)."""

    def __init__(self, *args, quantities: Sequence[str], **kwargs):
        self._quantities = tuple(quantities)
        super().__init__(*args, **kwargs)

    def _calculate_morphology(self) -> None:
        for quantity in (*self._quantities, "sky_mean", "sky_sigma"):
            getattr(self, quantity)


def segment_centre(image: np.ndarray, mask: np.ndarray, threshold: float, n_pixels: int,
                   sky: float | None) -> tuple[SegmentationImage | None, float, np.ndarray]:
    """The central source's segmentation map (``None``: no source covers the centre), the sky sigma
    and the sky-subtracted image, for an image ``(H, W)`` with ``mask`` (True: not a pixel to use)."""
    _, median, sigma = sigma_clipped_stats(image, mask=mask, sigma=3.0)
    median = median if sky is None else sky
    if not sigma > 0:
        return None, 0.0, image
    sources = detect_sources(image - median, threshold * sigma, n_pixels=n_pixels, mask=mask)
    if sources is not None:
        background = ~binary_dilation(sources.data > 0, iterations=2) & ~mask
        if background.sum() >= MIN_SKY_PIXELS:
            _, level, refined = sigma_clipped_stats(image[background], sigma=3.0)
            median = level if sky is None else sky
            sigma = refined if refined > 0 else sigma
            sources = detect_sources(image - median, threshold * sigma, n_pixels=n_pixels, mask=mask)
    if sources is None:
        return None, sigma, image
    h, w = image.shape
    label = sources.data[h // 2, w // 2]
    if label == 0:
        return None, sigma, image
    sources.keep_label(label)
    return sources, sigma, image - median


def measure_morphology(image: np.ndarray, quantities: Sequence[str], *, threshold: float = 3.0, n_pixels: int = 5,
                       psf: np.ndarray | None = None, max_flag: int = 1,
                       sky: float | None = None) -> tuple[np.ndarray, str]:
    """statmorph's ``quantities`` (e.g. ``gini``, ``m20``, ``concentration``, ``asymmetry``, ``smoothness``,
    ``sersic_n``) of the source at the centre of ``image`` ``(H, W)``, and a reason ('' when all measured).

    The row is all NaN when the image has no finite pixel or no noise, no source covers the centre,
    statmorph raises, or its ``flag`` exceeds ``max_flag`` (see :data:`FLAGS`); only ``sersic_n`` is
    NaN when just the Sérsic fit is flagged above it. The reason quotes statmorph's warnings.
    """
    nan = np.full(len(quantities), np.nan)
    mask = ~np.isfinite(image)
    if mask.all():
        return nan, "no finite pixels"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)  # reported below as the reason
        segmap, sigma, image = segment_centre(np.where(mask, 0.0, image), mask, threshold, n_pixels, sky)
    if not sigma > 0:
        return nan, "flat stamp: the sky has no noise to measure a source against"
    if segmap is None:
        return nan, f"no source above {threshold:g} sigma of the sky over {n_pixels} pixels at the stamp centre"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            morph = _Measured(image, segmap, segmap.labels[0], mask=mask if mask.any() else None,
                              weightmap=np.full(image.shape, sigma), psf=psf, quantities=quantities)
        except Exception as exc:  # statmorph fails in many numerical ways; report, don't raise
            return nan, f"statmorph failed: {type(exc).__name__}: {exc}"
    said = "; ".join(dict.fromkeys(str(w.message) for w in caught)) or "no warning"
    if morph.flag > max_flag:
        return nan, f"statmorph flag {morph.flag} ({FLAGS.get(morph.flag, '?')}): {said}"
    row = np.array([getattr(morph, q) for q in quantities], dtype=np.float64)
    row[row == SENTINEL] = np.nan
    if "sersic_n" in quantities and morph.flag_sersic > max_flag:
        row[list(quantities).index("sersic_n")] = np.nan
        return row, f"Sérsic fit flag {morph.flag_sersic}, sersic_n is NaN: {said}"
    if not np.isfinite(row).all():
        bad = ", ".join(q for q, v in zip(quantities, row) if not np.isfinite(v))
        return row, f"statmorph gave no value for {bad}: {said}"
    return row, ""
