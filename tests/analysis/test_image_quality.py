"""The denoise metrics on images built so that the answer is known."""
import math

import numpy as np
import pytest

from deepfield.analysis.image_quality import (KRON_FACTOR, aperture_fluxes, aperture_noise, flux_bias_scatter,
                                              image_quality, kron_radii, psnr, shape_errors, ssim)
from deepfield.errors import DeepfieldError


def galaxies(n=12, bands=2, size=32, seed=0):
    """(n, bands, size, size) elliptical Gaussians of known flux, centred at (size - 1) / 2, with a sky of 0."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    out = np.empty((n, bands, size, size))
    for i in range(n):
        q, theta, width = rng.uniform(0.5, 0.9), rng.uniform(0, np.pi), rng.uniform(2, 3)
        u, v = xx * np.cos(theta) + yy * np.sin(theta), -xx * np.sin(theta) + yy * np.cos(theta)
        profile = np.exp(-0.5 * ((u / width) ** 2 + (v / (q * width)) ** 2))
        out[i] = profile / profile.sum() * rng.uniform(500, 2000, bands)[:, None, None]
    return out


def centre(n, size=32):
    return np.full(n, (size - 1) / 2), np.full(n, (size - 1) / 2)


def test_identity_gives_infinite_psnr_ssim_one_and_no_bias():
    truth = galaxies()
    x, y = centre(len(truth))
    assert np.all(np.isinf(psnr(truth, truth)))
    np.testing.assert_allclose(ssim(truth, truth), 1.0)
    result = image_quality(truth, truth.copy(), truth + 1.0, x, y, np.full(len(truth), 6.0), bands=["g", "r"])
    assert math.isinf(result["psnr"]) and result["ssim"] == pytest.approx(1.0)
    assert result["flux_bias"] == 0.0 and result["flux_scatter"] == 0.0
    assert result["shape_e_rms"] == 0.0 and result["shape_failures"] == 0


def test_known_gaussian_noise_gives_the_expected_psnr():
    truth = galaxies(n=4, size=64)
    sigma = 0.01 * (truth.max(axis=(1, 2, 3)) - truth.min(axis=(1, 2, 3)))  # 1 % of each stamp's range
    noisy = truth + np.random.default_rng(1).normal(size=truth.shape) * sigma[:, None, None, None]
    values = psnr(truth, noisy)  # 40 dB; the MSE of 8192 pixels is known to 1.6 % (0.07 dB)
    np.testing.assert_allclose(values, 20 * np.log10(100.0), atol=0.25)
    assert values.mean() == pytest.approx(40.0, abs=0.12)


def test_known_flux_scale_gives_the_bias_and_no_scatter():
    truth = galaxies()
    x, y = centre(len(truth))
    radius = np.full(len(truth), 8.0)
    f_truth = aperture_fluxes(truth, x, y, radius)
    bias, scatter = flux_bias_scatter(aperture_fluxes(1.1 * truth, x, y, radius), f_truth)
    assert bias == pytest.approx(0.1) and scatter == pytest.approx(0.0, abs=1e-12)


def test_aperture_flux_of_a_constant_is_the_circle_area():
    ones = np.ones((1, 1, 41, 41))
    np.testing.assert_allclose(aperture_fluxes(ones, [20.0], [20.0], [5.0]), [[np.pi * 25]], rtol=1e-9)


def test_snr_gain_is_the_ratio_of_aperture_noises():
    """Noise of σ per pixel in the input and σ / 2 in the output: the aperture noise halves, the gain is 2."""
    truth = galaxies(n=400, bands=1, size=24, seed=2)
    rng = np.random.default_rng(3)
    noisy, output = truth + rng.normal(size=truth.shape), truth + 0.5 * rng.normal(size=truth.shape)
    x, y = centre(len(truth), 24)
    radius = np.full(len(truth), 4.0)
    sigma = aperture_noise(aperture_fluxes(noisy, x, y, radius), aperture_fluxes(truth, x, y, radius))
    assert sigma[0] == pytest.approx(np.sqrt(np.pi * 16), rel=0.1)  # σ √(pixels in the aperture)
    result = image_quality(truth, output, noisy, x, y, radius, bands=["r"])
    assert result["snr_gain"] == pytest.approx(2.0, rel=0.12)
    assert result["snr_gain_per_band"].keys() == {"r"}


def test_shape_error_of_a_known_shear_and_failures_counted():
    truth = galaxies(n=3, bands=1)
    rotated = np.swapaxes(truth, 2, 3)  # x <-> y: e1 changes sign, e2 stays
    errors = shape_errors(truth, rotated)
    assert errors["shape_failures"] == 0 and errors["shape_e_rms"] > 0.05
    blank = truth.copy()
    blank[1] = 0.0  # adaptive moments fail on an empty stamp: counted, not raised
    assert shape_errors(truth, blank)["shape_failures"] == 1


def test_mismatched_shapes_are_one_clear_error():
    with pytest.raises(DeepfieldError, match="does not match"):
        psnr(np.zeros((2, 1, 8, 8)), np.zeros((2, 1, 8, 9)))


def test_the_kron_radius_of_a_gaussian_and_of_an_exponential_disc_against_their_analytic_values():
    rows, columns = np.indices((161, 161))
    r = np.hypot(columns - 80.0, rows - 80.0)
    gaussian, disc = np.exp(-0.5 * (r / 4.0) ** 2), np.exp(-r / 5.0)
    stamps = np.stack([gaussian, disc])[:, None]  # (2, 1, 161, 161): both negligible at the edge
    radii = kron_radii(stamps, np.full(2, 80.0), np.full(2, 80.0))
    # first-moment radius: σ √(π/2) for a Gaussian, 2 h for an exponential of scale length h (sampled at
    # pixel centres: the disc's cusp costs 0.1 %)
    np.testing.assert_allclose(radii, [KRON_FACTOR * 4.0 * np.sqrt(np.pi / 2), KRON_FACTOR * 2 * 5.0], rtol=1.5e-3)
    small = kron_radii(np.ones((2, 1, 17, 17)), np.full(2, 8.0), np.full(2, 8.0))
    np.testing.assert_allclose(small, 8.0)  # a flat 17×17 stamp: 2.5 r_K is capped at the half-side
