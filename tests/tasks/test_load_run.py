"""A run as the CLI sees it, from Python (`df.load_run`), and run folders that moved (issue 14, points 3 and 4)."""
import json
import shutil
from contextlib import contextmanager

import h5py
import numpy as np
import pytest
import torch
import yaml
from astropy.table import Table

import deepfield as df
from deepfield.data.catalogues import read_catalogue
from deepfield.data.simulate import simulate_morphology, simulate_photoz
from deepfield.errors import DeepfieldError
from deepfield.models.serialization import BareNetworkWarning, load_model
from deepfield.tasks import run_paths
from deepfield.tasks.config import load_config
from deepfield.tasks.run import train
from deepfield.tasks.tabular import Tabular
from helpers import LSST


@contextmanager
def hidden(path):
    """``path`` renamed away for the block (its absolute path then leads nowhere)."""
    away = path.with_name(path.name + ".away")
    path.rename(away)
    try:
        yield
    finally:
        away.rename(path)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """``a/sky.h5`` and the run ``a/run`` trained on it (MC dropout, calibrated), and ``new.h5`` elsewhere."""
    root = tmp_path_factory.mktemp("runs")
    sky = simulate_morphology(80, root / "a" / "sky.h5", size=24, seed=3, workers=1, progress=False)
    new = simulate_morphology(12, root / "new.h5", size=24, seed=9, workers=1, progress=False)
    config = load_config(None, document={
        "task": "morphology", "out": str(root / "a" / "run"), "seed": 1, "data": {"path": str(sky)},
        "model": {"preset": "resnet", "options": {"filters": [8], "blocks": 1, "dropout": 0.3}},
        "training": {"epochs": 1, "batch_size": 32}, "uncertainty": {"mc_samples": 4}})
    train(config, verbose=0)
    return root, new


def raw_stamps(path):
    with h5py.File(path, "r") as f:
        return f["images"][:]


def test_the_saved_config_keeps_data_paths_absolute_and_relative_to_the_run(tree):
    root, _ = tree
    saved = yaml.safe_load((root / "a" / "run" / "config.yaml").read_text())
    assert saved["data"]["path"] == str((root / "a" / "sky.h5").resolve())
    assert saved["data_from_run"] == {"path": "../sky.h5"}


def test_a_path_far_from_the_run_is_kept_absolute_only(tmp_path):
    config = load_config(None, document={"task": "tabular", "out": str(tmp_path / "x" / "y" / "run"),
                                         "data": {"path": str(tmp_path / "survey" / "t.csv"),
                                                  "test": str(tmp_path / "x" / "y" / "run" / "t.csv")}})
    saved = run_paths.saved_config(config)
    assert saved.data.path == (tmp_path / "survey" / "t.csv").resolve()
    assert saved.data_from_run == {"test": "t.csv"}  # inside the run; the survey is three folders up


def test_a_run_saved_before_finds_its_relative_data_from_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "t.csv").write_text("x\n1\n")
    config = load_config(None, document={"task": "tabular", "data": {"path": "d/t.csv"}})
    monkeypatch.chdir(tmp_path)
    found, missing = run_paths.find_data(config, tmp_path / "run")
    assert found.data.path == tmp_path / "d" / "t.csv" and missing == {}


def test_a_run_moved_with_its_data_evaluates_predicts_and_explains_from_anywhere(tree, tmp_path, cli, monkeypatch):
    root, new = tree
    moved = tmp_path / "b"
    shutil.copytree(root / "a", moved)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with hidden(root / "a"):  # the tree moved: nothing left where it was trained
        evaluated = cli("evaluate", moved / "run")
        assert evaluated.returncode == 0, evaluated.stderr
        assert "accuracy" in evaluated.stdout
        assert json.loads((moved / "run" / "evaluation.json").read_text())["accuracy"] >= 0.0
        predicted = cli("predict", moved / "run", new, "--out", "p.csv")
        assert predicted.returncode == 0, predicted.stderr
        explained = cli("explain", moved / "run", new, "--method", "saliency", "--out", "look")
        assert explained.returncode == 0, explained.stderr
        assert (elsewhere / "look" / "explain.json").is_file()

        run = df.load_run(moved / "run")
        assert run.config.data.path == (moved / "sky.h5").resolve() and run.missing == {}
        folder = run.explain(out=tmp_path / "own", methods=["saliency"], per_class=1)  # its own test part
        assert json.loads((folder / "explain.json").read_text())["labels"] is not None
        table = run.predict(raw_stamps(new))  # the raw stamps as the user holds them
    from_cli = Table.read(elsewhere / "p.csv", format="ascii.csv")
    columns = [name for name in from_cli.colnames if name not in ("id", "predicted")]
    assert {"p_spheroid", "p_merger", "entropy"} <= set(columns) and columns == table.colnames[2:]
    for name in columns:
        np.testing.assert_allclose(table[name], from_cli[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert list(table["predicted"]) == list(from_cli["predicted"])
    assert table.meta["draws"] == 4 and "temperature" in table.meta


def test_the_bare_network_predicts_differently_and_says_so(tree):
    root, new = tree
    run = root / "a" / "run"
    with pytest.warns(BareNetworkWarning, match=r"bare network, without the run's input preparation \(normalisation and stretch.*"
                                                r"deepfield.load_run\(.*\)\.predict"):
        bare = load_model(run)
    stamps = raw_stamps(new)
    loaded = df.load_run(run)
    assert loaded.classes == ["spheroid", "disk", "irregular", "point", "merger"] and loaded.bands == ["g", "r", "i"]
    network = df.Engine(bare).predict(stamps, verbose=0)
    prepared = df.Engine(bare).predict(loaded.inputs(stamps).x, verbose=0)
    assert not np.allclose(network, prepared, atol=1e-3)  # raw stamps skip the normalisation and stretch
    with pytest.raises(DeepfieldError, match=r"raw stamps of shape \(2, 24, 24, 3\): expected \(N, 3, H, W\), "
                                             "channels first, the run's bands g, r, i in that order"):
        loaded.predict(np.zeros((2, 24, 24, 3)))


def test_sequential_load_of_a_run_folder_warns(tmp_path):
    model = df.Sequential([df.layers.Dense(2, input_shape=(3,))])
    model.save(tmp_path)
    assert isinstance(df.Sequential.load(tmp_path), df.Sequential)  # a saved model: silent
    (tmp_path / "config.yaml").write_text("task: tabular\n")
    (tmp_path / "prepared.json").write_text("{}\n")
    with pytest.warns(BareNetworkWarning, match="is a run folder: this loads the bare network"):
        df.Sequential.load(tmp_path)
    df.Model(torch.nn.Linear(3, 2)).save(tmp_path)
    with pytest.warns(BareNetworkWarning, match="is a run folder: this loads the bare network"):
        df.Model.load(tmp_path, torch.nn.Linear(3, 2))


def test_only_the_run_moved_finds_the_data_where_it_was(tree, tmp_path, monkeypatch):
    root, _ = tree
    shutil.copytree(root / "a" / "run", tmp_path / "far" / "run")
    monkeypatch.chdir(tmp_path)
    run = df.load_run("far/run")
    assert run.config.data.path == (root / "a" / "sky.h5").resolve()
    assert run.evaluate()["accuracy"] >= 0.0
    assert (tmp_path / "far" / "run" / "evaluation.json").is_file()


def test_data_found_nowhere_names_the_places_tried_and_what_to_do(tree, tmp_path, cli, monkeypatch):
    root, new = tree
    shutil.copytree(root / "a" / "run", tmp_path / "far" / "run")
    with hidden(root / "a" / "sky.h5"):
        run = df.load_run(tmp_path / "far" / "run")
        assert set(run.missing) == {"path"}
        with pytest.raises(DeepfieldError, match=r"the data it was trained on is not found \(data.path: tried "
                                                 r".*far/sky.h5, .*a/sky.h5\); evaluate another labelled file "
                                                 r"with --data FILE"):
            run.evaluate()
        assert len(run.predict(new)) == 12  # new files need no training data
        assert run.evaluate(new)["accuracy"] >= 0.0
        monkeypatch.chdir(tmp_path)
        failed = cli("evaluate", tmp_path / "far" / "run")
    assert failed.returncode == 2 and "--data FILE" in failed.stderr + failed.stdout
    assert "Traceback" not in failed.stderr


def test_a_catalogue_run_predicts_from_a_table_as_the_cli_does(tmp_path, cli, monkeypatch):
    catalogue = simulate_photoz(200, tmp_path / "cat.h5", seed=4, workers=1, progress=False)
    new = simulate_photoz(30, tmp_path / "new.h5", seed=8, workers=1, progress=False)
    config = load_config(None, document={
        "task": "photoz", "out": str(tmp_path / "run"), "seed": 3, "data": {"path": str(catalogue), **LSST},
        "model": {"preset": "mlp", "options": {"dropout": 0.1}}, "training": {"epochs": 2, "batch_size": 32},
        "uncertainty": {"mc_samples": 3}})
    train(config, verbose=0)
    monkeypatch.chdir(tmp_path)
    done = cli("predict", "run", new, "--out", "z.csv")
    assert done.returncode == 0, done.stderr
    from_cli = Table.read(tmp_path / "z.csv", format="ascii.csv")
    table = df.load_run(tmp_path / "run").predict(read_catalogue(new))
    assert table.colnames == from_cli.colnames and len(table) == 30
    for name in from_cli.colnames[1:]:
        np.testing.assert_allclose(table[name], from_cli[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert [str(i) for i in from_cli["id"]] == list(table["id"])


def test_the_readme_example_runs_as_written(tree, tmp_path, monkeypatch, readme_python):
    root, new = tree
    shutil.copytree(root / "a" / "run", tmp_path / "runs" / "morphology")
    shutil.copy(new, tmp_path / "new_stamps.h5")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(readme_python("df.load_run("), "README.md", "exec"), namespace)
    assert len(namespace["table"]) == 12 and 0.0 <= namespace["metrics"]["accuracy"] <= 1.0
    assert (tmp_path / "look" / "explain.json").is_file()


def test_a_table_in_memory_is_prepared_as_the_same_rows_read_from_a_file(tmp_path):
    rng = np.random.default_rng(0)
    table = Table({"a": rng.normal(size=40), "b": rng.normal(size=40) * 5 + 2, "y": rng.normal(size=40)})
    table["b"][3] = np.nan  # an incomplete row is left out, in memory as from the file
    table.write(tmp_path / "t.csv", format="ascii.csv")
    config = load_config(None, document={"task": "tabular", "data": {"path": str(tmp_path / "t.csv"), "target": "y"}})
    task = Tabular()
    info = task.prepare(config).info
    from_file = task.read_new(config, info, tmp_path / "t.csv", labelled=False)
    in_memory = task.read_values(config, info, {name: table[name] for name in ("a", "b")})
    assert len(in_memory.x) == 39 and 3 not in in_memory.ids
    np.testing.assert_allclose(in_memory.x, from_file.x, rtol=1e-6)
    np.testing.assert_array_equal(in_memory.ids, from_file.ids)
