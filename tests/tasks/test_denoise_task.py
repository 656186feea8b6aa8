"""The denoise task's data: pairs read from the simulator's HDF5 and a user's .npz, the normalisation
fitted on the training part, recorded, and undone exactly; the network's head; the errors."""
import numpy as np
import pytest
import torch

from deepfield.data.simulate.denoise import read_denoise, simulate_denoise
from deepfield.errors import DeepfieldError
from deepfield.tasks.config import RunConfig, load_config
from deepfield.tasks.denoise import Denoise
from deepfield.tasks.pixel_scaling import normalise, restore
from deepfield.tasks.pipeline import prepare
from deepfield.tasks.prepared_info import DenoiseInfo


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return simulate_denoise(30, tmp_path_factory.mktemp("denoise") / "pairs.h5", size=16, bands="gr", seed=4,
                            workers=1, progress=False)


def config(path, **data):
    return load_config(None, document={"task": "denoise", "data": {"path": str(path), **data}})


def test_the_default_network_is_the_unet():
    assert config("x.h5").model.preset == "unet"
    assert load_config(None, document={"task": "denoise", "data": {"path": "x.h5"},
                                       "model": {"preset": "resnet"}}).model.preset == "resnet"
    assert RunConfig.model_validate({"task": "morphology", "data": {"path": "x"}}).model.preset == "lecture-cnn"


def test_prepare_fits_the_normalisation_on_the_training_part_and_undoes_it_exactly(pairs):
    prepared = Denoise().prepare(config(pairs))
    truth = read_denoise(pairs)
    info = prepared.info
    assert isinstance(info, DenoiseInfo) and info.bands == ["g", "r"] and info.unit == "nJy"
    assert sum(len(x) for x in prepared.x.values()) == 30 and prepared.x["train"].shape[1:] == (2, 16, 16)
    train = prepared.ids["train"]
    raw = truth.inputs[train]
    np.testing.assert_allclose(info.normalize.median, np.median(raw, axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(restore(prepared.x["train"], info), raw, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(restore(prepared.y["train"], info), truth.targets[train], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(prepared.apertures["train"][:, 2], truth.truth["aperture_radius"][train])
    assert DenoiseInfo.model_validate_json(info.to_json()) == info  # prepared.json reads back
    assert Denoise().default_loss(prepared) == "mae" and Denoise().default_metrics(prepared) == ["mse"]


def test_a_users_npz_pair_file_with_its_own_names(tmp_path):
    rng = np.random.default_rng(0)
    clean = rng.uniform(0, 10, (20, 16, 16, 1)).astype(np.float32)
    np.savez(tmp_path / "mine.npz", shallow=clean + rng.normal(size=clean.shape), deep=clean)
    with pytest.raises(DeepfieldError, match="does not name its bands"):
        Denoise().prepare(config(tmp_path / "mine.npz", images="shallow", target="deep", channels="last"))
    prepared = Denoise().prepare(config(tmp_path / "mine.npz", images="shallow", target="deep", channels="last",
                                        bands=["i"], normalize="none"))
    assert prepared.info.normalize is None and prepared.info.targets == "deep"
    np.testing.assert_array_equal(prepared.y["test"][:, 0], clean[prepared.ids["test"], :, :, 0])
    np.testing.assert_allclose(prepared.apertures["test"][0], [7.5, 7.5, 2.0])  # the centre, 1/8 of 16 pixels
    with pytest.raises(DeepfieldError, match="no array 'clean'; it holds 'shallow', 'deep'"):
        Denoise().prepare(config(tmp_path / "mine.npz", images="shallow", target="clean", bands=["i"]))


def test_the_head_has_one_channel_per_band_and_a_log_variance_when_asked(pairs):
    cfg = load_config(None, document={"task": "denoise", "data": {"path": str(pairs)},
                                      "model": {"options": {"depth": 2, "filters": 4}},
                                      "uncertainty": {"heteroscedastic": True}})
    task = Denoise()
    prepared = prepare(task, cfg)
    assert task.default_loss(prepared) == "gaussian_nll"
    outputs = task.build_model(cfg, prepared)(torch.from_numpy(prepared.x["test"][:2]))
    assert tuple(outputs.shape) == (2, 4, 16, 16)
    mean, sigma = task.split(outputs.detach().numpy(), prepared.info)
    assert mean.shape == sigma.shape == (2, 2, 16, 16)
    np.testing.assert_allclose(sigma, np.broadcast_to(np.asarray(prepared.info.normalize.sigma)[None, :, None, None],
                                                      sigma.shape), rtol=1e-5)  # log-variance starts at 0


def test_normalise_then_restore_is_the_identity():
    info = DenoiseInfo(bands=["g"], unit="nJy", inputs="a", targets="b", aperture_radius=3.0,
                       normalize={"median": [2.0], "sigma": [4.0]})
    stamps = np.arange(32, dtype=np.float32).reshape(2, 1, 4, 4)
    np.testing.assert_allclose(normalise(stamps, info)[0, 0, 0, :2], [-0.5, -0.25])
    np.testing.assert_allclose(restore(normalise(stamps, info), info), stamps, rtol=1e-6)
