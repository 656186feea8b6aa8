"""Non-parametric morphology (CAS, Gini-M20) and a Sérsic index through statmorph, as baseline features.

Each stamp's band (or band mean) is measured by
:func:`deepfield.analysis.nonparametric_morphology.measure_morphology` (the sky, the segmentation of
the central source and statmorph are described there); ``psf_fwhm`` gives a Gaussian PSF for the Sérsic fit.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from astropy.convolution import Gaussian2DKernel

from deepfield import arguments
from deepfield.analysis.nonparametric_morphology import FLAGS, measure_morphology
from deepfield.errors import DeepfieldError
from deepfield.tasks.features.base import Extractor, FeatureSet, band_mean, check_images, progress

FEATURES = ("concentration", "asymmetry", "smoothness", "gini", "m20", "sersic_n")


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
        return measure_morphology(image, FEATURES, threshold=self.threshold, n_pixels=self.n_pixels, psf=psf,
                                  max_flag=self.max_flag, sky=self.sky)
