"""Photo-z metrics checked against formulas and closed forms computed here, independently."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from deepfield.analysis.photoz import (
    binned_photoz_metrics,
    crps,
    delta_z,
    outlier_fraction,
    pdf_bin_edges,
    pdf_point_estimates,
    photoz_metrics,
    pit,
    pit_uniformity,
    sigma_nmad,
)
from deepfield.errors import DeepfieldError

GRID = np.linspace(0.0, 3.0, 601)  # bin width 0.005


def _with_residuals(dz: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(z_true, z_phot)`` whose normalised residuals are ``dz``."""
    z_true = np.random.default_rng(seed).uniform(0.1, 2.0, len(dz))
    return z_true, z_true + dz * (1 + z_true)


def _gaussian_pdfs(mu: np.ndarray, sigma: float, edges: np.ndarray = GRID) -> np.ndarray:
    """``(N, n_bins)`` bin probabilities of N(mu_i, sigma)."""
    return np.diff(stats.norm.cdf((edges[None, :] - mu[:, None]) / sigma), axis=1)


def _gaussian_crps(mu: np.ndarray, sigma: float, z: np.ndarray) -> np.ndarray:
    """Closed-form CRPS of N(mu, sigma) at z (Gneiting & Raftery 2007)."""
    w = (z - mu) / sigma
    return sigma * (w * (2 * stats.norm.cdf(w) - 1) + 2 * stats.norm.pdf(w) - 1 / math.sqrt(math.pi))


def test_delta_z_is_the_normalised_residual() -> None:
    np.testing.assert_allclose(delta_z([0.0, 1.0], [0.1, 1.5]), [0.1, 0.25])


def test_sigma_nmad_of_a_gaussian_is_its_sigma() -> None:
    dz = np.random.default_rng(0).normal(0.003, 0.02, 200_000)
    m = photoz_metrics(*_with_residuals(dz))
    assert m.sigma_nmad == pytest.approx(0.02, rel=0.01)
    assert m.bias_median == pytest.approx(0.003, abs=2e-4)
    assert m.bias_mean == pytest.approx(np.mean(dz))
    assert sigma_nmad(dz) == pytest.approx(1.4826 * np.median(np.abs(dz - np.median(dz))))


def test_outlier_fractions_count_the_planted_outliers() -> None:
    dz = np.concatenate([np.full(4, 0.2), np.full(3, -0.3), np.full(8, 0.1), np.full(5, -0.07), np.full(80, 0.01)])
    m = photoz_metrics(*_with_residuals(dz))
    assert m.n == 100
    assert m.outlier_fractions == pytest.approx({0.15: 0.07, 0.05: 0.20})
    assert photoz_metrics(*_with_residuals(dz), outlier_thresholds=[0.25]).outlier_fractions == {0.25: 0.03}
    assert outlier_fraction(dz, 0.08) == pytest.approx(0.15)
    assert json.loads(json.dumps(m.to_dict()))["outlier_fractions"] == {"0.15": pytest.approx(0.07),
                                                                         "0.05": pytest.approx(0.2)}


def test_pit_of_calibrated_gaussians_is_uniform() -> None:
    rng = np.random.default_rng(1)
    mu = rng.uniform(0.5, 2.0, 3000)
    z_true = mu + 0.05 * rng.standard_normal(len(mu))
    u = pit(_gaussian_pdfs(mu, 0.05), z_true, edges=GRID)
    assert u.min() >= 0 and u.max() <= 1
    assert pit_uniformity(u).ks_pvalue > 0.01


def test_pit_of_overconfident_gaussians_is_u_shaped() -> None:
    rng = np.random.default_rng(2)
    mu = rng.uniform(0.5, 2.0, 3000)
    z_true = mu + 0.06 * rng.standard_normal(len(mu))
    result = pit_uniformity(pit(_gaussian_pdfs(mu, 0.02), z_true, edges=GRID), bins=10)
    middle = result.counts[3:7].mean()
    assert result.counts[0] > 2 * middle and result.counts[-1] > 2 * middle
    assert result.ks_pvalue < 1e-6
    assert result.counts.sum() == 3000 and result.edges[0] == 0 and result.edges[-1] == 1


def test_pit_is_the_cdf_at_the_truth_with_constant_density_in_bins() -> None:
    pdf = np.array([[1.0, 3.0, 0.0, 0.0]])  # normalised to [0.25, 0.75, 0, 0]
    edges = [0.0, 1.0, 2.0, 3.0, 4.0]
    assert pit(pdf, [0.5], edges=edges)[0] == pytest.approx(0.125)
    assert pit(pdf, [1.5], edges=edges)[0] == pytest.approx(0.625)
    assert pit(pdf, [-1.0], edges=edges)[0] == 0.0 and pit(pdf, [9.0], edges=edges)[0] == 1.0


def test_crps_of_a_delta_pdf() -> None:
    width = GRID[1] - GRID[0]
    centres = 0.5 * (GRID[1:] + GRID[:-1])
    z_true = centres[[100, 250, 400]]
    at_truth = np.zeros((3, len(centres)))
    at_truth[[0, 1, 2], [100, 250, 400]] = 1.0
    np.testing.assert_allclose(crps(at_truth, z_true, edges=GRID), width / 12)  # exact, not 0
    for shift in (-40, 7, 60):
        offset = np.roll(at_truth, shift, axis=1)
        delta = abs(shift) * width
        np.testing.assert_allclose(crps(offset, z_true, edges=GRID), delta, atol=width)


def test_crps_of_gaussians_matches_the_closed_form() -> None:
    rng = np.random.default_rng(3)
    mu = rng.uniform(0.5, 2.0, 200)
    z_true = mu + 0.1 * rng.standard_normal(len(mu))
    np.testing.assert_allclose(crps(_gaussian_pdfs(mu, 0.05), z_true, edges=GRID),
                               _gaussian_crps(mu, 0.05, z_true), rtol=2e-3, atol=2e-5)


def test_crps_matches_numerical_integration_on_an_uneven_grid() -> None:
    rng = np.random.default_rng(4)
    edges = np.cumsum(np.r_[0.2, rng.uniform(0.05, 0.3, 12)])
    pdf = rng.random((5, 12)) * (rng.random((5, 12)) > 0.3)
    pdf[:, 0] += 0.01
    z_true = np.array([edges[0] - 0.4, edges[3] + 0.01, 1.0, edges[-1], edges[-1] + 0.7])
    z = np.linspace(edges[0] - 1.0, edges[-1] + 1.0, 400_001)
    cum = np.concatenate([np.zeros((5, 1)), np.cumsum(pdf / pdf.sum(1, keepdims=True), axis=1)], axis=1)
    expected = [np.trapezoid((np.interp(z, edges, c) - (z >= t)) ** 2, z) for c, t in zip(cum, z_true)]
    np.testing.assert_allclose(crps(pdf, z_true, edges=edges), expected, atol=2e-5)


def test_point_estimates_of_a_gaussian_and_a_box() -> None:
    mu = np.array([0.8, 1.37])
    est = pdf_point_estimates(_gaussian_pdfs(mu, 0.05), edges=GRID)
    np.testing.assert_allclose(est.mean, mu, atol=1e-5)
    np.testing.assert_allclose(est.median, mu, atol=1e-5)
    np.testing.assert_allclose(est.mode, mu, atol=0.0026)
    box = pdf_point_estimates([[0.0, 2.0, 2.0, 0.0]], centres=[0.1, 0.2, 0.3, 0.4])
    assert (box.mean[0], box.median[0]) == pytest.approx((0.25, 0.25))
    skew = pdf_point_estimates([[0.2, 0.2, 0.6]], edges=[0.0, 1.0, 2.0, 3.0])
    assert skew.median[0] == pytest.approx(2.0 + 0.1 / 0.6)
    assert skew.mode[0] == 2.5 and skew.mean[0] == pytest.approx(0.2 * 0.5 + 0.2 * 1.5 + 0.6 * 2.5)


def test_peak_picks_the_window_of_most_probability_not_the_fullest_bin() -> None:
    edges = np.round(np.arange(0.0, 3.0001, 0.05), 10)
    pdf = np.zeros((1, len(edges) - 1))
    pdf[0, 6:14] = 0.7 / 8  # a broad bump, 0.7 spread evenly over [0.3, 0.7]
    pdf[0, 40] = 0.3  # a spike in [2.0, 2.05], the fullest bin
    est = pdf_point_estimates(pdf, edges=edges)
    assert est.mode[0] == pytest.approx(2.025)
    assert est.peak[0] == pytest.approx(0.5)  # the bump's median: its window holds 0.7
    assert est.peak_mean[0] == pytest.approx(0.5)  # the bump's mean; the spike is left out
    assert est.mean[0] == pytest.approx(0.7 * 0.5 + 0.3 * 2.025)  # where the whole PDF's mean falls
    mu = np.array([0.8, 1.37])
    gaussians = pdf_point_estimates(_gaussian_pdfs(mu, 0.05), edges=GRID)
    np.testing.assert_allclose(gaussians.peak, mu, atol=1e-3)
    np.testing.assert_allclose(gaussians.peak_mean, mu, atol=1e-3)


def test_bin_edges_from_centres() -> None:
    np.testing.assert_allclose(pdf_bin_edges(3, centres=[0.1, 0.2, 0.4]), [0.05, 0.15, 0.3, 0.5])
    np.testing.assert_allclose(pdf_bin_edges(2, edges=[0, 1, 3]), [0, 1, 3])


def test_binned_metrics_equal_the_metrics_of_each_bin() -> None:
    rng = np.random.default_rng(5)
    dz = rng.normal(0, 0.03, 3000) + (rng.random(3000) < 0.05) * 0.4
    z_true, z_phot = _with_residuals(dz)
    mag = rng.uniform(18, 24, 3000)
    mag[:10], mag[10:20], mag[20] = np.nan, 99.0, 24.0  # missing, sentinel, on the last edge
    edges = np.array([16.0, 18.0, 20.0, 22.0, 24.0])
    b = binned_photoz_metrics(z_true, z_phot, by=mag, edges=edges)
    assert b.count[0] == 0 and b.count.sum() == 2980
    np.testing.assert_allclose(b.centres, [17, 19, 21, 23])
    for i in range(1, 4):
        inside = (mag >= edges[i]) & ((mag < edges[i + 1]) | (i == 3) & (mag == 24.0))
        m = photoz_metrics(z_true[inside], z_phot[inside])
        assert b.count[i] == m.n
        assert (b.sigma_nmad[i], b.bias_median[i], b.bias_mean[i]) == pytest.approx(
            (m.sigma_nmad, m.bias_median, m.bias_mean))
        assert b.outlier_fractions[0.15][i] == pytest.approx(m.outlier_fractions[0.15])
    assert math.isnan(b.sigma_nmad[0])
    as_json = json.loads(json.dumps(b.to_dict(), allow_nan=False))
    assert as_json["sigma_nmad"][0] is None and as_json["count"][0] == 0


@pytest.mark.parametrize("call, match", [
    (lambda: delta_z([0.1, -1.0], [0.1, 0.2]), "must be > -1"),
    (lambda: delta_z([0.1, 0.2], [0.1]), r"expected shape \(2,\)"),
    (lambda: delta_z([0.1], [np.nan]), "NaN"),
    (lambda: pit(np.ones((2, 3)), [0.1, 0.2], edges=[0, 1, 2]), "has 3 bins but the grid gives 2"),
    (lambda: pit(np.ones((2, 3)), [0.1, 0.2]), "exactly one of edges"),
    (lambda: pit(-np.ones((1, 2)), [0.1], edges=[0, 1, 2]), ">= 0"),
    (lambda: pit(np.zeros((1, 2)), [0.1], edges=[0, 1, 2]), "row 0 has no probability"),
    (lambda: crps(np.ones(3), [0.1], edges=[0, 1, 2, 3]), r"expected shape \(1, n_bins\)"),
    (lambda: pdf_point_estimates(np.ones((1, 2)), centres=[0.2, 0.1]), "strictly increasing"),
])
def test_bad_inputs_give_one_clear_error(call, match: str) -> None:
    with pytest.raises(DeepfieldError, match=match):
        call()
