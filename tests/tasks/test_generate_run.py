"""task generate end to end on a tiny simulated sky: conditions read and standardised, a cvae trained with KL
annealing, its report, seeded samples through Run.sample and `deepfield sample`."""
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.table import Table

from deepfield.data.simulate.morphology import CLASSES
from deepfield.errors import DeepfieldError
from deepfield.models.packed import Packed
from deepfield.report.html import headline
from deepfield.tasks import pipeline
from deepfield.tasks.config import load_config
from deepfield.tasks.generate import Generate
from deepfield.tasks.run import load_run, train

CONDITIONS = ["half_light_radius", "mag"]


def document(sky, out, **data):
    return {"task": "generate", "out": str(out), "seed": 1,
            "data": {"path": str(sky), "conditions": CONDITIONS, **data},
            "model": {"options": {"filters": [4, 8], "latent_dim": 4}},
            "training": {"epochs": 2, "batch_size": 16, "device": "cpu", "kl_anneal_epochs": 2}}


@pytest.fixture(scope="module")
def sky(small_sky):
    """The session's 40 simulated 16×16 g, r, i stamps (conftest), read only."""
    return small_sky


@pytest.fixture(scope="module")
def run(sky, tiny_run, tmp_path_factory):
    """A cvae conditioned on size and magnitude, trained 2 epochs with the KL ramped over 2, judged with the
    session's morphology run (conftest ``tiny_run``, the same sky) as the Fréchet distance's classifier; the
    annealing callbacks the pipeline made are recorded in ``run.annealed``."""
    made = []

    class Recording(pipeline.KLAnnealing):
        def __init__(self, epochs):
            super().__init__(epochs)
            made.append(epochs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "KLAnnealing", Recording)
        config = document(sky, tmp_path_factory.mktemp("run") / "run") | {"analysis": {"classifier": str(tiny_run[0])}}
        folder = train(load_config(None, document=config), verbose=0)
    return folder, made


def truth(sky, name):
    with h5py.File(sky) as h5:
        return h5[f"truth/{name}"][()]


def test_the_run_trains_and_reports(run):
    folder, annealed = run
    metrics = json.loads((folder / "metrics.json").read_text())
    assert annealed == [2]  # training.kl_anneal_epochs reached the callback
    assert metrics["task"] == "generate" and metrics["epochs_run"] == 2
    assert metrics["reconstruction_mse"] == pytest.approx(metrics["test"]["loss"], rel=1e-5)  # eval mode: mse alone
    for figure in ("sample_grid.png", "latent_interpolation.png", "learning_curves.png",
                   "statistic_distributions.png", "power_spectra.png", "memorisation.png"):
        assert (folder / "figures" / figure).stat().st_size > 0
    judging = metrics["judging"]  # samples at the test stamps' conditions against the test stamps
    distances = [row["w1"] for row in judging["wasserstein"]["statistics"].values() if row["w1"] is not None]  # NaN: too few values
    assert {"gini", "hsm_e", "flux_r", "colour_g_r", "log_power_0"} <= set(judging["wasserstein"]["statistics"])
    assert distances and min(distances) >= 0
    assert judging["wasserstein"]["mean_w1"] == pytest.approx(np.mean(distances))
    assert judging["memorisation"]["n_samples"] == judging["memorisation"]["n_heldout"] > 0
    assert metrics["mean_w1"] == judging["wasserstein"]["mean_w1"]  # the report's headline
    n = judging["memorisation"]["n_samples"]
    assert headline(metrics) == (f"test mean standardised W1 of samples (0: as the test stamps) "
                                 f"{metrics['mean_w1']:.4g} ({n} samples against the test stamps)")
    conditioning = judging["conditioning"]  # each sample against the test stamp whose conditions it was drawn at
    assert conditioning["half_light_radius"]["kind"] == "relative" and conditioning["mag"]["kind"] == "absolute"
    assert conditioning["half_light_radius"]["n"] + conditioning["half_light_radius"]["dropped"] == \
        judging["memorisation"]["n_samples"]
    frechet = judging["frechet"]  # in the features of the morphology run's layer before its head
    assert frechet["frechet"] > 0 and frechet["frechet_floor"] >= 0 and frechet["n"] >= 2
    assert frechet["run"] == str(load_run(frechet["run"]).folder) and frechet["layer"]


def test_conditions_are_standardised_with_the_training_part(run, sky):
    loaded = load_run(run[0])
    prepared = loaded.training_data()
    info = prepared.info
    assert info.conditions == CONDITIONS and info.condition_classes is None
    train_rows = np.column_stack([truth(sky, name) for name in CONDITIONS])[prepared.ids["train"].astype(int)]
    assert info.standardize.mean == pytest.approx(train_rows.mean(axis=0).tolist(), rel=1e-6)
    assert info.standardize.std == pytest.approx(train_rows.std(axis=0).tolist(), rel=1e-5)
    images, conditions = prepared.x["train"].parts
    assert conditions.shape == (len(images), 2)
    assert conditions.mean(axis=0) == pytest.approx([0, 0], abs=1e-5)
    assert conditions.std(axis=0) == pytest.approx([1, 1], rel=1e-4)
    assert np.array_equal(prepared.y["train"], images)


def test_a_vae_samples_with_the_sky_noise_of_its_stamps_unless_told_not_to(run, sky):
    loaded = load_run(run[0])
    with h5py.File(sky) as h5:
        stamps = h5["images"][()][loaded.training_data().ids["train"].astype(int)]
    frame = np.concatenate([stamps[:, :, :2].reshape(len(stamps), 3, -1), stamps[:, :, -2:].reshape(
        len(stamps), 3, -1)], axis=2)  # top and bottom rows: sky
    assert loaded.info.sky_sigma == pytest.approx(1.4826 * np.median(np.abs(
        frame - np.median(frame, axis=(0, 2), keepdims=True)), axis=(0, 2)), rel=0.1)
    condition = {"half_light_radius": 0.8, "mag": -10.5}
    mean = loaded.sample(300, condition=condition, seed=3, noise=False)
    noisy = loaded.sample(300, condition=condition, seed=3)
    assert (noisy - mean).std(axis=(0, 2, 3)) == pytest.approx(loaded.info.sky_sigma, rel=0.03)


def test_samples_are_reproducible_by_seed_and_in_the_file_unit(run):
    loaded = load_run(run[0])
    condition = {"half_light_radius": 0.8, "mag": -10.5}
    first = loaded.sample(5, condition=condition, seed=3)
    assert first.shape == (5, 3, 16, 16) and first.dtype == np.float32
    assert np.array_equal(first, loaded.sample(5, condition="half_light_radius=0.8,mag=-10.5", seed=3))
    assert not np.allclose(first, loaded.sample(5, condition=condition, seed=4))
    # restored: network units times each band's sigma plus its median
    median = np.asarray(loaded.info.normalize.median)[None, :, None, None]
    sigma = np.asarray(loaded.info.normalize.sigma)[None, :, None, None]
    normalised = (first - median) / sigma
    assert np.abs(normalised).max() < 1e3 and not np.allclose(first, normalised)


def test_sample_command_writes_the_file(run, cli, tmp_path):
    out = tmp_path / "samples.h5"
    done = cli("sample", run[0], "--n", 4, "--condition", "half_light_radius=0.6,mag=-10", "--seed", 2,
               "--out", out)
    assert done.returncode == 0, done.stderr
    with h5py.File(out) as h5:
        samples = h5["samples"][()]
        assert samples.shape == (4, 3, 16, 16)
        assert list(h5["samples"].attrs["bands"]) == ["g", "r", "i"]
        assert h5["conditions/half_light_radius"][()].tolist() == [0.6] * 4
        assert h5.attrs["seed"] == 2 and h5.attrs["run"] == str(run[0])
    expected = load_run(run[0]).sample(4, condition={"half_light_radius": 0.6, "mag": -10}, seed=2)
    assert np.array_equal(samples, expected)


def test_sample_command_takes_a_conditions_table(run, cli, tmp_path):
    table = tmp_path / "wanted.csv"
    Table({"half_light_radius": [0.5, 1.0, 1.5], "mag": [-9.0, -10.0, -11.0]}).write(table)
    out = tmp_path / "samples.h5"
    assert cli("sample", run[0], "--conditions", table, "--out", out).returncode == 0
    with h5py.File(out) as h5:
        assert h5["samples"].shape == (3, 3, 16, 16)
        assert h5["conditions/mag"][()].tolist() == [-9.0, -10.0, -11.0]
    refused = cli("sample", run[0], "--conditions", table, "--out", table, "--overwrite")
    assert refused.returncode == 2 and "this is an input of the command" in refused.stderr


@pytest.mark.parametrize("args, message", [
    (["--condition", "hlr=0.4,mag=-10"], "missing half_light_radius; unknown hlr"),
    (["--condition", "half_light_radius=big,mag=-10"], "half_light_radius=big is not a finite number"),
    (["--condition", "half_light_radius"], "must look like name=value"),
    ([], "this run is conditioned on half_light_radius, mag"),
    (["--condition", "half_light_radius=1,mag=-10", "--steps", "8"], "sample takes temperature only; got steps"),
])
def test_bad_conditions_are_one_line(run, cli, tmp_path, args, message):
    done = cli("sample", run[0], "--n", 2, "--out", tmp_path / "s.h5", *args)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s.h5").exists()


def test_a_missing_condition_column_is_named(sky, tmp_path):
    config = load_config(None, document=document(sky, tmp_path / "run", conditions=["half_light_radius", "colour"]))
    with pytest.raises(DeepfieldError, match=r"data.conditions: no column 'colour' .*columns: .*half_light_radius"):
        Generate().prepare(config)


def test_class_labels_condition_one_hot(sky, tmp_path):
    prepared = Generate().prepare(load_config(None, document=document(sky, tmp_path / "run", conditions=["labels"])))
    assert prepared.info.condition_classes == list(CLASSES) and prepared.info.standardize is None
    images, one_hot = prepared.x["test"].parts
    with h5py.File(sky) as h5:
        labels = h5["labels"][()][prepared.ids["test"].astype(int)]
    assert np.array_equal(one_hot, np.eye(len(CLASSES), dtype=np.float32)[labels])


def test_unconditional_inputs_are_the_stamps(sky, tmp_path):
    prepared = Generate().prepare(load_config(None, document=document(sky, tmp_path / "run", conditions=None)))
    assert prepared.info.condition_size == 0
    assert not isinstance(prepared.x["train"], Packed) and prepared.x["train"] is prepared.y["train"]
    sigma = np.asarray(prepared.info.normalize.sigma)[None, :, None, None]
    median = np.asarray(prepared.info.normalize.median)[None, :, None, None]
    assert np.allclose(prepared.y["test"] * sigma + median, prepared.raw["test"], atol=1e-3)


def test_the_example_config_reads_the_simulated_sky(sky, tmp_path):
    example = Path(__file__).parents[2] / "examples" / "generate.yaml"
    config = load_config(example, [f"data.path={sky}", f"out={tmp_path / 'run'}"])
    prepared = Generate().prepare(config)
    assert config.model.preset == "cvae" and config.training.kl_anneal_epochs == 5
    assert prepared.info.conditions == ["half_light_radius", "mag", "ellipticity"]
    assert prepared.x["train"].parts[1].shape == (len(prepared.y["train"]), 3)


def test_only_generate_runs_sample(tiny_run):
    with pytest.raises(DeepfieldError, match=r"is a morphology run; only task generate runs sample"):
        load_run(tiny_run[0]).sample(2)


def test_a_diffusion_run_trains_samples_by_steps_and_is_judged(sky, tmp_path, cli):
    """The generate task takes the diffusion preset through the same contract: no reconstruction metrics (its
    output is its noise-prediction error), judged samples, and `deepfield sample --steps --guidance`."""
    config = document(sky, tmp_path / "run")
    config["model"] = {"preset": "diffusion", "options": {"depth": 1, "filters": 4, "groups": 2, "timesteps": 20}}
    config["training"] = {"epochs": 1, "batch_size": 16, "device": "cpu"}
    folder = train(load_config(None, document=config), verbose=0)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert "reconstruction_mse" not in metrics and metrics["test"]["loss"] > 0
    assert metrics["judging"]["memorisation"]["n_samples"] > 0
    out = tmp_path / "samples.h5"
    done = cli("sample", folder, "--n", 3, "--condition", "half_light_radius=0.6,mag=-10", "--seed", 2,
               "--steps", 4, "--guidance", 2, "--out", out)
    assert done.returncode == 0, done.stderr
    with h5py.File(out) as h5:
        assert h5["samples"].shape == (3, 3, 16, 16)
    again = load_run(folder).sample(3, condition={"half_light_radius": 0.6, "mag": -10}, seed=2, steps=4, guidance=2)
    np.testing.assert_array_equal(again, h5py.File(out)["samples"][()])
