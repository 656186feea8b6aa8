"""The σ of an image-to-image network's stamps in the file's flux unit, and what a run does with it.

Shared by the image-to-image tasks (denoise, deblend): a run's prediction (:class:`MCPrediction`, network
units) is carried to the file's flux unit through the task's own inverse map ``to_flux`` (network units
``(N, C, H, W)`` -> flux, float64: undoing the normalisation and, for deblend, the asinh stretch), then
:class:`StampUncertainty` fits the run's interval recalibration on the validation part (``calibration.json``)
and measures the coverage on the test part (:func:`~deepfield.tasks.uncertainty.image_uncertainty`).

How each σ crosses ``to_flux`` (:func:`flux_maps`):

* the draws (MC dropout, ensemble members) are mapped one by one, and their spread is taken in flux:
  each draw is one image the network holds possible, so its inverse is exact whatever the map, the
  spread keeps the map's skew (``sinh`` widens the bright side), and each draw's total or aperture flux
  keeps every correlation between pixels;
* a heteroscedastic head's σ (a per-pixel Gaussian in network units, no draws of it) by the delta method in
  its secant form (:func:`mapped_sigma`): half the width of the image of ``o ± σ``. ``to_flux`` is monotone, so
  that image is exactly the flux interval of the head's 68 % (the delta method ``|to_flux'(o)| σ`` agrees to
  first order); a linear map (no stretch) carries σ exactly. The 95 % interval of a stretched output is then
  too narrow on its bright side: the run's recalibration on the validation part (quantile widths per level)
  takes that up.

The estimate the intervals are centred on is ``to_flux`` of the mean of the draws in network units, the
stamp the task reports and predicts.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepfield.analysis.interval_recalibration import fit_interval_record, record_widths
from deepfield.tasks.base import Calibration
from deepfield.tasks.uncertainty import image_quantities, image_uncertainty
from deepfield.training.mc_dropout import MCPrediction

CALIBRATED_LEVELS = (0.68, 0.95)
"""The levels of the recalibrated half-width columns of ``deepfield predict``."""
ToFlux = Callable[[np.ndarray], np.ndarray]
"""Network units ``(N, C, H, W)`` -> the file's flux unit (float64), monotone increasing per pixel."""


def mapped_sigma(to_flux: ToFlux, values: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """``(to_flux(values + σ) − to_flux(values − σ)) / 2``: a σ in network units at ``values`` as a σ in flux
    (module docstring: the delta method in secant form), same shape."""
    values, sigma = np.asarray(values, dtype=np.float64), np.asarray(sigma, dtype=np.float64)
    return 0.5 * (to_flux(values + sigma) - to_flux(values - sigma))


def flux_maps(prediction: MCPrediction, to_flux: ToFlux,
              select: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[str, np.ndarray | None]:
    """``prediction`` in flux: ``output`` (to_flux of the mean), ``epistemic`` (the spread of the draws mapped one
    by one; ``None`` when they agree), ``draws`` (T, N, C, H, W) (``None`` when not kept: the spread then crosses by
    :func:`mapped_sigma`), ``aleatoric`` (the head's σ by :func:`mapped_sigma`, else ``None``); all (N, C, H, W).
    ``select``: picks the stamps of network outputs ``(N', C', H, W)`` (a deblender's sources from its slots)."""
    select = select or (lambda values: values)
    mean = select(prediction.mean)
    maps: dict[str, np.ndarray | None] = {"output": to_flux(mean), "epistemic": None, "draws": None,
                                          "aleatoric": None}
    if float(prediction.std.max()) > 0:
        if prediction.samples is not None:
            channels = prediction.mean.shape[1]  # a head's draws hold its log-variances after the means
            maps["draws"] = np.stack([to_flux(select(draw[:, :channels])) for draw in prediction.samples])
            maps["epistemic"] = maps["draws"].std(axis=0)
        else:
            maps["epistemic"] = mapped_sigma(to_flux, mean, select(prediction.std))
    if prediction.aleatoric is not None:
        maps["aleatoric"] = mapped_sigma(to_flux, mean, select(prediction.aleatoric))
    return maps


@dataclass
class StampUncertainty:
    """A run's prediction on one part with its σ, in the file's flux unit: ``truth``, ``noisy`` (the input),
    ``output`` (the stamp reported), ``epistemic`` (the spread of the draws; ``None`` for one deterministic pass),
    ``aleatoric`` (the heteroscedastic head's σ, else ``None``), ``total`` (the two in quadrature, ``None``
    without either), all (N, C, H, W); ``draws`` (T, N, C, H, W) with the spread; ``weights`` (N, H, W) the
    photometry apertures (:func:`~deepfield.analysis.image_uncertainty.aperture_weights`; all ones: total fluxes);
    ``fluxes`` names them in the figures."""

    truth: np.ndarray
    noisy: np.ndarray
    output: np.ndarray
    weights: np.ndarray
    epistemic: np.ndarray | None
    aleatoric: np.ndarray | None
    draws: np.ndarray | None
    fluxes: str = "aperture fluxes"

    @property
    def total(self) -> np.ndarray | None:
        parts = [s for s in (self.epistemic, self.aleatoric) if s is not None]
        return np.sqrt(sum(s**2 for s in parts)) if parts else None

    def quantities(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``pixel`` and ``flux`` (truth, estimate, σ) (:func:`~deepfield.tasks.uncertainty.image_quantities`)."""
        return image_quantities(self.truth, self.output, self.weights, epistemic=self.epistemic,
                                aleatoric=self.aleatoric, draws=self.draws)

    def calibration(self) -> dict[str, Any] | None:
        """``{"intervals": record}`` fitted on these stamps (the validation part;
        :func:`~deepfield.analysis.interval_recalibration.fit_interval_record`), ``None`` without a σ."""
        return None if self.total is None else {"intervals": fit_interval_record(self.quantities())}

    def coverage(self, figures: Path, calibration: Calibration = None) -> dict[str, Any]:
        """The coverage of the intervals on these stamps (the test part), raw and recalibrated by the run's
        ``calibration`` (:func:`~deepfield.tasks.uncertainty.image_uncertainty`; ``uncertainty_coverage.png``)."""
        return image_uncertainty(self.truth, self.output, self.weights, figures, epistemic=self.epistemic,
                                 aleatoric=self.aleatoric, draws=self.draws, intervals=intervals_of(calibration),
                                 fluxes=self.fluxes)


def intervals_of(calibration: Calibration) -> dict[str, Any] | None:
    """The interval recalibration in a run's ``calibration`` (:meth:`StampUncertainty.calibration`), if any."""
    return calibration.get("intervals") if isinstance(calibration, dict) else None


def halfwidth_columns(calibration: Calibration, quantity: str, name: str, sigma: np.ndarray) -> dict[str, np.ndarray]:
    """``{name}_halfwidth_68`` and ``_95`` (float32, the shape of ``sigma``): the raw ``sigma`` of ``quantity`` times
    the half-width the run's recalibration fitted for each of :data:`CALIBRATED_LEVELS`; ``{}`` without one."""
    intervals = intervals_of(calibration)
    widths = None if intervals is None else record_widths(intervals, quantity, CALIBRATED_LEVELS)
    if widths is None:
        return {}
    return {f"{name}_halfwidth_{round(100 * level)}": (z * np.asarray(sigma, dtype=np.float64)).astype(np.float32)
            for level, z in zip(CALIBRATED_LEVELS, widths)}
