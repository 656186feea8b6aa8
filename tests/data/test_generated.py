"""The GalSim bridge: generated stamps as InterpolatedImages (flux, exactness, PSF), scenes, blends' population, CLI."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from deepfield.data.blend_stamps import read_blend_stamps
from deepfield.data.simulate.blends import simulate_blends
from deepfield.data.simulate.denoise import simulate_denoise
from deepfield.data.simulate.generated import (Samples, draw_sample, interpolated_images, matching_kernel,
                                               read_samples)
from deepfield.data.simulate.scene import simulate_scene
from deepfield.errors import DeepfieldError

BANDS, SCALE = ("g", "r", "i"), 0.2


def random_samples(n: int = 6, size: int = 16, seed: int = 0, psf_fwhm: float | None = 0.7) -> Samples:
    """Positive random stamps (nJy), a Gaussian-ish blob plus uniform texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    blob = np.exp(-(x**2 + y**2) / 8.0)
    stamps = rng.uniform(0.0, 1.0, (n, len(BANDS), size, size)) * 5 + 200 * blob
    return Samples(stamps.astype(np.float32), BANDS, SCALE, "nJy", psf_fwhm)


def write_samples(path, samples: Samples, **attrs) -> None:
    """A samples.h5 as `deepfield sample` writes it: ``samples`` (N, C, H, W) with its attributes."""
    with h5py.File(path, "w") as h5:
        data = h5.create_dataset("samples", data=samples.stamps)
        for key, value in (dict(bands=list(samples.bands), pixel_scale=samples.pixel_scale, unit=samples.unit,
                                psf_fwhm=samples.psf_fwhm) | attrs).items():
            if value is not None:
                data.attrs[key] = value


@pytest.fixture(scope="module")
def galaxies(tmp_path_factory):
    """Noise-free simulated galaxies (denoise targets) read as samples: their PSF from the file's truth."""
    path = simulate_denoise(4, tmp_path_factory.mktemp("galaxies") / "train.h5", size=24, seed=2, workers=1,
                            progress=False)
    return read_samples(path, "targets")


def test_interpolated_images_carry_the_stamp_sum_as_flux_negatives_included():
    stamp = random_samples().stamps[0] - 3.0  # noise-like negative pixels kept as they are
    assert (stamp < 0).any()
    for band, profile in zip(stamp, interpolated_images(stamp, SCALE)):
        assert profile.flux == pytest.approx(float(band.sum(dtype=np.float64)), rel=1e-12)


@pytest.mark.parametrize("target", [None, 1.1])
def test_drawing_conserves_the_flux_of_random_stamps(target):
    samples, rng = random_samples(), np.random.default_rng(1)
    kernel = matching_kernel(samples.psf_fwhm, target)
    for stamp in samples.stamps:
        x, y = rng.uniform(20, 30, 2)
        drawn = draw_sample(stamp, SCALE, (50, 50), x, y, kernel)
        np.testing.assert_allclose(drawn.sum(axis=(1, 2)), stamp.sum(axis=(1, 2), dtype=np.float64), rtol=1e-3)


@pytest.mark.parametrize("broader", [0.0, 0.4])
def test_drawing_conserves_the_flux_of_simulated_galaxies(galaxies, broader):
    assert galaxies.psf_fwhm is not None and galaxies.unit == "nJy" and galaxies.bands == BANDS
    kernel = matching_kernel(galaxies.psf_fwhm, galaxies.psf_fwhm + broader)
    assert (kernel is None) == (broader == 0)
    for stamp in galaxies.stamps:
        drawn = draw_sample(stamp, SCALE, (60, 60), 29.3, 30.8, kernel)
        np.testing.assert_allclose(drawn.sum(axis=(1, 2)), stamp.sum(axis=(1, 2), dtype=np.float64), rtol=1e-3)


def test_a_broader_psf_widens_the_drawn_galaxy(galaxies):
    stamp = galaxies.stamps[0]
    sharp = draw_sample(stamp, SCALE, (60, 60), 30, 30)
    broad = draw_sample(stamp, SCALE, (60, 60), 30, 30, matching_kernel(galaxies.psf_fwhm, galaxies.psf_fwhm + 1))
    assert broad.max() < 0.7 * sharp.max()


def test_a_stamp_on_the_pixel_grid_is_reproduced_exactly():
    stamp = random_samples(size=15).stamps[2]  # odd side: centre on a pixel centre
    drawn = draw_sample(stamp, SCALE, (40, 48), 10 + 7, 5 + 7)
    np.testing.assert_allclose(drawn[:, 5:20, 10:25], stamp, rtol=0, atol=1e-9)
    drawn[:, 5:20, 10:25] = 0
    assert np.abs(drawn).max() < 1e-9
    even = random_samples(size=16).stamps[0]  # even side: centre between pixels
    np.testing.assert_allclose(draw_sample(even, SCALE, (30, 30), 7.5, 9.5)[:, 2:18, 0:16], even, atol=1e-9)


def test_light_off_the_image_is_lost_and_a_source_far_off_draws_nothing():
    stamp = random_samples().stamps[0]
    half = draw_sample(stamp, SCALE, (30, 30), -0.5, 15)  # the stamp's centre on the left edge
    assert 0.3 < half.sum() / stamp.sum() < 0.7
    assert not draw_sample(stamp, SCALE, (30, 30), 200, 15).any()


def test_target_psf_refusals():
    with pytest.raises(DeepfieldError, match=r"^target PSF FWHM 0.5 arcsec is sharper than the stamps' PSF "
                                             r"\(0.7 arcsec\): generated stamps cannot be deconvolved"):
        matching_kernel(0.7, 0.5)
    with pytest.raises(DeepfieldError, match="needs the stamps' own PSF FWHM, which is not known"):
        matching_kernel(None, 1.0)
    assert matching_kernel(0.7, None) is None and matching_kernel(0.7, 0.7) is None
    assert matching_kernel(0.6, 1.0).fwhm == pytest.approx(0.8)


@pytest.fixture(scope="module")
def scene_files(tmp_path_factory):
    folder, samples = tmp_path_factory.mktemp("scenes"), random_samples()
    inside = np.array([[12.0, 14.0], [40.2, 20.7], [25.5, 45.1], [np.nan, np.nan]])
    common = dict(size=64, progress=False)
    return dict(samples=samples, inside=inside,
                random=simulate_scene(samples, 3, folder / "random.h5", sources=(2, 4), seed=4, workers=1, **common),
                twice=simulate_scene(samples, 3, folder / "twice.h5", sources=(2, 4), seed=4, workers=2, **common),
                other=simulate_scene(samples, 3, folder / "other.h5", sources=(2, 4), seed=5, workers=1, **common),
                given=simulate_scene(samples, 40, folder / "given.h5", positions=inside, visits=1.0, workers=1,
                                     **common))


def test_scene_layout_is_the_blends_one_and_the_deblend_reader_reads_it(scene_files):
    stamps = read_blend_stamps(scene_files["random"])
    assert stamps.images.shape == (3, 3, 64, 64) and stamps.sources.shape == (3, 4, 3, 64, 64)
    assert stamps.bands == BANDS and stamps.unit == "nJy"
    assert np.all((stamps.n_sources >= 2) & (stamps.n_sources <= 4))
    with h5py.File(scene_files["random"]) as h5:
        assert h5.attrs["simulator"] == "scene" and h5["segmentation"].shape == (3, 64, 64)
        np.testing.assert_allclose(h5["sources"][()].sum(axis=1), h5["noiseless"][()], rtol=1e-5, atol=1e-4)
        present = np.arange(4) < h5["n_sources"][()][:, None]
        sample = h5["truth/sample"][()]
        assert np.all(sample[present] >= 0) and np.all(sample[~present] == -1)
        flux = scene_files["samples"].flux
        np.testing.assert_allclose(h5["truth/flux_r"][()][present], flux[sample[present], 1], rtol=1e-6)


def test_scene_flux_is_the_sources_flux_plus_zero_mean_noise(scene_files):
    samples, inside = scene_files["samples"], scene_files["inside"]
    with h5py.File(scene_files["given"]) as h5:
        images, noiseless, sample = h5["images"][()], h5["noiseless"][()], h5["truth/sample"][()]
        sigma = h5["images"].attrs["noise_sigma"]
        np.testing.assert_array_equal(h5["truth/x"][0], inside[:, 0])
    expected = samples.flux[sample[:, :3]].sum(axis=1)  # (n, C): the three sources of every scene
    np.testing.assert_allclose(noiseless.sum(axis=(2, 3)), expected, rtol=1e-5)
    residual = (images.sum(axis=(2, 3)) - expected).mean(axis=0)  # (C,) mean over 40 scenes
    standard_error = sigma * 64 / np.sqrt(len(images))  # sigma * sqrt(pixels) per scene, over sqrt(n) scenes
    assert np.all(np.abs(residual) < 4 * standard_error), (residual, standard_error)


def test_scenes_are_reproducible_by_seed_for_any_number_of_workers(scene_files):
    with h5py.File(scene_files["random"]) as one, h5py.File(scene_files["twice"]) as two, \
            h5py.File(scene_files["other"]) as other:
        for name in ("images", "sources", "segmentation", "truth/x", "truth/sample"):
            np.testing.assert_array_equal(one[name][()], two[name][()], err_msg=name)
        assert not np.array_equal(one["images"][()], other["images"][()])


def test_scene_refusals(tmp_path):
    samples = random_samples()
    with pytest.raises(DeepfieldError, match=r"^positions have shape \(3,\); expected \(S, 2\) or \(2, S, 2\)"):
        simulate_scene(samples, 2, tmp_path / "a.h5", positions=np.zeros(3), progress=False)
    electrons = Samples(samples.stamps, BANDS, SCALE, "electron")
    with pytest.raises(DeepfieldError, match="samples are in 'electron', not nJy: LSST-like noise needs nJy"):
        simulate_scene(electrons, 2, tmp_path / "a.h5", progress=False)
    with pytest.raises(DeepfieldError, match=r"noise_sigma \[1.0\] must be 3 numbers >= 0, one per band"):
        simulate_scene(electrons, 2, tmp_path / "a.h5", noise_sigma=[1.0], progress=False)
    with pytest.raises(DeepfieldError, match="is sharper than the stamps' PSF"):
        simulate_scene(samples, 2, tmp_path / "a.h5", psf_fwhm=0.3, progress=False)
    assert not (tmp_path / "a.h5").exists()


def test_read_samples_and_its_refusals(tmp_path):
    samples = random_samples(n=2)
    write_samples(tmp_path / "ok.h5", samples)
    back = read_samples(tmp_path / "ok.h5")
    np.testing.assert_array_equal(back.stamps, samples.stamps)
    assert (back.bands, back.pixel_scale, back.unit, back.psf_fwhm) == (BANDS, SCALE, "nJy", 0.7)
    write_samples(tmp_path / "bare.h5", Samples(samples.stamps, BANDS, SCALE, ""), bands=None, pixel_scale=None)
    with pytest.raises(DeepfieldError, match=r"bare.h5: 'samples' does not name its bands; give them"):
        read_samples(tmp_path / "bare.h5")
    with pytest.raises(DeepfieldError, match=r"bare.h5: 'samples' does not give its pixel_scale"):
        read_samples(tmp_path / "bare.h5", bands=BANDS)
    assert read_samples(tmp_path / "bare.h5", bands=BANDS, pixel_scale=0.3).pixel_scale == 0.3
    with pytest.raises(DeepfieldError, match=r"bare.h5: 'samples': samples name 2 bands \['g', 'r'\] for 3 channels"):
        read_samples(tmp_path / "bare.h5", bands=("g", "r"), pixel_scale=0.3)
    with pytest.raises(DeepfieldError, match=r"ok.h5: no dataset 'images' of stamps \(datasets: 'samples'\)"):
        read_samples(tmp_path / "ok.h5", "images")
    with h5py.File(tmp_path / "flat.h5", "w") as h5:
        h5["samples"] = np.zeros((2, 16, 16))
    with pytest.raises(DeepfieldError, match=r"flat.h5: 'samples' has shape \(2, 16, 16\) \(float64\); expected"):
        read_samples(tmp_path / "flat.h5")
    nan = samples.stamps.copy()
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(DeepfieldError, match="samples hold NaN or infinite pixels"):
        Samples(nan, BANDS, SCALE, "nJy")


@pytest.fixture(scope="module")
def population_files(tmp_path_factory, galaxies):
    folder = tmp_path_factory.mktemp("population")
    common = dict(size=32, seed=3, workers=1, progress=False)
    return dict(plain=simulate_blends(5, folder / "plain.h5", **common),
                none=simulate_blends(5, folder / "none.h5", population=galaxies, population_fraction=0.0, **common),
                all=simulate_blends(5, folder / "all.h5", population=galaxies, population_fraction=1.0, **common))


def test_blends_without_a_population_are_unchanged(population_files):
    with h5py.File(population_files["plain"]) as plain, h5py.File(population_files["none"]) as none:
        assert "generated" not in plain["truth"] and "population" not in plain.attrs["config"]
        names = []
        plain.visit(names.append)
        for name in names:
            if isinstance(plain[name], h5py.Dataset):
                np.testing.assert_array_equal(plain[name][()], none[name][()], err_msg=name)
        assert np.all(none["truth/generated"][()] == -1)


def test_blends_take_the_generated_stamps_when_asked(population_files, galaxies):
    with h5py.File(population_files["plain"]) as plain, h5py.File(population_files["all"]) as every:
        generated, count = every["truth/generated"][()], every["n_sources"][()]
        present = np.arange(generated.shape[1]) < count[:, None]
        assert np.all(generated[present] >= 0) and np.all(generated[~present] == -1)
        for name in ("x", "y", "n_sources"):  # same places, same counts
            np.testing.assert_array_equal(every[name if name == "n_sources" else f"truth/{name}"][()],
                                          plain[name if name == "n_sources" else f"truth/{name}"][()])
        np.testing.assert_allclose(every["truth/flux_g"][()][present], galaxies.flux[generated[present], 0],
                                   rtol=1e-6)
        b, k = 1, 0
        stamp = galaxies.stamps[generated[b, k]]
        expected = draw_sample(stamp, SCALE, (32, 32), every["truth/x"][b, k], every["truth/y"][b, k])
        np.testing.assert_allclose(every["sources"][b, k], expected, rtol=1e-5, atol=1e-4)
        assert np.isnan(every["truth/half_light_radius"][b, k]) and not every["truth/is_star"][b, k]


def test_a_population_must_match_the_simulated_bands_and_pixels(tmp_path, galaxies):
    other = Samples(galaxies.stamps, galaxies.bands, 0.3, "nJy")
    with pytest.raises(DeepfieldError, match=r"population pixel_scale 0.3 arcsec differs from the simulated 0.2"):
        simulate_blends(2, tmp_path / "b.h5", population=other, progress=False)
    with pytest.raises(DeepfieldError, match=r"population bands \['g', 'r', 'i'\] differ from the simulated"):
        simulate_blends(2, tmp_path / "b.h5", bands="gr", population=galaxies, progress=False)


def test_cli_scene_writes_and_refuses(cli, tmp_path):
    write_samples(tmp_path / "samples.h5", random_samples())
    done = cli("simulate", "scene", "--samples", tmp_path / "samples.h5", "--n", 2, "--size", 40, "--sources", "1,3",
               "--out", tmp_path / "scene.h5", "--workers", 1)
    assert done.returncode == 0, done.stderr
    assert "2 scenes of 40x40 with 1 to 3 sources of 6 generated stamps" in done.stdout
    assert read_blend_stamps(tmp_path / "scene.h5").images.shape == (2, 3, 40, 40)
    done = cli("simulate", "scene", "--samples", tmp_path / "samples.h5", "--n", 2, "--out", tmp_path / "samples.h5",
               "--overwrite")
    assert done.returncode == 2 and "this is an input of the command" in done.stderr
    done = cli("simulate", "scene", "--samples", tmp_path / "samples.h5", "--dataset", "images", "--n", 2,
               "--out", tmp_path / "other.h5")
    assert done.returncode == 2 and "no dataset 'images' of stamps (datasets: 'samples')" in done.stderr
    done = cli("simulate", "scene", "--samples", tmp_path / "samples.h5", "--psf-fwhm", 0.2, "--n", 2,
               "--out", tmp_path / "other.h5")
    assert done.returncode == 2 and "is sharper than the stamps' PSF (0.7 arcsec)" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "other.h5").exists()
    done = cli("simulate", "scene", "--samples", tmp_path / "samples.h5", "--sources", "1,2,3", "--n", 2,
               "--out", tmp_path / "other.h5")
    assert done.returncode == 2 and "sources must be a count or (low, high), got (1, 2, 3)" in done.stderr


def test_cli_blends_population(cli, tmp_path):
    write_samples(tmp_path / "samples.h5", random_samples())
    done = cli("simulate", "blends", "--n", 2, "--size", 24, "--population", tmp_path / "samples.h5",
               "--population-fraction", 1, "--out", tmp_path / "blends.h5", "--workers", 1)
    assert done.returncode == 0, done.stderr
    with h5py.File(tmp_path / "blends.h5") as h5:
        assert np.all(h5["truth/generated"][:, 0] >= 0)
    done = cli("simulate", "blends", "--n", 2, "--bands", "g,r", "--population", tmp_path / "samples.h5",
               "--out", tmp_path / "b2.h5")
    assert done.returncode == 2 and "population bands ['g', 'r', 'i'] differ" in done.stderr


def test_readme_python_example_runs(tmp_path, monkeypatch, readme_python):
    block = readme_python('read_samples("train.h5", "targets")')
    samples = random_samples(n=8, size=32)
    with h5py.File(tmp_path / "train.h5", "w") as h5:  # the stand-in's layout: `targets` with its attributes
        h5.create_dataset("targets", data=samples.stamps).attrs.update(bands=list(BANDS), pixel_scale=SCALE,
                                                                      unit="nJy")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["masks"].shape == (64, 32, 32) and namespace["masks"].dtype == bool
    assert read_blend_stamps(tmp_path / "scene_py.h5").images.shape == (4, 3, 128, 128)
