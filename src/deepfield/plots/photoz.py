"""Photo-z figures: z_phot against z_true with the outlier lines, the PIT histogram, metrics in bins.

>>> plot_photoz_scatter(z_true, z_phot, "figures/photoz.png")
>>> plot_pit(pit(pdf, z_true, centres=grid), "figures/pit.png")
>>> b = binned_photoz_metrics(z_true, z_phot, by=mag_r, edges=np.arange(18, 25.5, 0.5))
>>> plot_metrics_vs(b.edges, {"σ_NMAD": b.sigma_nmad, "η (|Δz| > 0.15)": b.outlier_fractions[0.15]},
...                 "figures/photoz_vs_mag.png", xlabel="r magnitude [mag]", counts=b.count)
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from deepfield.analysis.photoz import photoz_metrics, pit_uniformity
from deepfield.errors import DeepfieldError
from deepfield.plots.style import PALETTE, figure

__all__ = ["plot_metrics_vs", "plot_photoz_scatter", "plot_pit"]

HEXBIN_ABOVE = 2000
"""``kind="auto"`` draws points up to this many objects and a density (hexbin) above."""

_CORNER = dict(ha="left", va="top", fontsize=9, bbox=dict(boxstyle="round", facecolor="white", alpha=0.85))


def plot_photoz_scatter(z_true: ArrayLike, z_phot: ArrayLike, path: str | os.PathLike[str],
                        outlier_threshold: float = 0.15, kind: str = "auto", title: str = "Photometric redshifts",
                        figsize: tuple[float, float] = (5.5, 5.0)) -> Path:
    """Write z_phot against z_true with the 1:1 line and the ``±threshold·(1 + z)`` outlier lines.

    The corner gives N, σ_NMAD, the median bias and the outlier fraction
    (see :func:`~deepfield.analysis.photoz.photoz_metrics`).

    Args:
        z_true, z_phot: ``(N,)`` redshifts (dimensionless).
        kind: ``"scatter"``, ``"hexbin"`` (log colour scale) or ``"auto"`` (hexbin above
            :data:`HEXBIN_ABOVE` objects).
    """
    if kind not in ("auto", "scatter", "hexbin"):
        raise DeepfieldError(f"plot_photoz_scatter: kind must be auto, scatter or hexbin, got {kind!r}")
    m = photoz_metrics(z_true, z_phot, (outlier_threshold,))  # validates the redshifts
    zt, zp = np.asarray(z_true, dtype=np.float64), np.asarray(z_phot, dtype=np.float64)
    if kind == "auto":
        kind = "hexbin" if len(zt) > HEXBIN_ABOVE else "scatter"
    low = min(0.0, zt.min(), zp.min())
    high = 1.05 * max(zt.max(), zp.max())
    path = Path(path)
    with figure(path, figsize) as fig:
        ax = fig.add_subplot()
        if kind == "hexbin":
            cells = ax.hexbin(zt, zp, gridsize=60, bins="log", cmap="viridis", mincnt=1,
                              extent=(low, high, low, high))
            fig.colorbar(cells, ax=ax, label="objects per cell", shrink=0.85)
        else:
            ax.scatter(zt, zp, s=6, alpha=0.5, color=PALETTE[0], linewidths=0)
        line = np.linspace(low, high, 2)
        ax.plot(line, line, color="black", linewidth=1, label="z_phot = z_true")
        for sign in (1, -1):
            ax.plot(line, line + sign * outlier_threshold * (1 + line), color=PALETTE[3], linestyle="--",
                    linewidth=1, label=f"±{outlier_threshold:g}(1 + z)" if sign > 0 else None)
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_aspect("equal")
        ax.set_xlabel("true (spectroscopic) redshift z_true")
        ax.set_ylabel("photometric redshift z_phot")
        ax.text(0.03, 0.97, f"N = {m.n}\nσ_NMAD = {m.sigma_nmad:.4f}\nbias = {m.bias_median:+.4f}\n"
                f"η(|Δz| > {outlier_threshold:g}) = {100 * m.outlier_fractions[outlier_threshold]:.2f} %",
                transform=ax.transAxes, **_CORNER)
        ax.legend(loc="lower right")
        ax.set_title(title)
    return path


def plot_pit(pit_values: ArrayLike, path: str | os.PathLike[str], bins: int = 20,
             title: str = "PIT histogram", figsize: tuple[float, float] = (5.5, 4.0)) -> Path:
    """Write the histogram of PIT values ``(N,)`` as a density, with the uniform line at 1.

    Flat: calibrated PDFs; U-shaped: over-confident (too narrow); hump: under-confident;
    slope: biased. The corner gives the KS distance to uniform and its p-value.
    """
    u = pit_uniformity(pit_values, bins)
    density = u.counts / (u.counts.sum() * np.diff(u.edges))
    path = Path(path)
    with figure(path, figsize) as fig:
        ax = fig.add_subplot()
        ax.stairs(density, u.edges, fill=True, color=PALETTE[0], alpha=0.6, label=f"N = {int(u.counts.sum())}")
        ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label="uniform (calibrated)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, max(1.5, 1.15 * density.max()))
        ax.set_xlabel("PIT = CDF(z_true)")
        ax.set_ylabel("probability density")
        ax.text(0.03, 0.97, f"KS = {u.ks_statistic:.3f}\np = {u.ks_pvalue:.2g}", transform=ax.transAxes, **_CORNER)
        ax.legend(loc="upper right")
        ax.set_title(title)
    return path


def plot_metrics_vs(edges: ArrayLike, series: Mapping[str, ArrayLike], path: str | os.PathLike[str], xlabel: str,
                    counts: ArrayLike | None = None, title: str | None = None,
                    figsize: tuple[float, float] | None = None) -> Path:
    """Write metrics against a binned quantity: one panel per metric, sharing the x axis.

    Each bin is a point at its centre with a horizontal bar over its width; NaN (empty)
    bins are left out. With ``counts`` a last panel shows the objects per bin.

    Args:
        edges: ``(B + 1,)`` bin edges, in the unit named by ``xlabel`` (e.g. ``"r magnitude [mag]"``).
        series: metric name (the panel's y label) → ``(B,)`` values.
        counts: ``(B,)`` objects per bin.
        figsize: inches, default ``(6, 2.2)`` per panel.
    """
    edges = np.asarray(edges, dtype=np.float64)
    values = {name: np.asarray(v, dtype=np.float64) for name, v in series.items()}
    n_bins = len(edges) - 1
    if edges.ndim != 1 or n_bins < 1 or not values:
        raise DeepfieldError("plot_metrics_vs: need edges (B + 1,) with B >= 1 and at least one series")
    for name, v in {**values, **({} if counts is None else {"counts": np.asarray(counts)})}.items():
        if v.shape != (n_bins,):
            raise DeepfieldError(f"plot_metrics_vs: {name!r} has shape {v.shape}, expected ({n_bins},) for the edges")
    centres, half = 0.5 * (edges[1:] + edges[:-1]), 0.5 * np.diff(edges)
    panels = len(values) + (counts is not None)
    path = Path(path)
    with figure(path, figsize or (6.0, 2.2 * panels + 0.4)) as fig:
        axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
        for i, (ax, (name, v)) in enumerate(zip(axes, values.items())):
            ax.errorbar(centres, v, xerr=half, fmt="o", markersize=4, color=PALETTE[i % len(PALETTE)], capsize=0)
            ax.set_ylabel(name)
        if counts is not None:
            axes[-1].stairs(np.asarray(counts), edges, fill=True, color="0.6")
            axes[-1].set_ylabel("objects per bin")
        axes[-1].set_xlabel(xlabel)
        if title:
            fig.suptitle(title)
    return path
