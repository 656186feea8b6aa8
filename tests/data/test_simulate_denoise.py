"""`simulate denoise`: determinism, layout, the noise of inputs and targets, the sharper target PSF, the CLI."""
from __future__ import annotations

import galsim
import h5py
import numpy as np
import pytest

from deepfield.data.images import Hdf5Images
from deepfield.data.simulate.denoise import read_denoise, simulate_denoise
from deepfield.data.simulate.sources import visit_sigma
from deepfield.errors import DeepfieldError

N, SIZE, SEED = 12, 32, 3
SETTINGS = dict(size=SIZE, bands="gri", seed=SEED, psf_fwhm=(0.7, 0.9), progress=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Noise-free targets with 2 and 1 processes, deep targets, and targets through a sharper PSF: same galaxies."""
    folder = tmp_path_factory.mktemp("denoise")
    return dict(two=simulate_denoise(N, folder / "two.h5", workers=2, **SETTINGS),
                one=simulate_denoise(N, folder / "one.h5", workers=1, **SETTINGS),
                deep=simulate_denoise(N, folder / "deep.h5", target="deep", visits=1, deep_visits=16, workers=1,
                                      **SETTINGS),
                sharp=simulate_denoise(N, folder / "sharp.h5", target_psf=0.3, workers=1, **SETTINGS))


def test_same_seed_same_file_for_any_number_of_workers(files):
    with h5py.File(files["one"]) as one, h5py.File(files["two"]) as two:
        names = []
        one.visit(names.append)
        for name in names:
            if isinstance(one[name], h5py.Dataset):
                np.testing.assert_array_equal(one[name][()], two[name][()], err_msg=name)
            assert dict(one[name].attrs).keys() == dict(two[name].attrs).keys()


def test_layout_and_reader(files):
    data = read_denoise(files["one"])
    assert data.inputs.shape == data.targets.shape == (N, 3, SIZE, SIZE)
    assert data.inputs.dtype == data.targets.dtype == np.float32
    assert data.bands == ("g", "r", "i") and data.unit == "nJy" and data.pixel_scale == 0.2
    np.testing.assert_allclose(data.noise_sigma, visit_sigma("gri", 1, 0.2)[1])
    assert np.all(data.target_noise_sigma == 0) and np.isnan(data.target_psf_fwhm)
    for name in ("flux_g", "flux_r", "flux_i", "half_light_radius", "e1", "e2", "x", "y", "aperture_radius",
                 "psf_fwhm", "kind", "mag"):
        assert data.truth[name].shape == (N,), name
    assert set(data.truth["kind"]) <= {"spheroid", "disk", "irregular"}
    assert np.all((data.truth["psf_fwhm"] >= 0.7) & (data.truth["psf_fwhm"] <= 0.9))
    assert np.all(data.truth["half_light_radius"] <= SIZE / 8 + 1e-9)
    assert np.all(np.hypot(data.truth["e1"], data.truth["e2"]) < 1)
    assert np.all((data.truth["aperture_radius"] > 0) & (data.truth["aperture_radius"] <= (SIZE - 1) / 2))
    for name, array in (("images", data.inputs), ("targets", data.targets)):  # the data layer reads them too
        np.testing.assert_array_equal(Hdf5Images(files["one"], images=name).load()[0], array)
    part = read_denoise(files["one"], slice(2, 5))
    np.testing.assert_array_equal(part.targets, data.targets[2:5])
    assert part.truth["mag"].shape == (3,)


def test_noise_free_target_is_the_input_minus_its_noise(files):
    data = read_denoise(files["one"])
    noise = (data.inputs - data.targets).astype(np.float64)
    pixels = N * SIZE * SIZE
    np.testing.assert_allclose(noise.std(axis=(0, 2, 3)), data.noise_sigma, rtol=4 / np.sqrt(2 * pixels))
    assert np.all(np.abs(noise.mean(axis=(0, 2, 3))) < 4 * data.noise_sigma / np.sqrt(pixels))


def test_truth_fluxes_centres_and_the_target_agree(files):
    data = read_denoise(files["one"])
    light = data.targets.sum(axis=(2, 3))
    flux = np.stack([data.truth[f"flux_{b}"] for b in data.bands], axis=1)
    assert np.all(light <= flux * 1.01) and np.median(light / flux) > 0.9  # big galaxies spill out of 32 px
    symmetric = data.truth["kind"] != "irregular"
    y, x = np.indices((SIZE, SIZE))
    coadd = data.targets.sum(axis=1)
    whole = light.sum(axis=1) > 0.995 * flux.sum(axis=1)
    for axis, truth in ((x, "x"), (y, "y")):
        moments = (coadd * axis).sum(axis=(1, 2)) / coadd.sum(axis=(1, 2))
        np.testing.assert_allclose(moments[symmetric & whole], data.truth[truth][symmetric & whole], atol=0.05)


def test_deep_target_noise_is_smaller_by_the_depth_ratio(files):
    free, deep = read_denoise(files["one"]), read_denoise(files["deep"])
    np.testing.assert_array_equal(deep.inputs, free.inputs)  # the input does not depend on the target
    np.testing.assert_allclose(deep.noise_sigma / deep.target_noise_sigma, 4.0)
    noise = (deep.targets - free.targets).astype(np.float64)
    pixels = N * SIZE * SIZE
    np.testing.assert_allclose(noise.std(axis=(0, 2, 3)), deep.target_noise_sigma, rtol=4 / np.sqrt(2 * pixels))
    with h5py.File(files["deep"]) as h5:
        depth_gain = h5["targets"].attrs["depth"] - h5["images"].attrs["depth"]
        assert h5["targets"].attrs["kind"] == "deep"
    np.testing.assert_allclose(depth_gain, 2.5 * np.log10(4.0))  # 16 visits: 4 times less noise, 1.5 mag deeper


def _sigma(stamp: np.ndarray) -> float:
    """Adaptive-moments size (pixels) of a noise-free (C, H, W) stamp's band sum; NaN where HSM fails."""
    moments = galsim.hsm.FindAdaptiveMom(galsim.Image(stamp.sum(axis=0).astype(np.float64)), strict=False)
    return moments.moments_sigma if moments.moments_status == 0 else np.nan


def test_sharper_target_psf_gives_smaller_measured_sizes(files):
    free, sharp = read_denoise(files["one"]), read_denoise(files["sharp"])
    np.testing.assert_array_equal(sharp.inputs, free.inputs)
    assert sharp.target_psf_fwhm == 0.3
    seen = np.array([_sigma(stamp) for stamp in free.targets])  # the noise-free input
    sharper = np.array([_sigma(stamp) for stamp in sharp.targets])
    measured = np.isfinite(seen) & np.isfinite(sharper)
    assert measured[sharp.truth["kind"] != "irregular"].all()  # HSM may lose its way on an irregular's knots
    assert np.all(sharper[measured] < seen[measured])
    np.testing.assert_allclose(sharp.targets.sum(axis=(2, 3)), free.targets.sum(axis=(2, 3)), rtol=0.02)  # flux kept


def test_bad_arguments_and_wrong_file(files, tmp_path):
    with pytest.raises(DeepfieldError, match="n must be an integer >= 1, got 0"):
        simulate_denoise(0, tmp_path / "x.h5", **SETTINGS)
    with pytest.raises(DeepfieldError, match="unknown denoise target 'sharp'; expected one of: deep, noiseless"):
        simulate_denoise(2, tmp_path / "x.h5", target="sharp", **SETTINGS)
    with pytest.raises(DeepfieldError, match="target_psf .* must be sharper than the seeing"):
        simulate_denoise(2, tmp_path / "x.h5", target_psf=0.8, **SETTINGS)
    with pytest.raises(DeepfieldError, match=r"deep_visits \(1\) must be more than visits \(2\)"):
        simulate_denoise(2, tmp_path / "x.h5", target="deep", visits=2, deep_visits=1, **SETTINGS)
    with pytest.raises(DeepfieldError, match="not a file of `deepfield simulate blends`"):
        from deepfield.data.simulate.blends import read_blends
        read_blends(files["one"])
    assert not (tmp_path / "x.h5").exists()


def test_cli_bad_option_is_one_line_and_exit_2(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the command line in this process (tests/conftest.py), in tmp_path
    run = cli("simulate", "denoise", "--out", "d.h5", "--n", "2", "--bands", "g,q")
    assert run.returncode == 2 and "bands must be distinct LSST band names" in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not (tmp_path / "d.h5").exists()


def test_cli_writes_and_never_replaces_a_file(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the command line in this process (tests/conftest.py), in tmp_path
    run = cli("simulate", "denoise", "--n", "3", "--size", "16", "--out", "d.h5", "--target", "deep",
              "--target-psf", "0.4", "--workers", "1")
    assert run.returncode == 0, run.stderr
    assert "3 pairs of g,r,i x 16x16, deep targets" in run.stdout
    data = read_denoise(tmp_path / "d.h5")
    assert data.targets.shape == (3, 3, 16, 16) and data.target_psf_fwhm == 0.4 and np.all(data.target_noise_sigma > 0)
    before = (tmp_path / "d.h5").read_bytes()
    run = cli("simulate", "denoise", "--n", "2", "--out", "d.h5")
    assert run.returncode == 2 and "this file exists; pass --overwrite" in run.stderr
    assert (tmp_path / "d.h5").read_bytes() == before
