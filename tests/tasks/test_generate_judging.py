"""What a generate run's judging measures beyond the statistics: the sky noise of the stamps and its draw on a
VAE's samples, half-light radii, and the conditioning of samples against the stamps they were drawn for."""
import galsim
import numpy as np
import pytest
import torch

from deepfield.analysis.image_quality import half_light_radii
from deepfield.errors import DeepfieldError
from deepfield.models.presets.cvae import ConditionalVAE
from deepfield.models.presets.diffusion import Diffusion
from deepfield.tasks.generate import draw_stamps, sky_sigma
from deepfield.tasks.generate_judging import judge
from deepfield.tasks.prepared_info import GenerateInfo


def gaussian_stamps(n: int, sigmas, noise=(0.0, 0.0), size: int = 24, seed: int = 0) -> np.ndarray:
    """(n, 2, size, size) centred Gaussian galaxies of flux 1,000 (band 0) and 500 (band 1) and width ``sigmas[i]``
    pixels, drawn by GalSim, plus Gaussian noise of σ ``noise`` per band."""
    rng = np.random.default_rng(seed)
    stamps = np.empty((n, 2, size, size))
    for i in range(n):
        profile = galsim.Gaussian(sigma=float(sigmas[i]))
        for band, flux in enumerate((1000.0, 500.0)):
            image = profile.withFlux(flux).drawImage(nx=size, ny=size, scale=1.0).array
            stamps[i, band] = image + rng.normal(0.0, noise[band], image.shape)
    return stamps


def test_sky_sigma_is_the_spread_of_the_stamps_outer_frame_per_band():
    stamps = gaussian_stamps(60, np.full(60, 2.0), noise=(2.0, 5.0))
    assert sky_sigma(stamps) == pytest.approx([2.0, 5.0], rel=0.06)
    assert sky_sigma(gaussian_stamps(3, np.full(3, 2.0))) == pytest.approx([0.0, 0.0], abs=1e-6)  # no noise


def test_half_light_radii_match_galsim_profiles_and_refuse_nothing_to_measure():
    radii = half_light_radii(gaussian_stamps(3, [1.5, 2.0, 3.0]))
    # a Gaussian's hlr is sqrt(2 ln 2) σ; drawing integrates it over pixels and the aperture photometry takes each
    # pixel as uniform: each adds a box's variance, 1/12 pixel², to σ²
    widths = np.sqrt(np.array([1.5, 2.0, 3.0]) ** 2 + 2 / 12)
    assert radii == pytest.approx([galsim.Gaussian(sigma=s).half_light_radius for s in widths], rel=0.005)
    assert np.isnan(half_light_radii(-gaussian_stamps(1, [2.0]))).all()  # no positive flux: nothing to measure


def info_of(sigma):
    return GenerateInfo(bands=["g", "r", "i"], unit="e", sky_sigma=sigma)


def test_a_vae_draws_the_sky_noise_on_its_mean_and_a_diffusion_model_nothing():
    torch.manual_seed(0)
    vae = ConditionalVAE((3, 16, 16), latent_dim=4, filters=(4, 8)).eval()
    conditions = torch.zeros((400, 0))
    mean = draw_stamps(vae, info_of([1.0, 2.0, 4.0]), conditions, torch.Generator().manual_seed(5), noise=False)
    noisy = draw_stamps(vae, info_of([1.0, 2.0, 4.0]), conditions, torch.Generator().manual_seed(5))
    assert (noisy - mean).std(axis=(0, 2, 3)) == pytest.approx([1.0, 2.0, 4.0], rel=0.02)
    again = draw_stamps(vae, info_of([1.0, 2.0, 4.0]), conditions, torch.Generator().manual_seed(5))
    np.testing.assert_array_equal(noisy, again)  # seeded: the noise too
    np.testing.assert_array_equal(mean, draw_stamps(vae, info_of(None), conditions, torch.Generator().manual_seed(5)))
    diffusion = Diffusion((3, 16, 16), depth=1, filters=4, groups=2, timesteps=10).eval()
    plain = draw_stamps(diffusion, info_of([1.0, 2.0, 4.0]), conditions[:4], torch.Generator().manual_seed(5),
                        noise=False, steps=2)
    np.testing.assert_array_equal(plain, draw_stamps(diffusion, info_of([1.0, 2.0, 4.0]), conditions[:4],
                                                     torch.Generator().manual_seed(5), steps=2))


def test_conditioning_compares_each_sample_with_the_stamp_it_was_drawn_for(tmp_path):
    sigmas = np.linspace(1.5, 3.0, 24)
    held_out = gaussian_stamps(24, sigmas, noise=(0.5, 0.5), seed=1)
    bigger_and_brighter = 2.0 * gaussian_stamps(24, 1.1 * sigmas, noise=(0.25, 0.25), seed=2)
    judged = judge(bigger_and_brighter, held_out, held_out, ["g", "r"], tmp_path,
                   conditions=["half_light_radius", "mag", "sersic_n"], workers=1)
    conditioning = judged["conditioning"]
    assert set(conditioning) == {"half_light_radius", "mag"}  # sersic_n: not measured on a stamp
    assert conditioning["half_light_radius"]["kind"] == "relative"
    assert conditioning["half_light_radius"]["median_error"] == pytest.approx(0.10, abs=0.02)
    assert conditioning["mag"]["kind"] == "absolute"
    assert conditioning["mag"]["median_error"] == pytest.approx(-2.5 * np.log10(2.0), abs=0.01)
    assert judged["wasserstein"]["statistics"]["flux_g"]["w1"] > 1  # twice as bright: far off
    for figure in ("statistic_distributions.png", "power_spectra.png", "memorisation.png"):
        assert (tmp_path / figure).stat().st_size > 0


def test_samples_of_another_shape_are_refused(tmp_path):
    with pytest.raises(DeepfieldError, match=r"samples \(2, 24, 24\) and held-out stamps \(2, 16, 16\) differ"):
        judge(np.zeros((4, 2, 24, 24)), np.zeros((4, 2, 16, 16)), np.zeros((4, 2, 16, 16)), ["g", "r"], tmp_path)
