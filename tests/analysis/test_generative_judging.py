"""Judging generated stamps: Wasserstein scores, Fréchet distances, conditioning and memorisation against
math (closed forms, shifts of known size) and against a copier and an honest "model" of a toy sky."""
import numpy as np
import pytest
import scipy.linalg
import torch

from deepfield.analysis.generative_judging import (classifier_frechet, conditioning_errors, frechet_distance,
                                                   frechet_gaussians, frechet_with_floor, memorisation,
                                                   normalised_pixels, wasserstein_score)
from deepfield.errors import DeepfieldError
from deepfield.models.conv import Conv2D
from deepfield.models.core import Dense, Flatten
from deepfield.models.sequential import Sequential


def test_w1_of_a_half_sigma_shift_is_a_half_after_standardising_and_zero_for_one_set_twice():
    rng = np.random.default_rng(0)
    heldout = {"a": rng.normal(0.0, 1.0, 4000), "b": rng.normal(10.0, 3.0, 4000)}
    samples = {"a": rng.normal(0.5, 1.0, 4000), "b": rng.normal(11.5, 3.0, 4000)}  # b: shifted by 0.5 sigma too
    score = wasserstein_score(samples, heldout)
    assert score["statistics"]["a"]["w1"] == pytest.approx(0.5, abs=0.05)
    assert score["statistics"]["b"]["w1"] == pytest.approx(0.5, abs=0.05)  # the units drop out
    assert score["mean_w1"] == pytest.approx(0.5, abs=0.05)
    same = wasserstein_score(heldout, heldout)
    assert same["mean_w1"] == 0.0 and all(row["w1"] == 0.0 for row in same["statistics"].values())


def test_nan_values_are_dropped_and_counted_and_a_constant_statistic_stays_out_of_the_mean():
    heldout = {"a": np.array([0.0, 1.0, 2.0, np.nan]), "flat": np.ones(4)}
    samples = {"a": np.array([np.nan, np.inf, 1.0]), "flat": np.ones(3)}
    score = wasserstein_score(samples, heldout)
    row = score["statistics"]["a"]
    assert (row["n_samples"], row["n_heldout"], row["dropped_samples"], row["dropped_heldout"]) == (1, 3, 2, 1)
    assert row["w1"] == pytest.approx(np.mean(np.abs([0.0, 1.0, 2.0] - np.float64(1.0))) / 1.0)  # held-out std 1
    assert np.isnan(score["statistics"]["flat"]["w1"])
    assert score["mean_w1"] == row["w1"]


def test_frechet_of_gaussians_matches_the_closed_forms():
    # commuting (diagonal) covariances: |dmu|^2 + sum (sqrt(a) - sqrt(b))^2
    mu1, mu2, a, b = np.array([0.0, 1.0]), np.array([1.0, -1.0]), np.array([1.0, 4.0]), np.array([4.0, 9.0])
    expected = 1.0 + 4.0 + (1.0 - 2.0) ** 2 + (2.0 - 3.0) ** 2
    assert frechet_gaussians(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)
    # general: Tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), computed another way
    s1 = np.array([[2.0, 0.8], [0.8, 1.0]])
    s2 = np.array([[1.0, -0.3], [-0.3, 3.0]])
    r1 = scipy.linalg.sqrtm(s1).real
    expected = np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(r1 @ s2 @ r1).real)
    assert frechet_gaussians(np.zeros(2), s1, np.zeros(2), s2) == pytest.approx(expected)
    assert frechet_gaussians(np.zeros(2), s1, np.zeros(2), s2) == pytest.approx(
        frechet_gaussians(np.zeros(2), s2, np.zeros(2), s1))
    assert frechet_gaussians([0.0], [[1.0]], [2.0], [[4.0]]) == pytest.approx(4.0 + 1.0)  # 1-D


def test_frechet_distance_of_samples_approaches_the_closed_form_is_symmetric_and_zero_for_one_set():
    rng = np.random.default_rng(1)
    a = rng.normal(0.0, 1.0, (20000, 3))
    b = rng.normal(0.0, 1.0, (20000, 3)) * [1.0, 2.0, 1.0] + [1.0, 0.0, 0.0]
    assert frechet_distance(a, b) == pytest.approx(1.0 + 1.0, rel=0.05)  # |dmu|^2 1 + (2 - 1)^2
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    singular = rng.normal(size=(5, 10))  # fewer samples than dimensions: rank-deficient covariances
    assert np.isfinite(frechet_distance(singular, rng.normal(size=(6, 10))))


def test_the_floor_is_small_and_a_shifted_model_is_above_it():
    rng = np.random.default_rng(2)
    heldout, good, shifted = rng.normal(size=(2000, 4)), rng.normal(size=(2000, 4)), rng.normal(1.0, 1.0, (2000, 4))
    ok, bad = frechet_with_floor(good, heldout), frechet_with_floor(shifted, heldout)
    assert ok["n"] == 1000 and ok["frechet_floor"] == bad["frechet_floor"] < 0.05
    assert ok["frechet"] < 0.05 and bad["frechet"] == pytest.approx(4.0, rel=0.1)  # |dmu|^2 = 4


def test_classifier_frechet_takes_the_layer_before_the_head():
    torch.manual_seed(0)
    model = Sequential([Conv2D(4, 3), Flatten(), Dense(8, activation="relu"), Dense(3)], input_shape=(1, 8, 8)).build()
    rng = np.random.default_rng(3)
    heldout, samples = (rng.normal(size=(40, 1, 8, 8)).astype(np.float32) for _ in range(2))
    result = classifier_frechet(model, samples, heldout, device="cpu")
    assert result["layer"] == "dense" and result["n"] == 20
    assert result["frechet"] >= 0 and result["frechet_floor"] >= 0
    brighter = classifier_frechet(model, samples + 3.0, heldout, device="cpu")
    assert brighter["frechet"] > 10 * result["frechet_floor"]


def test_conditioning_errors_give_the_median_relative_error_and_its_robust_scatter():
    rng = np.random.default_rng(4)
    hlr = rng.uniform(0.3, 1.5, 5000)
    measured = hlr * (1.1 + rng.normal(0.0, 0.05, hlr.size))
    e = rng.uniform(0.0, 0.5, 5000)
    table = conditioning_errors({"hlr": hlr, "e": e}, {"hlr": measured, "e": e + 0.02}, absolute={"e"})
    assert table["hlr"]["median_error"] == pytest.approx(0.1, abs=0.005)
    assert table["hlr"]["scatter"] == pytest.approx(0.05 / 1.0, rel=0.08)
    assert table["hlr"]["kind"] == "relative" and table["hlr"]["n"] == 5000
    assert table["e"]["kind"] == "absolute" and table["e"]["median_error"] == pytest.approx(0.02)
    with_gaps = conditioning_errors({"flux": np.array([0.0, 1.0, 2.0])}, {"flux": np.array([1.0, np.nan, 2.0])})
    assert with_gaps["flux"]["n"] == 1 and with_gaps["flux"]["dropped"] == 2


def toy_sky(n: int, seed: int, size: int = 16, noise: float = 0.05) -> np.ndarray:
    """(n, 1, size, size) elliptical Gaussian blobs of random flux, width, shape and position, with Gaussian
    noise of σ ``noise``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    stamps = np.empty((n, 1, size, size))
    for i in range(n):
        dx, dy = rng.uniform(-2, 2, 2)
        width, q, theta = rng.uniform(1.5, 4.0), rng.uniform(0.4, 1.0), rng.uniform(0, np.pi)
        u = (xx - dx) * np.cos(theta) + (yy - dy) * np.sin(theta)
        v = -(xx - dx) * np.sin(theta) + (yy - dy) * np.cos(theta)
        blob = np.exp(-0.5 * ((u / width) ** 2 + (v / (q * width)) ** 2))
        stamps[i, 0] = rng.uniform(50, 500) * blob / blob.sum() + rng.normal(0.0, noise, (size, size))
    return stamps


def test_memorisation_flags_a_copier_and_not_fresh_draws_from_the_same_sky():
    training, heldout, fresh = toy_sky(400, 0), toy_sky(200, 1), toy_sky(200, 2)
    copies = training[:200] + np.random.default_rng(3).normal(0.0, 0.01, training[:200].shape)
    space = [normalised_pixels(x) for x in (training, heldout, fresh, copies)]
    honest = memorisation(space[2], space[1], space[0])
    copier = memorisation(space[3], space[1], space[0])
    assert not honest.flagged and honest.fraction <= honest.limit
    assert copier.flagged and copier.fraction > 0.9
    np.testing.assert_array_equal(copier.closest[:, 1], copier.closest[:, 0])  # copies of training 0..199
    assert copier.closest.shape == (8, 2)
    assert copier.sample_distances[copier.closest[0, 0]] == copier.sample_distances.min()
    summary = copier.summary()
    assert summary["flagged"] is True and summary["n_samples"] == 200 and summary["threshold_distance"] > 0
    # the limit: q + z sqrt(q (1 - q) (1/N_s + 1/N_h))
    assert honest.limit == pytest.approx(0.01 + 3 * np.sqrt(0.01 * 0.99 * (1 / 200 + 1 / 200)))


def test_noise_free_samples_of_a_noisy_sky_look_like_copies_until_they_get_its_noise():
    """Why a VAE's samples are judged with the sky noise added (deepfield.tasks.generate.draw_stamps): its decoder
    mean is smooth, so it sits nearer some training stamp than a noisy unseen stamp does, and the test cries copy."""
    training, heldout = toy_sky(400, 0, noise=0.3), toy_sky(200, 1, noise=0.3)
    smooth = toy_sky(200, 2, noise=0.0)
    with_noise = smooth + np.random.default_rng(7).normal(0.0, 0.3, smooth.shape)
    assert memorisation(*(normalised_pixels(x) for x in (smooth, heldout, training))).flagged
    honest = memorisation(*(normalised_pixels(x) for x in (with_noise, heldout, training)))
    assert not honest.flagged and honest.fraction <= honest.limit


def test_a_model_copying_a_few_percent_of_its_samples_is_flagged():
    training, heldout, fresh = toy_sky(400, 0), toy_sky(300, 1), toy_sky(300, 2)
    fresh[:15] = training[:15]  # 5 % exact copies
    result = memorisation(*(normalised_pixels(x) for x in (fresh, heldout, training)))
    assert result.flagged and result.fraction >= 0.05


@pytest.mark.parametrize("call, message", [
    (lambda: wasserstein_score({"a": np.zeros((2, 2))}, {"a": np.zeros(2)}), r"samples\['a'\]: expected one value"),
    (lambda: wasserstein_score({"a": np.zeros(2)}, {"b": np.zeros(2)}), "statistics differ: \\['a', 'b'\\]"),
    (lambda: frechet_distance(np.zeros((4, 2)), np.zeros((4, 3))), "features of 2 and 3 dimensions"),
    (lambda: frechet_distance(np.zeros(4), np.zeros((4, 3))), r"expected features \(N, D\)"),
    (lambda: frechet_distance(np.full((4, 2), np.nan), np.zeros((4, 2))), "NaN or infinite"),
    (lambda: frechet_gaussians([0.0, 0.0], np.eye(3), [0.0, 0.0], np.eye(2)), "do not describe Gaussians"),
    (lambda: frechet_with_floor(np.zeros((3, 2)), np.zeros((8, 2))), "half as many samples"),
    (lambda: conditioning_errors({"a": np.zeros(3)}, {"a": np.zeros(4)}), "must be \\(N,\\) alike"),
    (lambda: memorisation(np.zeros((4, 2)), np.zeros((4, 2)), np.zeros((4, 3))), "have 2, 2 and 3 dimensions"),
    (lambda: memorisation(np.zeros((4, 2)), np.zeros((4, 2)), np.zeros((4, 2)), quantile=0.7), "quantile must be"),
])
def test_bad_shapes_are_refused_in_one_line(call, message):
    with pytest.raises(DeepfieldError, match=message) as caught:
        call()
    assert "\n" not in str(caught.value)
