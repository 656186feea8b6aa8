"""Template photometry: the least-squares amplitude of noisy stamps on a template, against its algebra."""
import numpy as np
import pytest

from deepfield.analysis.template_photometry import template_amplitudes, template_fluxes
from deepfield.errors import DeepfieldError


def galaxies(n: int = 3, bands: int = 2, side: int = 16) -> np.ndarray:
    """(n, bands, side, side) round Gaussian sources of different widths and fluxes (nJy per pixel)."""
    rows, columns = np.indices((side, side))
    r2 = (columns - side / 2) ** 2 + (rows - side / 2) ** 2
    width = np.linspace(1.5, 3.0, n)[:, None, None, None]
    flux = np.array([100.0, 300.0])[:bands][None, :, None, None] * np.arange(1, n + 1)[:, None, None, None]
    return flux * np.exp(-r2 / (2 * width**2)) / (2 * np.pi * width**2)


def test_a_template_of_the_truth_times_0_8_gets_amplitude_1_25_on_a_noise_free_stamp():
    truth = galaxies()
    np.testing.assert_allclose(template_amplitudes(truth, 0.8 * truth), 1.25)
    np.testing.assert_allclose(template_fluxes(truth, 0.8 * truth), truth)
    inner = np.zeros((16, 16), dtype=bool)
    inner[4:12, 4:12] = True  # a mask: the same amplitude from the core alone
    np.testing.assert_allclose(template_amplitudes(truth, 0.8 * truth, inner), 1.25)


def test_the_amplitudes_scatter_on_noisy_stamps_is_sigma_over_the_templates_norm():
    truth = galaxies(n=1, bands=2)
    sigma = 2.0
    rng = np.random.default_rng(0)
    noisy = truth + rng.normal(scale=sigma, size=(4000, *truth.shape[1:]))
    amplitudes = template_amplitudes(noisy, np.broadcast_to(truth, noisy.shape))
    expected = sigma / np.sqrt((truth[0] ** 2).sum(axis=(1, 2)))  # (C,)
    np.testing.assert_allclose(amplitudes.std(axis=0), expected, rtol=0.05)
    assert np.all(np.abs(amplitudes.mean(axis=0) - 1.0) < 4 * expected / np.sqrt(4000))  # unbiased


def test_a_template_without_a_shape_is_left_as_it_is():
    truth = galaxies(n=2, bands=1)
    template = truth.copy()
    template[0] = 0.0  # no light at all
    template[1] = -truth[1]  # no positive light
    np.testing.assert_array_equal(template_amplitudes(truth, template), 1.0)
    np.testing.assert_array_equal(template_fluxes(truth, template), template)
    assert np.all(template_amplitudes(truth, truth, np.zeros((16, 16), dtype=bool)) == 1.0)  # nothing to fit on


def test_the_residual_is_orthogonal_to_the_template():
    rng = np.random.default_rng(1)
    template = galaxies() + rng.normal(scale=0.1, size=(3, 2, 16, 16))
    noisy = galaxies() + rng.normal(scale=3.0, size=template.shape)
    residual = noisy - template_fluxes(noisy, template)
    np.testing.assert_allclose((residual * template).sum(axis=(2, 3)), 0.0, atol=1e-9 * np.abs(noisy).sum())


def test_stamps_of_other_shapes_are_refused():
    with pytest.raises(DeepfieldError, match=r"noisy \(3, 2, 16, 16\) and template \(3, 2, 8, 8\)"):
        template_amplitudes(galaxies(), galaxies(side=8))
    with pytest.raises(DeepfieldError, match="stamps"):
        template_amplitudes(np.ones((4, 4)), np.ones((4, 4)))
