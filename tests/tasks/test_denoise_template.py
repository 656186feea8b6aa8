"""denoise.flux: template end to end: the run's metrics, gallery and predicted stamps are the network's output
rescaled per stamp and band to the noisy input's least-squares amplitude; σ maps and whole images refused."""
import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from deepfield.analysis.image_quality import image_quality
from deepfield.analysis.template_photometry import template_fluxes
from deepfield.data.simulate.denoise import read_denoise, simulate_denoise
from deepfield.errors import DeepfieldError
from deepfield.tasks.config import load_config
from deepfield.tasks.denoise import Denoise
from deepfield.tasks.pipeline import run_predictive
from deepfield.tasks.run import load_run, predict_run, train

TINY = {"epochs": 2, "batch_size": 16, "early_stopping": None}


def document(path, out, **sections):
    return {"task": "denoise", "out": str(out), "data": {"path": str(path), "split": {"validation": 0.2, "test": 0.2}},
            "model": {"options": {"depth": 2, "filters": 4, "normalization": None}}, "training": TINY,
            "baselines": {"run": True}, "denoise": {"flux": "template"}, **sections}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("template")
    pairs = simulate_denoise(40, folder / "pairs.h5", size=16, bands="gr", seed=3, workers=1, progress=False)
    return train(load_config(None, document=document(pairs, folder / "run")), verbose=0), pairs, folder


def own_and_template(out, path):
    """(network's own stamps, template-photometry stamps of them, noisy inputs), all (N, C, H, W) nJy, of ``path``."""
    loaded = load_run(out)
    x = loaded.inputs(path).x
    own = loaded.task.split(run_predictive(loaded.config, loaded.task, loaded.models, x,
                                           loaded.info.model_copy(update={"flux": "network"})).mean, loaded.info)[0]
    noisy = read_denoise(path).inputs.astype(np.float64)
    return own, template_fluxes(noisy, own), noisy


def test_predicted_stamps_are_the_networks_rescaled_to_the_inputs_amplitude(run):
    out, pairs, folder = run
    assert load_run(out).info.flux == "template"
    own, template, noisy = own_and_template(out, pairs)
    denoised = Table.read(predict_run(out, pairs, folder / "denoised.h5"), path="predictions")["denoised"]
    np.testing.assert_allclose(denoised, template, rtol=1e-4, atol=1e-3 * np.abs(template).max())
    assert not np.allclose(denoised, own, rtol=1e-2)  # the network's own flux is not what was written
    # least squares: the residual of the noisy input is orthogonal to each stamp and band
    residual = ((noisy - denoised) * denoised).sum(axis=(2, 3)) / np.sqrt((denoised**2).sum(axis=(2, 3)))
    assert np.abs(residual).max() < 1e-3 * np.abs(noisy).sum(axis=(2, 3)).max()


def test_the_runs_metrics_score_the_template_photometry_and_the_baselines_stay(run):
    out, pairs, _ = run
    metrics = json.loads((out / "metrics.json").read_text())
    own, template, noisy = own_and_template(out, pairs)
    test = Denoise().prepare(load_run(out).config).ids["test"]  # the stamps' rows in the file
    data = read_denoise(pairs)
    truth, geometry = data.targets.astype(np.float64)[test], data.truth
    expected = image_quality(truth, template[test], noisy[test], geometry["x"][test], geometry["y"][test],
                             geometry["aperture_radius"][test])
    assert metrics["psnr"] == pytest.approx(expected["psnr"], rel=1e-4)
    assert metrics["snr_gain"] == pytest.approx(expected["snr_gain"], rel=1e-3)
    rows = [row["model"] for row in metrics["baselines"]]
    assert rows == ["network (unet, template flux)", "noisy input", "gaussian filter", "median filter", "wavelet"]


def test_sigma_maps_and_whole_images_are_refused(run, tmp_path):
    out, pairs, _ = run
    for sections in ({"uncertainty": {"heteroscedastic": True}}, {"uncertainty": {"mc_samples": 5}},
                     {"ensemble": 2}):
        with pytest.raises(DeepfieldError, match="denoise.flux: template rescales the denoised stamps, not their"):
            Denoise().prepare(load_config(None, document=document(pairs, tmp_path / "x", **sections)))
    fits.PrimaryHDU(np.zeros((2, 64, 64), dtype=np.float32)).writeto(tmp_path / "field.fits")
    with pytest.raises(DeepfieldError, match="field.fits: a whole image has no stamps to fit a template's flux"):
        predict_run(out, tmp_path / "field.fits", tmp_path / "cleaned.fits")


def test_the_default_keeps_the_networks_flux():
    assert load_config(None, document={"task": "denoise", "data": {"path": "x.h5"}}).denoise.flux == "network"
    with pytest.raises(DeepfieldError, match="denoise.flux"):
        load_config(None, document={"task": "denoise", "data": {"path": "x.h5"}, "denoise": {"flux": "aperture"}})
