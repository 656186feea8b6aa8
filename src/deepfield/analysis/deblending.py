"""How well a deblender returns one source of a blend: flux, shape and size errors, SSIM, the recovered fraction.

Every function takes stamps ``(N, C, H, W)`` in one flux unit (nJy per pixel for deepfield's files):
``truth``, each target source alone and noise-free, and ``output``, what a deblender made of its blend.
Definitions (one entry per target source):

* **Flux** ``F``: the total flux of a stamp, the sum of its pixels (flux unit · pixel², nJy), summed over
  the bands; per band for the per-band errors. Total, not in an aperture: a deblender must give the
  source's light, wings included, and a segmentation deblender's segment flux is this sum over its segment.
* **Flux error**: ``(F_output − F_truth) / F_truth``; ``flux_mape`` is the mean of its absolute value in
  percent (mean absolute percentage error), ``flux_mdape`` the median of its absolute value and
  ``flux_bias`` its median, in percent, over the sources whose truth flux is positive. The mean is the
  issue's figure; it is ruled by the few sources a deblender gets badly wrong (a faint source given part of
  a bright neighbour's light), where the median tells the typical source.
* **Recovered**: a source whose absolute flux error is below :data:`RECOVERED_WITHIN` (10 %);
  ``recovered_fraction`` is their share of all target sources.
* **Shape and size**: GalSim's adaptive moments of the band-summed stamps
  (:func:`~deepfield.analysis.image_quality.adaptive_moments`): ``shape_e_rms`` the RMS of
  ``|e_output − e_truth|`` (distortions), ``size_mape`` the mean of ``|σ_output − σ_truth| / σ_truth`` in
  percent; a source where either fit fails counts in ``shape_failures`` and is left out of both.
* **SSIM**: :func:`~deepfield.analysis.image_quality.ssim`, averaged over the sources.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from deepfield.analysis.image_quality import adaptive_moments, ssim
from deepfield.errors import DeepfieldError

RECOVERED_WITHIN = 0.10
"""A source is recovered when its absolute flux error is below this fraction of its true flux."""


def _pair(truth: Any, output: Any) -> tuple[np.ndarray, np.ndarray]:
    truth, output = np.asarray(truth, dtype=np.float64), np.asarray(output, dtype=np.float64)
    if truth.ndim != 4 or truth.shape != output.shape:
        raise DeepfieldError(f"deblended stamps of shape {output.shape} and truth of shape {truth.shape}: "
                             "expected both (N, C, H, W) alike")
    return truth, output


def relative_flux_errors(truth: Any, output: Any) -> np.ndarray:
    """(N, C + 1) ``(F_output − F_truth) / F_truth`` of the total flux of each stamp per band, then of the
    band-summed flux in the last column; NaN where the truth's flux is not positive."""
    truth, output = _pair(truth, output)
    f_truth, f_output = (np.sum(a, axis=(2, 3)) for a in (truth, output))
    f_truth = np.column_stack([f_truth, f_truth.sum(axis=1)])
    f_output = np.column_stack([f_output, f_output.sum(axis=1)])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(f_truth > 0, (f_output - f_truth) / f_truth, np.nan)


def _percent(values: np.ndarray, statistic: Any) -> float:
    values = values[np.isfinite(values)]
    return float(100.0 * statistic(values)) if values.size else float("nan")


def deblending_scores(truth: Any, output: Any, bands: Sequence[str] | None = None) -> dict[str, Any]:
    """Every metric of the module docstring for ``output`` against ``truth`` (N, C, H, W): ``flux_mape``,
    ``flux_mdape``, ``flux_bias`` (percent), ``flux_mape_per_band`` (band -> percent), ``recovered_fraction``, ``ssim``,
    ``shape_e_rms``, ``size_mape`` (percent), ``shape_failures`` and ``n_sources`` (N)."""
    truth, output = _pair(truth, output)
    errors = relative_flux_errors(truth, output)
    total = errors[:, -1]
    names = list(bands) if bands is not None else [str(c) for c in range(truth.shape[1])]
    moments_truth, moments_output = adaptive_moments(truth), adaptive_moments(output)
    both = np.isfinite(moments_truth[:, 2]) & np.isfinite(moments_output[:, 2])
    delta_e = moments_output[both, :2] - moments_truth[both, :2]
    size = np.abs(moments_output[both, 2] - moments_truth[both, 2]) / moments_truth[both, 2]
    return {"flux_mape": _percent(np.abs(total), np.mean), "flux_mdape": _percent(np.abs(total), np.median),
            "flux_bias": _percent(total, np.median),
            "flux_mape_per_band": {b: _percent(np.abs(errors[:, c]), np.mean) for c, b in enumerate(names)},
            "recovered_fraction": float(np.mean(np.abs(np.nan_to_num(total, nan=np.inf)) < RECOVERED_WITHIN)),
            "ssim": float(np.mean(ssim(truth, output))),
            "shape_e_rms": float(np.sqrt(np.mean(np.sum(delta_e**2, axis=1)))) if both.any() else float("nan"),
            "size_mape": _percent(size, np.mean), "shape_failures": int((~both).sum()), "n_sources": len(truth)}
