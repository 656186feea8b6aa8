"""The uncertainty part of a run's analysis: calibration, coverage and their figures, per kind of output.

Numbers come from :mod:`deepfield.analysis.calibration`, figures from
:mod:`deepfield.plots.uncertainty`; the tasks call these on their test part.
Every figure is named ``uncertainty_*.png`` (the report's Uncertainty section).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from deepfield.analysis.calibration import (CoverageCurve, apply_temperature, error_vs_uncertainty,
                                            expected_calibration_error, fit_temperature, gaussian_coverage_curve,
                                            gaussian_interval_coverage, misclassification_auroc,
                                            negative_log_likelihood, pdf_coverage_curve, pdf_interval_coverage)
from deepfield.analysis.image_uncertainty import aperture_flux_uncertainty, coverage_curve, interval_coverage
from deepfield.analysis.interval_recalibration import record_widths
from deepfield.errors import DeepfieldError
from deepfield.plots import plot_gallery
from deepfield.plots.uncertainty import (plot_coverage, plot_error_vs_uncertainty, plot_reliability_diagram,
                                         plot_uncertainty_flags)
from deepfield.training.mc_dropout import MCPrediction

MOST_UNCERTAIN = 16
"""Stamps shown in the most-uncertain gallery."""


def classification_uncertainty(labels: ArrayLike, prediction: MCPrediction, figures: Path, *,
                               temperature: float | None = None, images: np.ndarray | None = None,
                               class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Calibration and uncertainty quality of class probabilities ``prediction.mean`` against ``labels`` (N,).

    Returns ``ece``, ``nll`` (nats), ``mean_entropy``, ``entropy_flags_errors_auroc`` (how
    well predictive entropy picks out the misclassified objects; 0.5 is chance) and, with
    several draws, ``mean_mutual_information`` and ``mutual_information_flags_errors_auroc``.
    With a ``temperature`` (fitted on the validation part, :func:`fit_run_temperature`),
    ``ece_calibrated`` and ``nll_calibrated`` are this part's after scaling.

    Figures in ``figures``: ``uncertainty_reliability.png``, ``uncertainty_flags.png`` and,
    with ``images`` ``(N, C, H, W)``, ``uncertainty_most_uncertain.png`` (highest entropy first).
    """
    y = np.asarray(labels).reshape(-1).astype(np.int64)
    p = prediction.mean
    result: dict[str, Any] = {"ece": expected_calibration_error(y, p), "nll": negative_log_likelihood(y, p),
                              "mean_entropy": float(prediction.entropy.mean()),
                              "entropy_flags_errors_auroc": misclassification_auroc(y, p, prediction.entropy)}
    if float(prediction.mutual_information.max()) > 0:
        result["mean_mutual_information"] = float(prediction.mutual_information.mean())
        result["mutual_information_flags_errors_auroc"] = misclassification_auroc(y, p, prediction.mutual_information)
    calibrated = None
    if temperature is not None:
        calibrated = apply_temperature(p, temperature)
        result |= {"temperature": temperature, "ece_calibrated": expected_calibration_error(y, calibrated),
                   "nll_calibrated": negative_log_likelihood(y, calibrated)}
    plot_reliability_diagram(y, p, figures / "uncertainty_reliability.png", calibrated=calibrated)
    plot_uncertainty_flags(y, p, prediction.entropy, figures / "uncertainty_flags.png",
                           uncertainty_name="predictive entropy (nats)")
    if images is not None:
        shown = np.argsort(-prediction.entropy, kind="stable")[:MOST_UNCERTAIN]
        scores = p[:, 0] if p.ndim == 2 and p.shape[1] == 1 else p  # a sigmoid's probability of class 1
        plot_gallery(images[shown], y[shown], scores[shown], figures / "uncertainty_most_uncertain.png", class_names,
                     title="The most uncertain objects (highest predictive entropy first)")
    return result


def uncertainty_columns(prediction: MCPrediction, temperature: float | None = None) -> dict[str, np.ndarray]:
    """A classifier's prediction-table columns: ``entropy`` (nats), with several draws
    ``mutual_information``, and with a temperature ``confidence_calibrated`` (the calibrated
    probability of the predicted class)."""
    columns = {"entropy": prediction.entropy}
    if float(prediction.mutual_information.max()) > 0:
        columns["mutual_information"] = prediction.mutual_information
    if temperature is not None:
        calibrated = apply_temperature(prediction.mean, temperature).reshape(len(prediction.mean), -1)
        columns["confidence_calibrated"] = (calibrated.max(axis=1) if calibrated.shape[1] > 1
                                            else np.maximum(calibrated[:, 0], 1.0 - calibrated[:, 0]))
    return columns


def fit_run_temperature(labels: ArrayLike, probabilities: ArrayLike) -> float | None:
    """The temperature fitted on the validation part, or ``None`` where it cannot be (no mistakes there)."""
    try:
        return fit_temperature(np.asarray(labels).reshape(-1).astype(np.int64), probabilities)
    except DeepfieldError:
        return None


def regression_uncertainty(y_true: ArrayLike, prediction: MCPrediction, figures: Path,
                           name: str = "y") -> dict[str, Any]:
    """Whether the predicted σ (first output) fits the errors: interval coverage and error vs uncertainty.

    ``prediction.total`` is the σ used (epistemic ⊕ aleatoric); returns ``coverage``
    (observed fraction inside the central 68 % and 95 % intervals), ``sigma_mean`` with its
    parts ``sigma_epistemic_mean`` / ``sigma_aleatoric_mean``, and ``error_sigma_spearman``.
    Figures ``uncertainty_error_vs_sigma.png`` and ``uncertainty_coverage.png``.
    """
    n = len(prediction.mean)
    truth = np.asarray(y_true, dtype=np.float64).reshape(n, -1)[:, 0]
    mean, sigma = prediction.mean.reshape(n, -1)[:, 0], prediction.total.reshape(n, -1)[:, 0]
    if not np.all(sigma > 0):
        raise DeepfieldError("regression_uncertainty: the prediction carries no spread (σ = 0); draw with "
                             "mc_samples, train an ensemble or a heteroscedastic head")
    error = mean - truth
    binned = error_vs_uncertainty(error, sigma)
    result: dict[str, Any] = {"coverage": gaussian_interval_coverage(truth, mean, sigma),
                              "sigma_mean": float(sigma.mean()), "error_sigma_spearman": binned.spearman,
                              "sigma_epistemic_mean": float(prediction.std.reshape(n, -1)[:, 0].mean())}
    if prediction.aleatoric is not None:
        result["sigma_aleatoric_mean"] = float(prediction.aleatoric[:, 0].mean())
    plot_error_vs_uncertainty(error, sigma, figures / "uncertainty_error_vs_sigma.png",
                              xlabel=f"predicted σ({name})", ylabel=f"RMS error of {name}")
    plot_coverage(gaussian_coverage_curve(truth, mean, sigma), figures / "uncertainty_coverage.png")
    return result


def pdf_uncertainty(z_true: ArrayLike, prediction: MCPrediction, edges: ArrayLike, figures: Path) -> dict[str, Any]:
    """Coverage of the central 68 % / 95 % intervals of redshift PDFs ``prediction.mean`` (N, B) over
    bin ``edges`` (B+1,), and the draws' disagreement; figure ``uncertainty_coverage.png``."""
    result: dict[str, Any] = {"coverage": pdf_interval_coverage(prediction.mean, z_true, edges)}
    if float(prediction.mutual_information.max()) > 0:
        result["mean_mutual_information"] = float(prediction.mutual_information.mean())
    plot_coverage(pdf_coverage_curve(prediction.mean, z_true, edges), figures / "uncertainty_coverage.png")
    return result


def image_quantities(truth: np.ndarray, output: np.ndarray, weights: np.ndarray, *,
                     epistemic: np.ndarray | None = None, aleatoric: np.ndarray | None = None,
                     draws: np.ndarray | None = None) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The intervals an image output reports, as ``{quantity: (truth, estimate, σ)}``: ``pixel`` (every pixel,
    ``(N, C, H, W)``, the total σ) and ``flux`` (each aperture flux, ``(N, C)``, the head's pixel errors added as
    independent ones); arguments as :func:`image_uncertainty`'s. What the run's recalibration fits on the
    validation part (:func:`~deepfield.analysis.interval_recalibration.fit_interval_record`)."""
    parts = [sigma for sigma in (epistemic, aleatoric) if sigma is not None]
    if not parts:
        raise DeepfieldError("image_uncertainty: no σ given; draw with mc_samples or train a heteroscedastic head")
    if epistemic is not None and draws is None:
        raise DeepfieldError("image_uncertainty: the spread of the draws comes without the draws; the flux σ needs "
                             "each draw's aperture flux")
    flux = aperture_flux_uncertainty(weights, output, draws=draws, aleatoric=aleatoric)
    return {"pixel": (truth, output, np.sqrt(sum(sigma**2 for sigma in parts))),
            "flux": (aperture_flux_uncertainty(weights, truth).flux, flux.flux, flux.total)}


def image_uncertainty(truth: np.ndarray, output: np.ndarray, weights: np.ndarray, figures: Path, *,
                      epistemic: np.ndarray | None = None, aleatoric: np.ndarray | None = None,
                      draws: np.ndarray | None = None, intervals: Mapping[str, Any] | None = None,
                      fluxes: str = "aperture fluxes") -> dict[str, Any]:
    """Whether an image output's σ holds its coverage, per pixel and per aperture flux
    (:mod:`deepfield.analysis.image_uncertainty`), for a denoised stamp, a deblended source...

    Args:
        truth, output: ``(N, C, H, W)`` in one flux unit.
        weights: ``(N, H, W)`` each stamp's aperture (:func:`~deepfield.analysis.image_uncertainty.aperture_weights`).
        epistemic: ``(N, C, H, W)`` the spread of the draws (MC dropout, ensemble members), with ``draws``
            ``(T, N, C, H, W)`` themselves for the flux σ; aleatoric: ``(N, C, H, W)`` a heteroscedastic head's σ.
        intervals: the run's recalibration record, fitted on the validation part on :func:`image_quantities`
            (:mod:`deepfield.analysis.interval_recalibration`, ``calibration.json["intervals"]``).
        fluxes: what the fluxes are, in the figure's legend (the weights all one: ``"total fluxes"``).

    Returns ``sigma`` (what σ is), ``pixel_coverage`` and ``flux_coverage`` (``{"68", "95"}`` of the raw total σ's
    Gaussian intervals, the head's pixel errors added in the aperture as independent ones; with both parts also
    ``_spread`` and ``_head`` coverages of each alone), ``flux_coverage_coherent`` (the head's pixel errors fully
    correlated: the two flux coverages bracket the truth), ``pixel_sigma_median`` (flux unit) and
    ``coverage_curve`` (one row per level: nominal ``level``, observed ``pixel``, ``flux`` and ``flux_coherent``).
    With ``intervals``: ``pixel_coverage_calibrated`` and ``flux_coverage_calibrated`` (the recalibrated intervals
    on this part), ``calibrated_half_widths`` (``{quantity: {"68", "95"}}`` in units of the raw σ),
    ``calibration`` (where they were fitted) and ``pixel_calibrated``, ``flux_calibrated`` in each curve row.
    Figure ``uncertainty_coverage.png``.
    """
    quantities = image_quantities(truth, output, weights, epistemic=epistemic, aleatoric=aleatoric, draws=draws)
    parts = {name: sigma for name, sigma in (("spread", epistemic), ("head", aleatoric)) if sigma is not None}
    truth_flux, flux, flux_total = quantities["flux"]
    named = {"spread": "MC-dropout spread", "head": "heteroscedastic head", "pixel": "pixels",
             "flux": fluxes, "flux_coherent": f"{fluxes}, head's pixel errors coherent"}
    result: dict[str, Any] = {"sigma": " ⊕ ".join(named[name] for name in parts),
                              **{f"{name}_coverage": interval_coverage(*quantity)
                                 for name, quantity in quantities.items()}}
    curves = {name: coverage_curve(*quantity) for name, quantity in quantities.items()}
    if aleatoric is not None:
        coherent = aperture_flux_uncertainty(weights, output, draws=draws, aleatoric=aleatoric,
                                             pixel_errors="coherent")
        result["flux_coverage_coherent"] = interval_coverage(truth_flux, flux, coherent.total)
        curves["flux_coherent"] = coverage_curve(truth_flux, flux, coherent.total)
    result["pixel_sigma_median"] = float(np.median(quantities["pixel"][2]))
    shown = {named[key]: curve for key, curve in curves.items()}
    if len(parts) == 2:
        flux_parts = {"spread": aperture_flux_uncertainty(weights, output, draws=draws).total,
                      "head": aperture_flux_uncertainty(weights, output, aleatoric=aleatoric).total}
        for name, sigma in parts.items():
            result[f"pixel_coverage_{name}"] = interval_coverage(truth, output, sigma)
            result[f"flux_coverage_{name}"] = interval_coverage(truth_flux, flux, flux_parts[name])
            shown[f"pixels, {named[name]} alone"] = coverage_curve(truth, output, sigma)
    levels = curves["pixel"].nominal
    if intervals is not None:
        calibrated = recalibrated(quantities, intervals, levels)
        widths = {name: record_widths(intervals, name, (0.68, 0.95)) for name in calibrated}
        result |= {f"{name}_coverage_calibrated": interval_coverage(*quantities[name], widths[name])
                   for name in calibrated}
        result["calibrated_half_widths"] = {name: dict(zip(("68", "95"), w.tolist())) for name, w in widths.items()}
        result["calibration"] = f"half-width per level fitted on the {intervals.get('fitted_on', 'validation')} part"
        curves |= {f"{name}_calibrated": curve for name, curve in calibrated.items()}
        shown |= {f"{named[name]}, recalibrated on validation": curve for name, curve in calibrated.items()}
    result["coverage_curve"] = [{"level": float(level), **{key: float(c.observed[i]) for key, c in curves.items()}}
                                for i, level in enumerate(levels)]
    plot_coverage(shown, figures / "uncertainty_coverage.png",
                  title=f"Test part, σ: {result['sigma']}", figsize=(6.0, 5.5))
    return result


def recalibrated(quantities: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]], intervals: Mapping[str, Any],
                 levels: Sequence[float]) -> dict[str, CoverageCurve]:
    """The coverage curves at ``levels`` of each quantity's recalibrated intervals (those ``intervals`` records)."""
    curves = {}
    for name, (truth, estimate, sigma) in quantities.items():
        widths = record_widths(intervals, name, levels)
        if widths is not None:
            curves[name] = coverage_curve(truth, estimate, sigma, levels, widths)
    return curves
