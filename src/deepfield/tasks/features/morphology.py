"""Non-parametric morphology (CAS, Gini-M20) and a Sérsic index through statmorph.

For each stamp: the sky level is either given (``sky``, e.g. 0.0 for stamps already
sky-subtracted or normalised as :mod:`deepfield.tasks.imaging` does) or estimated by sigma
clipping, refined on pixels outside every detected source, and subtracted; the sky sigma
is always estimated the same way. On small stamps the estimated level absorbs the wings
of extended (high-n) profiles and biases ``sersic_n`` low, so give ``sky`` when it is known.
Then photutils detects sources above
``threshold`` sigma (``n_pixels`` connected pixels) and the segment under the stamp centre
is measured by ``statmorph.SourceMorphology`` (less the unused MID statistics) with a constant weight map (the sky sigma:
background-limited noise) and, if ``psf_fwhm`` is given, a Gaussian PSF for the Sérsic fit.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import statmorph
from astropy.convolution import Gaussian2DKernel
from astropy.stats import sigma_clipped_stats
from astropy.utils.decorators import lazyproperty
from photutils.segmentation import SegmentationImage, detect_sources
from photutils.utils.exceptions import NoDetectionsWarning
from scipy.ndimage import binary_dilation

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.tasks.features.base import Extractor, FeatureSet, band_mean, check_images, progress

FEATURES = ("concentration", "asymmetry", "smoothness", "gini", "m20", "sersic_n")
FLAGS = {0: "good", 1: "suspect", 2: "bad", 4: "catastrophic"}
MIN_SKY_PIXELS = 16


class _WithoutMID(statmorph.SourceMorphology):
    """statmorph's measurement without the MID statistics (multimode, intensity, deviation):
    they are not among our features and take about 60% of statmorph's time on a stamp."""

    @lazyproperty
    def multimode(self) -> float:
        return np.nan

    @lazyproperty
    def intensity(self) -> float:
        return np.nan

    @lazyproperty
    def deviation(self) -> float:
        return np.nan


class Morphology(Extractor):
    """``images: (N, C, H, W) -> (N, 6)``: concentration, asymmetry, smoothness, gini, m20, sersic_n
    of the central source, measured on band ``band`` (an index) or on the band-mean image,
    after subtracting ``sky`` (a level in image units) or, when ``None``, a per-stamp estimate.

    An object is in ``failed`` with a NaN row when no source covers the centre, statmorph
    raises, or its ``flag`` exceeds ``max_flag`` (0 good, 1 suspect, 2 bad, 4 catastrophic);
    the reason quotes statmorph's warnings. When only the Sérsic fit is flagged above
    ``max_flag``, just ``sersic_n`` is NaN and the reason says so.
    """

    name = "morphology"

    def __init__(self, band: int | None = None, threshold: float = 3.0, n_pixels: int = 5,
                 psf_fwhm: float | None = None, max_flag: int = 1, sky: float | None = None):
        if threshold <= 0 or not arguments.is_integer(n_pixels):
            raise DeepfieldError(f"features morphology: threshold (sigma) and n_pixels must be positive, "
                                 f"got {threshold!r}, {n_pixels!r}")
        if psf_fwhm is not None and psf_fwhm <= 0:
            raise DeepfieldError(f"features morphology: psf_fwhm must be positive pixels or None, got {psf_fwhm!r}")
        if band is not None and not arguments.is_integer(band, -arguments.MAX_ELEMENTS):
            raise DeepfieldError(f"features morphology: band must be a band index or None, got {band!r}")
        if max_flag not in FLAGS:
            raise DeepfieldError(f"features morphology: max_flag must be one of 0, 1, 2, 4, got {max_flag!r}")
        self.band = None if band is None else int(band)
        self.threshold = float(threshold)
        self.n_pixels = int(n_pixels)
        self.psf_fwhm = None if psf_fwhm is None else float(psf_fwhm)
        self.max_flag = int(max_flag)
        self.sky = None if sky is None else float(sky)

    def get_config(self) -> dict[str, Any]:
        return {"band": self.band, "threshold": self.threshold, "n_pixels": self.n_pixels,
                "psf_fwhm": self.psf_fwhm, "max_flag": self.max_flag, "sky": self.sky}

    def extract(self, images: np.ndarray) -> FeatureSet:
        x = check_images(images, self.name)
        if self.band is not None and not 0 <= self.band < x.shape[1]:
            raise DeepfieldError(f"features morphology: band {self.band} is not in stamps with {x.shape[1]} bands")
        planes = band_mean(x) if self.band is None else x[:, self.band]
        psf = None if self.psf_fwhm is None else self.psf()
        values = np.full((len(planes), len(FEATURES)), np.nan)
        failed = []
        for i, plane in enumerate(progress(planes, len(planes), "morphology")):
            row, reason = self.measure(plane, psf)
            values[i] = row
            if reason:
                failed.append((i, reason))
        return FeatureSet(values, list(FEATURES), failed)

    def psf(self) -> np.ndarray:
        """A normalised Gaussian PSF image of FWHM ``psf_fwhm`` pixels."""
        kernel = Gaussian2DKernel(self.psf_fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))).array
        return kernel / kernel.sum()

    def measure(self, image: np.ndarray, psf: np.ndarray | None) -> tuple[np.ndarray, str]:
        """The 6 features of one image ``(H, W)`` and a reason ('' when fully measured)."""
        nan = np.full(len(FEATURES), np.nan)
        mask = ~np.isfinite(image)
        if mask.all():
            return nan, "no finite pixels"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoDetectionsWarning)  # reported below as the reason
            segmap, sigma, image = self.segment(np.where(mask, 0.0, image), mask)
        if not sigma > 0:
            return nan, "flat stamp: the sky has no noise to measure a source against"
        if segmap is None:
            return nan, (f"no source above {self.threshold:g} sigma of the sky over {self.n_pixels} pixels "
                         "at the stamp centre")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                morph = _WithoutMID(image, segmap, segmap.labels[0], mask=mask if mask.any() else None,
                                    weightmap=np.full(image.shape, sigma), psf=psf)
            except Exception as exc:  # statmorph fails in many numerical ways; report, don't raise
                return nan, f"statmorph failed: {type(exc).__name__}: {exc}"
        said = "; ".join(dict.fromkeys(str(w.message) for w in caught)) or "no warning"
        if morph.flag > self.max_flag:
            return nan, f"statmorph flag {morph.flag} ({FLAGS.get(morph.flag, '?')}): {said}"
        row = np.array([getattr(morph, f) for f in FEATURES], dtype=np.float64)
        if morph.flag_sersic > self.max_flag:
            row[-1] = np.nan
            return row, f"Sérsic fit flag {morph.flag_sersic}, sersic_n is NaN: {said}"
        if not np.isfinite(row).all():
            bad = ", ".join(f for f, v in zip(FEATURES, row) if not np.isfinite(v))
            return row, f"statmorph gave no value for {bad}: {said}"
        return row, ""

    def segment(self, image: np.ndarray, mask: np.ndarray) -> tuple[SegmentationImage | None, float, np.ndarray]:
        """The central source's segmentation map, the sky sigma and the sky-subtracted image."""
        _, median, sigma = sigma_clipped_stats(image, mask=mask, sigma=3.0)
        median = median if self.sky is None else self.sky
        if not sigma > 0:
            return None, 0.0, image
        sources = detect_sources(image - median, self.threshold * sigma, n_pixels=self.n_pixels, mask=mask)
        if sources is not None:
            background = ~binary_dilation(sources.data > 0, iterations=2) & ~mask
            if background.sum() >= MIN_SKY_PIXELS:
                _, level, refined = sigma_clipped_stats(image[background], sigma=3.0)
                median = level if self.sky is None else self.sky
                sigma = refined if refined > 0 else sigma
                sources = detect_sources(image - median, self.threshold * sigma, n_pixels=self.n_pixels, mask=mask)
        if sources is None:
            return None, sigma, image
        h, w = image.shape
        label = sources.data[h // 2, w // 2]
        if label == 0:
            return None, sigma, image
        sources.keep_label(label)
        return sources, sigma, image - median
