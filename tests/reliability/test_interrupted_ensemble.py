"""An ensemble killed while training a member resumes that member only; until then it is refused with the way to
resume; its ``time_s`` covers every session (issue 15, ensembles and interrupted work)."""
import json

import numpy as np
import pytest
from astropy.table import Table

import deepfield.tasks.pipeline as run_module
from deepfield.errors import DeepfieldError
from deepfield.tasks.config import load_config
from deepfield.tasks.run import load_run, train
from deepfield.training import BackupAndRestore


class KilledInMember2(BackupAndRestore):
    """A kill right after member 2's second epoch was backed up."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if self.path.parent.parent.parent.name == "2" and epoch == 1:
            raise KeyboardInterrupt


def rows(path):
    return len(path.read_text().splitlines()) - 1


def test_a_resumed_ensemble_trains_only_its_unsaved_member(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 200))
    Table({"a": a, "b": b, "y": 3.0 * a - b}).write(tmp_path / "table.csv")
    config = load_config(None, document={
        "task": "tabular", "out": str(tmp_path / "run"), "seed": 0, "ensemble": 3,
        "data": {"path": str(tmp_path / "table.csv"), "target": "y"},
        "model": {"preset": "mlp", "options": {"hidden": [8]}}, "training": {"epochs": 4, "batch_size": 32}})
    run = tmp_path / "run"
    monkeypatch.setattr(run_module, "BackupAndRestore", KilledInMember2)
    with pytest.raises(KeyboardInterrupt):
        train(config, verbose=0)
    monkeypatch.undo()
    members = run / "members"
    assert [rows(members / str(k) / "history.csv") for k in range(3)] == [4, 4, 2]
    first = {k: (members / str(k) / "weights.safetensors").read_bytes() for k in (0, 1)}

    with pytest.raises(DeepfieldError, match=r"run .*run is not finished: member 3 of 3 \(members/2\) was not "
                                             r"trained; start `deepfield train` with its config again to resume"):
        load_run(run)
    before = json.loads((run / "checkpoints" / "elapsed.json").read_text())["seconds"]
    assert before > 0

    train(config, verbose=0)
    assert [rows(members / str(k) / "history.csv") for k in range(3)] == [4, 4, 4]  # no member trained twice
    assert all((members / str(k) / "weights.safetensors").read_bytes() == first[k] for k in (0, 1))
    assert (members / "2" / "checkpoints" / "trained.json").is_file()  # its backup stays: more epochs continue it
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["time_s"] >= round(before, 1) and metrics["epochs_run"] == [4, 4, 4]
    assert len(load_run(run).models) == 3
