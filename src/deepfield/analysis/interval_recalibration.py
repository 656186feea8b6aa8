"""Intervals of a σ recalibrated on one part of the data and applied to another (the record a run keeps).

A network's σ (per pixel, per aperture flux, per source...) may be right on average and wrong entry by
entry: heavy-tailed pulls ``|estimate − truth| / σ`` make the Gaussian intervals ``estimate ± z_L σ`` too
wide for most entries and too narrow for the rest, and no single factor on σ fixes 68 % and 95 % together.
Quantile recalibration (Kuleshov, Fenner & Ermon 2018;
:func:`~deepfield.analysis.image_uncertainty.fit_interval_widths`) fits, per quantity and level ``L``, the
half-width ``z_L`` (in units of σ) that covers ``L`` of the fitting part; ``estimate ± z_L σ`` is then the calibrated central ``L`` interval of a new entry.

The record (JSON-ready, ``calibration.json["intervals"]`` of a run folder)::

    {"method": "quantile", "fitted_on": "validation", "levels": [L, ...],
     "half_widths": {quantity: [z_L, ...]}, "n": {quantity: entries fitted}}

A quantity whose half-widths come out infinite (σ = 0 where the estimate is wrong, on more than ``1 − L``
of the entries) is left out of ``half_widths``: it has no calibrated interval.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from deepfield.analysis.image_uncertainty import CURVE_LEVELS, fit_interval_widths
from deepfield.errors import DeepfieldError

__all__ = ["fit_interval_record", "record_widths"]

Quantities = Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
"""``{quantity: (truth, estimate, σ)}``, each triple of one shape and one unit."""


def fit_interval_record(quantities: Quantities, levels: Sequence[float] = CURVE_LEVELS,
                        fitted_on: str = "validation") -> dict[str, Any]:
    """The record (module docstring) of each quantity's half-widths at ``levels``, fitted on ``quantities``."""
    widths = {name: fit_interval_widths(truth, estimate, sigma, levels)
              for name, (truth, estimate, sigma) in quantities.items()}
    return {"method": "quantile", "fitted_on": fitted_on, "levels": [float(level) for level in levels],
            "half_widths": {name: [float(z) for z in w] for name, w in widths.items() if np.all(np.isfinite(w))},
            "n": {name: int(np.size(truth)) for name, (truth, _, _) in quantities.items()}}


def record_widths(record: Mapping[str, Any], quantity: str, levels: Sequence[float]) -> np.ndarray | None:
    """``(len(levels),)`` the recorded half-widths (units of σ) of ``quantity`` at ``levels`` (each one of the
    record's levels); ``None`` when the record does not calibrate ``quantity``."""
    widths = record.get("half_widths", {}).get(quantity)
    if widths is None:
        return None
    recorded = [round(float(level), 6) for level in record["levels"]]
    missing = [level for level in levels if round(float(level), 6) not in recorded]
    if missing:
        raise DeepfieldError(f"calibration.json: no recalibrated interval at level(s) {missing} for {quantity!r} "
                             f"(recorded: {recorded})")
    return np.array([widths[recorded.index(round(float(level), 6))] for level in levels])
