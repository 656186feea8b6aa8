"""Judging generated galaxy stamps against held-out ones: distributions, features, conditioning, memorisation.

Pure functions on arrays (the statistics come from :func:`deepfield.analysis.galaxy_statistics.galaxy_statistics`):

* :func:`wasserstein_score`: per statistic the 1-Wasserstein distance between samples and held-out
  values, both divided by the held-out standard deviation, and the mean over statistics (the score of
  Holzschuh et al. 2022, who report 0.060 on COSMOS and 0.051 on TNG stamps). Two independent draws of
  the same simulator do not score 0 (finite samples): benchmarks/bench_judging.py measures that floor.
* :func:`frechet_distance` between two feature sets (a Gaussian fit to each), :func:`frechet_with_floor`
  (samples against held-out, and the floor between two halves of the held-out set, at equal sizes),
  :func:`classifier_frechet` (features from a deepfield classifier's layer, no downloaded Inception).
* :func:`conditioning_errors`: measured against requested values (size, flux, ellipticity).
* :func:`memorisation`: nearest-training-stamp distances of samples against those of held-out stamps.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
from scipy.stats import wasserstein_distance
from sklearn.neighbors import NearestNeighbors
from torch import nn

from deepfield.analysis.image_quality import nmad
from deepfield.analysis.layer_features import default_layer, layer_features
from deepfield.errors import DeepfieldError

__all__ = ["Memorisation", "classifier_frechet", "conditioning_errors", "frechet_distance", "frechet_gaussians",
           "frechet_with_floor", "memorisation", "normalised_pixels", "wasserstein_score"]


def _finite(name: str, values: Any) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise DeepfieldError(f"{name}: expected one value per stamp (N,), got shape {array.shape}")
    return array[np.isfinite(array)]


def wasserstein_score(samples: Mapping[str, Any], heldout: Mapping[str, Any]) -> dict[str, Any]:
    """The standardised 1-Wasserstein distance per statistic and their mean.

    ``samples``, ``heldout``: ``name -> (N,)`` values (the same names; the sizes may differ). For each
    name, NaN and infinite values are dropped (and counted), both sets are divided by the held-out
    standard deviation (ddof 1) and ``scipy.stats.wasserstein_distance`` is taken: 0 for equal
    distributions, ``|Δμ|/σ`` for a shift. A statistic with fewer than 2 finite held-out values, no
    finite sample or a held-out spread of 0 gets NaN and stays out of the mean.

    Returns ``{"mean_w1": float, "statistics": {name: {"w1", "n_samples", "n_heldout",
    "dropped_samples", "dropped_heldout"}}}`` (plain floats and ints, ready for metrics.json).
    """
    if set(samples) != set(heldout):
        raise DeepfieldError(f"samples and held-out statistics differ: {sorted(set(samples) ^ set(heldout))}")
    table: dict[str, dict[str, Any]] = {}
    for name in heldout:
        s, h = _finite(f"samples[{name!r}]", samples[name]), _finite(f"heldout[{name!r}]", heldout[name])
        spread = float(np.std(h, ddof=1)) if len(h) > 1 else 0.0
        w1 = wasserstein_distance(s / spread, h / spread) if len(s) and spread > 0 else math.nan
        table[name] = {"w1": float(w1), "n_samples": len(s), "n_heldout": len(h),
                       "dropped_samples": len(np.ravel(samples[name])) - len(s),
                       "dropped_heldout": len(np.ravel(heldout[name])) - len(h)}
    finite = [row["w1"] for row in table.values() if math.isfinite(row["w1"])]
    return {"mean_w1": float(np.mean(finite)) if finite else math.nan, "statistics": table}


def frechet_gaussians(mu1: Any, cov1: Any, mu2: Any, cov2: Any, eps: float = 1e-6) -> float:
    """``||μ1 − μ2||² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½)``: the Fréchet (2-Wasserstein²) distance of two Gaussians.

    The matrix square root is scipy's; when scipy finds the product singular (a feature that never varies,
    fewer stamps than features) or the root is not finite, ``eps`` is added to both diagonals and it is
    taken again (as pytorch-fid does); the real part is kept (round-off gives a small imaginary one).
    Never below 0 (round-off again).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, dtype=np.float64)), np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, dtype=np.float64)), np.atleast_2d(np.asarray(cov2, dtype=np.float64))
    if not (mu1.shape == mu2.shape and cov1.shape == cov2.shape == (len(mu1), len(mu1))):
        raise DeepfieldError(f"frechet: means {mu1.shape}, {mu2.shape} and covariances {cov1.shape}, {cov2.shape} "
                             "do not describe Gaussians of one dimension")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(cov1 @ cov2)
    if caught or not np.isfinite(root).all():  # singular: e.g. a feature that never varies
        offset = eps * np.eye(len(mu1))
        root = scipy.linalg.sqrtm((cov1 + offset) @ (cov2 + offset))
    value = np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2.0 * np.trace(np.real(root))
    return float(max(value, 0.0))


def _features(name: str, values: Any) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or len(array) < 2:
        raise DeepfieldError(f"{name}: expected features (N, D) with N >= 2, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise DeepfieldError(f"{name}: features hold NaN or infinite values")
    return array


def frechet_distance(a: Any, b: Any, eps: float = 1e-6) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets ``(N_a, D)`` and ``(N_b, D)``
    (mean and covariance with ddof 1; :func:`frechet_gaussians`). Symmetric; 0 for one set twice."""
    a, b = _features("features a", a), _features("features b", b)
    if a.shape[1] != b.shape[1]:
        raise DeepfieldError(f"frechet: features of {a.shape[1]} and {b.shape[1]} dimensions")
    return frechet_gaussians(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False), eps)


def frechet_with_floor(samples: Any, heldout: Any, seed: int = 0) -> dict[str, float]:
    """The samples' Fréchet distance to the held-out set beside its floor, at equal sizes.

    The held-out features ``(N_h, D)`` are split at random (``seed``) into halves A and B of
    ``m = N_h // 2``; ``frechet`` is between ``m`` samples (the first ones of ``(N_s, D)``, N_s ≥ m) and A,
    ``frechet_floor`` between B and A: what a perfect model would score with this many stamps (the
    estimate is biased upward at small sizes, so both are taken at the same ones). Returns both and ``n``.
    """
    samples, heldout = _features("samples", samples), _features("heldout", heldout)
    m = len(heldout) // 2
    if m < 2 or len(samples) < m:
        raise DeepfieldError(f"frechet: needs at least 4 held-out stamps and half as many samples, got "
                             f"{len(heldout)} held-out and {len(samples)} samples")
    order = np.random.default_rng(seed).permutation(len(heldout))
    half_a, half_b = heldout[order[:m]], heldout[order[m:2 * m]]
    return {"frechet": frechet_distance(samples[:m], half_a), "frechet_floor": frechet_distance(half_b, half_a),
            "n": m}


def classifier_frechet(model: nn.Module, samples: Any, heldout: Any, layer: str | None = None, seed: int = 0,
                       batch_size: int = 256, device: Any = None) -> dict[str, Any]:
    """:func:`frechet_with_floor` in the feature space of a trained deepfield classifier's ``layer``
    (``None``: the one before its head; :func:`deepfield.analysis.layer_features.layer_features`).

    ``samples``, ``heldout``: stamps as the model takes them (e.g. (N, C, H, W) normalised as in
    training). Returns ``frechet``, ``frechet_floor``, ``n`` and ``layer`` (the name used).
    """
    name = default_layer(model) if layer is None else layer
    features = [layer_features(model, x, name, batch_size, device) for x in (samples, heldout)]
    return frechet_with_floor(*features, seed=seed) | {"layer": name}


def conditioning_errors(requested: Mapping[str, Any], measured: Mapping[str, Any],
                        absolute: Collection[str] = ()) -> dict[str, dict[str, Any]]:
    """How well samples follow their conditions: per quantity, the median and the robust scatter
    (1.4826 · MAD) of the error of ``measured`` against ``requested`` (``name -> (N,)``, the same names,
    the same definitions: e.g. hsm's distortion e against a requested shear g needs e = 2g / (1 + g²)).

    The error is relative, ``(measured − requested) / requested``, except for the names in
    ``absolute`` (``measured − requested``: for an ellipticity, whose requested values near 0 make
    relative errors meaningless). Pairs with a NaN or, for relative errors, a requested 0 are dropped
    and counted. Returns ``name -> {"median_error", "scatter", "kind", "n", "dropped"}``.
    """
    if set(requested) != set(measured):
        raise DeepfieldError(f"requested and measured quantities differ: {sorted(set(requested) ^ set(measured))}")
    table = {}
    for name in requested:
        want, got = (np.asarray(d[name], dtype=np.float64) for d in (requested, measured))
        if want.ndim != 1 or want.shape != got.shape:
            raise DeepfieldError(f"conditioning {name!r}: requested {want.shape} and measured {got.shape} must be "
                                 "(N,) alike")
        relative = name not in absolute
        keep = np.isfinite(want) & np.isfinite(got) & ((want != 0) if relative else True)
        error = (got[keep] - want[keep]) / want[keep] if relative else got[keep] - want[keep]
        table[name] = {"median_error": float(np.median(error)) if error.size else math.nan, "scatter": nmad(error),
                       "kind": "relative" if relative else "absolute", "n": int(keep.sum()),
                       "dropped": int((~keep).sum())}
    return table


def normalised_pixels(images: Any) -> np.ndarray:
    """(N, C·H·W) each stamp ``(N, C, H, W)`` flattened and divided by its Euclidean norm: a space where
    a copy of a training stamp is close whatever its brightness (zeros stay zeros)."""
    flat = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    norm = np.linalg.norm(flat, axis=1, keepdims=True)
    return flat / np.where(norm > 0, norm, 1.0)


@dataclass(frozen=True)
class Memorisation:
    """What :func:`memorisation` found. Distances are Euclidean in the space given (e.g. :func:`normalised_pixels`).

    ``sample_distances`` (N_s,), ``heldout_distances`` (N_h,): each one's distance to its nearest training
    stamp; ``nearest_training`` (N_s,): that stamp's index for each sample; ``threshold``: the
    ``quantile`` of the held-out distances; ``fraction``: the samples' fraction below it;
    ``limit``: the fraction above which a model is flagged; ``flagged``; ``closest`` (k, 2): the
    (sample, training) index pairs of the k smallest sample distances, closest first, for a figure.
    """

    sample_distances: np.ndarray
    heldout_distances: np.ndarray
    nearest_training: np.ndarray
    quantile: float
    threshold: float
    fraction: float
    limit: float
    flagged: bool
    closest: np.ndarray

    def summary(self) -> dict[str, Any]:
        """The scalars, for metrics.json."""
        return {"flagged": self.flagged, "fraction_closer": self.fraction, "flag_limit": self.limit,
                "quantile": self.quantile, "threshold_distance": self.threshold,
                "median_sample_distance": float(np.median(self.sample_distances)),
                "median_heldout_distance": float(np.median(self.heldout_distances)),
                "n_samples": len(self.sample_distances), "n_heldout": len(self.heldout_distances)}


def memorisation(samples: Any, heldout: Any, training: Any, quantile: float = 0.01, z: float = 3.0,
                 closest: int = 8) -> Memorisation:
    """Whether samples sit closer to the training set than unseen stamps of the same sky do.

    ``samples`` (N_s, D), ``heldout`` (N_h, D), ``training`` (N_t, D): flattened stamps in one space
    (:func:`normalised_pixels`, or a classifier's features). Each sample's and each held-out stamp's
    distance to its nearest training stamp is found (scikit-learn ``NearestNeighbors``, exact).

    The rule: ``threshold`` is the ``quantile`` (1 %) of the held-out distances, and the model is
    flagged when the fraction ``f`` of samples closer than it exceeds
    ``limit = q + z · sqrt(q (1 − q) (1/N_s + 1/N_h))``. Why: a model that does not copy makes samples
    as far from the training set as unseen stamps are, so ``f`` estimates ``q``, with the binomial
    variance of the samples' count plus that of the held-out quantile (itself an estimated proportion);
    ``z = 3`` keeps false flags near 0.1 % (normal approximation). It looks at the low tail only, where
    copies are (a copy with a little noise is nearer its original than almost any unseen stamp is to
    anything), so a model whose samples differ in other ways (blurred, too bright) is not called a copier;
    a model copying a fraction ``c`` of its samples gives ``f ≈ q + c`` and is flagged once ``c`` passes
    about ``3·sqrt(2q/N)`` (1.3 % at N = 1,000 each, 0.4 % at 10,000).
    """
    samples, heldout, training = (_features(n, v) for n, v in
                                  (("samples", samples), ("heldout", heldout), ("training", training)))
    if not samples.shape[1] == heldout.shape[1] == training.shape[1]:
        raise DeepfieldError(f"memorisation: samples, held-out and training have {samples.shape[1]}, "
                             f"{heldout.shape[1]} and {training.shape[1]} dimensions")
    if not 0.0 < quantile < 0.5:
        raise DeepfieldError(f"memorisation: quantile must be in (0, 0.5), got {quantile!r}")
    neighbours = NearestNeighbors(n_neighbors=1, algorithm="brute").fit(training)
    sample_distances, nearest = (a[:, 0] for a in neighbours.kneighbors(samples))
    heldout_distances = neighbours.kneighbors(heldout)[0][:, 0]
    threshold = float(np.quantile(heldout_distances, quantile))
    fraction = float(np.mean(sample_distances < threshold))
    limit = quantile + z * math.sqrt(quantile * (1 - quantile) * (1 / len(samples) + 1 / len(heldout)))
    order = np.argsort(sample_distances, kind="stable")[:closest]
    return Memorisation(sample_distances, heldout_distances, nearest, quantile, threshold, fraction, limit,
                        fraction > limit, np.stack([order, nearest[order]], axis=1))
