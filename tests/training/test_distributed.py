"""Data-parallel training on the CPU with gloo: 2 processes equal 1 with the same global batch and seed,
dropout included (each sample's mask is the one a single process draws for it)."""
from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # the spawned processes import the script by name
import distributed_script as script  # noqa: E402

from deepfield.training import distributed  # noqa: E402
from deepfield.training.batches import ShardedBatches, TensorBatches, epoch_order, shard_evaluation  # noqa: E402

pytestmark = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="needs torch.distributed with gloo")
TOL = dict(rtol=1e-5, atol=1e-6)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    single_dir, multi_dir = tmp_path_factory.mktemp("single"), tmp_path_factory.mktemp("multi")
    single = script.fit_small(str(single_dir))
    multi = distributed.launch(2, script.fit_small, str(multi_dir), threads=1)
    return single, multi, single_dir, multi_dir


def test_two_processes_train_as_one_with_the_same_global_batch(runs):
    single, multi, _, _ = runs
    assert single["world"] == 1 and [r["world"] for r in multi] == [2, 2] and [r["rank"] for r in multi] == [0, 1]
    assert set(single["history"]) == {"loss", "mae", "val_loss", "val_mae", "lr"}
    for result in multi:  # every rank logs the same, all-reduced numbers, equal to the single run's
        for key, values in single["history"].items():
            np.testing.assert_allclose(result["history"][key], values, **TOL, err_msg=key)
        for name, weight in single["weights"].items():  # BN's moving statistics included
            np.testing.assert_allclose(result["weights"][name], weight, **TOL, err_msg=name)
        assert result["bn_class"] == "BatchNormalization"
    assert single["history"]["val_loss"][-1] < single["history"]["val_loss"][0]  # it learned something


def test_predict_and_evaluate_gather_every_rank_s_block_in_order(runs):
    single, multi, _, _ = runs
    for result in multi:
        assert result["predict"].shape == single["predict"].shape
        np.testing.assert_allclose(result["predict"], single["predict"], **TOL)
        assert result["evaluate"].keys() == single["evaluate"].keys()
        for key, value in single["evaluate"].items():
            assert math.isclose(result["evaluate"][key], value, rel_tol=1e-5), key


def test_only_rank_0_writes_files(runs):
    single, _, single_dir, multi_dir = runs
    rows, expected = read_csv(multi_dir / "history.csv"), read_csv(single_dir / "history.csv")
    assert len(rows) == len(expected) == script.EPOCHS  # written once, not once per process
    assert rows[0].keys() == expected[0].keys()
    for row, want in zip(rows, expected):
        assert row["epoch"] == want["epoch"]
        for key in ("loss", "mae", "val_loss", "val_mae"):
            assert math.isclose(float(row[key]), float(want[key]), rel_tol=1e-5)
    assert sorted(p.name for p in multi_dir.iterdir()) == ["history.csv"]


def test_resume_after_a_stop_continues_as_the_uninterrupted_run(runs, tmp_path):
    single = runs[0]
    first = distributed.launch(2, script.fit_small, str(tmp_path), 1, True, threads=1)
    assert first == [{"stopped": True}] * 2 and (tmp_path / "backup" / "backup.safetensors").is_file()
    resumed = distributed.launch(2, script.fit_small, str(tmp_path), None, True, threads=1)
    for result in resumed:
        # backups every 5 steps of 6: the resumed epoch 1 starts at its step 4. Its running loss was in the
        # backup (all-reduced); the training metrics are not (as in one process), so they cover steps 4-5 only
        for key, values in single["history"].items():
            got, want = np.array(result["history"][key]), np.array(values)
            if key == "mae":
                got, want = got[[0, 2, 3]], want[[0, 2, 3]]
            np.testing.assert_allclose(got, want, **TOL, err_msg=key)
        for name, weight in single["weights"].items():
            np.testing.assert_allclose(result["weights"][name], weight, **TOL, err_msg=name)
    assert len(read_csv(tmp_path / "history.csv")) == script.EPOCHS  # cut back and continued, on rank 0
    assert not (tmp_path / "backup" / "backup.safetensors").exists()


# -- sharding, without processes ----------------------------------------------------------------

def test_the_shards_of_a_step_are_the_single_process_batch_in_order():
    x = torch.arange(45.0).reshape(45, 1)
    batches = TensorBatches(x, None, 8, shuffle=True)
    single = [b[0].reshape(-1) for b in batches.epoch(3, 11)]
    shards = [list(ShardedBatches(batches, r, 3).epoch(3, 11)) for r in range(3)]
    for step, whole in enumerate(single):
        parts = [shards[r][step][0].reshape(-1) for r in range(3)]
        counts = [ShardedBatches(batches, r, 3).counts(step) for r in range(3)]
        assert torch.equal(torch.cat([p[:n] for p, (n, _) in zip(parts, counts)]), whole)
        assert all(total == len(whole) for _, total in counts)
    assert torch.equal(torch.cat(single).long(), epoch_order(45, 11, 3))
    tiny = TensorBatches(torch.arange(9.0).reshape(9, 1), None, 8, shuffle=False)  # last global batch: 1 sample
    assert ShardedBatches(tiny, 1, 2).counts(1) == (0, 1)
    assert len(list(ShardedBatches(tiny, 1, 2).epoch(0, 0))[1][0]) == 1  # a weight-0 stand-in, never empty


def test_evaluation_blocks_cover_the_samples_in_order():
    x = torch.arange(10.0).reshape(10, 1)
    blocks = [shard_evaluation(TensorBatches(x, None, 4, False), r, 3)[0].x for r in range(3)]
    assert [len(b) for b in blocks] == [4, 3, 3] and torch.equal(torch.cat(blocks), x)


# -- the command line ---------------------------------------------------------------------------

def test_deepfield_train_devices_2_gives_the_run_of_devices_1_with_dropout(tmp_path, cli):
    import json

    import yaml
    from astropy.table import Table

    rng = np.random.default_rng(0)
    a, b, c = rng.normal(size=(3, 300))
    Table({"a": a, "b": b, "c": c, "y": 2.0 * a - b + c ** 2 + rng.normal(0, 0.1, 300)}).write(tmp_path / "t.csv")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "task": "tabular", "out": str(tmp_path / "one"), "seed": 0, "data": {"path": str(tmp_path / "t.csv"),
                                                                            "target": "y"},
        "model": {"preset": "mlp", "options": {"hidden": [16], "batch_norm": True, "dropout": 0.3}},
        "training": {"epochs": 3, "batch_size": 32, "optimizer": "adam", "learning_rate": 0.01},
    }))

    def train(devices: int, out: str) -> dict:
        done = cli("train", config, f"out={out}", "--devices", devices)  # cli: in this process
        assert done.returncode == 0, done.stderr
        return json.loads((tmp_path / out / "metrics.json").read_text())

    one, two = train(1, str(tmp_path / "one")), train(2, str(tmp_path / "two"))
    rows_one, rows_two = read_csv(tmp_path / "one" / "history.csv"), read_csv(tmp_path / "two" / "history.csv")
    assert len(rows_two) == len(rows_one) == 3  # one history, written once
    for row_one, row_two in zip(rows_one, rows_two):
        for key in ("loss", "mae", "val_loss", "val_mae"):
            assert math.isclose(float(row_two[key]), float(row_one[key]), rel_tol=1e-5), key
    for key, value in one["test"].items():
        assert math.isclose(two["test"][key], value, rel_tol=1e-5), key
    assert {p.name for p in (tmp_path / "two").iterdir()} == {p.name for p in (tmp_path / "one").iterdir()}
    setup = {"device": "cpu", "precision": "fp32", "channels_last": False, "jit_compile": False}
    assert one["training"] == {"processes": 1, **setup} and two["training"] == {"processes": 2, **setup}


def test_several_machines_need_torchrun(tmp_path, cli):
    config = tmp_path / "run.yaml"
    config.write_text("task: tabular\nout: x\ndata: {path: t.csv, target: y}\n")
    done = cli("train", config, "--nodes", "2")
    assert done.returncode == 2 and "torchrun --nnodes 2" in done.stderr
