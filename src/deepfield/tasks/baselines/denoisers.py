"""Classical denoisers beside the network, on the same split (``task: denoise``, ``baselines.run``).

Each filter's one parameter is chosen on the validation part, from a small grid, as the value of
highest mean PSNR against the truth; the chosen filter is then scored on the test part with the
network's metrics (:func:`~deepfield.analysis.image_quality.image_quality`). Filters work band by band
on the stamps in the file's flux unit:

* Gaussian filter (:func:`scipy.ndimage.gaussian_filter`), σ in pixels from :data:`GAUSSIAN_SIGMAS`;
* median filter (:func:`scipy.ndimage.median_filter`), a square window of :data:`MEDIAN_SIZES` pixels;
* wavelet denoising (:func:`skimage.restoration.denoise_wavelet`, BayesShrink soft thresholds, the
  noise σ estimated per stamp and band from the finest scale), the wavelet from :data:`WAVELETS`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.restoration import denoise_wavelet

from deepfield.analysis.image_quality import image_quality, psnr

GAUSSIAN_SIGMAS = (0.5, 1.0, 1.5, 2.0, 3.0)
MEDIAN_SIZES = (3, 5, 7)
WAVELETS = ("db1", "db2", "sym4")
SCORES = ("psnr", "ssim", "snr_gain", "flux_bias", "flux_scatter", "shape_e_rms", "shape_failures")
"""The metrics of a baselines row (and the network's row beside them)."""


def gaussian(stamps: np.ndarray, sigma: float) -> np.ndarray:
    """(N, C, H, W) each band smoothed by a Gaussian of ``sigma`` pixels (edges reflected)."""
    return ndimage.gaussian_filter(stamps, sigma=(0, 0, sigma, sigma), mode="reflect")


def median(stamps: np.ndarray, size: int) -> np.ndarray:
    """(N, C, H, W) each band's median over a ``size``×``size`` window (edges reflected)."""
    return ndimage.median_filter(stamps, size=(1, 1, size, size), mode="reflect")


def wavelet(stamps: np.ndarray, name: str) -> np.ndarray:
    """(N, C, H, W) each band denoised by BayesShrink soft thresholding in the ``name`` wavelet basis."""
    return np.stack([np.stack([denoise_wavelet(band, wavelet=name, method="BayesShrink", mode="soft",
                                               rescale_sigma=True) for band in stamp]) for stamp in stamps])


FILTERS: dict[str, tuple[Callable[[np.ndarray, Any], np.ndarray], str, Sequence[Any]]] = {
    "gaussian filter": (gaussian, "sigma", GAUSSIAN_SIGMAS),
    "median filter": (median, "size", MEDIAN_SIZES),
    "wavelet": (wavelet, "wavelet", WAVELETS),
}
"""Name -> (filter, its parameter's name, the grid searched on the validation part)."""


def choose(apply: Callable[[np.ndarray, Any], np.ndarray], grid: Sequence[Any], noisy: np.ndarray,
           truth: np.ndarray) -> Any:
    """The value of ``grid`` whose output of ``noisy`` has the highest mean PSNR against ``truth`` (N, C, H, W)."""
    return max(grid, key=lambda value: float(np.mean(psnr(truth, apply(noisy, value)))))


def denoise_baselines(validation: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                      apertures: np.ndarray, bands: Sequence[str]) -> list[dict[str, Any]]:
    """Rows for ``metrics.json["baselines"]``: the noisy input itself, then each of :data:`FILTERS` with
    its parameter chosen on ``validation`` and scored on ``test``.

    ``validation``, ``test``: ``(noisy, truth)`` stamps (N, C, H, W) in the file's flux unit;
    ``apertures``: (N_test, 3) aperture centre column, row and radius in pixels.
    """
    noisy, truth = (np.asarray(a, dtype=np.float64) for a in test)
    x, y, radius = apertures.T

    def scores(output: np.ndarray) -> dict[str, Any]:
        result = image_quality(truth, output, noisy, x, y, radius, bands)
        return {key: result[key] for key in SCORES}

    rows = [{"model": "noisy input", "parameter": "", **scores(noisy)}]
    val_noisy, val_truth = (np.asarray(a, dtype=np.float64) for a in validation)
    for name, (apply, parameter, grid) in FILTERS.items():
        value = choose(apply, grid, val_noisy, val_truth)
        rows.append({"model": name, "parameter": f"{parameter} {value}", **scores(apply(noisy, value))})
    return rows
