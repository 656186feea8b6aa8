"""Generated stamps judged against held-out ones: statistic distributions, radial power spectra, memorisation.

Each figure takes what :mod:`deepfield.analysis.galaxy_statistics` and :mod:`deepfield.analysis.generative_judging`
measured (arrays and their result dicts) and writes one small PNG.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from deepfield.errors import DeepfieldError
from deepfield.plots.style import PALETTE, figure

__all__ = ["plot_memorisation", "plot_power_spectra", "plot_statistic_distributions"]

SAMPLES_COLOUR, HELDOUT_COLOUR = PALETTE[3], PALETTE[0]
BINS = 30


def _finite(values: Any) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).ravel()
    return values[np.isfinite(values)]


def plot_statistic_distributions(samples: Mapping[str, ArrayLike], heldout: Mapping[str, ArrayLike],
                                 score: Mapping[str, Any], path: str | os.PathLike[str], columns: int = 4) -> Path:
    """One panel per statistic of ``heldout``: histograms (densities, NaN left out) of the samples and the
    held-out values on common bins (the 0.5 to 99.5 % range of both), titled with its standardised W1 from
    ``score`` (:func:`deepfield.analysis.generative_judging.wasserstein_score`), whose mean is the suptitle.

    ``samples``, ``heldout``: ``name -> (N,)`` as :func:`deepfield.analysis.galaxy_statistics.galaxy_statistics`
    returns them."""
    names = list(heldout)
    if not names or set(names) != set(samples):
        raise DeepfieldError(f"statistic distributions: samples and held-out must name the same statistics, "
                             f"got {sorted(samples)} and {names}")
    rows = math.ceil(len(names) / columns)
    path = Path(path)
    with figure(path, (2.3 * min(columns, len(names)), 1.7 * rows + 0.5)) as fig:
        axes = fig.subplots(rows, min(columns, len(names)), squeeze=False).ravel()
        for ax, name in zip(axes, names):
            s, h = _finite(samples[name]), _finite(heldout[name])
            both = np.concatenate([s, h])
            if both.size:
                low, high = np.percentile(both, [0.5, 99.5])
                bins = np.linspace(low, high if high > low else low + 1.0, BINS + 1)
                for values, colour, label in ((h, HELDOUT_COLOUR, "held-out"), (s, SAMPLES_COLOUR, "samples")):
                    if values.size:
                        ax.hist(np.clip(values, bins[0], bins[-1]), bins=bins, density=True, histtype="step",
                                color=colour, label=label, linewidth=1.2)
            w1 = score["statistics"].get(name, {}).get("w1", math.nan)
            ax.set_title(f"{name}  W1 {w1:.3f}", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.set_yticks([])
        for ax in axes[len(names):]:
            ax.set_visible(False)
        axes[0].legend(fontsize=7)
        fig.suptitle(f"samples against held-out: mean standardised W1 {score['mean_w1']:.3f}", fontsize=10)
    return path


def plot_power_spectra(k: ArrayLike, samples: ArrayLike, heldout: ArrayLike, path: str | os.PathLike[str]) -> Path:
    """The radial power spectra of samples and held-out stamps: the median over stamps and the 16-84 %
    band of log10 power against ``k`` (n_bins,) in cycles per pixel; ``samples``, ``heldout``: (N, n_bins) as
    :func:`deepfield.analysis.galaxy_statistics.radial_power_spectrum` gives them (NaN rows left out)."""
    k = np.asarray(k, dtype=np.float64)
    sets = [np.asarray(a, dtype=np.float64) for a in (heldout, samples)]
    if any(a.ndim != 2 or a.shape[1] != len(k) for a in sets):
        raise DeepfieldError(f"power spectra: expected (N, {len(k)}) log powers, got {[a.shape for a in sets]}")
    path = Path(path)
    with figure(path, (4.2, 3.0)) as fig:
        ax = fig.add_subplot()
        for values, colour, label in zip(sets, (HELDOUT_COLOUR, SAMPLES_COLOUR), ("held-out", "samples")):
            values = values[np.isfinite(values).all(axis=1)]
            if not len(values):
                continue
            low, median, high = np.percentile(values, [16, 50, 84], axis=0)
            ax.fill_between(k, low, high, color=colour, alpha=0.25, linewidth=0)
            ax.plot(k, median, color=colour, marker="o", markersize=3, label=f"{label} (median, 16-84 %)")
        ax.set_xlabel("k (cycles / pixel)")
        ax.set_ylabel("log10 power (fraction per mode)")
        ax.legend(fontsize=7)
    return path


def plot_memorisation(sample_distances: ArrayLike, heldout_distances: ArrayLike, threshold: float,
                      path: str | os.PathLike[str], flagged: bool | None = None) -> Path:
    """Histograms of each sample's and each held-out stamp's distance to its nearest training stamp
    (:class:`deepfield.analysis.generative_judging.Memorisation`), with the flag's threshold distance as a line;
    samples piled left of the held-out ones are copies."""
    s, h = _finite(sample_distances), _finite(heldout_distances)
    if not s.size or not h.size:
        raise DeepfieldError("memorisation figure: needs finite sample and held-out distances")
    both = np.concatenate([s, h])
    bins = np.linspace(0.0, max(both.max(), threshold) * 1.02 or 1.0, BINS + 1)
    path = Path(path)
    with figure(path, (4.2, 3.0)) as fig:
        ax = fig.add_subplot()
        ax.hist(h, bins=bins, density=True, histtype="step", color=HELDOUT_COLOUR, label="held-out", linewidth=1.2)
        ax.hist(s, bins=bins, density=True, histtype="step", color=SAMPLES_COLOUR, label="samples", linewidth=1.2)
        ax.axvline(threshold, color="0.3", linestyle="--", linewidth=1, label="held-out 1 % quantile")
        ax.set_xlabel("distance to the nearest training stamp")
        ax.set_ylabel("density")
        if flagged is not None:
            ax.set_title("memorisation flagged" if flagged else "no memorisation flag", fontsize=9)
        ax.legend(fontsize=7)
    return path
