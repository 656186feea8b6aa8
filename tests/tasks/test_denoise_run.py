"""Denoising end to end from examples/denoise.yaml: train on a tiny simulated set, the metrics and the
classical baselines in metrics.json, predictions of denoised stamps in flux units, evaluate on a new file."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from deepfield.data.simulate.denoise import read_denoise, simulate_denoise
from deepfield.errors import DeepfieldError
from deepfield.tasks.config import load_config
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
    return config, train(config, verbose=0), folder


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
