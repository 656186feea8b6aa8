"""Checkpoints and resuming: the state file format, atomic writes, exact continuation after a kill."""
from __future__ import annotations

import csv
import json
import math
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from deepfield.errors import DeepfieldError
from deepfield.models import Dense, Dropout, Flatten
from deepfield.training import (
    BackupAndRestore,
    Callback,
    EarlyStopping,
    ReduceLROnPlateau,
    Sequential,
    load_state,
    save_state,
)

SCRIPT = Path(__file__).with_name("resume_script.py")


# -- the state file ---------------------------------------------------------------------------------

def test_state_round_trips_tensors_numbers_and_structure(tmp_path):
    state = {
        "weights": {"a.weight": torch.randn(3, 4), "a.bias": torch.arange(3)},
        "optimizer": {"state": {0: {"step": torch.tensor(5.0)}}, "param_groups": [{"lr": 0.1, "betas": (0.9, 0.99)}]},
        "rng": torch.get_rng_state(),
        "best": math.inf, "none": None, "flag": True, "name": "run", "list": [1, 2.5, "x"],
        "channels_last": torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last),
        "bf16": torch.randn(4).to(torch.bfloat16),
    }
    path = save_state(tmp_path / "state.safetensors", state)
    back = load_state(path)
    assert back.keys() == state.keys()
    assert torch.equal(back["weights"]["a.weight"], state["weights"]["a.weight"])
    assert back["weights"]["a.bias"].dtype == torch.int64
    assert list(back["optimizer"]["state"]) == [0]  # int keys survive JSON
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.99)  # and tuples
    assert torch.equal(back["rng"], state["rng"]) and back["rng"].dtype == torch.uint8
    assert back["best"] == math.inf and back["none"] is None and back["flag"] is True
    assert back["list"] == [1, 2.5, "x"]
    assert torch.equal(back["channels_last"], state["channels_last"])
    assert torch.equal(back["bf16"], state["bf16"])


def test_state_file_is_safetensors_with_a_json_header_and_loads_without_pickle(tmp_path, monkeypatch):
    path = save_state(tmp_path / "s.safetensors", {"w": torch.ones(2), "epoch": 3})
    with safe_open(str(path), framework="pt") as fh:
        tree = json.loads(fh.metadata()["deepfield_tree"])
    assert tree == {"w": {"$tensor": "t0"}, "epoch": 3}

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling is not allowed")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert load_state(path)["epoch"] == 3


def test_state_errors_name_the_file(tmp_path):
    with pytest.raises(DeepfieldError, match="state.safetensors: training state file not found"):
        load_state(tmp_path / "state.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(DeepfieldError, match="junk.safetensors: not a readable training state"):
        load_state(junk)
    plain = tmp_path / "weights.safetensors"
    safetensors.torch.save_file({"w": torch.ones(1)}, str(plain))
    with pytest.raises(DeepfieldError, match="not a deepfield training state"):
        load_state(plain)
    with pytest.raises(DeepfieldError, match="cannot save a set"):
        save_state(tmp_path / "x.safetensors", {"bad": {1, 2}})


def test_an_interrupted_write_leaves_the_previous_state(tmp_path, monkeypatch):
    path = save_state(tmp_path / "s.safetensors", {"epoch": 1})

    def crash(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr("deepfield.training.checkpoint.save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        save_state(path, {"epoch": 2})
    assert load_state(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["s.safetensors"]  # no temporary file left behind


# -- resuming in one process -------------------------------------------------------------------------

def data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(60, 4, generator=gen)
    return x, x[:, :1] - 2 * x[:, 1:2]


def dropout_model() -> Sequential:
    net = Sequential([Dense(16, activation="relu"), Dropout(0.4), Dense(1)], input_shape=(4,))
    return net.compile(optimizer="adam", loss="mse", device="cpu")


class Crash(Callback):
    """Raise after global batch ``at`` (counted from 1), as a power cut would."""

    def __init__(self, at: int):
        super().__init__()
        self.at, self.seen = at, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.at:
            raise KeyboardInterrupt


def callbacks() -> list[Callback]:
    return [EarlyStopping(monitor="loss", patience=50, restore_best_weights=True),
            ReduceLROnPlateau(monitor="loss", mode="max", patience=2, factor=0.5)]


@pytest.mark.parametrize("save_freq, crash_at, position", [
    (3, 14, (1, 4)),        # mid-epoch
    (7, 14, (0, 7)),        # one batch before the end of the epoch
    (4, 19, (1, 8)),        # every batch of epoch 1 done, its end (validation, callbacks) still to come
    ("epoch", 17, (2, 0)),  # at an epoch boundary
])
def test_resume_after_a_crash_equals_the_uninterrupted_run(tmp_path, save_freq, crash_at, position):
    x, y = data()  # 8 batches of 8 per epoch (the last one holds 4)
    reference = dropout_model()
    ref_callbacks = callbacks()
    ref_history = reference.fit(x, y, batch_size=8, epochs=5, seed=11, verbose=0, callbacks=ref_callbacks)

    crashed = dropout_model()
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(x, y, batch_size=8, epochs=5, seed=11, verbose=0,
                    callbacks=[*callbacks(), BackupAndRestore(tmp_path, save_freq=save_freq), Crash(crash_at)])
    assert (tmp_path / "backup.safetensors").exists()

    resumed = dropout_model()
    backup = BackupAndRestore(tmp_path, save_freq=save_freq)
    resumed_callbacks = callbacks()
    history = resumed.fit(x, y, batch_size=8, epochs=5, seed=11, verbose=0, callbacks=[*resumed_callbacks, backup])
    assert backup.restored_from == position
    for (name, got), want in zip(resumed.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(got, want), name
    assert history.epoch == ref_history.epoch
    assert history.history["lr"] == ref_history.history["lr"]
    assert history.history["loss"] == pytest.approx(ref_history.history["loss"], rel=1e-6)
    assert resumed_callbacks[0].best_epoch == ref_callbacks[0].best_epoch
    assert resumed.optimizer.iterations == reference.optimizer.iterations
    assert not (tmp_path / "backup.safetensors").exists()  # deleted when training ends


@pytest.mark.parametrize("save_freq, crash_at, message, first", [
    (3, 14, "at epoch 2/5, after its batch 4", "Epoch 2/5"),
    ("epoch", 17, "at epoch 3/5", "Epoch 3/5"),
])
def test_a_resumed_fit_says_where_it_resumes(tmp_path, capsys, save_freq, crash_at, message, first):
    """Once, before the first progress line, with verbose on; silent with verbose=0."""
    x, y = data()
    with pytest.raises(KeyboardInterrupt):
        dropout_model().fit(x, y, batch_size=8, epochs=5, seed=11, verbose=0,
                            callbacks=[BackupAndRestore(tmp_path, save_freq=save_freq, delete_checkpoint=False),
                                       Crash(crash_at)])
    assert capsys.readouterr().out == ""
    dropout_model().fit(x, y, batch_size=8, epochs=5, seed=11, verbose=2,
                        callbacks=[BackupAndRestore(tmp_path, save_freq=save_freq, delete_checkpoint=False)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"resuming from the backup {tmp_path / 'backup.safetensors'} {message}"
    assert sum("resuming" in line for line in lines) == 1 and lines[1].startswith(first)
    dropout_model().fit(x, y, batch_size=8, epochs=5, seed=11, verbose=0, callbacks=[BackupAndRestore(tmp_path)])
    assert capsys.readouterr().out == ""


def test_resume_with_augmented_batches_equals_the_uninterrupted_run(tmp_path):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(60, 1, 4, 4, generator=gen)  # 8 batches of 8 per epoch, each turned, shifted and noised
    y = x.flatten(1)[:, :1] - 2 * x.flatten(1)[:, 5:6]
    augment = ["dihedral", {"name": "shift", "max_shift": 1}, {"name": "gaussian_noise", "sigma": 0.1}]

    def model() -> Sequential:
        net = Sequential([Flatten(), Dense(16, activation="relu"), Dropout(0.4), Dense(1)], input_shape=(1, 4, 4))
        return net.compile(optimizer="adam", loss="mse", device="cpu")

    reference = model()
    reference.fit(x, y, batch_size=8, epochs=3, seed=11, verbose=0, augment=augment)
    with pytest.raises(KeyboardInterrupt):
        model().fit(x, y, batch_size=8, epochs=3, seed=11, verbose=0, augment=augment,
                    callbacks=[BackupAndRestore(tmp_path, save_freq=3), Crash(14)])
    resumed, backup = model(), BackupAndRestore(tmp_path, save_freq=3)
    resumed.fit(x, y, batch_size=8, epochs=3, seed=11, verbose=0, augment=augment, callbacks=[backup])
    assert backup.restored_from == (1, 4)  # mid-epoch
    for (name, got), want in zip(resumed.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(got, want), name
    plain = model()
    plain.fit(x, y, batch_size=8, epochs=3, seed=11, verbose=0)
    assert not all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), reference.state_dict().values()))


def test_a_backup_of_another_model_is_refused(tmp_path):
    x, y = data()
    dropout_model().fit(x, y, epochs=1, verbose=0, callbacks=[BackupAndRestore(tmp_path, delete_checkpoint=False)])
    other = Sequential([Dense(3), Dense(1)], input_shape=(4,)).compile(optimizer="adam", loss="mse")
    with pytest.raises(DeepfieldError, match="the backup does not fit this model or optimiser"):
        other.fit(x, y, epochs=2, verbose=0, callbacks=[BackupAndRestore(tmp_path)])


def test_backup_and_restore_checks_save_freq(tmp_path):
    with pytest.raises(DeepfieldError, match="save_freq must be 'epoch' or a positive int"):
        BackupAndRestore(tmp_path, save_freq=0)


# -- resuming after SIGKILL, in a fresh process --------------------------------------------------------

def run_script(folder: Path, *extra: str) -> list[str]:
    return [sys.executable, str(SCRIPT), "--backup", str(folder / "backup"), "--out", str(folder / "weights.safetensors"),
            "--csv", str(folder / "history.csv"), *extra]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_sigkill_mid_epoch_then_restart_gives_the_uninterrupted_weights(tmp_path):
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "killed"
    reference = subprocess.Popen(run_script(ref_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = subprocess.Popen(run_script(run_dir, "--delay", "0.05"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    backup = run_dir / "backup" / "backup.safetensors"
    deadline = time.monotonic() + 60
    try:
        while not backup.exists():
            assert victim.poll() is None, f"the run ended before writing a backup: {victim.communicate()}"
            assert time.monotonic() < deadline, "no backup written within 60 s"
            time.sleep(0.01)
        time.sleep(0.2)  # a few batches more: the kill lands after a backup, mid-epoch
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
    assert victim.returncode == -signal.SIGKILL
    assert not (run_dir / "weights.safetensors").exists()

    resumed = subprocess.run(run_script(run_dir), capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    words = resumed.stdout.split()
    assert words[0] == "RESUMED" and int(words[2]) > 0  # continued from a batch inside an epoch
    out, err = reference.communicate(timeout=120)
    assert reference.returncode == 0, err
    assert "RESUMED" not in out

    got, want = load_file(str(run_dir / "weights.safetensors")), load_file(str(ref_dir / "weights.safetensors"))
    assert got.keys() == want.keys()
    for name in want:
        assert torch.equal(got[name], want[name]), name
    rows, ref_rows = read_csv(run_dir / "history.csv"), read_csv(ref_dir / "history.csv")
    assert [r["epoch"] for r in rows] == [str(e) for e in range(6)]  # no epoch logged twice
    assert [float(r["loss"]) for r in rows] == pytest.approx([float(r["loss"]) for r in ref_rows], rel=1e-6)
