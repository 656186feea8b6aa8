"""`deepfield train` into a folder that holds a run: checked before anything changes, resumed only with the same
config, extended without repeating epochs, started over only with --restart (issue 15, items 1 and 2)."""
import csv
import json

import pytest
from probes import refused, regression, write_config

from deepfield.report.html import write_report
from deepfield.tasks.config import load_config
from deepfield.tasks.run import train


def tree(folder):
    """Every file under ``folder`` with its bytes (the lock aside)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".deepfield.lock"}


def epochs(run):
    with (run / "history.csv").open(newline="") as stream:
        return [int(row["epoch"]) for row in csv.DictReader(stream)]


@pytest.fixture(scope="module")
def finished(table, tmp_path_factory):
    """A finished 3-epoch regression run and its config file."""
    root = tmp_path_factory.mktemp("finished")
    config = write_config(regression(table, root / "run"), root / "m.yaml")
    train(load_config(config), verbose=0, report=write_report)  # as `deepfield train` does
    return root / "run", config


@pytest.fixture
def run(finished, tmp_path):
    """A copy of the finished run this test may change, and its config file (out= the copy)."""
    import shutil

    source, config = finished
    copy = tmp_path / "run"
    shutil.copytree(source, copy)
    document = load_config(config).model_dump(mode="json")
    document["out"] = str(copy)
    return copy, write_config(document, tmp_path / "m.yaml")


def test_a_failed_train_leaves_a_finished_run_as_it_was(run, cli, tmp_path):
    folder, config = run
    before = tree(folder)
    refused(cli("train", config, "data.path=missing.csv"), "missing.csv")
    refused(cli("train", config, "data.path=missing.csv", "--restart"), "missing.csv")
    refused(cli("train", config, "model.options.hidden=[0]", "--restart"), "units")  # a network that cannot build
    assert tree(folder) == before
    assert cli("evaluate", folder).returncode == 0


def test_the_same_config_on_a_finished_run_trains_nothing(run, cli):
    folder, config = run
    before = tree(folder)
    done = cli("train", config)
    assert done.returncode == 0, done.stderr
    assert "finished with this config (3 epochs); nothing to train" in done.stdout
    assert tree(folder) == before


def test_another_config_is_refused_with_its_differences_and_the_ways_on(run, cli):
    folder, config = run
    before = tree(folder)
    refused(cli("train", config, "training.learning_rate=0.05", "model.options.hidden=[16]"),
            "training.learning_rate: unset -> 0.05", "model.options.hidden: [8] -> [16]", "--restart",
            f"out={folder}-2")
    refused(cli("train", config, "training.epochs=2"), "training.epochs: 3 -> 2")
    assert tree(folder) == before


def test_an_interrupted_run_resumes_only_with_the_same_config(table, tmp_path, cli, monkeypatch):
    import deepfield.tasks.pipeline as run_module
    from deepfield.training import BackupAndRestore

    class KilledAtEpoch2(BackupAndRestore):
        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            if epoch == 1:
                raise KeyboardInterrupt

    config = write_config(regression(table, tmp_path / "run"), tmp_path / "m.yaml")
    monkeypatch.setattr(run_module, "BackupAndRestore", KilledAtEpoch2)
    with pytest.raises(KeyboardInterrupt):
        train(load_config(config), verbose=0)
    monkeypatch.undo()
    before = tree(tmp_path / "run")
    refused(cli("train", config, "training.learning_rate=0.05"), "training.learning_rate", "--restart")
    assert tree(tmp_path / "run") == before
    resumed = cli("train", config)
    assert resumed.returncode == 0 and "resuming the interrupted run (same config)" in resumed.stdout
    assert epochs(tmp_path / "run") == [0, 1, 2]

    train(load_config(config, [f"out={tmp_path / 'straight'}"]), verbose=0)
    assert (tmp_path / "run" / "weights.safetensors").read_bytes() == \
        (tmp_path / "straight" / "weights.safetensors").read_bytes()


def test_more_epochs_continue_a_finished_run_from_its_last_epoch(run, cli, table, tmp_path):
    folder, config = run
    extended = cli("train", config, "training.epochs=5")
    assert extended.returncode == 0, extended.stderr
    assert "extending the finished run from 3 to 5 epochs" in extended.stdout
    assert epochs(folder) == [0, 1, 2, 3, 4]  # no epoch twice
    assert json.loads((folder / "metrics.json").read_text())["epochs_run"] == 5
    assert "training.epochs=5" not in (folder / "config.yaml").read_text()
    assert load_config(folder / "config.yaml").training.epochs == 5

    straight = tmp_path / "straight"  # the same 5 epochs in one go
    train(load_config(None, document=regression(table, straight, epochs=5)), verbose=0)
    assert (folder / "weights.safetensors").read_bytes() == (straight / "weights.safetensors").read_bytes()
    assert epochs(straight) == epochs(folder)


def test_restart_trains_the_folder_again_from_scratch(run, cli, table, tmp_path):
    folder, config = run
    (folder / "notes.txt").write_text("mine")  # not written by deepfield: kept
    (folder / "checkpoints" / "elapsed.json").write_text(json.dumps({"seconds": 1e6}))  # the old run's time
    restarted = cli("train", config, "training.learning_rate=0.05", "--restart")
    assert restarted.returncode == 0, restarted.stderr
    assert "--restart: the run in this folder is discarded" in restarted.stdout
    assert epochs(folder) == [0, 1, 2]
    assert load_config(folder / "config.yaml").training.learning_rate == 0.05
    assert (folder / "notes.txt").read_text() == "mine"

    fresh = tmp_path / "fresh"
    train(load_config(None, document=regression(table, fresh, learning_rate=0.05)), verbose=0)
    assert (folder / "weights.safetensors").read_bytes() == (fresh / "weights.safetensors").read_bytes()
    restarted_seconds = json.loads((folder / "checkpoints" / "elapsed.json").read_text())["seconds"]
    assert restarted_seconds < 1e5  # counted from the restart, not added to the discarded run's 1e6 s
