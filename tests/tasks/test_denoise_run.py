"""Denoising end to end from examples/denoise.yaml: train on a tiny simulated set, the metrics and the
classical baselines in metrics.json, predictions of denoised stamps in flux units, evaluate on a new file."""
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.table import Table
from matplotlib import image

from deepfield.analysis.image_uncertainty import CURVE_LEVELS
from deepfield.data.simulate.denoise import read_denoise, simulate_denoise
from deepfield.errors import DeepfieldError
from deepfield.models import zoo
from deepfield.report.html import headline, write_report
from deepfield.tasks.config import load_config
from deepfield.tasks.denoise import Restoring, unet_tiling
from deepfield.tasks.run import evaluate_run, load_run, predict_run, train

EXAMPLE = Path(__file__).parents[2] / "examples" / "denoise.yaml"
TINY = ["training.epochs=20", "training.batch_size=16", "training.early_stopping=null",
        "model.options={depth: 2, filters: 8, normalization: null}"]
METRICS = {"psnr", "ssim", "psnr_input", "ssim_input", "snr_gain", "snr_gain_per_band", "aperture_noise_input",
           "aperture_noise_output", "flux_bias", "flux_scatter", "shape_e1_bias", "shape_e2_bias", "shape_e_rms",
           "shape_failures", "unit"}


def pairs(path, n, seed):
    """An easy case: bright galaxies (AB < 22) on 32×32 stamps, one band, one visit deep, noise-free targets."""
    return simulate_denoise(n, path, size=32, bands="r", seed=seed, mag_limit=22.0, workers=1, progress=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("denoise")
    config = load_config(EXAMPLE, [f"data.path={pairs(folder / 'pairs.h5', 160, seed=1)}",
                                   f"out={folder / 'run'}", *TINY])
    return config, train(config, verbose=0, report=write_report), folder


def test_the_example_trains_a_unet_that_beats_the_noisy_input_and_records_every_metric(trained):
    config, out, _ = trained
    assert config.model.preset == "unet"
    metrics = json.loads((out / "metrics.json").read_text())
    assert METRICS <= set(metrics) and metrics["task"] == "denoise" and metrics["unit"] == "nJy"
    assert metrics["psnr"] > metrics["psnr_input"] + 3.0  # dB
    assert metrics["ssim"] > metrics["ssim_input"]
    assert abs(metrics["flux_bias"]) < 0.2 and metrics["shape_failures"] < 5
    prepared = json.loads((out / "prepared.json").read_text())
    assert prepared["bands"] == ["r"] and len(prepared["normalize"]["sigma"]) == 1
    assert headline(metrics).startswith("test PSNR (dB) ")
    assert "Baselines on the test part" in (out / "report.html").read_text()


def test_the_baselines_rows_score_the_network_the_input_and_three_filters(trained):
    _, out, _ = trained
    rows = json.loads((out / "metrics.json").read_text())["baselines"]
    assert [row["model"] for row in rows] == ["network (unet)", "noisy input", "gaussian filter", "median filter",
                                              "wavelet"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert rows[0]["psnr"] == metrics["psnr"] and rows[1]["psnr"] == pytest.approx(metrics["psnr_input"])
    assert all(row["psnr"] > rows[1]["psnr"] for row in rows[2:])


def test_predict_writes_denoised_stamps_in_flux_units(trained, tmp_path):
    _, out, folder = trained
    new = pairs(tmp_path / "new.h5", 12, seed=9)
    written = predict_run(out, new, tmp_path / "denoised.h5")
    table = Table.read(written, path="predictions")
    data = read_denoise(new)
    assert table["denoised"].shape == (12, 1, 32, 32) and table["denoised"].dtype == np.float32
    assert list(table["id"]) == [str(k) for k in range(12)]
    error = np.sqrt(np.mean((table["denoised"] - data.targets) ** 2))
    noise = np.sqrt(np.mean((data.inputs - data.targets) ** 2))  # the input's, about noise_sigma in nJy
    assert noise == pytest.approx(float(data.noise_sigma[0]), rel=0.1) and error < 0.8 * noise
    fits = Table.read(predict_run(out, new, tmp_path / "denoised.fits"))
    np.testing.assert_allclose(fits["denoised"], table["denoised"])
    with pytest.raises(DeepfieldError, match="write them as .h5 or .fits"):
        predict_run(out, new, tmp_path / "denoised.csv")


def test_evaluate_on_a_new_labelled_file_and_a_run_that_loads_back(trained, tmp_path):
    _, out, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    metrics = evaluate_run(copy, pairs(tmp_path / "other.h5", 16, seed=5))
    assert METRICS <= set(metrics) and metrics["psnr"] > metrics["psnr_input"]
    assert load_run(copy).info.aperture_radius == 4.0  # 1/8 of 32 pixels, for files without truth/


def test_predict_a_whole_fits_image_by_tiles_equals_one_pass_and_keeps_the_header(trained, tmp_path, cli):
    _, out, _ = trained
    rng = np.random.default_rng(4)
    image = rng.normal(scale=18.0, size=(300, 280)).astype(np.float32)  # sky noise of the r band, nJy
    image[100:110, 60:70] += 500.0
    header = fits.Header({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 150.0, "CRVAL2": 2.0,
                          "CRPIX1": 140.0, "CRPIX2": 150.0, "CDELT1": -5.5e-5, "CDELT2": 5.5e-5, "BUNIT": "nJy"})
    fits.PrimaryHDU(image, header).writeto(tmp_path / "field.fits")
    written = predict_run(out, tmp_path / "field.fits", tmp_path / "cleaned.fits")
    with fits.open(written) as hdul:
        cleaned, kept = hdul[0].data, hdul[0].header
    assert cleaned.shape == (300, 280) and kept["CRVAL1"] == 150.0 and kept["BUNIT"] == "nJy"
    run = load_run(out)
    with torch.no_grad():  # one pass over the whole image (300 and 280 divide by 2**depth = 4)
        whole = Restoring(run.models, run.info).eval()(torch.from_numpy(image)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(cleaned, whole, atol=1e-5 * np.abs(whole).max())
    assert cleaned[:50, :50].std() < 0.8 * image[:50, :50].std()  # the sky is smoother
    with pytest.raises(DeepfieldError, match="written as FITS"):
        predict_run(out, tmp_path / "field.fits", tmp_path / "cleaned.h5")
    done = cli("predict", out, tmp_path / "field.fits", "--out", tmp_path / "again.fits")
    assert done.returncode == 0 and "again.fits" in done.stdout
    np.testing.assert_array_equal(fits.getdata(tmp_path / "again.fits"), cleaned)


@pytest.mark.parametrize("depth", [2, 3])
def test_the_tiling_margin_bounds_the_unets_receptive_field(depth):
    torch.manual_seed(0)
    network = zoo.get("unet", input_shape=(1, 192, 192), depth=depth, filters=4, normalization=None).double().eval()
    x = torch.randn(1, 1, 192, 192, dtype=torch.float64, requires_grad=True)
    network(x)[0, 0, 96, 96].backward()
    reach = (x.grad[0, 0].abs() > 0).nonzero() - 96
    tile, overlap, margin = unet_tiling(depth)
    assert int(reach.abs().max()) <= margin and overlap >= 2 * margin and tile >= 2 * overlap
    assert tile % 2**depth == 0 and overlap % 2**depth == 0


def gallery_aspect(out):
    """Width / height of the run's gallery: 8 / 6.3 inches for input, output, truth, residual; 10 / 6.3 with σ."""
    height, width = image.imread(out / "figures" / "denoise_gallery.png").shape[:2]
    return width / height


def test_a_heteroscedastic_run_gives_per_pixel_sigma_in_flux_units_and_its_coverage(tmp_path):
    config = load_config(EXAMPLE, [f"data.path={pairs(tmp_path / 'pairs.h5', 60, seed=2)}", f"out={tmp_path / 'run'}",
                                   "uncertainty.heteroscedastic=true", "baselines.run=false", *TINY,
                                   "training.epochs=3"])
    out = train(config, verbose=0)
    uncertainty = json.loads((out / "metrics.json").read_text())["uncertainty"]
    assert uncertainty["sigma"] == "heteroscedastic head" and uncertainty["draws"] == 1
    for key in ("pixel_coverage", "flux_coverage", "flux_coverage_coherent"):
        assert set(uncertainty[key]) == {"68", "95"}
        assert 0.0 <= uncertainty[key]["68"] <= uncertainty[key]["95"] <= 1.0
    assert uncertainty["flux_coverage_coherent"]["68"] >= uncertainty["flux_coverage"]["68"]  # Σ w σ ≥ √(Σ w² σ²)
    assert "pixel_coverage_head" not in uncertainty  # one σ: no parts to compare
    assert gallery_aspect(out) == pytest.approx(10 / 6.3, rel=0.02)
    table = Table.read(predict_run(out, tmp_path / "pairs.h5", tmp_path / "denoised.h5"), path="predictions")
    assert table["denoised"].shape == table["denoised_err"].shape == (60, 1, 32, 32)
    assert np.all(table["denoised_err"] > 0) and "denoised_spread" not in table.colnames


def test_mc_dropout_and_a_heteroscedastic_head_combine_into_sigma_maps_with_their_coverage_curves(tmp_path):
    config = load_config(EXAMPLE, [f"data.path={pairs(tmp_path / 'pairs.h5', 60, seed=3)}", f"out={tmp_path / 'run'}",
                                   "uncertainty.heteroscedastic=true", "uncertainty.mc_samples=4",
                                   "baselines.run=false", *TINY, "training.epochs=1",
                                   "model.options={depth: 2, filters: 8, normalization: null, dropout: 0.2}"])
    out = train(config, verbose=0, report=write_report)
    uncertainty = json.loads((out / "metrics.json").read_text())["uncertainty"]
    assert uncertainty["draws"] == 4 and uncertainty["sigma"] == "MC-dropout spread ⊕ heteroscedastic head"
    for quantity in ("pixel", "flux"):
        total, spread, head = (uncertainty[f"{quantity}_coverage{part}"] for part in ("", "_spread", "_head"))
        assert total["68"] >= max(spread["68"], head["68"])  # σ_total ≥ each part, pixel by pixel, flux by flux
    curve = uncertainty["coverage_curve"]
    assert [row["level"] for row in curve] == list(CURVE_LEVELS)
    assert [row["pixel"] for row in curve] == sorted(row["pixel"] for row in curve)
    assert next(row["flux"] for row in curve if row["level"] == 0.68) == uncertainty["flux_coverage"]["68"]
    assert (out / "figures" / "uncertainty_coverage.png").read_bytes().startswith(b"\x89PNG")
    assert gallery_aspect(out) == pytest.approx(10 / 6.3, rel=0.02)
    report = (out / "report.html").read_text()
    assert "Coverage: fraction of true values inside" in report and "<caption>coverage_curve" in report
    table = Table.read(predict_run(out, tmp_path / "pairs.h5", tmp_path / "denoised.h5"), path="predictions")
    assert table["denoised_spread"].shape == table["denoised_err"].shape == (60, 1, 32, 32)
    assert np.all(table["denoised_err"] > 0) and np.all(table["denoised_spread"] >= 0)
    assert np.mean(table["denoised_spread"] > 0) > 0.9  # 0 where every draw's last ReLUs are all off
    evaluated = evaluate_run(out, pairs(tmp_path / "other.h5", 12, seed=4))["uncertainty"]
    assert evaluated["draws"] == 4 and set(evaluated["flux_coverage"]) == {"68", "95"}


def test_the_run_shows_the_best_median_and_worst_stamps(trained):
    _, out, _ = trained
    assert gallery_aspect(out) == pytest.approx(8 / 6.3, rel=0.02)  # no σ: no σ column
    assert (out / "figures" / "denoise_gallery.png").read_bytes().startswith(b"\x89PNG")
    assert "best, median and worst PSNR" in (out / "report.html").read_text()


def test_stamps_in_memory_are_denoised_as_a_files_are(trained, tmp_path):
    _, out, _ = trained
    new = pairs(tmp_path / "new.h5", 5, seed=11)
    run = load_run(out)
    from_file = Table.read(predict_run(out, new, tmp_path / "p.h5"), path="predictions")["denoised"]
    in_memory = run.predict(read_denoise(new).inputs[:, 0])["denoised"]  # (N, H, W): one band
    np.testing.assert_allclose(in_memory, from_file, rtol=1e-6, atol=1e-3)
    with pytest.raises(DeepfieldError, match=r"expected \(N, 1, H, W\)"):
        run.predict(np.zeros((2, 3, 32, 32)))


def test_predict_an_odd_sized_fits_image_shorter_than_a_tile(trained, tmp_path):
    """37×53 does not divide by 2**depth = 4: the image is mirrored beyond its far edges to 40×56 and cropped."""
    _, out, _ = trained
    image = np.random.default_rng(6).normal(scale=18.0, size=(37, 53)).astype(np.float32)
    image[10:16, 30:36] += 400.0
    fits.PrimaryHDU(image).writeto(tmp_path / "odd.fits")
    cleaned = fits.getdata(predict_run(out, tmp_path / "odd.fits", tmp_path / "cleaned.fits"))
    run = load_run(out)
    mirrored = np.pad(image, ((0, 3), (0, 3)), mode="reflect")
    with torch.no_grad():
        whole = Restoring(run.models, run.info).eval()(torch.from_numpy(mirrored)[None, None])[0, 0, :37, :53].numpy()
    assert cleaned.shape == (37, 53)
    np.testing.assert_allclose(cleaned, whole, atol=1e-5 * np.abs(whole).max())


def flipped_copy(path, out):
    """A copy of a pairs file with every stamp (inputs and targets) mirrored left-right."""
    shutil.copy(path, out)
    with h5py.File(out, "r+") as h5:
        for name in ("images", "targets"):
            h5[name][...] = h5[name][()][..., ::-1]
    return out


def test_test_time_augmentation_makes_the_predictions_turn_with_the_stamps(trained, tmp_path, cli):
    """--tta dihedral on a finished run (model.tta for this call; training is unchanged): a mirrored stamp's
    prediction is the mirrored prediction, which the plain network's is not; its metrics are scored alike."""
    _, out, _ = trained
    new = pairs(tmp_path / "new.h5", 8, seed=9)
    mirrored = flipped_copy(new, tmp_path / "mirrored.h5")
    predicted = {(tta, name): Table.read(predict_run(out, file, tmp_path / f"{tta}_{name}.h5", tta=tta),
                                         path="predictions")["denoised"]
                 for tta in ("none", "dihedral") for name, file in (("new", new), ("mirrored", mirrored))}
    np.testing.assert_allclose(predicted["dihedral", "mirrored"], predicted["dihedral", "new"][..., ::-1], atol=1e-4)
    assert not np.allclose(predicted["none", "mirrored"], predicted["none", "new"][..., ::-1], atol=1e-4)
    done = cli("predict", out, new, "--out", tmp_path / "cli.h5", "--tta", "dihedral")
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(Table.read(tmp_path / "cli.h5", path="predictions")["denoised"],
                                  predicted["dihedral", "new"])
    metrics = evaluate_run(out, new, tta="dihedral")
    assert METRICS <= set(metrics) and metrics["psnr"] != evaluate_run(out, new)["psnr"]
    refused = cli("evaluate", out, "--data", new, "--tta", "flips")
    assert refused.returncode == 2 and "--tta must be one of dihedral, none; got 'flips'" in refused.stderr


@pytest.mark.parametrize("override, message", [
    ("uncertainty.mc_samples=5", "model.tta with uncertainty.mc_samples"),
    ("task=generate", "task generate with data.kind images does not take it"),
])
def test_test_time_augmentation_refuses_what_it_would_break(override, message):
    with pytest.raises(DeepfieldError, match=message):
        load_config(EXAMPLE, ["model.tta=dihedral", override])
