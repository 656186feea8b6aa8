"""`simulate blends`'s Morpheus-style classes: the rule per source and the per-pixel class map against the truth."""
from __future__ import annotations

import galsim
import h5py
import numpy as np
import pytest

from deepfield.data.simulate.blends import read_blends, simulate_blends
from deepfield.data.simulate.galaxies import Component
from deepfield.data.simulate.morpheus import MORPHOLOGY_CLASSES, morphology_class, morphology_map
from deepfield.data.simulate.sources import Source
from deepfield.errors import DeepfieldError

SIZE = 24
SETTINGS = dict(size=SIZE, bands="r", seed=4, workers=1, progress=False)
POINT, IRREGULAR = MORPHOLOGY_CLASSES.index("point source"), MORPHOLOGY_CLASSES.index("irregular")


def source(kind, bulge_fraction):
    profile = Component(galsim.Gaussian(sigma=1.0), np.ones(1))
    return Source((profile,), kind, 22.0, np.ones(1), 0.5, 0.0, 0.0, 0.1, bulge_fraction)


def test_the_class_of_each_kind_of_source():
    assert [morphology_class(source(kind, fraction)) for kind, fraction in [
        ("star", 0.0), ("irregular", 0.0), ("spheroid", 1.0), ("disk", 0.3), ("disk", 0.5)]] == [
        POINT, IRREGULAR, 1, 2, 1]  # B/T 0.5 is bulge-dominated
    classes = np.array([[1, 4], [3, 0]])
    segmentation = np.array([[[0, 1], [2, 2]], [[1, 0], [0, 0]]])
    np.testing.assert_array_equal(morphology_map(segmentation, classes), [[[0, 1], [4, 4]], [[3, 0], [0, 0]]])


@pytest.fixture(scope="module")
def lone_star(tmp_path_factory):
    """A galaxy and a star 9 pixels apart (apart at any seeing): the star's pixels are its own."""
    return simulate_blends(6, tmp_path_factory.mktemp("morpheus") / "star.h5", min_sources=2, max_sources=2,
                           star_fraction=1.0, separation=(9, 9), separation_unit="pixels", mag_limit=21,
                           **SETTINGS)


def test_a_lone_stars_pixels_are_point_source_and_background_has_no_flux(lone_star):
    data = read_blends(lone_star)
    assert np.all(data.truth["morphology"][:, 1] == POINT) and np.all(data.truth["is_star"][:, 1])
    star = data.segmentation == 2
    assert star.any(axis=(1, 2)).all()
    assert np.all(data.morphology[star] == POINT)
    floor = h5py.File(lone_star)["segmentation"].attrs["threshold"]
    brightest = data.sources.sum(axis=2, dtype=np.float64).max(axis=1)  # the most flux any one source gives
    assert np.mean((data.morphology == 0) == (brightest <= floor)) > 0.999  # background where none (float32 files)
    assert np.all(brightest[data.morphology == 0] <= 1.001 * floor)


def test_the_class_map_agrees_with_the_truth_table(tmp_path):
    path = simulate_blends(8, tmp_path / "mixed.h5", star_fraction=0.3, galaxy_kinds=("spheroid", "disk", "irregular"),
                           **SETTINGS)
    data = read_blends(path)
    kinds = data.truth["morphology"]
    with h5py.File(path) as h5:
        assert list(h5["morphology"].attrs["classes"]) == list(MORPHOLOGY_CLASSES)
    for stamp, (labels, classes) in enumerate(zip(data.segmentation, data.morphology)):
        for k in range(data.n_sources[stamp]):
            assert np.all(classes[labels == k + 1] == kinds[stamp, k])
        assert np.all(classes[labels == 0] == 0)
    real = np.arange(kinds.shape[1]) < data.n_sources[:, None]
    assert np.array_equal(kinds[real] == POINT, data.truth["is_star"][real])
    galaxies = real & ~data.truth["is_star"]
    fractions = data.truth["bulge_fraction"][galaxies]
    assert np.all((kinds[galaxies] == 1) == (fractions >= 0.5)) and set(kinds[galaxies]) <= {1, 2, 3}
    assert np.all(kinds[~real] == 0)


def test_a_galaxy_kind_outside_the_recipes_is_one_line(tmp_path):
    with pytest.raises(DeepfieldError, match="unknown galaxy kind 'merger'"):
        simulate_blends(2, tmp_path / "b.h5", galaxy_kinds=("disk", "merger"), **SETTINGS)
