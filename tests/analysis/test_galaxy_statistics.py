"""Galaxy statistics against profiles whose answer is known: Sérsic concentrations, a sheared Gaussian's
ellipticity, band ratios as colours, white noise's flat power spectrum, and NaN for what cannot be measured."""
import galsim
import numpy as np
import pytest

from deepfield.analysis.galaxy_statistics import (MORPHOLOGY, galaxy_statistics, power_spectrum_k,
                                                  radial_power_spectrum, statistic_names)
from deepfield.errors import DeepfieldError

NOISE = 0.01
"""Sky noise of the test stamps: 2e-4 of an exponential's peak (hlr 3 px, flux 1000), so near noiseless
while statmorph still has a sky to measure against."""


def sersic(n: float, hlr: float, size: int, seed: int = 0, shift: tuple[float, float] = (0.0, 0.0),
           noise: float = NOISE) -> np.ndarray:
    """(size, size) a Sérsic profile of flux 1000 (pixel scale 1) plus Gaussian noise of sigma ``noise``."""
    profile = galsim.Sersic(n, half_light_radius=hlr).withFlux(1000.0).shift(*shift)
    image = profile.drawImage(nx=size, ny=size, scale=1.0).array.astype(np.float64)
    return image + np.random.default_rng(seed).normal(0.0, noise, image.shape)


def test_concentration_is_larger_for_de_vaucouleurs_than_exponential_and_near_the_literature():
    # more noise here: with less, the de Vaucouleurs wings lift statmorph's sky box above its noise (flag 2)
    stamps = np.stack([sersic(1, 5.0, 64, noise=0.1), sersic(4, 5.0, 64, noise=0.1)])[:, None]
    stats = galaxy_statistics(stamps, ["r"], pixel_scale=1.0)
    exponential, de_vaucouleurs = stats["concentration"]
    # Bershady et al. 2000, Conselice 2003: C = 2.7 for n = 1, 5.2 for n = 4 (integrated to infinity); within
    # 1.5 Petrosian radii and with the cusp in a few pixels statmorph measures ~4.1 for n = 4
    assert exponential == pytest.approx(2.7, abs=0.2)
    assert 3.9 < de_vaucouleurs < 5.5
    assert stats["gini"][1] > stats["gini"][0]  # light more concentrated in fewer pixels


def test_asymmetry_is_near_zero_for_a_symmetric_profile_and_large_for_a_lopsided_one():
    symmetric = sersic(1, 3.0, 32)
    lopsided = symmetric + 0.3 * (sersic(1, 1.5, 32, seed=1, shift=(4.0, 2.0)) - np.random.default_rng(1).normal(
        0.0, NOISE, symmetric.shape))  # a clump of 30 % of the flux off-centre, no extra noise
    stats = galaxy_statistics(np.stack([symmetric, lopsided])[:, None], ["r"], pixel_scale=1.0)
    assert abs(stats["asymmetry"][0]) < 0.02
    assert stats["asymmetry"][1] > 0.1


def test_hsm_ellipticity_and_size_of_a_sheared_gaussian_and_colours_of_band_ratios():
    g = 0.2
    image = galsim.Gaussian(sigma=3.0, flux=1000.0).shear(g1=g).drawImage(nx=32, ny=32, scale=1.0,
                                                                            method="no_pixel").array
    image = image + np.random.default_rng(0).normal(0.0, NOISE, image.shape)
    stamp = np.stack([image, 2.0 * image, 4.0 * image])[None]  # fluxes 1 : 2 : 4 in g, r, i
    stats = galaxy_statistics(stamp, ["g", "r", "i"], pixel_scale=0.2, morphology_band="r")
    assert list(stats) == statistic_names(["g", "r", "i"])
    assert stats["hsm_e"][0] == pytest.approx(2 * g / (1 + g**2), abs=2e-3)  # distortion of a shear g
    assert stats["hsm_sigma"][0] == pytest.approx(3.0 * 0.2, rel=2e-3)  # a shear keeps det(M)^(1/4)
    assert stats["flux_r"][0] == pytest.approx(2 * stats["flux_g"][0])
    assert stats["colour_g_r"][0] == pytest.approx(2.5 * np.log10(2)) == pytest.approx(stats["colour_r_i"][0])


def test_the_radial_power_spectrum_of_white_noise_is_flat():
    noise = np.random.default_rng(0).normal(size=(200, 32, 32))
    log_power = radial_power_spectrum(noise, 6)
    assert log_power.shape == (200, 6)
    mean = np.log10(np.mean(10**log_power, axis=0))
    np.testing.assert_allclose(mean, np.log10(1 / 32**2), atol=0.03)  # each mode 1/(H W) of the power
    edges, centres = power_spectrum_k((32, 32), 6)
    assert edges[0] == 0 and edges[-1] == 0.5 and np.allclose(np.diff(centres), 0.5 / 6)


def test_a_stamp_statmorph_cannot_measure_gets_nan_and_the_batch_goes_on():
    good = sersic(1, 3.0, 32)
    blank = np.zeros_like(good)
    noise = np.random.default_rng(2).normal(0.0, 1.0, good.shape)  # no source at the centre
    stats = galaxy_statistics(np.stack([good, blank, noise])[:, None], ["r"], pixel_scale=1.0)
    morphology = np.stack([stats[name] for name in MORPHOLOGY], axis=1)
    assert np.isfinite(morphology[0]).all()
    assert np.isnan(morphology[1:]).all()
    assert np.isnan(stats["hsm_e"][1]) and np.isnan(stats["log_power_0"][1])
    assert stats["flux_r"][1] == 0.0


def test_the_statistics_do_not_depend_on_the_number_of_processes():
    stamps = np.stack([sersic(1, hlr, 32, seed=k) for k, hlr in enumerate((3.0, 2.5))])[:, None]
    one, two = (galaxy_statistics(stamps, ["r"], 1.0, workers=w) for w in (1, 2))
    assert np.isfinite(one["gini"]).all()
    for name in one:
        np.testing.assert_array_equal(one[name], two[name])


@pytest.mark.parametrize("call, message", [
    (lambda: galaxy_statistics(np.zeros((2, 8, 8)), ["r"], 0.2), r"images: expected stamps \(N, C, H, W\)"),
    (lambda: galaxy_statistics(np.zeros((2, 2, 8, 8)), ["r"], 0.2), "2 bands but 1 band names"),
    (lambda: galaxy_statistics(np.zeros((2, 1, 8, 8)), ["r"], 0.0), "pixel_scale must be a positive number"),
    (lambda: galaxy_statistics(np.zeros((2, 1, 8, 8)), ["r"], 0.2, morphology_band="z"),
     "unknown morphology band 'z'; expected one of: r"),
    (lambda: galaxy_statistics(np.zeros((2, 1, 8, 8)), ["r"], 0.2, power_bins=5), "power_bins must be"),
    (lambda: radial_power_spectrum(np.zeros((8, 8))), r"expected images \(N, H, W\)"),
    (lambda: galaxy_statistics(np.zeros((2, 1, 8, 8)), ["r"], 0.2, threshold=0, power_bins=2),
     "threshold must be a positive"),
    (lambda: galaxy_statistics(np.zeros((2, 1, 8, 8)), ["r"], 0.2, max_flag=3, power_bins=2),
     "max_flag must be one of"),
])
def test_bad_shapes_and_values_are_refused_in_one_line(call, message):
    with pytest.raises(DeepfieldError, match=message) as caught:
        call()
    assert "\n" not in str(caught.value)
