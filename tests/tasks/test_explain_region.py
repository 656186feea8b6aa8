"""Explaining a denoising run: the flux of an output region (the source's aperture, a chosen aperture or window)
attributed to the input, by `explain.run` in train, `deepfield explain` and into the report."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from deepfield.analysis.image_quality import aperture_fluxes
from deepfield.data.simulate.denoise import read_denoise, simulate_denoise
from deepfield.report.html import write_report
from deepfield.tasks.config import load_config
from deepfield.tasks.denoise import Denoise
from deepfield.tasks.prepared_info import DenoiseInfo
from deepfield.tasks.run import load_run, train
from deepfield.training import Engine

EXAMPLE = Path(__file__).parents[2] / "examples" / "denoise.yaml"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("explain_region")
    pairs = simulate_denoise(40, folder / "pairs.h5", size=16, bands="gri", seed=3, mag_limit=22.0, workers=1,
                             progress=False)
    config = load_config(EXAMPLE, [f"data.path={pairs}", f"out={folder / 'run'}", "training.epochs=1",
                                   "training.batch_size=16", "training.early_stopping=null", "baselines.run=false",
                                   "model.options={depth: 2, filters: 4, normalization: null}",
                                   "explain={run: true, per_class: 2, steps: 32, occlusion: {size: 4, stride: 4}}"])
    return train(config, verbose=0, report=write_report), pairs


def test_train_explains_the_flux_in_each_test_sources_aperture_into_the_report(run):
    out, _ = run
    summary = json.loads((out / "explain" / "explain.json").read_text())
    assert summary["methods"] == ["integrated-gradients", "occlusion"] and summary["unit"] == "nJy"
    assert summary["region_from"] == "source" and len(summary["stamps"]) == 2
    ig = summary["integrated_gradients"]
    # completeness as reported: the attributions add up to flux(x) − flux(baseline), up to delta
    np.testing.assert_allclose(np.subtract(ig["attribution_sum"], np.subtract(ig["flux"], ig["baseline_flux"])),
                               ig["completeness_delta"], rtol=1e-6, atol=1e-6 * np.abs(ig["flux"]).max())
    assert np.all(np.asarray(ig["relative_error"]) < 0.05)
    np.testing.assert_allclose(summary["occlusion"]["flux"], ig["flux"], rtol=1e-5)
    # the explained flux is the aperture photometry of the run's denoised stamp, in nJy, summed over g, r and i
    loaded = load_run(out)
    prepared = loaded.training_data()
    denoised, _ = loaded.task.split(Engine(loaded.models[0]).predict(prepared.x["test"][:2], verbose=0), loaded.info)
    x, y, r = prepared.apertures["test"][:2].T
    assert [summary["regions"][i]["x"] for i in range(2)] == pytest.approx(x)
    np.testing.assert_allclose(ig["flux"], aperture_fluxes(denoised, x, y, r).sum(axis=1), rtol=1e-4)
    with np.load(out / "explain" / "explain.npz", allow_pickle=False) as arrays:
        assert arrays["integrated_gradients"].shape == (2, 3, 16, 16) and arrays["occlusion"].shape == (2, 16, 16)
        assert arrays["region_weights"].shape == (2, 16, 16) and arrays["stamps"].shape == (2, 3, 16, 16)
        assert arrays["integrated_gradients"].sum(axis=(1, 2, 3)) == pytest.approx(ig["attribution_sum"], rel=1e-4)
    assert (out / "figures" / "explain_region.png").is_file()
    section = (out / "report.html").read_text().split('<section id="explain">')[1].split("</section>")[0]
    assert section.count("<img") == 1
    assert "Which input pixels make the output&#x27;s flux in the outlined region" in section


def test_deepfield_explain_a_chosen_window_and_aperture_of_a_file(run, tmp_path, cli):
    out, pairs = run
    done = cli("explain", out, pairs, "--out", tmp_path / "window", "--window", "4:12,6:10", "--method",
               "integrated_gradients", "--per-class", "3")
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "window" / "explain.json").read_text())
    assert summary["methods"] == ["integrated-gradients"] and summary["region_from"] == "window"
    assert summary["regions"][0] == {"x0": 4, "x1": 12, "y0": 6, "y1": 10, "kind": "window"}
    assert {p.name for p in (tmp_path / "window").glob("*.png")} == {"explain_region.png"}
    with np.load(tmp_path / "window" / "explain.npz", allow_pickle=False) as arrays:
        assert arrays["integrated_gradients"].shape == (3, 3, 16, 16)
        assert arrays["region_weights"][0].sum() == 32 and arrays["region_weights"][0, 6:10, 4:12].all()
    done = cli("explain", out, pairs, "--out", tmp_path / "aperture", "--region", "7.5,7.5,3", "--method",
               "occlusion", "--size", "2", "--stride", "2")
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "aperture" / "explain.json").read_text())
    assert summary["regions"][1] == {"x": 7.5, "y": 7.5, "radius": 3.0, "kind": "aperture"}
    assert summary["occlusion"]["size"] == 2 and "integrated_gradients" not in summary
    # the file's own truth is each stamp's default aperture
    done = cli("explain", out, pairs, "--out", tmp_path / "truth", "--method", "occlusion")
    truth = read_denoise(pairs)
    regions = json.loads((tmp_path / "truth" / "explain.json").read_text())["regions"]
    assert done.returncode == 0, done.stderr
    assert [reg["x"] for reg in regions] == pytest.approx(truth.truth["x"][:2])
    assert [reg["radius"] for reg in regions] == pytest.approx(truth.truth["aperture_radius"][:2])


@pytest.mark.parametrize("args, message", [
    (("--region", "8,8"), "explain region '8,8': expected x,y,r in pixels"),
    (("--region", "20,8,3"), "explain region 20,8,3: the aperture's centre must lie on the 16×16 stamp"),
    (("--window", "0:20,0:4"), "explain window 0:20,0:4: the window must lie on the 16×16 stamp"),
    (("--window", "0-4,0-4"), "expected x0:x1,y0:y1"),
    (("--region", "8,8,3", "--window", "0:4,0:4"), "not both"),
    (("--method", "saliency"), "its regions are explained by integrated-gradients, occlusion"),
])
def test_bad_region_arguments_are_one_line_and_exit_2(run, tmp_path, cli, args, message):
    out, pairs = run
    done = cli("explain", out, pairs, "--out", tmp_path / "bad", *args)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "bad" / "explain.json").exists()


def test_a_heteroscedastic_denoisers_explained_image_is_its_denoised_bands_in_flux_units():
    info = DenoiseInfo(bands=["r"], unit="nJy", inputs="images", targets="targets", aperture_radius=2.0,
                       heteroscedastic=True, normalize={"median": [5.0], "sigma": [2.0]})
    network = nn.Conv2d(1, 2, 1)  # a mean channel, then a log-variance channel
    z = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        image = Denoise().explained_image(network, info)(z)
        np.testing.assert_allclose(image.numpy(), (network(z)[:, :1] * 2.0 + 5.0).numpy(), rtol=1e-6)


def test_a_region_for_a_classifier_is_refused_in_one_line(tiny_run, tmp_path, cli):
    run, sky = tiny_run
    done = cli("explain", run, sky, "--out", tmp_path / "look", "--region", "8,8,3")
    assert done.returncode == 2 and "a region or window is explained on a network whose output is an image" \
        in done.stderr and len(done.stderr.strip().splitlines()) == 1
