"""Photometric-redshift metrics: bias, scatter, outliers, PIT, CRPS and point estimates from PDFs.

Point estimates are scored by ``Δz = (z_phot − z_true) / (1 + z_true)`` (dimensionless):
bias (median and mean of Δz), ``σ_NMAD = 1.4826 · median|Δz − median(Δz)|`` and outlier
fractions ``|Δz| > threshold`` (0.15 and 0.05 by default).

Redshift PDFs are binned: ``pdf (N, n_bins)`` holds the probability in each bin (not a
density; each row is normalised to sum 1) over bins given by ``edges (n_bins + 1,)`` or
``centres (n_bins,)`` (then the edges are the midpoints, the outer ones half a spacing
out). The density is taken constant inside each bin, so the CDF is piecewise linear;
PIT, CRPS and the median are exact for that density.

>>> m = photoz_metrics(z_true, z_phot)            # m.sigma_nmad, m.outlier_fractions[0.15]
>>> u = pit(pdf, z_true, centres=z_grid)          # uniform on [0, 1] when calibrated
>>> pit_uniformity(u).ks_pvalue
>>> crps(pdf, z_true, centres=z_grid).mean()
>>> by_mag = binned_photoz_metrics(z_true, z_phot, by=mag_r, edges=np.arange(18, 25.5, 0.5))
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from deepfield.analysis.classification import JsonReady
from deepfield.errors import DeepfieldError

__all__ = [
    "BinnedPhotozMetrics",
    "PdfPointEstimates",
    "PhotozMetrics",
    "PitUniformity",
    "binned_photoz_metrics",
    "crps",
    "delta_z",
    "outlier_fraction",
    "pdf_bin_edges",
    "pdf_point_estimates",
    "photoz_metrics",
    "pit",
    "pit_uniformity",
    "sigma_nmad",
]

NMAD_SCALE = 1.4826  # σ of a Gaussian / its median absolute deviation
DEFAULT_OUTLIER_THRESHOLDS = (0.15, 0.05)
PEAK_WINDOW = 0.15
"""Half-width of the window of :attr:`PdfPointEstimates.peak`, in units of 1 + z (the outlier threshold)."""


@dataclass(frozen=True)
class PhotozMetrics(JsonReady):
    """Point-estimate metrics of ``n`` objects; all dimensionless (in units of 1 + z).

    ``outlier_fractions`` maps each threshold to the fraction with ``|Δz| > threshold``.
    """

    n: int
    bias_median: float
    bias_mean: float
    sigma_nmad: float
    outlier_fractions: dict[float, float]


@dataclass(frozen=True)
class BinnedPhotozMetrics(JsonReady):
    """:class:`PhotozMetrics` per bin of another quantity (z, a magnitude...).

    ``edges (B + 1,)`` in the binned quantity's unit; ``count (B,)`` objects per bin; the
    metric arrays are ``(B,)`` and NaN (``None`` in JSON) for empty bins.
    """

    edges: np.ndarray
    count: np.ndarray
    bias_median: np.ndarray
    bias_mean: np.ndarray
    sigma_nmad: np.ndarray
    outlier_fractions: dict[float, np.ndarray]

    @property
    def centres(self) -> np.ndarray:
        """``(B,)`` bin centres."""
        return 0.5 * (self.edges[1:] + self.edges[:-1])


@dataclass(frozen=True)
class PitUniformity(JsonReady):
    """How uniform PIT values are: Kolmogorov–Smirnov distance to U(0, 1) and its p-value,
    and the histogram ``counts (bins,)`` over ``edges (bins + 1,)`` on [0, 1].

    A U-shaped histogram means over-confident PDFs (too narrow), a hump under-confident
    ones, a slope a bias.
    """

    ks_statistic: float
    ks_pvalue: float
    counts: np.ndarray
    edges: np.ndarray


@dataclass(frozen=True)
class PdfPointEstimates(JsonReady):
    """``(N,)`` redshifts from each PDF: its mean, median (CDF = 0.5), mode (centre of the fullest
    bin) and ``peak``: the median of the PDF within the window ``c ± PEAK_WINDOW · (1 + c)``
    (``c`` a bin centre) that holds the most probability. The peak picks the redshift the PDF
    puts the most probability within the catastrophic-outlier distance of, so it minimises
    the expected outlier fraction |Δz| > 0.15 of a calibrated PDF; within its window it is a
    median, not quantised to the bins as the mode is. ``peak_mean``: the mean of the PDF within
    the same window, the PDF's mean with the probability outside its dominant peak left out (a
    secondary peak neither pulls it away nor wins over a wider main peak)."""

    mean: np.ndarray
    median: np.ndarray
    mode: np.ndarray
    peak: np.ndarray
    peak_mean: np.ndarray


def _vector(values: ArrayLike, name: str, n: int | None = None) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0 or (n is not None and len(v) != n):
        expected = f"({n},)" if n is not None else "a non-empty 1-D array"
        raise DeepfieldError(f"{name}: expected shape {expected}, got {v.shape}")
    return v


def _redshifts(z_true: ArrayLike, z_phot: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    zt = _vector(z_true, "z_true")
    zp = _vector(z_phot, "z_phot", len(zt))
    if not (np.all(np.isfinite(zt)) and np.all(np.isfinite(zp))):
        raise DeepfieldError("z_true/z_phot: contain NaN or infinite values; drop those objects first")
    if np.any(zt <= -1.0):
        raise DeepfieldError(f"z_true: must be > -1 (Δz divides by 1 + z), got minimum {zt.min()}")
    return zt, zp


def delta_z(z_true: ArrayLike, z_phot: ArrayLike) -> np.ndarray:
    """``(N,)`` normalised residuals ``(z_phot − z_true) / (1 + z_true)``."""
    zt, zp = _redshifts(z_true, z_phot)
    return (zp - zt) / (1.0 + zt)


def sigma_nmad(dz: ArrayLike) -> float:
    """Normalised median absolute deviation ``1.4826 · median|Δz − median(Δz)|`` of ``dz (N,)``."""
    dz = _vector(dz, "dz")
    return float(NMAD_SCALE * np.median(np.abs(dz - np.median(dz))))


def outlier_fraction(dz: ArrayLike, threshold: float = 0.15) -> float:
    """Fraction of ``dz (N,)`` with ``|Δz| > threshold``."""
    return float(np.mean(np.abs(_vector(dz, "dz")) > threshold))


def _metrics(dz: np.ndarray, thresholds: Sequence[float]) -> PhotozMetrics:
    return PhotozMetrics(len(dz), float(np.median(dz)), float(np.mean(dz)), sigma_nmad(dz),
                         {float(t): outlier_fraction(dz, t) for t in thresholds})


def photoz_metrics(z_true: ArrayLike, z_phot: ArrayLike,
                   outlier_thresholds: Sequence[float] = DEFAULT_OUTLIER_THRESHOLDS) -> PhotozMetrics:
    """Bias, σ_NMAD and outlier fractions of point estimates ``z_phot (N,)`` against ``z_true (N,)``."""
    return _metrics(delta_z(z_true, z_phot), outlier_thresholds)


def binned_photoz_metrics(z_true: ArrayLike, z_phot: ArrayLike, by: ArrayLike, edges: ArrayLike,
                          outlier_thresholds: Sequence[float] = DEFAULT_OUTLIER_THRESHOLDS) -> BinnedPhotozMetrics:
    """:func:`photoz_metrics` in bins of ``by (N,)`` (e.g. z_true or a magnitude) with ``edges (B + 1,)``.

    Bins are ``[e_b, e_{b+1})``, the last one closed. Objects whose ``by`` is NaN or
    outside the edges (a 99 / -99 magnitude sentinel, say) are left out.
    """
    dz = delta_z(z_true, z_phot)
    by = _vector(by, "by", len(dz))
    edges = _edges(edges, "edges")
    which = np.searchsorted(edges, by, side="right") - 1
    which[by == edges[-1]] = len(edges) - 2
    which[~np.isfinite(by)] = -1
    per_bin = [dz[which == b] for b in range(len(edges) - 1)]
    nan = PhotozMetrics(0, np.nan, np.nan, np.nan, {float(t): np.nan for t in outlier_thresholds})
    results = [_metrics(d, outlier_thresholds) if len(d) else nan for d in per_bin]
    return BinnedPhotozMetrics(
        edges=edges,
        count=np.array([r.n for r in results], dtype=np.int64),
        bias_median=np.array([r.bias_median for r in results]),
        bias_mean=np.array([r.bias_mean for r in results]),
        sigma_nmad=np.array([r.sigma_nmad for r in results]),
        outlier_fractions={float(t): np.array([r.outlier_fractions[float(t)] for r in results])
                           for t in outlier_thresholds},
    )


def _edges(edges: ArrayLike, name: str) -> np.ndarray:
    e = _vector(edges, name)
    if len(e) < 2 or not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
        raise DeepfieldError(f"{name}: expected at least 2 finite, strictly increasing values")
    return e


def pdf_bin_edges(n_bins: int, edges: ArrayLike | None = None, centres: ArrayLike | None = None) -> np.ndarray:
    """``(n_bins + 1,)`` bin edges from ``edges`` or from ``centres`` (give exactly one).

    From centres: midpoints between neighbours, and the outer edges half the
    neighbouring spacing beyond the first and last centre.
    """
    if (edges is None) == (centres is None):
        raise DeepfieldError("PDF grid: give exactly one of edges (n_bins + 1,) or centres (n_bins,)")
    if edges is not None:
        e = _edges(edges, "edges")
    else:
        c = _edges(centres, "centres")
        mid = 0.5 * (c[1:] + c[:-1])
        e = np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])
    if len(e) != n_bins + 1:
        raise DeepfieldError(f"PDF grid: the PDF has {n_bins} bins but the grid gives {len(e) - 1}")
    return e


def _pdf(pdf: ArrayLike, n: int | None, edges: ArrayLike | None,
         centres: ArrayLike | None) -> tuple[np.ndarray, np.ndarray]:
    """Rows normalised to sum 1, and the bin edges."""
    p = np.asarray(pdf, dtype=np.float64)
    if p.ndim != 2 or (n is not None and len(p) != n):
        raise DeepfieldError(f"pdf: expected shape ({n if n is not None else 'N'}, n_bins), got {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise DeepfieldError("pdf: probabilities must be finite and >= 0")
    total = p.sum(axis=1, keepdims=True)
    if np.any(total <= 0):
        raise DeepfieldError(f"pdf: row {int(np.argmax(total[:, 0] <= 0))} has no probability in any bin")
    return p / total, pdf_bin_edges(p.shape[1], edges, centres)


def _cdf_at(p: np.ndarray, edges: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``(N,)`` CDF of each row of ``p (N, n_bins)`` at ``z (N,)``, density constant within bins."""
    inside = np.clip((z[:, None] - edges[None, :-1]) / np.diff(edges)[None, :], 0.0, 1.0)
    return np.clip(np.sum(p * inside, axis=1), 0.0, 1.0)


def pit(pdf: ArrayLike, z_true: ArrayLike, edges: ArrayLike | None = None,
        centres: ArrayLike | None = None) -> np.ndarray:
    """Probability integral transform ``(N,)``: ``PIT_i = CDF_i(z_true_i)``, in [0, 1].

    ``pdf (N, n_bins)`` over ``edges`` or ``centres``; a truth below (above) the grid gives 0 (1).
    """
    zt = _vector(z_true, "z_true")
    p, e = _pdf(pdf, len(zt), edges, centres)
    return _cdf_at(p, e, zt)


def pit_uniformity(pit_values: ArrayLike, bins: int = 20) -> PitUniformity:
    """KS test of ``pit_values (N,)`` against U(0, 1) and their histogram in ``bins`` equal bins."""
    u = _vector(pit_values, "pit_values")
    ks = stats.kstest(u, "uniform")
    counts, edges = np.histogram(u, bins=bins, range=(0.0, 1.0))
    return PitUniformity(float(ks.statistic), float(ks.pvalue), counts, edges)


def _segment(alpha: np.ndarray, beta: np.ndarray, length: np.ndarray) -> np.ndarray:
    """``∫_0^L (α + β t)² dt``, exact."""
    return alpha**2 * length + alpha * beta * length**2 + beta**2 * length**3 / 3.0


_CRPS_ROWS = 8192  # rows per block, to bound the (rows, n_bins) temporaries


def crps(pdf: ArrayLike, z_true: ArrayLike, edges: ArrayLike | None = None,
         centres: ArrayLike | None = None) -> np.ndarray:
    """Continuous ranked probability score ``(N,)`` in units of z (lower is better).

    ``CRPS_i = ∫ (CDF_i(z) − H(z − z_true_i))² dz`` over the whole real line, with
    ``H`` the unit step. With the density constant in each bin the CDF is piecewise
    linear, so the integral is computed exactly, bin by bin (each bin split at the
    truth), plus ``|z_true − grid end|`` when the truth lies outside the grid. A PDF
    all in the bin of width ``w`` centred on the truth scores ``w / 12`` (not 0);
    one offset by Δ scores ``|Δ| + O(w)``.
    """
    zt = _vector(z_true, "z_true")
    p, e = _pdf(pdf, len(zt), edges, centres)
    lower, upper, width = e[:-1], e[1:], np.diff(e)
    out = np.maximum(e[0] - zt, 0.0) + np.maximum(zt - e[-1], 0.0)
    for start in range(0, len(zt), _CRPS_ROWS):
        rows = slice(start, start + _CRPS_ROWS)
        prob = p[rows]
        slope = prob / width
        cdf_lower = np.cumsum(prob, axis=1) - prob
        split = np.clip(zt[rows, None], lower, upper)
        below, above = split - lower, upper - split
        out[rows] += np.sum(_segment(cdf_lower, slope, below)
                            + _segment(cdf_lower + slope * below - 1.0, slope, above), axis=1)
    return out


def pdf_point_estimates(pdf: ArrayLike, edges: ArrayLike | None = None,
                        centres: ArrayLike | None = None) -> PdfPointEstimates:
    """Mean, median, mode, peak and peak mean ``(N,)`` of each row of ``pdf (N, n_bins)`` (density constant in
    bins; see :class:`PdfPointEstimates`)."""
    p, e = _pdf(pdf, None, edges, centres)
    mid = 0.5 * (e[1:] + e[:-1])
    # CDF at each candidate window's ends: the windows are the same for every row
    reach = PEAK_WINDOW * (1.0 + mid)
    inside = [np.clip((bound[None, :] - e[:-1, None]) / np.diff(e)[:, None], 0.0, 1.0)
              for bound in (mid - reach, mid + reach)]  # (n_bins, n_windows) fraction of each bin below
    low, high = p @ inside[0], p @ inside[1]  # (N, n_windows)
    best = np.argmax(high - low, axis=1)
    rows = np.arange(len(p))
    peak = _inverse_cdf(p, e, 0.5 * (low[rows, best] + high[rows, best]))
    # the part [a, b] of each bin inside the best window, its probability and its centre
    a = np.clip((mid - reach)[best][:, None], e[:-1], e[1:])
    b = np.clip((mid + reach)[best][:, None], e[:-1], e[1:])
    held = p * (b - a) / np.diff(e)
    peak_mean = np.sum(held * 0.5 * (a + b), axis=1) / np.sum(held, axis=1)
    return PdfPointEstimates(mean=p @ mid, median=_inverse_cdf(p, e, np.full(len(p), 0.5)),
                             mode=mid[np.argmax(p, axis=1)], peak=peak, peak_mean=peak_mean)


def _inverse_cdf(p: np.ndarray, edges: np.ndarray, level: np.ndarray) -> np.ndarray:
    """``(N,)`` where the CDF of each row of ``p (N, n_bins)`` reaches ``level (N,)`` (density constant in bins)."""
    cum = np.cumsum(p, axis=1)
    j = np.minimum(np.sum(cum < level[:, None], axis=1), p.shape[1] - 1)
    rows = np.arange(len(p))
    before = cum[rows, j] - p[rows, j]
    return edges[j] + (level - before) / p[rows, j] * (edges[j + 1] - edges[j])
