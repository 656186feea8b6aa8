"""How a generate run's report judges its samples against the held-out stamps they were drawn for (issue 19).

:func:`judge` gathers the measurements of :mod:`deepfield.analysis.galaxy_statistics` and the tests of
:mod:`deepfield.analysis.generative_judging` for ``metrics.json`` and the report's figures:

* ``wasserstein``: per statistic (statmorph's Gini, M20, C, A, S; hsm ellipticity and size; fluxes; colours; the
  radial power spectrum) the 1-Wasserstein distance standardised by the held-out spread, and their ``mean_w1``;
* ``memorisation``: nearest-training-stamp distances of samples against those of held-out stamps, in normalised
  pixel space (samples carry the sky noise the stamps have: :func:`deepfield.tasks.generate.draw_stamps`);
* ``conditioning``: per condition that can be measured on a stamp (:data:`MEASURED`), each sample's measured value
  against the same measurement of the held-out stamp whose conditions it was drawn at (both PSF-convolved and
  noisy alike, so the comparison holds whatever the seeing): median error and robust scatter;
* ``frechet`` (with ``analysis.classifier``, a deepfield classification run on stamps of the same bands and size):
  the Fréchet distance in that network's features beside its floor between two halves of the held-out stamps.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepfield.analysis.galaxy_statistics import galaxy_statistics, power_spectrum_k, radial_power_spectrum
from deepfield.analysis.generative_judging import (classifier_frechet, conditioning_errors, memorisation,
                                                   normalised_pixels, wasserstein_score)
from deepfield.analysis.image_quality import half_light_radii
from deepfield.errors import DeepfieldError
from deepfield.plots.generative_judging import plot_memorisation, plot_power_spectra, plot_statistic_distributions

MEASURED = {"half_light_radius": "relative", "hlr": "relative", "mag": "absolute", "flux": "relative",
            "ellipticity": "absolute"}
"""The conditions measured on samples, and how their errors are taken: ``half_light_radius``/``hlr``
(``Image.calculateHLR`` of the band sum, relative), ``mag`` (−2.5 log10 of the band-summed flux, in mag),
``flux`` (the band-summed flux, relative), ``ellipticity`` (hsm's distortion |e| of the band sum, absolute)."""


def measure(stamps: np.ndarray, statistics: dict[str, np.ndarray], names: Sequence[str]) -> dict[str, np.ndarray]:
    """``name -> (N,)`` the :data:`MEASURED` quantities among ``names`` on ``stamps`` (N, C, H, W);
    ``statistics``: their :func:`galaxy_statistics` (for the ellipticity and fluxes)."""
    flux = stamps.sum(axis=(1, 2, 3))
    values: dict[str, np.ndarray] = {}
    for name in names:
        if name in ("half_light_radius", "hlr"):
            values[name] = half_light_radii(stamps)
        elif name == "mag":
            with np.errstate(divide="ignore", invalid="ignore"):
                values[name] = np.where(flux > 0, -2.5 * np.log10(flux), np.nan)
        elif name == "flux":
            values[name] = flux
        elif name == "ellipticity":
            values[name] = statistics["hsm_e"]
    return values


def classifier_features(run: Any, samples: np.ndarray, held_out: np.ndarray, seed: int) -> dict[str, Any]:
    """:func:`classifier_frechet` in the features of ``run`` (a loaded deepfield run) of stamps in the file's unit,
    each prepared as that run prepares its inputs."""
    inputs = [run.inputs(stamps.astype(np.float32)).x for stamps in (samples, held_out)]
    return classifier_frechet(run.models[0], *inputs, seed=seed) | {"run": str(run.folder)}


def judge(samples: np.ndarray, held_out: np.ndarray, training: np.ndarray, bands: list[str], figures: Path,
          conditions: Sequence[str] = (), classifier: str | Path | None = None, seed: int = 0,
          workers: int | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Samples judged against held-out stamps (module docstring): ``samples`` drawn at the held-out stamps'
    conditions (row i at stamp i's), ``held_out`` and ``training`` stamps, all (N, C, H, W) in the file's unit.

    ``conditions``: the run's condition names (those in :data:`MEASURED` are checked); ``classifier``: a run folder
    for the Fréchet distance; ``workers``: processes for statmorph (``None``: every core); ``progress``: a bar on
    stderr (``None``: when stderr is a terminal). Returns ``{"wasserstein", "memorisation"[, "conditioning"]
    [, "frechet"]}`` for metrics.json; writes ``statistic_distributions.png``, ``power_spectra.png`` and
    ``memorisation.png`` to ``figures``.
    """
    if samples.shape[1:] != held_out.shape[1:]:
        raise DeepfieldError(f"samples {samples.shape[1:]} and held-out stamps {held_out.shape[1:]} differ in shape")
    show = sys.stderr.isatty() if progress is None else progress
    measured = [galaxy_statistics(stamps, bands, 1.0, workers=workers, progress=show) for stamps in (samples, held_out)]
    score = wasserstein_score(*measured)
    plot_statistic_distributions(*measured, score, figures / "statistic_distributions.png")
    spectra = [radial_power_spectrum(stamps.sum(axis=1)) for stamps in (samples, held_out)]
    plot_power_spectra(power_spectrum_k(samples.shape[2:], spectra[0].shape[1])[1], *spectra,
                       figures / "power_spectra.png")
    copies = memorisation(*(normalised_pixels(stamps) for stamps in (samples, held_out, training)))
    plot_memorisation(copies.sample_distances, copies.heldout_distances, copies.threshold,
                      figures / "memorisation.png", flagged=copies.flagged)
    judged: dict[str, Any] = {"wasserstein": score, "memorisation": copies.summary()}
    names = [name for name in conditions if name in MEASURED]
    if names and len(samples) == len(held_out):
        got, wanted = (measure(stamps, stats, names) for stamps, stats in zip((samples, held_out), measured))
        judged["conditioning"] = conditioning_errors(wanted, got,
                                                     absolute=[n for n in names if MEASURED[n] == "absolute"])
    if classifier is not None:
        # a run is loaded here, not at import: deepfield.tasks.run imports this module's task (through sampling)
        from deepfield.tasks.run import load_run
        judged["frechet"] = classifier_features(load_run(classifier), samples, held_out, seed)
    return judged
