"""Calibration and uncertainty metrics checked against their definitions, by hand and on synthetic truths."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import special, stats

from deepfield.analysis.calibration import (
    apply_temperature,
    error_vs_uncertainty,
    expected_calibration_error,
    fit_temperature,
    gaussian_coverage_curve,
    gaussian_interval_coverage,
    misclassification_auroc,
    misclassified,
    mutual_information,
    negative_log_likelihood,
    pdf_coverage_curve,
    pdf_interval_coverage,
    predictive_entropy,
    reliability,
)
from deepfield.errors import DeepfieldError

# Six objects, three classes, two confidence bins [0, 0.5) and [0.5, 1]:
#   probabilities          label  predicted  confidence  right  bin
#   [0.40, 0.30, 0.30]      0       0          0.40        yes    0
#   [0.20, 0.45, 0.35]      2       1          0.45        no     0
#   [0.70, 0.20, 0.10]      0       0          0.70        yes    1
#   [0.10, 0.80, 0.10]      1       1          0.80        yes    1
#   [0.05, 0.05, 0.90]      0       2          0.90        no     1
#   [0.20, 0.20, 0.60]      0       2          0.60        no     1
# bin 0: n = 2, confidence (0.40 + 0.45) / 2 = 0.425, accuracy 1/2,  gap 0.075
# bin 1: n = 4, confidence (0.7 + 0.8 + 0.9 + 0.6) / 4 = 0.75, accuracy 2/4, gap 0.25
# ECE = 2/6 · 0.075 + 4/6 · 0.25 = 0.025 + 0.1666… = 0.191666…;  MCE = 0.25
HAND_P = np.array([[0.40, 0.30, 0.30], [0.20, 0.45, 0.35], [0.70, 0.20, 0.10],
                   [0.10, 0.80, 0.10], [0.05, 0.05, 0.90], [0.20, 0.20, 0.60]])
HAND_Y = np.array([0, 2, 0, 1, 0, 0])


def _bernoulli(p: np.ndarray, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(p.shape) < p).astype(np.int64)


def _categorical(p: np.ndarray, seed: int) -> np.ndarray:
    """One label per row of ``p (N, K)``, drawn from that row."""
    u = np.random.default_rng(seed).random((len(p), 1))
    return np.minimum((np.cumsum(p, axis=1) < u).sum(axis=1), p.shape[1] - 1)


def _tempered(n: int = 20_000, k: int = 5, t_true: float = 2.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from ``softmax(z / t_true)`` and the over-confident ``softmax(z)``."""
    z = np.random.default_rng(seed).normal(0.0, 3.0, (n, k))
    return _categorical(special.softmax(z / t_true, axis=1), seed + 1), special.softmax(z, axis=1)


# --- reliability and ECE ------------------------------------------------------------------------

def test_reliability_and_ece_equal_the_hand_computed_values() -> None:
    r = reliability(HAND_Y, HAND_P, n_bins=2)
    assert r.edges.tolist() == [0.0, 0.5, 1.0]
    assert r.count.tolist() == [2, 4]
    assert r.confidence == pytest.approx([0.425, 0.75])
    assert r.accuracy == pytest.approx([0.5, 0.5])
    assert r.ece == pytest.approx(2 / 6 * 0.075 + 4 / 6 * 0.25)
    assert r.mce == pytest.approx(0.25)
    assert expected_calibration_error(HAND_Y, HAND_P, n_bins=2) == pytest.approx(r.ece)


def test_empty_bins_are_nan_and_left_out_of_ece_and_mce() -> None:
    r = reliability(HAND_Y, HAND_P, n_bins=10)  # confidences 0.40 .. 0.90: bins 0-3 are empty
    assert r.count.sum() == len(HAND_Y)
    assert r.count[:4].tolist() == [0, 0, 0, 0]
    assert np.isnan(r.confidence[:4]).all() and np.isnan(r.accuracy[:4]).all()
    filled = r.count > 0
    gaps = np.abs(r.accuracy[filled] - r.confidence[filled])
    assert r.ece == pytest.approx(np.sum(r.count[filled] / 6 * gaps))
    assert r.mce == pytest.approx(gaps.max())
    as_json = json.loads(json.dumps(r.to_dict()))
    assert as_json["accuracy"][0] is None and as_json["count"][0] == 0


def test_calibrated_predictions_have_small_ece_and_over_confident_ones_large() -> None:
    p = np.random.default_rng(0).random(200_000)
    y = _bernoulli(p, seed=1)  # y ~ Bernoulli(p): calibrated by construction
    assert expected_calibration_error(y, p) < 0.01
    over = special.expit(3.0 * special.logit(p))  # same ranking, pushed towards 0 and 1
    assert expected_calibration_error(y, over) > 0.1


def test_binary_shapes_give_the_two_column_result() -> None:
    p = np.random.default_rng(2).random(500)
    y = _bernoulli(p, seed=3)
    two_columns = reliability(y, np.stack([1 - p, p], axis=1))
    for form in (p, p[:, None]):
        r = reliability(y, form)
        assert r.count.tolist() == two_columns.count.tolist()
        np.testing.assert_allclose(r.accuracy, two_columns.accuracy, equal_nan=True)
        assert r.ece == pytest.approx(two_columns.ece)
    assert two_columns.count[:7].sum() == 0  # binary confidences are >= 0.5


@pytest.mark.parametrize(("labels", "probabilities", "match"), [
    (HAND_Y, HAND_P[:5], r"probabilities: expected shape \(6,\)"),
    (HAND_Y, HAND_P[None], "probabilities: expected shape"),
    (HAND_Y, HAND_P + 0.6, "probabilities: probabilities must be finite and lie in"),
    (HAND_Y, HAND_P * 0.9, r"probabilities: each row must sum to 1 \(softmax outputs\); row 0 sums to 0.9"),
    (HAND_Y, np.where(HAND_P == 0.4, np.nan, HAND_P), "probabilities: .*finite"),
    (HAND_Y + 1, HAND_P, r"labels: must lie in 0..2"),
    (HAND_Y + 0.5, HAND_P, "labels: class labels must be integers"),
])
def test_bad_inputs_name_the_argument(labels: np.ndarray, probabilities: np.ndarray, match: str) -> None:
    with pytest.raises(DeepfieldError, match=match):
        reliability(labels, probabilities)


def test_n_bins_must_be_a_positive_integer() -> None:
    for bad in (0, 2.5, True):
        with pytest.raises(DeepfieldError, match="n_bins"):
            reliability(HAND_Y, HAND_P, n_bins=bad)  # type: ignore[arg-type]


def test_misclassified_uses_the_most_probable_class() -> None:
    assert misclassified(HAND_Y, HAND_P).tolist() == [False, True, False, False, True, True]


# --- temperature scaling ------------------------------------------------------------------------

def test_temperature_scaling_recovers_the_true_temperature_and_improves_calibration() -> None:
    y, p = _tempered()
    t = fit_temperature(y, p)
    assert t == pytest.approx(2.0, rel=0.05)
    q = apply_temperature(p, t)
    assert negative_log_likelihood(y, q) < negative_log_likelihood(y, p) - 0.05
    assert expected_calibration_error(y, q) < 0.02 < 0.1 < expected_calibration_error(y, p)
    assert np.array_equal(np.argmax(q, axis=1), np.argmax(p, axis=1))  # the predicted class never changes
    np.testing.assert_allclose(q, special.softmax(np.log(p) / t, axis=1), atol=1e-12)


def test_fitting_from_logits_gives_the_same_temperature() -> None:
    z = np.random.default_rng(4).normal(0.0, 3.0, (5000, 4))
    y = _categorical(special.softmax(z / 2.0, axis=1), seed=5)
    assert fit_temperature(y, z, logits=True) == pytest.approx(fit_temperature(y, special.softmax(z, axis=1)),
                                                                rel=1e-4)
    np.testing.assert_allclose(apply_temperature(z, 2.0, logits=True), special.softmax(z / 2.0, axis=1))


def test_binary_temperature_scaling_keeps_the_shape() -> None:
    z = np.random.default_rng(6).normal(0.0, 3.0, 20_000)
    y = _bernoulli(special.expit(z / 2.0), seed=7)
    p = special.expit(z)
    t = fit_temperature(y, p)
    assert t == pytest.approx(2.0, rel=0.05)
    assert fit_temperature(y, p[:, None]) == pytest.approx(t)
    assert fit_temperature(y, z, logits=True) == pytest.approx(t, rel=1e-4)
    assert apply_temperature(p, t).shape == (20_000,)
    assert apply_temperature(p[:, None], t).shape == (20_000, 1)
    np.testing.assert_allclose(apply_temperature(p, t), special.expit(z / t), atol=1e-9)


def test_temperature_one_is_the_identity() -> None:
    y, p = _tempered(n=200)
    np.testing.assert_allclose(apply_temperature(p, 1.0), p, atol=1e-12)
    b = p[:, 0]
    np.testing.assert_allclose(apply_temperature(b, 1.0), b, atol=1e-12)
    np.testing.assert_allclose(apply_temperature(b[:, None], 1.0), b[:, None], atol=1e-12)


def test_temperature_errors() -> None:
    y, p = _tempered(n=200)
    with pytest.raises(DeepfieldError, match="temperature: expected a finite T > 0"):
        apply_temperature(p, 0.0)
    with pytest.raises(DeepfieldError, match="fit_temperature: the best temperature lies at the search bound"):
        fit_temperature(np.argmax(p, axis=1), p)  # no mistakes: the NLL keeps falling as T → 0
    with pytest.raises(DeepfieldError, match="logits: contains NaN"):
        fit_temperature(y, np.full((200, 5), np.inf), logits=True)


# --- entropy and mutual information -------------------------------------------------------------

def test_entropy_of_certain_and_uniform_predictions() -> None:
    p = np.array([[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    np.testing.assert_allclose(predictive_entropy(p), [0.0, math.log(4)])
    np.testing.assert_allclose(predictive_entropy(np.array([0.0, 0.5, 1.0])), [0.0, math.log(2), 0.0])


def test_opposite_samples_give_entropy_and_mutual_information_log2() -> None:
    samples = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # (T=2, N=1, K=2)
    assert predictive_entropy(samples.mean(axis=0)) == pytest.approx([math.log(2)])
    assert mutual_information(samples) == pytest.approx([math.log(2)])


def test_identical_samples_have_no_mutual_information() -> None:
    p = np.random.default_rng(8).dirichlet(np.ones(3), size=50)
    np.testing.assert_allclose(mutual_information(np.stack([p] * 4)), 0.0, atol=1e-12)


def test_mutual_information_equals_the_hand_computed_binary_case() -> None:
    # samples p = 0.9 and 0.5 of class 1: mean 0.7
    def h(q: float) -> float:
        return -(q * math.log(q) + (1 - q) * math.log(1 - q))

    expected = h(0.7) - (h(0.9) + h(0.5)) / 2  # 0.61086 − (0.32508 + 0.69315) / 2 = 0.10175
    assert expected == pytest.approx(0.10175, abs=1e-5)
    for samples in (np.array([[0.9], [0.5]]), np.array([[[0.9]], [[0.5]]]), np.array([[[0.1, 0.9]], [[0.5, 0.5]]])):
        assert mutual_information(samples) == pytest.approx([expected])


def test_mutual_information_is_non_negative_and_at_most_the_entropy() -> None:
    samples = np.random.default_rng(9).dirichlet(np.full(5, 0.3), size=(10, 400))  # (T, N, K)
    mi = mutual_information(samples)
    assert mi.shape == (400,)
    assert np.all(mi >= 0) and mi.max() > 0.1
    assert np.all(mi <= predictive_entropy(samples.mean(axis=0)) + 1e-12)


def test_bad_samples_name_the_argument() -> None:
    with pytest.raises(DeepfieldError, match=r"samples: expected shape \(T, N\)"):
        mutual_information(np.full(4, 0.5))
    with pytest.raises(DeepfieldError, match="samples: each row must sum to 1"):
        mutual_information(np.full((2, 3, 4), 0.5))


# --- uncertainty flags mistakes -----------------------------------------------------------------

def test_misclassification_auroc_of_the_error_indicator_and_its_negation() -> None:
    y, p = _tempered(n=1000)
    wrong = (np.argmax(p, axis=1) != y).astype(np.float64)
    assert 0 < wrong.mean() < 1
    assert misclassification_auroc(y, p, wrong) == 1.0
    assert misclassification_auroc(y, p, -wrong) == 0.0
    assert 0.6 < misclassification_auroc(y, p, predictive_entropy(p)) < 1.0  # entropy is informative


def test_misclassification_auroc_is_nan_when_all_are_right_or_all_wrong() -> None:
    y, p = _tempered(n=100)
    predicted = np.argmax(p, axis=1)
    assert math.isnan(misclassification_auroc(predicted, p, predictive_entropy(p)))
    assert math.isnan(misclassification_auroc((predicted + 1) % 5, p, predictive_entropy(p)))
    with pytest.raises(DeepfieldError, match=r"uncertainty: expected shape \(100,\)"):
        misclassification_auroc(y, p, np.zeros(99))


# --- coverage -----------------------------------------------------------------------------------

def _binomial_tolerance(level: float, n: int) -> float:
    return 4.0 * math.sqrt(level * (1 - level) / n)


def test_gaussian_coverage_is_nominal_for_calibrated_sigma_and_low_for_too_small_sigma() -> None:
    rng = np.random.default_rng(10)
    n = 20_000
    mean, sigma = rng.normal(0.0, 5.0, n), rng.uniform(0.1, 2.0, n)
    y = rng.normal(mean, sigma)
    coverage = gaussian_interval_coverage(y, mean, sigma)
    assert set(coverage) == {"0.68", "0.95"}
    for level in (0.68, 0.95):
        assert coverage[f"{level:g}"] == pytest.approx(level, abs=_binomial_tolerance(level, n))
    narrow = gaussian_interval_coverage(y, mean, sigma / 2)
    for level in (0.68, 0.95):  # inside ±z·σ/2 of a N(0, σ): probability 2Φ(z/2) − 1
        expected = 2 * stats.norm.cdf(stats.norm.ppf((1 + level) / 2) / 2) - 1
        assert narrow[f"{level:g}"] == pytest.approx(expected, abs=_binomial_tolerance(expected, n))
        assert narrow[f"{level:g}"] < level - 0.1


def test_gaussian_coverage_on_a_hand_made_case() -> None:
    # z(0.68) = 0.9945 and z(0.95) = 1.960: offsets 0.5σ and 1.5σ and 2.5σ are inside both, one, none
    curve = gaussian_coverage_curve([0.5, 1.5, -2.5], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], levels=(0.68, 0.95))
    assert curve.nominal.tolist() == [0.68, 0.95]
    assert curve.observed == pytest.approx([1 / 3, 2 / 3])
    assert curve.n == 3


def test_gaussian_coverage_errors() -> None:
    with pytest.raises(DeepfieldError, match="sigma: must be > 0"):
        gaussian_interval_coverage([1.0], [1.0], [0.0])
    with pytest.raises(DeepfieldError, match=r"levels: expected one or more levels in \(0, 1\)"):
        gaussian_interval_coverage([1.0], [1.0], [1.0], levels=(0.5, 1.0))
    with pytest.raises(DeepfieldError, match=r"mean: expected shape \(2,\)"):
        gaussian_interval_coverage([1.0, 2.0], [1.0], [1.0, 1.0])


def test_pdf_coverage_is_nominal_when_truths_are_drawn_from_the_pdfs() -> None:
    rng = np.random.default_rng(11)
    n, edges = 5000, np.linspace(0.0, 3.0, 301)
    mu, sigma = rng.uniform(0.5, 2.5, n), rng.uniform(0.05, 0.2, n)
    pdf = np.diff(stats.norm.cdf((edges[None, :] - mu[:, None]) / sigma[:, None]), axis=1)
    pdf /= pdf.sum(axis=1, keepdims=True)
    # draw z from each binned PDF: a bin by its probability, then uniformly inside it
    bins = np.minimum((np.cumsum(pdf, axis=1) < rng.random((n, 1))).sum(axis=1), pdf.shape[1] - 1)
    z = edges[bins] + rng.random(n) * np.diff(edges)[bins]
    curve = pdf_coverage_curve(pdf, z, edges=edges)
    for level, observed in zip(curve.nominal, curve.observed):
        assert observed == pytest.approx(level, abs=_binomial_tolerance(level, n))
    assert pdf_interval_coverage(pdf, z, edges=edges).keys() == {"0.68", "0.95"}


def test_pdf_coverage_against_explicit_quantiles() -> None:
    # uniform PDF on [0, 1]: the 68 % interval is [0.16, 0.84], the 95 % one [0.025, 0.975]
    pdf = np.full((5, 10), 0.1)
    z = np.array([0.1, 0.2, 0.5, 0.83, 0.99])  # inside 68 %: no, yes, yes, yes, no; inside 95 %: all but 0.99
    coverage = pdf_interval_coverage(pdf, z, edges=np.linspace(0.0, 1.0, 11))
    assert coverage == pytest.approx({"0.68": 3 / 5, "0.95": 4 / 5})


def test_a_delta_pdf_covers_only_its_own_bin() -> None:
    centres = np.linspace(0.0, 3.0, 61)
    pdf = np.zeros((3, 61))
    pdf[:, 20] = 1.0  # all probability in the bin around z = 1.0
    assert pdf_interval_coverage(pdf, [2.0, 0.3, 5.0], centres=centres) == {"0.68": 0.0, "0.95": 0.0}
    assert pdf_interval_coverage(pdf, [1.0, 1.0, 1.0], centres=centres) == {"0.68": 1.0, "0.95": 1.0}


# --- error against uncertainty ------------------------------------------------------------------

def test_binned_rms_error_tracks_a_calibrated_sigma() -> None:
    rng = np.random.default_rng(12)
    sigma = np.exp(rng.uniform(math.log(0.1), math.log(2.0), 50_000))
    error = rng.normal(0.0, sigma)
    b = error_vs_uncertainty(error, sigma, n_bins=10)
    assert b.count.tolist() == [5000] * 10
    np.testing.assert_allclose(b.rms_error / b.uncertainty, 1.0, atol=0.05)
    assert b.spearman > 0.3
    over_confident = error_vs_uncertainty(2 * error, sigma, n_bins=10)
    np.testing.assert_allclose(over_confident.rms_error / over_confident.uncertainty, 2.0, atol=0.1)


def test_error_bins_have_equal_counts_and_follow_the_uncertainty() -> None:
    rng = np.random.default_rng(13)
    u, e = rng.random(103), rng.normal(size=103)
    b = error_vs_uncertainty(e, u, n_bins=10)
    assert b.count.sum() == 103 and b.count.max() - b.count.min() <= 1
    assert np.all(np.diff(b.edges) >= 0) and b.edges[0] == u.min() and b.edges[-1] == u.max()
    order = np.argsort(u)
    first = order[:b.count[0]]
    assert b.uncertainty[0] == pytest.approx(u[first].mean())
    assert b.rms_error[0] == pytest.approx(math.sqrt(np.mean(e[first] ** 2)))
    assert b.spearman == pytest.approx(stats.spearmanr(np.abs(e), u).statistic)
    with pytest.raises(DeepfieldError, match="n_bins: 104 bins for 103 objects"):
        error_vs_uncertainty(e, u, n_bins=104)


def test_constant_uncertainty_has_no_rank_correlation() -> None:
    b = error_vs_uncertainty(np.arange(10.0), np.ones(10), n_bins=2)
    assert math.isnan(b.spearman)
    assert json.loads(json.dumps(b.to_dict()))["spearman"] is None
