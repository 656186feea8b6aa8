"""The simulators: layouts, determinism, class balance, truth, noise, artefacts, photometry, atomic writes."""
from __future__ import annotations

import json
import math
import multiprocessing

import galsim
import h5py
import numpy as np
import pytest

from deepfield.data import simulate
from deepfield.data.simulate import (ARTEFACTS, CLASSES, add_bad_column, add_cosmic_rays, add_ghost, add_hot_pixels,
                                     add_satellite_trail, add_saturated_star, simulate_morphology, simulate_photoz,
                                     simulate_quality)
from deepfield.data.simulate.morphology import class_labels
from deepfield.data.simulate.photoz import LSST_DEPTHS, NON_DETECTION
from deepfield.data.simulate.seds import GALAXY_TEMPLATES, LSST_BANDS, MagnitudeTable, galaxy_sed
from deepfield.errors import DeepfieldError

N = 40


def read(path) -> dict[str, np.ndarray]:
    """Every dataset of an HDF5 file by its path."""
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, node: arrays.__setitem__(name, node[()]) if isinstance(node, h5py.Dataset) else None)
    return arrays


def assert_same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.fixture(scope="module")
def morph(tmp_path_factory):
    """The same small run written with two processes and with one."""
    folder = tmp_path_factory.mktemp("morph")
    two = simulate_morphology(N, folder / "two.h5", seed=7, workers=2, progress=False)
    one = simulate_morphology(N, folder / "one.h5", seed=7, workers=1, progress=False)
    return two, one


@pytest.fixture(scope="module")
def quality(tmp_path_factory):
    return simulate_quality(N, tmp_path_factory.mktemp("quality") / "q.h5", seed=7, workers=2, progress=False)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    path = simulate_photoz(5000, tmp_path_factory.mktemp("photoz") / "cat.h5", seed=3, progress=False)
    return read(path), path


# --- morphology ---------------------------------------------------------------------------------------------------

def test_morphology_layout(morph):
    with h5py.File(morph[0], "r") as f:
        images, labels = f["images"], f["labels"]
        assert images.shape == (N, 3, 64, 64) and images.dtype == np.float32
        assert list(images.attrs["bands"]) == ["g", "r", "i"]
        assert images.attrs["pixel_scale"] == pytest.approx(0.2)
        assert labels.shape == (N,) and labels.dtype == np.int64
        assert list(labels.attrs["classes"]) == list(CLASSES)
        expected = {"class", "sersic_n", "half_light_radius", "ellipticity", "position_angle", "snr", "bulge_fraction",
                    "flux_g", "flux_r", "flux_i", "psf_fwhm", "psf_beta", "sky_level", "redshift", "mag"}
        assert set(f["truth"]) == expected
        assert all(f["truth"][k].shape == (N,) and "unit" in f["truth"][k].attrs for k in expected)
        assert f.attrs["simulator"] == "morphology" and f.attrs["seed"] == 7
        config = json.loads(f.attrs["config"])
        assert config["n"] == N and config["bands"] == ["g", "r", "i"] and config["size"] == 64
        assert [c.decode() for c in f["truth/class"][()]] == [CLASSES[k] for k in labels[()]]
        assert np.isfinite(images[()]).all()


def test_same_seed_same_arrays_for_any_number_of_workers(morph):
    assert_same_arrays(read(morph[0]), read(morph[1]))


def test_different_seed_differs(morph, tmp_path):
    other = read(simulate_morphology(N, tmp_path / "other.h5", seed=8, workers=1, progress=False))
    assert not np.array_equal(other["images"], read(morph[0])["images"])


def test_classes_balanced(morph):
    counts = np.bincount(read(morph[0])["labels"], minlength=len(CLASSES))
    assert counts.tolist() == [N // len(CLASSES)] * len(CLASSES)
    uneven = np.bincount(class_labels(23, None, 0), minlength=len(CLASSES))
    assert uneven.sum() == 23 and uneven.max() - uneven.min() == 1


def test_class_proportions():
    counts = np.bincount(class_labels(100, {"spheroid": 3, "disk": 1}, 0), minlength=len(CLASSES))
    assert counts.tolist() == [75, 25, 0, 0, 0]
    with pytest.raises(DeepfieldError, match="morphology class"):
        class_labels(10, {"elliptical": 1.0}, 0)


def test_truth_is_sane(morph):
    data = read(morph[0])
    classes = np.array(CLASSES)[data["labels"]]
    truth = {k.removeprefix("truth/"): v for k, v in data.items() if k.startswith("truth/")}
    spheroids, points = classes == "spheroid", classes == "point"
    assert np.all(np.abs(truth["sersic_n"][spheroids] - 4.0) <= 0.5)
    assert np.all(truth["sersic_n"][classes == "disk"] == 1.0)
    assert np.all(truth["half_light_radius"][points] == 0.0)
    assert np.all(truth["half_light_radius"][~points] >= 0.3)
    assert np.all(truth["bulge_fraction"][spheroids] == 1.0)
    assert np.all((truth["ellipticity"] >= 0) & (truth["ellipticity"] < 1))
    assert np.all((truth["psf_fwhm"] >= 0.5) & (truth["psf_fwhm"] <= 1.1))
    assert np.all((truth["snr"] >= 20) & (truth["snr"] <= 200))
    flux = truth["flux_g"] + truth["flux_r"] + truth["flux_i"]
    assert np.allclose(10 ** (-0.4 * truth["mag"]), flux, rtol=1e-9)  # the magnitude of the summed electrons
    red = truth["flux_i"] / truth["flux_g"]
    assert np.median(red[spheroids]) > np.median(red[classes == "irregular"])  # red spheroids, blue knots


def test_measured_snr_matches_the_request(morph):
    """The band-summed matched-filter SNR, estimated from the noisy stamps and the known sky."""
    data = read(morph[0])
    coadd = data["images"].astype(np.float64).sum(axis=1)
    variance = 3 * data["truth/sky_level"]
    signal = np.sum(coadd**2, axis=(1, 2)) - coadd[0].size * variance
    ratio = np.sqrt(signal / variance) / data["truth/snr"]
    assert np.median(ratio) == pytest.approx(1.0, abs=0.03)
    assert np.all(np.abs(ratio[data["truth/snr"] > 30] - 1.0) < 0.2)


# --- artefacts ----------------------------------------------------------------------------------------------------

def _neighbour_contrast(image: np.ndarray, y: int, x: int) -> float:
    """(pixel - median of its 8 neighbours) / pixel."""
    patch = image[y - 1:y + 2, x - 1:x + 2].ravel()
    return float((patch[4] - np.median(np.delete(patch, 4))) / patch[4])


def test_cosmic_rays_are_sharper_than_the_psf():
    star = galsim.Moffat(beta=2.5, fwhm=0.5).drawImage(nx=64, ny=64, scale=0.2).array * 1000.0  # sharpest seeing
    hit = add_cosmic_rays(np.zeros((64, 64)), np.random.default_rng(1), amplitude=1000.0, count=(6, 6))
    ys, xs = np.nonzero(hit)
    assert len(ys) >= 6
    interior = (ys > 0) & (ys < 63) & (xs > 0) & (xs < 63)
    assert min(_neighbour_contrast(hit, y, x) for y, x in zip(ys[interior], xs[interior])) > 0.9
    peak = np.unravel_index(np.argmax(star), star.shape)
    assert _neighbour_contrast(star, *peak) < 0.6


def test_cosmic_rays_same_geometry_in_every_band():
    image = np.zeros((3, 32, 32), dtype=np.float32)
    hit = add_cosmic_rays(image, np.random.default_rng(2), amplitude=(10.0, 100.0))
    assert hit.dtype == np.float32 and not image.any()  # a new array; the input is untouched
    assert np.array_equal(hit[0], hit[1]) and np.array_equal(hit[1], hit[2]) and hit.any()


@pytest.mark.parametrize("seed", range(5))
def test_satellite_trail_is_a_straight_line_across_the_stamp(seed):
    trail = add_satellite_trail(np.zeros((64, 64)), np.random.default_rng(seed), amplitude=5.0)
    assert trail.max() == pytest.approx(5.0, rel=0.2)
    ys, xs = np.nonzero(trail > 0.5 * trail.max())
    points = np.stack([xs, ys], axis=1).astype(float)
    points -= points.mean(axis=0)
    _, spread, axes = np.linalg.svd(points, full_matrices=False)
    across = points @ axes[1]
    along = points @ axes[0]
    assert np.sqrt(np.mean(across**2)) < 1.0  # pixels hug a line
    assert np.ptp(along) > 60  # from edge to edge


def test_bad_column_is_constant_along_a_column():
    rng = np.random.default_rng(3)
    image = rng.normal(0.0, 1.0, (48, 48))
    for seed in range(10):
        bad = add_bad_column(image, np.random.default_rng(seed), value=-500.0)
        changed = np.argwhere(bad != image)
        assert len(np.unique(changed[:, 1])) == 1  # one column
        rows = changed[:, 0]
        assert np.all(bad[bad != image] == -500.0)
        assert np.array_equal(rows, np.arange(rows.min(), rows.max() + 1))  # contiguous
        assert rows.min() == 0 or rows.max() == 47  # reaches an edge


def test_hot_pixels():
    hot = add_hot_pixels(np.zeros((32, 32)), np.random.default_rng(4), value=1e4, count=(5, 5))
    assert np.sum(hot == 1e4) == 5 and np.sum(hot != 0) == 5


@pytest.mark.parametrize("seed", range(3))
def test_saturation_is_clipped_and_bleeds_along_columns(seed):
    image = np.random.default_rng(seed).normal(0.0, 10.0, (64, 64))
    sat = add_saturated_star(image, np.random.default_rng(seed), level=1000.0, fwhm=3.0, peak=(30.0, 30.0))
    assert sat.max() == 1000.0
    at_level = sat == 1000.0
    tallest_column = at_level.sum(axis=0).max()
    widest_row = at_level.sum(axis=1).max()
    assert tallest_column > 2 * widest_row  # the trail runs along columns


def test_ghost_is_faint_and_smooth():
    ghost = add_ghost(np.zeros((64, 64)), np.random.default_rng(5), amplitude=3.0)
    assert 0.0 <= ghost.min() and ghost.max() <= 4.5
    assert np.abs(np.diff(ghost, axis=0)).max() < 1.0 and np.abs(np.diff(ghost, axis=1)).max() < 1.0


# --- quality ------------------------------------------------------------------------------------------------------

def test_quality_layout_and_labels_match_flags(quality):
    with h5py.File(quality, "r") as f:
        assert f["images"].shape == (N, 3, 64, 64) and f["images"].dtype == np.float32
        assert list(f["labels"].attrs["classes"]) == ["clean", "spoiled"]
        assert list(f["artefacts"].attrs["names"]) == list(ARTEFACTS)
        flags = np.stack([f["artefacts"][name][()] for name in ARTEFACTS], axis=1)
        assert flags.dtype == bool
        labels = f["labels"][()]
        assert f.attrs["simulator"] == "quality"
    assert labels.dtype == np.int64 and labels.sum() == N // 2
    assert np.array_equal(labels, flags.any(axis=1))


def test_quality_galaxies_are_the_morphology_galaxies(quality, morph):
    clean = read(quality)
    galaxies = read(morph[0])
    spoiled = clean["labels"] == 1
    assert np.array_equal(clean["images"][~spoiled], galaxies["images"][~spoiled])
    assert all(not np.array_equal(a, b) for a, b in zip(clean["images"][spoiled], galaxies["images"][spoiled]))
    assert np.array_equal(clean["truth/class"], galaxies["truth/class"])


def test_quality_subset_of_artefacts(tmp_path):
    data = read(simulate_quality(10, tmp_path / "q.h5", artefacts=["cosmic_rays"], spoiled_fraction=1.0,
                                 workers=1, progress=False))
    assert data["artefacts/cosmic_rays"].all() and data["labels"].all()
    assert not any(data[f"artefacts/{name}"].any() for name in ARTEFACTS if name != "cosmic_rays")


# --- photo-z ------------------------------------------------------------------------------------------------------

def test_photoz_layout(catalogue):
    data, path = catalogue
    columns = {"id", "redshift", "template"} | {f"mag_{b}_{kind}" for b in LSST_BANDS for kind in ("lsst", "true")} \
        | {f"mag_err_{b}_lsst" for b in LSST_BANDS}
    assert {k.removeprefix("photometry/") for k in data} == columns
    assert all(v.shape == (5000,) for v in data.values())
    assert np.array_equal(data["photometry/id"], np.arange(5000))
    assert set(data["photometry/template"].astype(str)) == set(GALAXY_TEMPLATES)
    with h5py.File(path, "r") as f:
        assert f.attrs["simulator"] == "photoz" and f["photometry/mag_g_lsst"].attrs["unit"] == "mag"
    z = data["photometry/redshift"]
    assert z.min() >= 0.01 and z.max() <= 3.0 and 0.4 < np.median(z) < 1.2


def test_template_colours():
    table = MagnitudeTable.build({t: galaxy_sed(t) for t in GALAXY_TEMPLATES}, ["g", "r"], [0.3, 0.4, 0.5])
    g_minus_r = -np.diff(table.magnitudes(np.arange(4), 0.4), axis=1)[:, 0]
    assert np.all(np.diff(g_minus_r) < 0)  # E redder than Sbc, Scd, Im
    assert g_minus_r[0] - g_minus_r[3] > 0.8


def test_catalogue_follows_template_colours(catalogue):
    data, _ = catalogue
    colour = data["photometry/mag_g_lsst"] - data["photometry/mag_r_lsst"]
    template = data["photometry/template"].astype(str)
    near = (np.abs(data["photometry/redshift"] - 0.4) < 0.1) & (data["photometry/mag_r_lsst"] < 24)
    assert np.median(colour[near & (template == "E")]) > np.median(colour[near & (template == "Im")]) + 0.5


def test_errors_grow_with_magnitude_and_non_detections_are_sentinels(catalogue):
    data, _ = catalogue
    for band in LSST_BANDS:
        mag, err = data[f"photometry/mag_{band}_lsst"], data[f"photometry/mag_err_{band}_lsst"]
        true = data[f"photometry/mag_{band}_true"]
        missing = mag == NON_DETECTION
        assert np.array_equal(missing, err == NON_DETECTION)
        assert np.all(mag[~missing] <= LSST_DEPTHS[band] + 1e-9)
        assert np.all(true[missing] > LSST_DEPTHS[band] - 1.0)
        order = np.argsort(mag[~missing])
        assert np.all(np.diff(err[~missing][order]) >= 0)
        bright = ~missing & (mag < LSST_DEPTHS[band] - 2.5)  # SNR > 50: sigma_m = 1.0857 / SNR < 0.022
        assert np.all(err[bright] < 0.022)
        snr_5 = ~missing & (np.abs(mag - LSST_DEPTHS[band]) < 0.05)
        assert np.allclose(err[snr_5], 2.5 / math.log(10) / 5, rtol=0.06)
    assert (data["photometry/mag_u_lsst"] == NON_DETECTION).any()


def test_photoz_deterministic_and_stamps(tmp_path):
    one = read(simulate_photoz(30, tmp_path / "a.h5", seed=1, bands="gri", stamps=True, workers=1, progress=False))
    two = read(simulate_photoz(30, tmp_path / "b.h5", seed=1, bands=["g", "r", "i"], stamps=True, workers=2,
                               progress=False))
    assert_same_arrays(one, two)
    other = read(simulate_photoz(30, tmp_path / "c.h5", seed=2, bands="gri", progress=False))
    assert not np.array_equal(other["photometry/redshift"], one["photometry/redshift"])
    assert one["images"].shape == (30, 3, 32, 32) and one["images"].dtype == np.float32
    with h5py.File(tmp_path / "a.h5", "r") as f:
        assert f["images"].attrs["unit"] == "nJy" and list(f["images"].attrs["bands"]) == ["g", "r", "i"]
    true_flux = 10 ** (-0.4 * (one["photometry/mag_i_true"] - 31.4))
    bright = one["photometry/mag_i_true"] < 23
    measured = one["images"][:, 2].sum(axis=(1, 2))
    assert np.allclose(measured[bright], true_flux[bright], rtol=0.1)


def test_photoz_sizes_shrink_with_redshift(tmp_path):
    data = read(simulate_photoz(150, tmp_path / "s.h5", stamps=True, size=64, workers=1, progress=False))
    z, hlr = data["photometry/redshift"], data["photometry/half_light_radius"]
    assert np.median(hlr[z > 1.0]) < 0.7 * np.median(hlr[z < 0.4])


# --- atomic writes and arguments ----------------------------------------------------------------------------------

def test_no_temporary_files_left(morph, quality, catalogue):
    for path in (morph[0], quality, catalogue[1]):
        assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.skipif(
    multiprocessing.get_start_method() != "fork", reason="the patched function reaches workers only by fork"))])
def test_failure_mid_write_keeps_the_existing_file(tmp_path, monkeypatch, workers):
    """A failure while drawing (inline or in a worker process) leaves the old file and no temporary file."""
    target = simulate_morphology(6, tmp_path / "m.h5", workers=1, progress=False)
    before = target.read_bytes()
    draw = simulate.morphology.draw_object

    def failing(job, index, label, drawer):
        if index == 4:
            raise RuntimeError("disk full")
        return draw(job, index, label, drawer)

    monkeypatch.setattr(simulate.morphology, "draw_object", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        simulate_morphology(6, target, seed=1, workers=workers, progress=False)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.h5"]


@pytest.mark.parametrize("call, match", [
    (lambda p: simulate_morphology(0, p), "n must be"),
    (lambda p: simulate_morphology(5, p, bands="gx"), "bands"),
    (lambda p: simulate_morphology(5, p, snr=(50, 10)), "snr"),
    (lambda p: simulate_morphology(5, p, workers=0), "workers"),
    (lambda p: simulate_morphology(5, p.parent), "folder"),
    (lambda p: simulate_quality(5, p, artefacts=["dust"]), "artefact"),
    (lambda p: simulate_quality(5, p, spoiled_fraction=1.5), "spoiled_fraction"),
    (lambda p: simulate_photoz(5, p, mag_limit=12), "mag_limit"),
    (lambda p: simulate_photoz(5, p, depths={"q": 25}), "bands"),
])
def test_bad_arguments(tmp_path, call, match):
    with pytest.raises(DeepfieldError, match=match):
        call(tmp_path / "out.h5")
    assert list(tmp_path.iterdir()) == []
