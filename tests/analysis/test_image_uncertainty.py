"""Per-pixel and aperture-flux σ of image outputs and their coverage, against the Gaussian's own numbers."""
import numpy as np
import pytest
from scipy import stats

from deepfield.analysis.image_quality import aperture_fluxes
from deepfield.analysis.image_uncertainty import (CURVE_LEVELS, aperture_flux_uncertainty, aperture_weights,
                                                  coverage_curve, fit_interval_widths, fit_sigma_scale,
                                                  interval_coverage)
from deepfield.errors import DeepfieldError

N = 200_000
TOLERANCE = 4 * np.sqrt(0.25 / N)
"""Four binomial standard deviations at worst (p = 0.5) for N entries: 0.0045."""


def gaussian_stamps(seed=0, shape=(500, 2, 10, 20)):
    """Means, per-pixel σ (0.5 to 3) and truths drawn from N(mean, σ²): ``shape`` has N entries."""
    rng = np.random.default_rng(seed)
    mean, sigma = rng.normal(size=shape) * 10, rng.uniform(0.5, 3.0, size=shape)
    return mean + sigma * rng.normal(size=shape), mean, sigma


def test_intervals_of_the_right_sigma_cover_their_level():
    truth, mean, sigma = gaussian_stamps()
    curve = coverage_curve(truth, mean, sigma)
    assert curve.n == N and tuple(curve.nominal) == CURVE_LEVELS
    np.testing.assert_allclose(curve.observed, curve.nominal, atol=TOLERANCE)
    coverage = interval_coverage(truth, mean, sigma)
    assert coverage["68"] == pytest.approx(0.68, abs=TOLERANCE) and coverage["95"] == pytest.approx(0.95, abs=TOLERANCE)


def test_a_sigma_twice_too_small_covers_2_phi_of_half_z_minus_1_and_the_fitted_scale_is_2():
    truth, mean, sigma = gaussian_stamps(seed=1)
    curve = coverage_curve(truth, mean, sigma / 2)
    expected = 2 * stats.norm.cdf(stats.norm.ppf(0.5 * (1 + curve.nominal)) / 2) - 1  # 0.381 at 0.68, 0.673 at 0.95
    np.testing.assert_allclose(curve.observed, expected, atol=TOLERANCE)
    assert fit_sigma_scale(truth, mean, sigma / 2) == pytest.approx(2.0, rel=0.01)
    assert fit_sigma_scale(truth, mean, sigma) == pytest.approx(1.0, rel=0.01)


def test_zero_sigma_covers_only_exact_values_and_bad_input_is_refused():
    curve = coverage_curve(np.array([1.0, 2.0]), np.array([1.0, 2.5]), np.zeros(2), levels=[0.5])
    assert curve.observed[0] == 0.5
    with pytest.raises(DeepfieldError, match="one shape"):
        coverage_curve(np.zeros(3), np.zeros(3), np.ones(2))
    with pytest.raises(DeepfieldError, match="finite and ≥ 0"):
        coverage_curve(np.zeros(2), np.zeros(2), -np.ones(2))


def test_aperture_weights_are_the_exact_circle_of_the_image_quality_fluxes():
    rng = np.random.default_rng(2)
    images = rng.normal(size=(3, 2, 16, 18))
    x, y, r = np.array([8.0, 3.5, 9.2]), np.array([7.0, 8.0, 7.7]), np.array([4.0, 2.5, 6.0])
    w = aperture_weights((16, 18), x, y, r)
    assert w.shape == (3, 16, 18) and w.min() >= 0 and w.max() == 1.0
    assert w[0].sum() == pytest.approx(np.pi * 16, rel=1e-6)  # a circle inside the stamp
    flux = aperture_flux_uncertainty(w, images).flux
    np.testing.assert_allclose(flux, aperture_fluxes(images, x, y, r), rtol=1e-10)


def test_flux_sigma_adds_independent_or_coherent_pixel_errors_and_the_spread_of_the_draws():
    w = aperture_weights((16, 16), [7.5, 7.5], [7.5, 7.5], [5.0, 3.0])
    mean, pixel_sigma = np.ones((2, 1, 16, 16)), np.full((2, 1, 16, 16), 2.0)
    independent = aperture_flux_uncertainty(w, mean, aleatoric=pixel_sigma)
    coherent = aperture_flux_uncertainty(w, mean, aleatoric=pixel_sigma, pixel_errors="coherent")
    np.testing.assert_allclose(independent.aleatoric[:, 0], 2.0 * np.sqrt((w**2).sum(axis=(1, 2))))
    np.testing.assert_allclose(coherent.aleatoric[:, 0], 2.0 * w.sum(axis=(1, 2)))
    offsets = np.array([-1.0, 0.0, 1.0, 2.0])  # each draw shifts every pixel: the flux by offset · Σw
    draws = mean[None] + offsets[:, None, None, None, None]
    both = aperture_flux_uncertainty(w, mean, draws=draws, aleatoric=pixel_sigma)
    np.testing.assert_allclose(both.epistemic[:, 0], offsets.std() * w.sum(axis=(1, 2)))
    np.testing.assert_allclose(both.total, np.hypot(both.epistemic, both.aleatoric))
    with pytest.raises(DeepfieldError, match="pixel_errors must be one of independent, coherent"):
        aperture_flux_uncertainty(w, mean, aleatoric=pixel_sigma, pixel_errors="diagonal")


def test_independent_pixel_noise_gives_flux_intervals_of_the_right_coverage():
    rng = np.random.default_rng(3)
    n = 20_000
    truth = np.zeros((n, 1, 12, 12))
    sigma = rng.uniform(0.5, 2.0, size=(n, 1, 1, 1)) * np.ones((1, 1, 12, 12))
    output = truth + sigma * rng.normal(size=truth.shape)
    w = aperture_weights((12, 12), np.full(n, 5.5), np.full(n, 5.5), np.full(n, 4.0))
    flux = aperture_flux_uncertainty(w, output, aleatoric=sigma)
    coverage = interval_coverage(np.zeros((n, 1)), flux.flux, flux.total)
    tolerance = 4 * np.sqrt(0.25 / n)
    assert coverage["68"] == pytest.approx(0.68, abs=tolerance) and coverage["95"] == pytest.approx(0.95, abs=tolerance)


def test_widths_fitted_on_one_half_of_heavy_tailed_errors_cover_their_levels_on_the_other():
    rng = np.random.default_rng(4)
    mean, sigma = np.zeros(2 * N), rng.uniform(0.5, 3.0, 2 * N)
    truth = sigma * rng.standard_t(3, 2 * N)  # Student's t: a single σ factor cannot fix 68 % and 95 % at once
    widths = fit_interval_widths(truth[:N], mean[:N], sigma[:N])
    np.testing.assert_allclose(widths, stats.t.ppf([0.84, 0.975], 3), rtol=0.03)
    coverage = interval_coverage(truth[N:], mean[N:], sigma[N:], widths)
    assert coverage["68"] == pytest.approx(0.68, abs=TOLERANCE) and coverage["95"] == pytest.approx(0.95, abs=TOLERANCE)
    np.testing.assert_allclose(fit_interval_widths(*gaussian_stamps(seed=5)), [0.994, 1.960], atol=0.02)
    with pytest.raises(DeepfieldError, match="one per level"):
        coverage_curve(truth, mean, sigma, levels=[0.5], widths=[1.0, 2.0])
