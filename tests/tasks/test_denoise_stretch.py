"""Denoise with ``data.stretch: asinh`` (undone exactly on the outputs, metrics in the file's unit) and with
the Kron photometry aperture (``analysis.aperture: kron``)."""
import numpy as np
import pytest
import torch
import yaml

from deepfield.analysis.image_quality import image_quality, kron_radii
from deepfield.data.simulate.denoise import read_denoise, simulate_denoise
from deepfield.errors import DeepfieldError
from deepfield.tasks.config import load_config
from deepfield.tasks.denoise import Denoise, Restoring
from deepfield.tasks.pixel_scaling import from_network, to_network
from deepfield.tasks.prepared_info import DenoiseInfo


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return simulate_denoise(24, tmp_path_factory.mktemp("stretch") / "pairs.h5", size=16, bands="gr", seed=3,
                            workers=1, progress=False)


def config(path, analysis=None, uncertainty=None, **data):
    return load_config(None, document={"task": "denoise", "data": {"path": str(path), **data},
                                       "analysis": analysis or {}, "uncertainty": uncertainty or {}})


def test_the_stretch_round_trip_is_exact_and_asinh_of_the_normalised_values():
    info = DenoiseInfo(bands=["g"], unit="nJy", inputs="a", targets="b", aperture_radius=3.0,
                       normalize={"median": [2.0], "sigma": [4.0]}, stretch="asinh")
    stamps = np.array([-40.0, 2.0, 14.0, 4e4]).reshape(1, 1, 2, 2)
    network = to_network(stamps, info)
    np.testing.assert_allclose(network.ravel(), np.arcsinh((stamps.ravel() - 2.0) / 4.0 / 3.0), rtol=1e-6)
    np.testing.assert_allclose(from_network(network, info), stamps, rtol=1e-6, atol=1e-5)


def test_denoise_keeps_a_linear_scale_unless_the_config_names_the_stretch(pairs):
    assert Denoise().prepare(config(pairs)).info.stretch == "none"
    saved = load_config(None, document=yaml.safe_load(config(pairs).to_yaml()))  # the run folder's config.yaml
    assert saved.data.stretch is None and Denoise().prepare(saved).info.stretch == "none"
    assert DenoiseInfo.model_validate({"bands": ["g"], "unit": "", "inputs": "a", "targets": "b",
                                       "aperture_radius": 2.0}).stretch == "none"  # an older prepared.json


def test_a_stretched_run_reads_asinh_values_and_scores_in_the_files_unit(pairs, tmp_path):
    task = Denoise()
    prepared = task.prepare(config(pairs, stretch="asinh"))
    info, raw = prepared.info, read_denoise(pairs)
    assert info.stretch == "asinh"
    test = prepared.ids["test"]
    linear = (raw.targets[test] - np.asarray(info.normalize.median)[None, :, None, None]) \
        / np.asarray(info.normalize.sigma)[None, :, None, None]
    np.testing.assert_allclose(prepared.y["test"], np.arcsinh(linear / 3.0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(from_network(prepared.y["test"], info), raw.targets[test], rtol=1e-5, atol=1e-3)
    # the noisy input given as the network's output: its metrics are those of the file's stamps
    result = task.analyse(prepared.x["test"], prepared, "test", tmp_path)
    geometry = prepared.apertures["test"]
    expected = image_quality(raw.targets[test], raw.inputs[test], raw.inputs[test], *geometry.T)
    assert result["psnr"] == pytest.approx(expected["psnr"], rel=1e-5)
    assert result["flux_bias"] == pytest.approx(expected["flux_bias"], abs=1e-6)


def test_the_restoring_module_stretches_and_unstretches_as_the_task_does(pairs):
    prepared = Denoise().prepare(config(pairs, stretch="asinh"))
    info, raw = prepared.info, read_denoise(pairs).inputs[:4]
    doubling = torch.nn.Conv2d(2, 2, 1, bias=False)
    with torch.no_grad():
        doubling.weight.copy_(2 * torch.eye(2).view(2, 2, 1, 1))
        restored = Restoring([doubling], info)(torch.from_numpy(raw)).numpy()
    np.testing.assert_allclose(restored, from_network(2 * to_network(raw, info), info), rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("options", [{"uncertainty": {"heteroscedastic": True}}, {"uncertainty": {"mc_samples": 5}}])
def test_uncertainty_with_the_stretch_is_refused_in_one_line(pairs, options):
    with pytest.raises(DeepfieldError, match="data.stretch: asinh: per-pixel σ is not propagated through"):
        Denoise().prepare(config(pairs, stretch="asinh", **options))


def test_the_kron_aperture_is_two_and_a_half_first_moment_radii_of_each_truth(pairs):
    prepared = Denoise().prepare(config(pairs, analysis={"aperture": "kron"}))
    raw = read_denoise(pairs)
    assert prepared.info.aperture == "kron"
    test = prepared.ids["test"]
    expected = kron_radii(raw.targets[test], raw.truth["x"][test], raw.truth["y"][test])
    np.testing.assert_allclose(prepared.apertures["test"][:, 2], expected)
    np.testing.assert_allclose(prepared.apertures["test"][:, :2], np.column_stack([raw.truth["x"][test],
                                                                                   raw.truth["y"][test]]))
    assert Denoise().prepare(config(pairs)).info.aperture == "file"
    with pytest.raises(DeepfieldError, match="analysis.aperture"):
        config(pairs, analysis={"aperture": "isophotal"})
