"""Calibration and uncertainty quality: can the predicted probabilities and error bars be trusted?

Classification inputs are numpy arrays: ``labels (N,)`` integer classes ``0 .. K-1`` and
``probabilities`` either ``(N, K)`` rows summing to 1 (softmax outputs) or, for a binary
model, ``(N,)`` or ``(N, 1)`` sigmoid outputs (the probability of class 1), taken as the
two classes ``[1 − p, p]``. The predicted class is the most probable one (ties go to the
lower class index); its probability is the *confidence*.

- reliability diagram and expected calibration error (ECE, Guo et al. 2017, ICML):
  :func:`reliability`, :func:`expected_calibration_error`;
- temperature scaling (Guo et al. 2017): :func:`fit_temperature` on validation data,
  :func:`apply_temperature` on anything else;
- uncertainty from predictive samples (MC dropout, deep ensembles), in nats:
  :func:`predictive_entropy`, :func:`mutual_information`; how well an uncertainty flags
  mistakes: :func:`misclassification_auroc`;
- regression and photo-z PDFs: the fraction of truths inside central intervals
  (:func:`gaussian_interval_coverage`, :func:`pdf_interval_coverage`, and the curves over
  many levels), and the binned RMS error against the predicted σ
  (:func:`error_vs_uncertainty`).

>>> reliability(y_val, p_val).ece
>>> T = fit_temperature(y_val, p_val)
>>> p_test_calibrated = apply_temperature(p_test, T)
>>> gaussian_interval_coverage(y, mu, sigma)          # {"0.68": 0.66, "0.95": 0.94}
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, special, stats

from deepfield import arguments
from deepfield.analysis.classification import JsonReady, RocCurve, as_labels, roc_curves
from deepfield.analysis.photoz import pit
from deepfield.errors import DeepfieldError

__all__ = [
    "COVERAGE_LEVELS",
    "CoverageCurve",
    "ErrorVsUncertainty",
    "Reliability",
    "apply_temperature",
    "error_vs_uncertainty",
    "expected_calibration_error",
    "fit_temperature",
    "gaussian_coverage_curve",
    "gaussian_interval_coverage",
    "misclassification_auroc",
    "misclassification_roc",
    "misclassified",
    "mutual_information",
    "negative_log_likelihood",
    "pdf_coverage_curve",
    "pdf_interval_coverage",
    "predictive_entropy",
    "reliability",
]

SUM_TOLERANCE = 1e-3
"""How far a row of class probabilities may sum from 1 (float32 softmax rows are within ~1e-6)."""

PROBABILITY_FLOOR = 1e-12
"""Probabilities are clipped to ``[floor, 1]`` before taking logs: a saturated float32 softmax
or sigmoid gives exactly 0, which has no finite logarithm."""

COVERAGE_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.68, 0.7, 0.8, 0.9, 0.95)
"""Default nominal levels of the coverage curves."""

_LOG_T_BOUNDS = (math.log(1e-2), math.log(1e2))
"""Temperature scaling searches T in [0.01, 100]."""


@dataclass(frozen=True)
class Reliability(JsonReady):
    """Top-label calibration in ``B`` equal-width confidence bins on [0, 1].

    ``edges (B + 1,)``; ``count (B,)`` objects whose confidence lies in ``[e_b, e_{b+1})``
    (the last bin closed); ``confidence (B,)`` their mean confidence and ``accuracy (B,)``
    the fraction predicted right, both NaN (``None`` in JSON) in empty bins.
    ``ece = Σ_b (n_b / N) |accuracy_b − confidence_b|`` and ``mce = max_b |accuracy_b −
    confidence_b|``, over non-empty bins; both fractions in [0, 1].
    """

    edges: np.ndarray
    count: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    ece: float
    mce: float


@dataclass(frozen=True)
class CoverageCurve(JsonReady):
    """Observed against nominal coverage of central intervals, for ``n`` objects.

    ``nominal (L,)`` levels in (0, 1); ``observed (L,)`` the fraction of truths inside the
    central interval of each level. Above the diagonal: intervals too wide
    (under-confident); below: too narrow (over-confident).
    """

    nominal: np.ndarray
    observed: np.ndarray
    n: int

    def as_dict(self) -> dict[str, float]:
        """``{"0.68": observed, ...}``, keyed by the nominal level."""
        return {f"{level:g}": float(value) for level, value in zip(self.nominal, self.observed)}


@dataclass(frozen=True)
class ErrorVsUncertainty(JsonReady):
    """Errors binned by predicted uncertainty, in ``B`` bins of (nearly) equal count.

    ``edges (B + 1,)`` the uncertainty at the bin boundaries (each bin's smallest value,
    then the largest overall); ``count (B,)``; ``uncertainty (B,)`` the mean uncertainty
    and ``rms_error (B,)`` the root-mean-square error in each bin (both in the unit of the
    predicted quantity). Calibrated Gaussian σ give ``rms_error ≈ uncertainty``.
    ``spearman`` is the rank correlation between ``|error|`` and the uncertainty (NaN
    when either is constant).
    """

    edges: np.ndarray
    count: np.ndarray
    uncertainty: np.ndarray
    rms_error: np.ndarray
    spearman: float


# --- inputs -------------------------------------------------------------------------------------

def _is_binary(shape: tuple[int, ...]) -> bool:
    """One sigmoid output per object: ``(N,)`` or ``(N, 1)``."""
    return len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)


def _probabilities(probabilities: ArrayLike, n: int | None = None, name: str = "probabilities") -> np.ndarray:
    """``(N, K)`` float64 class probabilities, ``K >= 2``; binary ``(N,)`` / ``(N, 1)`` become ``[1 − p, p]``."""
    p = np.asarray(probabilities, dtype=np.float64)
    rows = "N" if n is None else n
    if p.ndim not in (1, 2) or len(p) == 0 or (n is not None and len(p) != n):
        raise DeepfieldError(f"{name}: expected shape ({rows},), ({rows}, 1) or ({rows}, K), got {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(p > 1):
        raise DeepfieldError(f"{name}: probabilities must be finite and lie in [0, 1]")
    if _is_binary(p.shape):
        p1 = p.reshape(-1)
        return np.stack([1.0 - p1, p1], axis=1)
    bad = np.flatnonzero(np.abs(p.sum(axis=1) - 1.0) > SUM_TOLERANCE)
    if len(bad):
        row = int(bad[0])
        raise DeepfieldError(f"{name}: each row must sum to 1 (softmax outputs); row {row} sums to "
                             f"{p[row].sum():.6g}")
    return p


def _labels_and_probabilities(labels: ArrayLike, probabilities: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = as_labels(labels, "labels")
    p = _probabilities(probabilities, len(y))
    return _in_range(y, p.shape[1]), p


def _in_range(y: np.ndarray, k: int) -> np.ndarray:
    if y.min() < 0 or y.max() >= k:
        raise DeepfieldError(f"labels: must lie in 0..{k - 1} for {k} classes, got {y.min()}..{y.max()}")
    return y


def _vector(values: ArrayLike, name: str, n: int | None = None) -> np.ndarray:
    """A finite float64 ``(n,)`` array."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0 or (n is not None and len(v) != n):
        raise DeepfieldError(f"{name}: expected shape ({n if n is not None else 'N'},), got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise DeepfieldError(f"{name}: contains NaN or infinite values")
    return v


def _n_bins(n_bins: int) -> int:
    if not arguments.is_integer(n_bins):
        raise DeepfieldError(f"n_bins: expected a positive integer, got {n_bins!r}")
    return int(n_bins)


def _levels(levels: Sequence[float]) -> np.ndarray:
    lv = np.asarray(levels, dtype=np.float64)
    if lv.ndim != 1 or lv.size == 0 or np.any(~(lv > 0)) or np.any(~(lv < 1)):
        raise DeepfieldError(f"levels: expected one or more levels in (0, 1), got {list(np.atleast_1d(lv))}")
    return lv


# --- reliability --------------------------------------------------------------------------------

def misclassified(labels: ArrayLike, probabilities: ArrayLike) -> np.ndarray:
    """``(N,)`` bool: the most probable class is not the true one (ties go to the lower class)."""
    y, p = _labels_and_probabilities(labels, probabilities)
    return np.argmax(p, axis=1) != y


def reliability(labels: ArrayLike, probabilities: ArrayLike, n_bins: int = 15) -> Reliability:
    """Accuracy against top-label confidence in ``n_bins`` equal-width bins, with ECE and MCE.

    Args:
        labels: ``(N,)`` integer classes.
        probabilities: ``(N, K)`` rows summing to 1, or binary ``(N,)`` / ``(N, 1)`` probability of class 1.
        n_bins: bins on [0, 1] (15 as in Guo et al. 2017). Binary confidences are ≥ 0.5,
            so the lower half of the bins stays empty.
    """
    y, p = _labels_and_probabilities(labels, probabilities)
    edges = np.linspace(0.0, 1.0, _n_bins(n_bins) + 1)
    confidence = p.max(axis=1)
    right = (np.argmax(p, axis=1) == y).astype(np.float64)
    count = np.histogram(confidence, edges)[0]
    filled = count > 0
    mean_confidence = np.full(len(count), np.nan)
    accuracy = np.full(len(count), np.nan)
    mean_confidence[filled] = np.histogram(confidence, edges, weights=confidence)[0][filled] / count[filled]
    accuracy[filled] = np.histogram(confidence, edges, weights=right)[0][filled] / count[filled]
    gap = np.abs(accuracy[filled] - mean_confidence[filled])
    ece = float(np.sum(count[filled] / len(y) * gap))
    return Reliability(edges, count.astype(np.int64), mean_confidence, accuracy, ece, float(gap.max()))


def expected_calibration_error(labels: ArrayLike, probabilities: ArrayLike, n_bins: int = 15) -> float:
    """The expected calibration error of :func:`reliability`, a fraction in [0, 1]."""
    return reliability(labels, probabilities, n_bins).ece


def negative_log_likelihood(labels: ArrayLike, probabilities: ArrayLike) -> float:
    """Mean ``−log p(true class)`` in nats (probabilities clipped at :data:`PROBABILITY_FLOOR`)."""
    y, p = _labels_and_probabilities(labels, probabilities)
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], PROBABILITY_FLOOR))))


# --- temperature scaling ------------------------------------------------------------------------

def _logits(values: ArrayLike, logits: bool, n: int | None = None) -> np.ndarray:
    """``(N, K)`` logits (up to a constant per row); binary inputs give two columns.

    Probabilities become ``log p`` (``softmax(log p) = p``); a binary logit ``z`` becomes
    ``[0, z]`` (``softmax([0, z]) = [1 − σ(z), σ(z)]``).
    """
    if not logits:
        return np.log(np.maximum(_probabilities(values, n), PROBABILITY_FLOOR))
    z = np.asarray(values, dtype=np.float64)
    rows = "N" if n is None else n
    if z.ndim not in (1, 2) or len(z) == 0 or (n is not None and len(z) != n):
        raise DeepfieldError(f"logits: expected shape ({rows},), ({rows}, 1) or ({rows}, K), got {z.shape}")
    if not np.all(np.isfinite(z)):
        raise DeepfieldError("logits: contains NaN or infinite values")
    if _is_binary(z.shape):
        z1 = z.reshape(-1)
        return np.stack([np.zeros_like(z1), z1], axis=1)
    return z


def _temperature(temperature: float) -> float:
    if not (math.isfinite(temperature) and temperature > 0):
        raise DeepfieldError(f"temperature: expected a finite T > 0, got {temperature}")
    return float(temperature)


def fit_temperature(labels: ArrayLike, probabilities: ArrayLike, logits: bool = False) -> float:
    """The temperature ``T > 0`` minimising the NLL of ``softmax(z / T)`` on validation data.

    Temperature scaling (Guo et al. 2017) rescales all logits ``z`` by one number: it
    changes confidences, never the predicted class. ``T > 1`` softens over-confident
    predictions. The NLL is convex in ``1 / T``, hence unimodal in ``log T``, so a bounded
    scalar search over ``log T`` (``T`` in [0.01, 100]) finds the global minimum,
    deterministically.

    Args:
        labels: ``(N,)`` integer classes of the validation objects.
        probabilities: ``(N, K)`` softmax outputs or binary ``(N,)`` / ``(N, 1)`` sigmoid
            outputs; with ``logits=True``, the logits themselves (same shapes).

    Raises:
        DeepfieldError: when the best T lies at a bound: e.g. no mistakes at all (the NLL
            keeps falling as T → 0) or uninformative predictions (T → ∞).
    """
    y = as_labels(labels, "labels")
    z = _logits(probabilities, logits, len(y))
    y = _in_range(y, z.shape[1])
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        return float(-np.mean(special.log_softmax(z * math.exp(-log_t), axis=1)[rows, y]))

    result = optimize.minimize_scalar(nll, bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-6})
    if min(abs(result.x - bound) for bound in _LOG_T_BOUNDS) < 1e-3:
        raise DeepfieldError(f"fit_temperature: the best temperature lies at the search bound T = "
                             f"{math.exp(result.x):.3g}; the validation set cannot calibrate these "
                             "predictions (no mistakes, or no information)")
    return float(math.exp(result.x))


def apply_temperature(probabilities: ArrayLike, temperature: float, logits: bool = False) -> np.ndarray:
    """Probabilities ``softmax(z / T)`` in the input's shape: ``(N, K)``, or binary ``(N,)`` / ``(N, 1)``.

    ``z`` are the logits (``logits=True``) or recovered from probabilities as ``log p``
    (binary: the logit ``log(p / (1 − p))``); ``T = 1`` returns the probabilities unchanged
    (to float rounding, and the clipping at :data:`PROBABILITY_FLOOR`).
    """
    t = _temperature(temperature)
    shape = np.shape(probabilities)
    q = special.softmax(_logits(probabilities, logits) / t, axis=1)
    return q[:, 1].reshape(shape) if _is_binary(shape) else q


# --- uncertainty from predictive samples --------------------------------------------------------

def _entropy(p: np.ndarray) -> np.ndarray:
    """Entropy in nats over the last axis, with 0 · log 0 = 0."""
    return special.entr(p).sum(axis=-1)


def predictive_entropy(probabilities: ArrayLike) -> np.ndarray:
    """``(N,)`` entropy ``−Σ_k p_k log p_k`` in nats of mean predictive probabilities.

    ``probabilities``: ``(N, K)`` rows summing to 1 or binary ``(N,)`` / ``(N, 1)``;
    between 0 (certain) and ``log K`` (uniform).
    """
    return _entropy(_probabilities(probabilities))


def _samples(samples: ArrayLike) -> np.ndarray:
    """``(T, N, K)`` class probabilities from ``(T, N, K)`` or binary ``(T, N)`` / ``(T, N, 1)`` samples."""
    s = np.asarray(samples, dtype=np.float64)
    if s.ndim not in (2, 3) or 0 in s.shape:
        raise DeepfieldError(f"samples: expected shape (T, N), (T, N, 1) or (T, N, K), got {s.shape}")
    t, n = s.shape[:2]
    flat = s.reshape(t * n, s.shape[2]) if s.ndim == 3 else s.reshape(-1)
    return _probabilities(flat, name="samples").reshape(t, n, -1)


def mutual_information(samples: ArrayLike) -> np.ndarray:
    """``(N,)`` mutual information (BALD) in nats: ``H[mean_t p_t] − mean_t H[p_t]``.

    The part of the predictive entropy due to disagreement between samples (epistemic
    uncertainty); 0 when all samples agree. Rounding negatives are clipped to 0.

    Args:
        samples: ``(T, N, K)`` class probabilities from ``T`` stochastic passes (MC
            dropout) or ensemble members, or binary ``(T, N)`` / ``(T, N, 1)``.
    """
    p = _samples(samples)
    return np.maximum(_entropy(p.mean(axis=0)) - _entropy(p).mean(axis=0), 0.0)


def misclassification_roc(labels: ArrayLike, probabilities: ArrayLike, uncertainty: ArrayLike) -> RocCurve:
    """ROC curve of ``uncertainty (N,)`` (higher = less sure) as a detector of misclassified objects.

    ``tpr`` is the fraction of mistakes flagged, ``fpr`` the fraction of right predictions
    flagged, at each threshold ``uncertainty >= t``. Empty with NaN AUC when all
    predictions are right or all wrong.
    """
    wrong = misclassified(labels, probabilities)
    u = _vector(uncertainty, "uncertainty", len(wrong))
    return roc_curves(wrong, u, class_names=["right", "wrong"]).curves["wrong"]


def misclassification_auroc(labels: ArrayLike, probabilities: ArrayLike, uncertainty: ArrayLike) -> float:
    """AUROC of ``uncertainty (N,)`` flagging misclassified objects: 1 perfect, 0.5 chance, NaN if undefined."""
    return misclassification_roc(labels, probabilities, uncertainty).auc


# --- regression: interval coverage and error against uncertainty ---------------------------------

def gaussian_coverage_curve(y_true: ArrayLike, mean: ArrayLike, sigma: ArrayLike,
                            levels: Sequence[float] = COVERAGE_LEVELS) -> CoverageCurve:
    """Fraction of ``y_true`` inside ``mean ± z_level · sigma`` for each level.

    ``z_level = Φ⁻¹((1 + level) / 2)`` (1.0 for 0.68..., 1.96 for 0.95). All arrays
    ``(N,)`` in the same unit; ``sigma > 0``.
    """
    y = _vector(y_true, "y_true")
    mu = _vector(mean, "mean", len(y))
    s = _vector(sigma, "sigma", len(y))
    if np.any(s <= 0):
        raise DeepfieldError(f"sigma: must be > 0, got minimum {s.min()}")
    lv = _levels(levels)
    z = stats.norm.ppf(0.5 * (1.0 + lv))
    inside = np.abs(y - mu)[None, :] <= z[:, None] * s[None, :]
    return CoverageCurve(lv, inside.mean(axis=1), len(y))


def pdf_coverage_curve(pdf: ArrayLike, z_true: ArrayLike, edges: ArrayLike | None = None,
                       centres: ArrayLike | None = None,
                       levels: Sequence[float] = COVERAGE_LEVELS) -> CoverageCurve:
    """Fraction of ``z_true`` inside the central interval of each binned PDF, for each level.

    The interval runs from the ``(1 − level) / 2`` to the ``(1 + level) / 2`` quantile of
    the PDF (density constant within bins), so the truth is inside exactly when its PIT
    satisfies ``|PIT − 0.5| ≤ level / 2``; computed that way, through
    :func:`~deepfield.analysis.photoz.pit`.

    Args:
        pdf: ``(N, n_bins)`` bin probabilities over ``edges (n_bins + 1,)`` or ``centres (n_bins,)``.
        z_true: ``(N,)`` true redshifts; outside the grid they are never covered.
    """
    u = pit(pdf, z_true, edges, centres)
    lv = _levels(levels)
    inside = np.abs(u - 0.5)[None, :] <= 0.5 * lv[:, None]
    return CoverageCurve(lv, inside.mean(axis=1), len(u))


def gaussian_interval_coverage(y_true: ArrayLike, mean: ArrayLike, sigma: ArrayLike,
                               levels: Sequence[float] = (0.68, 0.95)) -> dict[str, float]:
    """``{"0.68": fraction, "0.95": fraction}``: :func:`gaussian_coverage_curve` keyed by level."""
    return gaussian_coverage_curve(y_true, mean, sigma, levels).as_dict()


def pdf_interval_coverage(pdf: ArrayLike, z_true: ArrayLike, edges: ArrayLike | None = None,
                          centres: ArrayLike | None = None,
                          levels: Sequence[float] = (0.68, 0.95)) -> dict[str, float]:
    """``{"0.68": fraction, "0.95": fraction}``: :func:`pdf_coverage_curve` keyed by level."""
    return pdf_coverage_curve(pdf, z_true, edges, centres, levels).as_dict()


def error_vs_uncertainty(error: ArrayLike, uncertainty: ArrayLike, n_bins: int = 10) -> ErrorVsUncertainty:
    """RMS error in ``n_bins`` equal-count bins of predicted uncertainty, and their rank correlation.

    Args:
        error: ``(N,)`` residuals, e.g. ``y_pred − y_true``.
        uncertainty: ``(N,)`` predicted uncertainty in the same unit, e.g. the predicted σ.
        n_bins: at most N; bin sizes differ by at most one object.
    """
    e = _vector(error, "error")
    u = _vector(uncertainty, "uncertainty", len(e))
    b = _n_bins(n_bins)
    if b > len(e):
        raise DeepfieldError(f"n_bins: {b} bins for {len(e)} objects; expected at least one object per bin")
    order = np.argsort(u, kind="stable")
    bins = np.array_split(order, b)
    sorted_u = u[order]
    starts = np.cumsum([0] + [len(b) for b in bins[:-1]])
    with warnings.catch_warnings():  # a constant input gives NaN, as documented
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        rho = stats.spearmanr(np.abs(e), u).statistic
    return ErrorVsUncertainty(
        edges=np.append(sorted_u[starts], sorted_u[-1]),
        count=np.array([len(b) for b in bins], dtype=np.int64),
        uncertainty=np.array([u[b].mean() for b in bins]),
        rms_error=np.array([np.sqrt(np.mean(e[b] ** 2)) for b in bins]),
        spearman=float(rho),
    )
