"""How far to trust an image output: per-pixel σ, the σ of aperture fluxes, and the coverage of both.

For any image-to-image network (denoised stamps, deblended sources). Stamps are ``(N, C, H, W)`` in one
flux unit (nJy per pixel for deepfield's files); draws of a network ``(T, N, C, H, W)``.

Per pixel (computed from the draws by :class:`~deepfield.training.mc_dropout.MCPrediction`):

* **epistemic** σ: the spread (standard deviation) of the means of ``T`` Monte-Carlo dropout draws;
* **aleatoric** σ: a heteroscedastic head's ``sqrt(mean_t exp(s_t))``, ``s`` its log-variance;
* **total** σ: ``sqrt(epistemic² + aleatoric²)`` (the law of total variance over the draws).

Per source, the aperture flux ``F = Σ_p w_p I_p`` (``w`` the exact overlap of each pixel with the circle,
:func:`aperture_weights`, the weights of :func:`~deepfield.analysis.image_quality.aperture_fluxes`):

* epistemic: the standard deviation over the draws of each draw's aperture flux, so every correlation
  between pixels that the draws carry is counted (nothing is assumed about them);
* aleatoric: the head gives each pixel's variance, not the pixels' covariance. ``pixel_errors``
  ``"independent"`` takes ``sqrt(Σ w_p² σ_p²)`` (uncorrelated errors: a lower bound when a network's errors
  come in coherent patches, as they do where it misjudges a galaxy's size), ``"coherent"`` takes
  ``Σ w_p σ_p`` (fully correlated: an upper bound);
* total: the two in quadrature.

Coverage: the fraction of truths inside the central interval ``mean ± z_L σ``, ``z_L = Φ⁻¹((1 + L) / 2)``
(1.0 at L = 0.68, 1.96 at 0.95), at many levels ``L`` (:func:`coverage_curve`; a calibrated σ gives the
diagonal). A σ that is right in shape but wrong in scale is fixed by one factor fitted on the validation
part (:func:`fit_sigma_scale`, as temperature scaling fixes class probabilities) and judged on the test part.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from photutils.aperture import CircularAperture
from scipy import stats

from deepfield.analysis.calibration import CoverageCurve
from deepfield.analysis.classification import JsonReady
from deepfield.errors import DeepfieldError

__all__ = ["CURVE_LEVELS", "FluxUncertainty", "PIXEL_ERRORS", "aperture_flux_uncertainty", "aperture_weights",
           "coverage_curve", "fit_interval_widths", "fit_sigma_scale", "interval_coverage", "pulls"]

CURVE_LEVELS = tuple(sorted({*np.round(np.arange(0.05, 1.0, 0.05), 2).tolist(), 0.68, 0.99}))
"""Nominal levels of the coverage curves: 0.05 to 0.95 by 0.05, with 0.68 and 0.99."""
PIXEL_ERRORS = ("independent", "coherent")
SCALE_RANGE = (0.05, 20.0)
""":func:`fit_sigma_scale` searches its factor in this range (log-spaced grid)."""
SCALE_STEPS = 2001


def _stamps(name: str, values: ArrayLike, ndim: int = 4) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != ndim:
        shape = "(N, C, H, W)" if ndim == 4 else "(T, N, C, H, W)"
        raise DeepfieldError(f"{name}: expected {shape}, got shape {array.shape}")
    return array


def _levels(levels: Sequence[float]) -> np.ndarray:
    lv = np.asarray(levels, dtype=np.float64)
    if lv.ndim != 1 or lv.size == 0 or np.any(~(lv > 0)) or np.any(~(lv < 1)):
        raise DeepfieldError(f"levels: expected one or more levels in (0, 1), got {list(np.atleast_1d(lv))}")
    return lv


def pulls(truth: ArrayLike, mean: ArrayLike, sigma: ArrayLike) -> np.ndarray:
    """``|mean − truth| / σ`` flattened (any shape, all alike); σ = 0 gives 0 where the mean is exact, else ∞."""
    truth, mean, sigma = (np.asarray(a, dtype=np.float64) for a in (truth, mean, sigma))
    if not truth.shape == mean.shape == sigma.shape:
        raise DeepfieldError(f"coverage: truth, mean and sigma must have one shape, got {truth.shape}, "
                             f"{mean.shape}, {sigma.shape}")
    if np.any(sigma < 0) or not np.all(np.isfinite(sigma)):
        raise DeepfieldError("coverage: sigma must be finite and ≥ 0")
    error = np.abs(mean - truth).ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = error / sigma.ravel()
    return np.where(error == 0, 0.0, ratio)


def coverage_curve(truth: ArrayLike, mean: ArrayLike, sigma: ArrayLike, levels: Sequence[float] = CURVE_LEVELS,
                   widths: ArrayLike | None = None) -> CoverageCurve:
    """Observed against nominal coverage of the central Gaussian intervals ``mean ± z_L σ`` of every entry.

    ``truth``, ``mean``, ``sigma``: one shape (pixels ``(N, C, H, W)``, fluxes ``(N, C)``), one unit;
    ``n`` of the curve is the number of entries. The boundary counts as inside. ``widths``: the half-widths
    ``z_L`` (units of σ) of each level's interval instead of the Gaussian's (:func:`fit_interval_widths`).
    """
    r = np.sort(pulls(truth, mean, sigma))
    lv = _levels(levels)
    z = stats.norm.ppf(0.5 * (1.0 + lv)) if widths is None else np.asarray(widths, dtype=np.float64)
    if z.shape != lv.shape:
        raise DeepfieldError(f"widths: one per level ({len(lv)}), got shape {z.shape}")
    return CoverageCurve(lv, np.searchsorted(r, z, side="right") / len(r), len(r))


def interval_coverage(truth: ArrayLike, mean: ArrayLike, sigma: ArrayLike,
                      widths: ArrayLike | None = None) -> dict[str, float]:
    """``{"68": fraction, "95": fraction}`` inside the central 68 % and 95 % intervals (:func:`coverage_curve`;
    ``widths``: their two half-widths in units of σ, default the Gaussian's 0.994 and 1.960)."""
    curve = coverage_curve(truth, mean, sigma, (0.68, 0.95), widths)
    return {"68": float(curve.observed[0]), "95": float(curve.observed[1])}


def fit_interval_widths(truth: ArrayLike, mean: ArrayLike, sigma: ArrayLike,
                        levels: Sequence[float] = (0.68, 0.95)) -> np.ndarray:
    """``(L,)`` the half-width ``z_L`` (units of σ) of each level's central interval that covers exactly that
    fraction of these data: the ``L`` quantile of the pulls ``|mean − truth| / σ``.

    Quantile recalibration (Kuleshov, Fenner & Ermon 2018) for symmetric intervals: where the pulls are not
    Gaussian (heavy tails: σ right on average but not pixel by pixel), no single σ factor fixes 68 % and
    95 % together; one width per level does. Fit it on the validation part, judge it on the test part.
    """
    return np.quantile(pulls(truth, mean, sigma), _levels(levels), method="higher")


def fit_sigma_scale(truth: ArrayLike, mean: ArrayLike, sigma: ArrayLike,
                    levels: Sequence[float] = CURVE_LEVELS) -> float:
    """The one factor ``s`` for σ that brings the coverage curve closest to the diagonal on these data.

    Minimises the mean over ``levels`` of ``|observed(L) − L|`` for intervals ``mean ± z_L s σ`` on a
    log-spaced grid of :data:`SCALE_STEPS` factors in :data:`SCALE_RANGE` (the objective is a step
    function of ``s``, so a grid, not a gradient; of equal minima the one nearest 1). Fit it on the
    validation part and judge it on the test part.
    """
    r = np.sort(pulls(truth, mean, sigma))
    lv = _levels(levels)
    z = stats.norm.ppf(0.5 * (1.0 + lv))
    grid = np.geomspace(*SCALE_RANGE, SCALE_STEPS)
    observed = np.searchsorted(r, grid[:, None] * z[None, :], side="right") / len(r)
    loss = np.abs(observed - lv[None, :]).mean(axis=1)
    best = np.flatnonzero(loss == loss.min())
    return float(grid[best[np.argmin(np.abs(np.log(grid[best])))]])


def aperture_weights(shape: tuple[int, int], x: ArrayLike, y: ArrayLike, radius: ArrayLike) -> np.ndarray:
    """``(N, H, W)`` each pixel's exact overlap (0 to 1) with a circle of ``radius[i]`` pixels centred on
    column ``x[i]``, row ``y[i]`` (0: the first pixel's centre) in stamps of ``shape`` ``(H, W)``."""
    x, y, radius = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (x, y, radius))
    if not len(x) == len(y) == len(radius):
        raise DeepfieldError(f"apertures: x, y and radius must have one length, got {len(x)}, {len(y)}, "
                             f"{len(radius)}")
    return np.stack([CircularAperture((cx, cy), r=r).to_mask(method="exact").to_image(shape)
                     for cx, cy, r in zip(x, y, radius)]) if len(x) else np.zeros((0, *shape))


@dataclass(frozen=True)
class FluxUncertainty(JsonReady):
    """Aperture fluxes of the mean output and their σ, each ``(N, C)`` in flux unit × pixels (nJy)."""

    flux: np.ndarray
    epistemic: np.ndarray
    aleatoric: np.ndarray
    total: np.ndarray


def aperture_flux_uncertainty(weights: ArrayLike, mean: ArrayLike, draws: ArrayLike | None = None,
                              aleatoric: ArrayLike | None = None,
                              pixel_errors: str = "independent") -> FluxUncertainty:
    """The aperture flux of ``mean`` and its σ (module docstring).

    Args:
        weights: ``(N, H, W)`` from :func:`aperture_weights`.
        mean: ``(N, C, H, W)`` the output (the mean of the draws).
        draws: ``(T, N, C, H, W)`` the draws' means (MC dropout, ensemble members); ``None``: no
            epistemic part.
        aleatoric: ``(N, C, H, W)`` a heteroscedastic head's per-pixel σ; ``None``: no aleatoric part.
        pixel_errors: ``"independent"`` or ``"coherent"``, how the aleatoric pixel errors add up.
    """
    w = np.asarray(weights, dtype=np.float64)
    mean = _stamps("mean", mean)
    if w.shape != (mean.shape[0], *mean.shape[2:]):
        raise DeepfieldError(f"aperture weights of shape {w.shape} do not match stamps {mean.shape}")
    if pixel_errors not in PIXEL_ERRORS:
        raise DeepfieldError(f"pixel_errors must be one of {', '.join(PIXEL_ERRORS)}, got {pixel_errors!r}")
    flux = np.einsum("nchw,nhw->nc", mean, w)
    epistemic = aleatoric_flux = np.zeros_like(flux)
    if draws is not None:
        draws = _stamps("draws", draws, 5)
        if draws.shape[1:] != mean.shape:
            raise DeepfieldError(f"draws of shape {draws.shape} do not match the mean {mean.shape}")
        epistemic = np.einsum("tnchw,nhw->tnc", draws, w).std(axis=0)
    if aleatoric is not None:
        sigma = _stamps("aleatoric", aleatoric)
        if sigma.shape != mean.shape:
            raise DeepfieldError(f"aleatoric σ of shape {sigma.shape} does not match the mean {mean.shape}")
        aleatoric_flux = (np.sqrt(np.einsum("nchw,nhw->nc", sigma**2, w**2)) if pixel_errors == "independent"
                          else np.einsum("nchw,nhw->nc", sigma, w))
    return FluxUncertainty(flux, epistemic, aleatoric_flux, np.hypot(epistemic, aleatoric_flux))
