"""`simulate blends`: determinism, counts and padding, sources summing to the blend, centroids, segmentation, CLI."""
from __future__ import annotations

import galsim
import h5py
import numpy as np
import pytest

from deepfield.data.images import Hdf5Images
from deepfield.data.simulate.blends import read_blends, segmentation, simulate_blends
from deepfield.errors import DeepfieldError

N, SIZE, SEED = 12, 32, 5
SETTINGS = dict(size=SIZE, bands="gri", seed=SEED, progress=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """2 to 4 sources with 2 and 1 processes; two well-separated bright galaxies; pixel separations."""
    folder = tmp_path_factory.mktemp("blends")
    return dict(two=simulate_blends(N, folder / "two.h5", workers=2, **SETTINGS),
                one=simulate_blends(N, folder / "one.h5", workers=1, **SETTINGS),
                pairs=simulate_blends(N, folder / "pairs.h5", min_sources=2, max_sources=2, star_fraction=0.0,
                                      separation=(3, 4), mag_limit=21, workers=1, **SETTINGS),
                pixels=simulate_blends(N, folder / "pixels.h5", min_sources=3, max_sources=3, star_fraction=1.0,
                                       separation=(4, 8), separation_unit="pixels", workers=1, **SETTINGS))


def test_same_seed_same_file_for_any_number_of_workers(files):
    with h5py.File(files["one"]) as one, h5py.File(files["two"]) as two:
        names = []
        one.visit(names.append)
        for name in names:
            if isinstance(one[name], h5py.Dataset):
                np.testing.assert_array_equal(one[name][()], two[name][()], err_msg=name)


def test_layout_counts_and_padding(files):
    data = read_blends(files["one"])
    assert data.images.shape == data.noiseless.shape == (N, 3, SIZE, SIZE)
    assert data.sources.shape == (N, 4, 3, SIZE, SIZE) and data.sources.dtype == np.float32
    assert data.segmentation.shape == (N, SIZE, SIZE) and data.segmentation.dtype == np.int64
    assert data.bands == ("g", "r", "i") and data.unit == "nJy" and data.noise_sigma.shape == (3,)
    assert np.all((data.n_sources >= 2) & (data.n_sources <= 4)) and len(set(data.n_sources)) > 1
    present = np.arange(4) < data.n_sources[:, None]
    assert np.all(data.sources[~present] == 0) and np.all(data.sources[present].sum(axis=(1, 2, 3)) > 0)
    for name in ("x", "y", "half_light_radius", "e1", "e2", "mag", "flux_g", "flux_r", "flux_i"):
        assert data.truth[name].shape == (N, 4), name
        assert np.all(np.isfinite(data.truth[name][present])) and np.all(np.isnan(data.truth[name][~present]))
    assert not data.truth["is_star"][~present].any() and not data.truth["is_star"][:, 0].any()
    assert data.truth["psf_fwhm"].shape == (N,)
    stars, hlr = data.truth["is_star"], data.truth["half_light_radius"]
    assert np.all(hlr[stars] == 0) and np.all(hlr[present] >= 0)
    np.testing.assert_array_equal(Hdf5Images(files["one"], images="noiseless").load()[0], data.noiseless)
    assert read_blends(files["one"], slice(3, 4)).sources.shape == (1, 4, 3, SIZE, SIZE)


def test_sources_sum_to_the_noiseless_blend_and_the_noise_is_recorded(files):
    data = read_blends(files["one"])
    np.testing.assert_allclose(data.sources.sum(axis=1), data.noiseless, rtol=1e-5, atol=1e-3)
    noise = (data.images - data.noiseless).astype(np.float64)
    pixels = N * SIZE * SIZE
    np.testing.assert_allclose(noise.std(axis=(0, 2, 3)), data.noise_sigma, rtol=4 / np.sqrt(2 * pixels))
    assert np.all(np.abs(noise.mean(axis=(0, 2, 3))) < 4 * data.noise_sigma / np.sqrt(pixels))


@pytest.mark.parametrize("name", ["one", "pairs", "pixels"])
def test_centroids_inside_the_stamp_at_the_first_moments(files, name):
    """The adaptive (Gaussian-weighted) first moments of every isolated source, away from the edges, sit at
    its recorded centre: unweighted ones would be pulled inwards by the Moffat wings the stamp cuts off."""
    data = read_blends(files[name])
    present = np.arange(data.sources.shape[1]) < data.n_sources[:, None]
    x, y = data.truth["x"][present], data.truth["y"][present]
    assert np.all((x >= 0) & (x <= SIZE - 1) & (y >= 0) & (y <= SIZE - 1))
    checked = 0
    for image, x0, y0 in zip(data.sources[present].sum(axis=1).astype(np.float64), x, y):
        moments = galsim.hsm.FindAdaptiveMom(galsim.Image(image), strict=False)
        assert moments.moments_status == 0
        if min(x0, y0, SIZE - 1 - x0, SIZE - 1 - y0) > 4 * moments.moments_sigma:
            centroid = moments.moments_centroid  # GalSim counts pixels from 1
            np.testing.assert_allclose([centroid.x - 1, centroid.y - 1], [x0, y0], atol=0.05)
            checked += 1
    assert checked >= len(x) / 3


def test_segmentation_follows_its_rule(files):
    with h5py.File(files["one"]) as h5:
        floor = h5["segmentation"].attrs["threshold"]
    data = read_blends(files["one"])
    np.testing.assert_allclose(floor, np.sqrt(np.sum(data.noise_sigma**2)))  # threshold 1 sigma of the band sum
    np.testing.assert_array_equal(segmentation(data.sources, floor), data.segmentation)
    coadd = data.sources.sum(axis=2)
    labelled = data.segmentation > 0
    assert np.all(data.segmentation <= data.n_sources[:, None, None])
    assert np.all(coadd.max(axis=1)[labelled] > floor) and np.all(coadd.max(axis=1)[~labelled] <= floor)


def test_two_well_separated_galaxies_each_own_their_brightest_pixel(files):
    data = read_blends(files["pairs"])
    assert np.all(data.n_sources == 2) and not data.truth["is_star"].any()
    coadd = data.sources.sum(axis=2)
    for stamp, labels in zip(coadd, data.segmentation):
        for k in range(2):
            peak = np.unravel_index(np.argmax(stamp[k]), stamp[k].shape)
            assert labels[peak] == k + 1


def test_stars_and_separations_in_pixels(files):
    data = read_blends(files["pixels"])
    stars, x, y = data.truth["is_star"], data.truth["x"], data.truth["y"]
    assert np.all(data.n_sources == 3) and np.all(stars[:, 1:]) and not stars[:, 0].any()
    distance = np.hypot(x[:, 1:] - x[:, :1], y[:, 1:] - y[:, :1])
    assert np.all((distance >= 4 - 1e-9) & (distance <= 8 + 1e-9))
    assert np.all(np.abs(data.truth["x"][:, 0] - (SIZE - 1) / 2) <= 0.5)


def test_bad_arguments(tmp_path):
    for kwargs, message in [(dict(min_sources=3, max_sources=2), r"min_sources \(3\) must be at most max_sources"),
                            (dict(separation_unit="arcsec"), "unknown separation unit 'arcsec'"),
                            (dict(star_fraction=1.5), "star_fraction must be a number in"),
                            (dict(max_sources=11), "max_sources must be an integer from 1 to 10")]:
        with pytest.raises(DeepfieldError, match=message):
            simulate_blends(2, tmp_path / "b.h5", **SETTINGS, **kwargs)
    assert not (tmp_path / "b.h5").exists()


def test_cli_writes_two_galaxy_blends_and_bad_options_are_one_line(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the command line in this process (tests/conftest.py), in tmp_path
    run = cli("simulate", "blends", "--n", "3", "--size", "24", "--min-sources", "2", "--max-sources", "2",
              "--out", "b.h5", "--workers", "1")
    assert run.returncode == 0, run.stderr
    assert "3 blends of 2 sources, g,r,i x 24x24" in run.stdout
    assert read_blends(tmp_path / "b.h5").sources.shape == (3, 2, 3, 24, 24)
    run = cli("simulate", "blends", "--n", "3", "--min-sources", "4", "--max-sources", "2", "--out", "c.h5")
    assert run.returncode == 2 and "min_sources (4) must be at most max_sources (2)" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not (tmp_path / "c.h5").exists()
