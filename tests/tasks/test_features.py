"""Classical feature extractors checked against scikit-image and against simulated galaxies."""
import numpy as np
import pytest
from scipy.special import gammaincinv
from skimage.data import camera
from skimage.feature import graycomatrix, hog

from deepfield.data.photometry import CleaningReport, Photometry
from deepfield.errors import DeepfieldError
from deepfield.tasks import features
from deepfield.tasks.features import FeatureSet, catalogue_features


def sersic(n: float, r_e: float, amplitude: float = 100.0, size: int = 32, axis_ratio: float = 0.7) -> np.ndarray:
    """An analytic Sérsic profile (H, W), ``amplitude`` at the half-light radius ``r_e`` pixels."""
    b = gammaincinv(2 * n, 0.5)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    r = np.hypot(x, y / axis_ratio)
    return amplitude * np.exp(-b * ((r / r_e) ** (1 / n) - 1))


def galaxies(count: int, rng: np.random.Generator, bands: int = 3) -> np.ndarray:
    """Noisy blobs of varied size and position, (count, bands, 32, 32) float32."""
    stamps = []
    for _ in range(count):
        blob = np.roll(sersic(rng.uniform(0.8, 3), rng.uniform(2, 5), rng.uniform(10, 50)),
                       rng.integers(-3, 4, 2), axis=(0, 1))
        stamps.append([blob * rng.uniform(0.5, 1.5) + rng.normal(0, 1, blob.shape) for _ in range(bands)])
    return np.asarray(stamps, dtype=np.float32)


def test_names_and_unknown_name():
    assert features.names() == ["colour_histogram", "hog", "morphology", "pixels", "sift_bovw", "texture"]
    with pytest.raises(DeepfieldError, match=r"unknown feature extractor 'hoog'; expected one of: .*hog"):
        features.get("hoog")
    with pytest.raises(DeepfieldError, match=r"feature extractor hog: bad options"):
        features.get("hog", cell=4)
    assert features.get("HOG", orientations=6).get_config()["orientations"] == 6


def test_every_extractor_rebuilds_from_its_config_and_rejects_bad_shapes():
    for name in features.names():
        extractor = features.get(name)
        assert features.get(name, **extractor.get_config()).get_config() == extractor.get_config()
        with pytest.raises(DeepfieldError, match=rf"features {name}: expected numeric images of shape"):
            extractor.extract(np.zeros((4, 32, 32), dtype=np.float32))


def test_hog_equals_skimage_on_one_band():
    image = camera()[100:164, 200:264].astype(np.float32) / 255.0
    options = {"orientations": 9, "pixels_per_cell": (8, 8), "cells_per_block": (2, 2), "block_norm": "L2-Hys"}
    result = features.get("hog", **options).extract(image[None, None])
    expected = hog(image.astype(np.float64), feature_vector=True, **options)
    assert result.values.shape == (1, expected.size) and len(result.names) == expected.size
    np.testing.assert_array_equal(result.values[0], expected)


def test_hog_each_band_concatenates_and_mean_averages():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 32, 32)).astype(np.float32)
    each = features.get("hog", pixels_per_cell=8, bands="each").extract(x)
    mean = features.get("hog", pixels_per_cell=8).extract(x)
    assert each.values.shape == (2, 3 * 324) and mean.values.shape == (2, 324)
    np.testing.assert_array_equal(each.values[1, 324:648], hog(x[1, 1].astype(np.float64), pixels_per_cell=(8, 8),
                                                                      cells_per_block=(2, 2)))
    np.testing.assert_array_equal(mean.values[0], hog(x[0].astype(np.float64).mean(axis=0), pixels_per_cell=(8, 8),
                                                             cells_per_block=(2, 2)))
    with pytest.raises(DeepfieldError, match=r"fewer than one block"):
        features.get("hog", pixels_per_cell=32).extract(x)


def test_pixels_flatten_and_downsample():
    x = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    flat = features.get("pixels").extract(x)
    np.testing.assert_array_equal(flat.values, x.reshape(2, -1))
    assert flat.names[:2] == ["pix_0_0_0", "pix_0_0_1"] and flat.values.dtype == np.float64
    half = features.get("pixels", downsample=2).extract(x)
    np.testing.assert_allclose(half.values[0, 0], x[0, 0, :2, :2].mean())
    assert half.values.shape == (2, 3 * 2 * 2)
    with pytest.raises(DeepfieldError, match=r"downsample=3 does not divide 4x4"):
        features.get("pixels", downsample=3).extract(x)


def test_colour_histogram_counts_every_pixel_once():
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(5, 3, 32, 32)) * 8).astype(np.float32)  # many values outside the range
    result = features.get("colour_histogram", bins=10).extract(x)
    assert result.values.shape == (5, 3 * 10 + 2 * 10)
    np.testing.assert_array_equal(result.values.reshape(5, 5, 10).sum(axis=2), 32 * 32)
    edges = np.linspace(-3, 10, 11)
    np.testing.assert_array_equal(result.values[0, 1:9], np.histogram(x[0, 0], bins=edges)[0][1:9])
    single = features.get("colour_histogram", density=True).extract(x[:, :1])
    assert single.values.shape == (5, 16) and np.allclose(single.values.sum(axis=1), 1.0)


def test_texture_of_a_constant_image():
    result = features.get("texture").extract(np.full((2, 3, 32, 32), 4.2, dtype=np.float32))
    values = dict(zip(result.names, result.values[0]))
    assert values["contrast_d1_a0"] == 0 and values["homogeneity_d4_a135"] == 1 and values["energy_d2_a90"] == 1
    assert result.values.shape == (2, 6 * 3 * 4) and not result.failed


def test_texture_matches_graycomatrix_on_quantised_levels():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, size=(1, 1, 32, 32)).astype(np.float32)
    extractor = features.get("texture", levels=8, distances=(1,), angles=(0.0,))
    levels = extractor.quantise(x[0, 0].astype(np.float64))
    assert levels.min() == 0 and levels.max() == 7
    matrix = graycomatrix(levels, [1], [0.0], levels=8, symmetric=True, normed=True)[:, :, 0, 0]
    i, j = np.indices(matrix.shape)
    result = extractor.extract(x)
    result = dict(zip(result.names, result.values[0]))
    assert result["contrast_d1_a0"] == pytest.approx((matrix * (i - j) ** 2).sum())


def test_sift_bag_of_words_is_fitted_only_by_fit():
    rng = np.random.default_rng(3)
    train, test = galaxies(12, rng), galaxies(4, rng)
    extractor = features.get("sift_bovw", words=8, seed=0)
    with pytest.raises(DeepfieldError, match=r"call fit\(training_images\) before extract"):
        extractor.extract(test)
    extractor.fit(train)
    centres = extractor.vocabulary.cluster_centers_.copy()
    result = extractor.extract(test)
    np.testing.assert_array_equal(extractor.vocabulary.cluster_centers_, centres)  # extract learns nothing
    keypoints = [len(d) for d in extractor.descriptors(test.astype(np.float64), "count")]
    np.testing.assert_array_equal(result.values.sum(axis=1), keypoints)  # counts, not fractions
    assert result.values.shape == (4, 8) and min(keypoints) > 0
    again = features.get("sift_bovw", words=8, seed=0).fit(train)
    np.testing.assert_array_equal(again.vocabulary.cluster_centers_, centres)  # seeded


def test_sift_flat_stamps_have_no_words():
    extractor = features.get("sift_bovw", words=4).fit(galaxies(6, np.random.default_rng(4)))
    flat = np.zeros((2, 3, 32, 32), dtype=np.float32)
    counts = extractor.extract(flat)
    assert counts.values.sum() == 0 and not counts.failed
    extractor.normalise = True
    fractions = extractor.extract(flat)
    assert np.isnan(fractions.values).all() and [i for i, _ in fractions.failed] == [0, 1]
    assert "no SIFT keypoints" in fractions.failed[0][1]
    with pytest.raises(DeepfieldError, match=r"fewer than words=50"):
        features.get("sift_bovw").fit(flat)


def test_morphology_tells_sersic_profiles_apart():
    rng = np.random.default_rng(5)
    x = np.stack([sersic(n, 2.5, 50.0) + rng.normal(0, 1, (32, 32)) for n in (1.0, 4.0)])[:, None].astype(np.float32)
    result = features.get("morphology", sky=0.0).extract(x)
    assert not result.failed, result.failed
    disk, spheroid = (dict(zip(result.names, row)) for row in result.values)
    assert spheroid["concentration"] > disk["concentration"] and spheroid["gini"] > disk["gini"]
    assert disk["sersic_n"] == pytest.approx(1.0, rel=0.3) and spheroid["sersic_n"] == pytest.approx(4.0, rel=0.3)
    assert abs(disk["asymmetry"]) < 0.1 and result.names[-1] == "sersic_n"
    estimated = features.get("morphology").extract(x)  # sky estimated per stamp: same ordering
    assert estimated.values[1, 0] > estimated.values[0, 0] and estimated.values[1, 3] > estimated.values[0, 3]


def test_morphology_reports_blank_and_noise_stamps():
    rng = np.random.default_rng(6)
    x = np.stack([np.zeros((3, 32, 32)), rng.normal(0, 1, (3, 32, 32)),
                  np.full((3, 32, 32), np.nan), np.repeat(sersic(1.0, 3.0)[None], 3, 0) + rng.normal(0, 1, (3, 32, 32))])
    result = features.get("morphology", band=1).extract(x.astype(np.float32))
    reasons = dict(result.failed)
    assert sorted(reasons) == [0, 1, 2]
    assert reasons[0].startswith("flat stamp") and "no source above 3 sigma" in reasons[1]
    assert reasons[2] == "no finite pixels"
    assert np.isnan(result.values[:3]).all() and np.isfinite(result.values[3]).all()
    with pytest.raises(DeepfieldError, match=r"band 5 is not in stamps with 3 bands"):
        features.get("morphology", band=5).extract(x)


def test_catalogue_features_are_magnitudes_then_colours():
    magnitudes = np.array([[20.0, 19.5, 19.2], [22.0, 21.0, 20.4]], dtype=np.float32)
    report = CleaningReport("test", 2, (), {}, 0, 0, 0, ())
    photometry = Photometry(magnitudes, np.full_like(magnitudes, 0.05), np.ones_like(magnitudes, bool),
                            magnitudes[:, :-1] - magnitudes[:, 1:], ("g", "r", "i"), (("g", "r"), ("r", "i")),
                            np.arange(2), report)
    result = catalogue_features(photometry)
    assert isinstance(result, FeatureSet) and result.names == ["g", "r", "i", "g-r", "r-i"]
    np.testing.assert_allclose(result.values[1], [22.0, 21.0, 20.4, 1.0, 0.6], rtol=1e-6)
    assert catalogue_features(photometry, errors=True).names[-1] == "i_err" and not result.failed
