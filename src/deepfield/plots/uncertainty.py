"""Uncertainty figures: reliability diagram, error against predicted σ, mistakes flagged by uncertainty, coverage.

>>> plot_reliability_diagram(y_val, p_val, "figures/reliability.png",
...                          calibrated=apply_temperature(p_val, fit_temperature(y_val, p_val)))
>>> plot_error_vs_uncertainty(y_pred - y_true, sigma, "figures/error_vs_sigma.png")
>>> plot_uncertainty_flags(y, p_mean, mutual_information(samples), "figures/flags.png")
>>> plot_coverage({"Gaussian σ": gaussian_coverage_curve(y, mu, sigma)}, "figures/coverage.png")

The numbers come from :mod:`deepfield.analysis.calibration`.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from numpy.typing import ArrayLike

from deepfield.analysis.calibration import (
    CoverageCurve,
    Reliability,
    error_vs_uncertainty,
    misclassification_roc,
    misclassified,
    reliability,
)
from deepfield.errors import DeepfieldError
from deepfield.plots.style import PALETTE, RIGHT_COLOUR, WRONG_COLOUR, figure

__all__ = ["plot_coverage", "plot_error_vs_uncertainty", "plot_reliability_diagram", "plot_uncertainty_flags"]

SCATTER_MAX = 20_000
""":func:`plot_error_vs_uncertainty` draws at most this many objects (a fixed random subset) behind the bins."""

_CORNER = dict(ha="left", va="top", fontsize=9, bbox=dict(boxstyle="round", facecolor="white", alpha=0.85))


def _reliability_bars(ax: Axes, r: Reliability, colour: str, label: str) -> None:
    """Accuracy bars over the non-empty bins, the gap to the mean confidence shaded."""
    filled = r.count > 0
    left, width = r.edges[:-1][filled], np.diff(r.edges)[filled]
    accuracy, confidence = r.accuracy[filled], r.confidence[filled]
    ax.bar(left, accuracy, width=width, align="edge", color=colour, alpha=0.75, edgecolor="white",
           label=f"{label} (ECE = {r.ece:.3f})")
    ax.bar(left, confidence - accuracy, bottom=accuracy, width=width, align="edge", color=WRONG_COLOUR,
           alpha=0.25, edgecolor=WRONG_COLOUR, linewidth=0.5, label="gap to mean confidence")


def plot_reliability_diagram(labels: ArrayLike, probabilities: ArrayLike, path: str | os.PathLike[str],
                             n_bins: int = 15, calibrated: ArrayLike | None = None,
                             title: str = "Reliability diagram", figsize: tuple[float, float] = (5.5, 6.5)) -> Path:
    """Write accuracy against confidence per bin, with the diagonal, the gap shaded and the counts below.

    A calibrated model's bars reach the diagonal; bars below it mean over-confidence.
    With ``calibrated`` (e.g. the probabilities after temperature scaling) its per-bin
    accuracy is drawn as a line over the bars, and both ECEs are in the legend.

    Args:
        labels: ``(N,)`` integer classes.
        probabilities: ``(N, K)`` rows summing to 1, or binary ``(N,)`` / ``(N, 1)``.
        calibrated: the same objects' probabilities, same shape convention.
    """
    before = reliability(labels, probabilities, n_bins)
    after = reliability(labels, calibrated, n_bins) if calibrated is not None else None
    path = Path(path)
    with figure(path, figsize) as fig:
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
        top.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="perfectly calibrated")
        _reliability_bars(top, before, PALETTE[0], "model")
        bottom.stairs(before.count, before.edges, fill=True, color=PALETTE[0], alpha=0.6, label="model")
        if after is not None:
            filled = after.count > 0
            top.plot(after.confidence[filled], after.accuracy[filled], marker="o", markersize=4, color=PALETTE[1],
                     linewidth=1.5, label=f"calibrated (ECE = {after.ece:.3f})")
            bottom.stairs(after.count, after.edges, color=PALETTE[1], linewidth=1.5, label="calibrated")
            bottom.legend(loc="upper left")
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.set_ylabel("accuracy (fraction right)")
        top.legend(loc="upper left")
        top.set_title(f"{title} (N = {int(before.count.sum())})")
        bottom.set_yscale("log")
        bottom.set_xlabel("confidence (probability of the predicted class)")
        bottom.set_ylabel("objects per bin")
    return path


def plot_error_vs_uncertainty(error: ArrayLike, uncertainty: ArrayLike, path: str | os.PathLike[str],
                              n_bins: int = 10, xlabel: str = "predicted uncertainty σ",
                              ylabel: str = "RMS error", title: str = "Error against predicted uncertainty",
                              figsize: tuple[float, float] = (5.5, 5.0)) -> Path:
    """Write the RMS error in equal-count bins of predicted uncertainty, with ``y = x`` and |error| behind.

    Calibrated σ put the binned points on the line; below it σ is too large
    (under-confident), above it too small (over-confident). The corner gives the Spearman
    rank correlation between |error| and σ.

    Args:
        error: ``(N,)`` residuals ``y_pred − y_true``.
        uncertainty: ``(N,)`` predicted σ, same unit (name both units in ``xlabel``/``ylabel``).
    """
    binned = error_vs_uncertainty(error, uncertainty, n_bins)
    e, u = np.abs(np.asarray(error, dtype=np.float64)), np.asarray(uncertainty, dtype=np.float64)
    shown = np.random.default_rng(0).permutation(len(e))[:SCATTER_MAX]
    high = 1.15 * max(binned.rms_error.max(), binned.uncertainty.max())
    path = Path(path)
    with figure(path, figsize) as fig:
        ax = fig.add_subplot()
        ax.scatter(u[shown], e[shown], s=3, color="0.55", alpha=0.15, linewidths=0, rasterized=True,
                   label="|error| of each object")
        ax.plot([0, high], [0, high], color="black", linestyle="--", linewidth=1, label="RMS error = σ")
        ax.plot(binned.uncertainty, binned.rms_error, marker="o", markersize=5, color=PALETTE[3], linewidth=1.5,
                label=f"RMS error in {n_bins} equal-count bins")
        ax.set_xlim(0, high)
        ax.set_ylim(0, high)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.text(0.03, 0.97, f"N = {len(e)}\nSpearman ρ(|error|, σ) = {binned.spearman:.3f}",
                transform=ax.transAxes, **_CORNER)
        ax.legend(loc="lower right")
        ax.set_title(title)
    return path


def plot_uncertainty_flags(labels: ArrayLike, probabilities: ArrayLike, uncertainty: ArrayLike,
                           path: str | os.PathLike[str], uncertainty_name: str = "uncertainty",
                           bins: int = 30, title: str = "Does the uncertainty flag the mistakes?",
                           figsize: tuple[float, float] = (10.0, 4.5)) -> Path:
    """Write the ROC curve of ``uncertainty`` flagging misclassified objects, and its histograms.

    Left: the fraction of mistakes flagged against the fraction of right predictions
    flagged, for every threshold ``uncertainty >= t``; AUROC in the legend. Right: the
    distributions (as densities) of the uncertainty for right and for wrong predictions.

    Args:
        labels: ``(N,)`` integer classes.
        probabilities: ``(N, K)`` rows summing to 1, or binary ``(N,)`` / ``(N, 1)``.
        uncertainty: ``(N,)`` higher = less sure (e.g. predictive entropy or mutual
            information in nats, named by ``uncertainty_name``).
    """
    roc = misclassification_roc(labels, probabilities, uncertainty)
    wrong = misclassified(labels, probabilities)
    u = np.asarray(uncertainty, dtype=np.float64)
    edges = np.histogram_bin_edges(u, bins=bins)
    path = Path(path)
    with figure(path, figsize) as fig:
        left, right = fig.subplots(1, 2)
        left.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=1, label="chance (AUROC = 0.5)")
        if len(roc.fpr):
            left.plot(roc.fpr, roc.tpr, color=PALETTE[0], linewidth=1.5, label=f"AUROC = {roc.auc:.3f}")
        else:
            left.text(0.5, 0.5, "undefined: all predictions\nright or all wrong", ha="center", va="center")
        left.set_xlim(0, 1)
        left.set_ylim(0, 1.01)
        left.set_aspect("equal")
        left.set_xlabel("fraction of right predictions flagged")
        left.set_ylabel("fraction of mistakes flagged")
        left.legend(loc="lower right")
        left.set_title(f"flagging by {uncertainty_name}")
        for chosen, colour, name in ((~wrong, RIGHT_COLOUR, "right"), (wrong, WRONG_COLOUR, "wrong")):
            if chosen.any():
                right.hist(u[chosen], bins=edges, density=True, histtype="stepfilled", alpha=0.4, color=colour,
                           edgecolor=colour, label=f"{name} (N = {int(chosen.sum())})")
        right.set_xlabel(uncertainty_name)
        right.set_ylabel("probability density")
        right.legend(loc="upper right")
        right.set_title(f"{uncertainty_name} of right and wrong predictions")
        fig.suptitle(title)
    return path


def plot_coverage(curves: CoverageCurve | Mapping[str, CoverageCurve], path: str | os.PathLike[str],
                  title: str = "Interval coverage", figsize: tuple[float, float] = (5.5, 5.0)) -> Path:
    """Write observed against nominal coverage of central intervals, with the diagonal.

    The grey band is ±2 binomial standard deviations around the diagonal for the smallest
    ``n`` among the curves: a calibrated model stays inside it. Above the diagonal the
    intervals are too wide (under-confident), below too narrow (over-confident).

    Args:
        curves: one :class:`~deepfield.analysis.calibration.CoverageCurve` or several by
            label (e.g. before and after recalibration), from
            :func:`~deepfield.analysis.calibration.gaussian_coverage_curve` or
            :func:`~deepfield.analysis.calibration.pdf_coverage_curve`.
    """
    named = {"model": curves} if isinstance(curves, CoverageCurve) else dict(curves)
    if not named:
        raise DeepfieldError("plot_coverage: curves is empty; give at least one CoverageCurve")
    n = min(c.n for c in named.values())
    line = np.linspace(0.0, 1.0, 201)
    band = 2.0 * np.sqrt(line * (1.0 - line) / n)
    path = Path(path)
    with figure(path, figsize) as fig:
        ax = fig.add_subplot()
        ax.fill_between(line, line - band, line + band, color="0.85", label=f"±2σ binomial (N = {n})")
        ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="calibrated")
        for i, (label, curve) in enumerate(named.items()):
            order = np.argsort(curve.nominal)
            ax.plot(curve.nominal[order], curve.observed[order], marker="o", markersize=4, linewidth=1.5,
                    color=PALETTE[i % len(PALETTE)], label=label)
        ax.text(0.03, 0.97, "too wide\n(under-confident)", transform=ax.transAxes, **_CORNER)
        ax.text(0.97, 0.03, "too narrow\n(over-confident)", transform=ax.transAxes,
                **{**_CORNER, "ha": "right", "va": "bottom"})
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("nominal coverage (level of the central interval)")
        ax.set_ylabel("observed fraction of truths inside")
        ax.legend(loc="upper left", bbox_to_anchor=(0.0, 0.86))
        ax.set_title(title)
    return path
