"""The classical denoisers: parameters chosen on the validation part, rows scored like the network's."""
import numpy as np

from deepfield.tasks.baselines.denoisers import FILTERS, GAUSSIAN_SIGMAS, SCORES, choose, denoise_baselines, gaussian


def blobs(n, seed, sigma=1.0, size=24):
    """(n, 1, size, size) round Gaussians of width 3 pixels and flux 400 (truth) and the same + N(0, sigma²)."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    profile = np.exp(-0.5 * (xx**2 + yy**2) / 9.0)
    truth = np.broadcast_to(400 * profile / profile.sum(), (n, 1, size, size)).copy()
    return truth + np.random.default_rng(seed).normal(scale=sigma, size=truth.shape), truth


def test_a_smooth_truth_chooses_the_widest_gaussian_and_a_sharp_one_the_narrowest():
    yy, xx = np.mgrid[:24, :24] - 11.5
    smooth = np.broadcast_to(10 * np.exp(-0.5 * (xx**2 + yy**2) / 100.0**2), (6, 1, 24, 24))
    noisy = smooth + np.random.default_rng(0).normal(size=smooth.shape)
    assert choose(gaussian, GAUSSIAN_SIGMAS, noisy, smooth) == max(GAUSSIAN_SIGMAS)
    spikes = np.zeros((6, 1, 24, 24))
    spikes[:, :, ::2, ::2] = 100.0  # structure at the pixel scale: any smoothing only hurts
    assert choose(gaussian, GAUSSIAN_SIGMAS, spikes, spikes) == min(GAUSSIAN_SIGMAS)


def test_rows_hold_the_noisy_input_then_each_filter_with_its_chosen_parameter():
    validation, test = blobs(8, seed=1), blobs(8, seed=2)
    apertures = np.tile([11.5, 11.5, 6.0], (8, 1))
    rows = denoise_baselines(validation, test, apertures, ["r"])
    assert [row["model"] for row in rows] == ["noisy input", *FILTERS]
    assert all(set(SCORES) <= set(row) for row in rows)
    noisy = rows[0]
    assert noisy["snr_gain"] == 1.0 and noisy["parameter"] == ""
    assert rows[1]["parameter"].startswith("sigma ") and rows[2]["parameter"].startswith("size ")
    assert all(row["psnr"] > noisy["psnr"] for row in rows[1:])  # smooth sources in white noise: every filter helps
