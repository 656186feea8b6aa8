"""Spectra from a config end to end: ``data.kind: spectra`` trains the spectra1d preset (examples/spectra.yaml)."""
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from astropy.table import Table

from deepfield.data.simulate.spectra import CLASSES, simulate_spectra
from deepfield.errors import DeepfieldError
from deepfield.report.html import write_report
from deepfield.tasks.config import load_config
from deepfield.tasks.pipeline import prepare, task_for
from deepfield.tasks.run import evaluate_run, load_run, predict_run, train

EXAMPLE = Path(__file__).parents[2] / "examples" / "spectra.yaml"
TINY = ["training.epochs=1", "training.batch_size=32", "training.early_stopping=null",
        "model.options={filters: [8, 16], kernel_size: 5, hidden: [16]}"]


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spectra")
    h5 = simulate_spectra(300, folder / "spectra.h5", length=200, seed=3)
    with h5py.File(h5) as f:  # the same spectra as a plain (N, 1, L) .npz, as users bring them
        np.savez(folder / "spectra.npz", spectra=f["spectra"][:], labels=f["labels"][:], wavelength=f["wavelength"][:])
    return h5, folder / "spectra.npz"


@pytest.fixture(scope="module")
def trained(simulated, tmp_path_factory):
    """One tiny run trained from the example config on the .npz."""
    config = load_config(EXAMPLE, [f"data.path={simulated[1]}", f"out={tmp_path_factory.mktemp('run') / 'run'}",
                                   *TINY])
    return config, train(config, verbose=0, report=write_report)


def test_an_npz_of_n_1_l_is_prepared_as_n_1_l_normalised_per_spectrum(trained):
    config, _ = trained
    prepared = prepare(task_for(config), config)
    assert prepared.input_shape == (1, 200)  # not (1, 1, 200): no height axis added
    assert prepared.info.kind == "spectra" and prepared.info.length == 200
    assert prepared.info.normalize.method == "median_abs" and prepared.info.stretch == "none"
    median = np.median(np.abs(prepared.x["train"]), axis=-1)
    assert np.allclose(median, 1.0, atol=1e-5)  # each spectrum divided by its own median |flux|


def test_the_example_config_trains_evaluates_and_predicts_on_spectra(simulated, trained, tmp_path):
    h5, _ = simulated
    _, out = trained
    assert {"config.yaml", "model.json", "weights.safetensors", "prepared.json", "metrics.json",
            "report.html"} <= {p.name for p in out.iterdir()}
    assert {"gallery.png", "confusion_matrix.png"} <= {p.name for p in (out / "figures").iterdir()}
    info = json.loads((out / "prepared.json").read_text())
    assert len(info["wavelength"]) == 200 and info["bands"] == ["flux"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0 and load_run(out).models[0](torch.zeros(2, 1, 200)).shape == (2, 3)

    # predict on a new file of (N, L) spectra (one channel) on the same grid; evaluate on the HDF5 file
    with h5py.File(h5) as f:
        np.savez(tmp_path / "new.npz", flux=f["spectra"][:40, 0], wavelength=f["wavelength"][:])
    table = Table.read(predict_run(out, tmp_path / "new.npz", tmp_path / "predictions.csv"), format="ascii.csv")
    assert len(table) == 40 and {"id", "predicted"} <= set(table.colnames)
    probabilities = np.column_stack([table[f"p_{name}"] for name in ["0", "1", "2"]])
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    scores = evaluate_run(out, h5)
    assert 0.0 <= scores["accuracy"] <= 1.0 and (out / "evaluations" / "spectra" / "metrics.json").is_file()


def test_new_spectra_must_share_the_training_grid(trained, tmp_path, simulated):
    opened = load_run(trained[1])
    np.save(tmp_path / "short.npy", np.ones((5, 1, 100), np.float32))
    with pytest.raises(DeepfieldError, match=r"short.npy: spectra of 100 samples; this run was trained on 200"):
        opened.inputs(tmp_path / "short.npy")
    with h5py.File(simulated[0]) as f:
        np.savez(tmp_path / "shifted.npz", spectra=f["spectra"][:5], wavelength=f["wavelength"][:] * 1.1)
    with pytest.raises(DeepfieldError, match=r"shifted.npz: its wavelength grid differs"):
        opened.inputs(tmp_path / "shifted.npz")


def test_the_simulated_file_names_its_classes(simulated, tmp_path):
    config = load_config(EXAMPLE, [f"data.path={simulated[0]}", f"out={tmp_path / 'run'}", "data.limit=120"])
    info = prepare(task_for(config), config).info
    assert info.classes == list(CLASSES) and info.kind == "spectra"


def test_a_spectra_preset_on_data_read_as_images_says_to_set_the_kind(simulated, tmp_path):
    config = load_config(EXAMPLE, [f"data.path={simulated[1]}", f"out={tmp_path / 'run'}", "data.kind=images",
                                   "data.bands=[flux]", "data.images=spectra", *TINY])
    task = task_for(config)
    prepared = prepare(task, config)
    assert prepared.input_shape == (1, 1, 200)  # what issue 14 met: a height axis added
    with pytest.raises(DeepfieldError, match=r"'spectra1d' takes \(C, L\) spectra but the data was read as "
                                             r"images \(1, 1, 200\): set data.kind: spectra"):
        task.build_model(config, prepared)


def test_photoz_learns_redshifts_from_spectra_and_predicts_them(simulated, tmp_path):
    h5, _ = simulated
    config = load_config(EXAMPLE, [f"data.path={h5}", f"out={tmp_path / 'run'}", "task=photoz",
                                   "data.target=truth/redshift", *TINY, "model.options.global_pool=false"])
    task = task_for(config)
    prepared = prepare(task, config)
    assert prepared.input_shape == (1, 200) and prepared.info.inputs == "spectra"
    with h5py.File(h5) as f:
        z = f["truth/redshift"][:]
    parts = np.concatenate([prepared.z[part] for part in ("train", "validation", "test")])
    assert np.allclose(np.sort(parts), np.sort(z), atol=1e-6)  # every spectrum in one part, with its redshift
    assert np.allclose(prepared.y["test"].reshape(-1), prepared.z["test"], atol=1e-6)
    out = train(config, verbose=0)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mode"] == "regression" and np.isfinite(metrics["sigma_nmad"])
    assert (out / "figures" / "photoz_scatter.png").is_file()
    table = Table.read(predict_run(out, h5, tmp_path / "z.csv"), format="ascii.csv")
    assert len(table) == 300 and np.isfinite(table["z_phot"]).all()


def test_tabular_refuses_the_spectra_kind_rather_than_ignoring_it(simulated, tmp_path):
    config = load_config(None, document={"task": "tabular", "out": str(tmp_path / "run"),
                                         "data": {"path": str(simulated[0]), "kind": "spectra"}})
    with pytest.raises(DeepfieldError, match=r"data.kind: 'spectra' is for the classification tasks and photoz"):
        prepare(task_for(config), config)
