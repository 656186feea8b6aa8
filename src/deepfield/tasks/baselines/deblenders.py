"""The classical deblender beside the network, on the same split (``task: deblend``, ``baselines.run``).

photutils' segmentation deblender: on the band-summed blend, smoothed by a Gaussian of
:data:`SMOOTHING_FWHM` pixels, :func:`photutils.segmentation.detect_sources` finds the pixels above
:data:`THRESHOLD` times the smoothed image's noise (at least :data:`N_PIXELS` connected), then
:func:`photutils.segmentation.deblend_sources` splits each segment by multi-thresholding and watershed.
The target is the segment holding its centre's pixel, else the segment whose flux-weighted centroid is
nearest within :data:`MATCH_RADIUS` pixels; none: the target is missed (its output is empty, flux 0).
Its output is the blend inside that segment and zero elsewhere, in every band, so its flux is the
segment flux and every metric of :mod:`~deepfield.analysis.deblending` scores it as it scores the
network. ``contrast`` (the least flux fraction a split-off segment must hold) is chosen on the
validation part from :data:`CONTRASTS` as the one of lowest flux error.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from astropy.convolution import convolve
from photutils.segmentation import deblend_sources, detect_sources, make_2dgaussian_kernel
from scipy import ndimage

from deepfield.analysis.deblending import deblending_scores, relative_flux_errors

SMOOTHING_FWHM = 2.0
"""Pixels: the FWHM of the Gaussian the detection image is smoothed with."""
THRESHOLD = 2.0
"""Detection threshold, in σ of the smoothed band-summed noise."""
N_PIXELS = 5
"""The fewest connected pixels of a segment."""
MATCH_RADIUS = 3.0
"""Pixels: the farthest a segment's centroid may lie from a target that falls on no segment."""
CONTRASTS = (0.001, 0.01, 0.1)
"""The ``contrast`` values tried on the validation part (photutils' default is 0.001)."""
SCORES = ("flux_mape", "flux_mdape", "flux_bias", "recovered_fraction", "ssim", "shape_e_rms", "size_mape",
          "shape_failures")
"""The metrics of a baselines row (and the network's row beside them)."""


def target_segment(labels: np.ndarray, detection: np.ndarray, x: float, y: float) -> int:
    """The label (> 0) of the segment of ``labels`` (H, W) holding the pixel of ``(x, y)``, else of the one
    whose centroid (weighted by ``detection``) is nearest within :data:`MATCH_RADIUS`; 0: none."""
    row, column = int(round(y)), int(round(x))
    if 0 <= row < labels.shape[0] and 0 <= column < labels.shape[1] and labels[row, column] > 0:
        return int(labels[row, column])
    found = np.unique(labels[labels > 0])
    if not found.size:
        return 0
    centroids = np.array(ndimage.center_of_mass(np.clip(detection, 0, None), labels, found))
    distance = np.hypot(centroids[:, 1] - x, centroids[:, 0] - y)
    best = int(np.nanargmin(np.nan_to_num(distance, nan=np.inf)))
    return int(found[best]) if distance[best] <= MATCH_RADIUS else 0


def segmentation_deblend(blends: np.ndarray, x: np.ndarray, y: np.ndarray, noise: np.ndarray,
                         contrast: float) -> np.ndarray:
    """(N, C, H, W) each blend of ``blends`` (N, C, H, W) inside its target's segment (module docstring),
    zero elsewhere; ``x``, ``y`` (N,) the targets' centres in pixels; ``noise`` (C,) each band's sky σ
    per pixel, in the blends' unit."""
    kernel = make_2dgaussian_kernel(SMOOTHING_FWHM, size=2 * int(np.ceil(1.5 * SMOOTHING_FWHM)) + 1)
    sigma = float(np.sqrt(np.sum(np.square(noise))) * np.sqrt(np.sum(kernel.array**2)))
    output = np.zeros_like(blends, dtype=np.float64)
    for i, blend in enumerate(np.asarray(blends, dtype=np.float64)):
        detection = convolve(blend.sum(axis=0), kernel)
        segments = detect_sources(detection, THRESHOLD * sigma, n_pixels=N_PIXELS)
        if segments is None:
            continue
        labels = deblend_sources(detection, segments, n_pixels=N_PIXELS, contrast=contrast,
                                 progress_bar=False).data
        label = target_segment(labels, detection, float(x[i]), float(y[i]))
        if label:
            output[i] = blend * (labels == label)
    return output


def deblend_baselines(validation: dict[str, np.ndarray], test: dict[str, np.ndarray], noise: np.ndarray,
                      bands: list[str]) -> list[dict[str, Any]]:
    """Rows for ``metrics.json["baselines"]``: the blend itself (no deblending), then the segmentation
    deblender with its ``contrast`` chosen on ``validation`` and scored on ``test``.

    ``validation``, ``test``: ``blends`` and ``truth`` (N, C, H, W) in one flux unit and the targets'
    ``x``, ``y`` (N,) in pixels; ``noise``: (C,) each band's sky σ per pixel.
    """
    def scores(part: dict[str, np.ndarray], output: np.ndarray) -> dict[str, Any]:
        result = deblending_scores(part["truth"], output, bands)
        return {key: result[key] for key in SCORES}

    def run(part: dict[str, np.ndarray], contrast: float) -> np.ndarray:
        return segmentation_deblend(part["blends"], part["x"], part["y"], noise, contrast)

    def flux_error(contrast: float) -> float:
        return float(np.nanmean(np.abs(relative_flux_errors(validation["truth"], run(validation, contrast))[:, -1])))

    contrast = min(CONTRASTS, key=flux_error)
    return [{"model": "blend (no deblending)", "parameter": "", **scores(test, test["blends"])},
            {"model": "segmentation deblender (photutils)", "parameter": f"contrast {contrast}",
             **scores(test, run(test, contrast))}]
