"""One writer per run folder: a second `train` (or `baseline`, `report`) is refused with a line naming the process
holding the run; a lock left by a dead process is taken over (issue 15, item 4)."""
import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from probes import refused, regression, write_config

from deepfield.folder_lock import LOCK_FILE, hold
from deepfield.tasks.config import load_config
from deepfield.tasks.run import train


def test_a_second_writer_is_refused_naming_the_holder(table, tmp_path, cli):
    config = write_config(regression(table, tmp_path / "run", epochs=1), tmp_path / "m.yaml")
    train(load_config(config), verbose=0)
    before = (tmp_path / "run" / "metrics.json").read_bytes()
    with hold(tmp_path / "run", "deepfield train"):
        for command in (("train", config, "training.epochs=2"), ("train", config, "--restart"),
                        ("report", tmp_path / "run")):
            refused(cli(*command), "another deepfield is writing this run folder", f"process {os.getpid()} on "
                    f"{socket.gethostname()} (deepfield train, since ", LOCK_FILE)
    assert (tmp_path / "run" / "metrics.json").read_bytes() == before
    assert not (tmp_path / "run" / LOCK_FILE).exists()  # released with the holder
    assert cli("train", config, "training.epochs=2").returncode == 0


def test_a_lock_left_by_a_dead_process_is_taken_over(table, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (run / LOCK_FILE).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(),
                                             "command": "deepfield train", "started": "2026-01-01T00:00:00"}))
    train(load_config(None, document=regression(table, run, epochs=1)), verbose=0)
    assert (run / "metrics.json").is_file() and not (run / LOCK_FILE).exists()


def test_a_failed_first_train_leaves_no_folder_behind(tmp_path, cli):
    config = write_config(regression(tmp_path / "missing.csv", tmp_path / "new" / "run"), tmp_path / "m.yaml")
    refused(cli("train", config), "missing.csv")
    assert not (tmp_path / "new" / "run").exists()


def test_a_train_in_another_process_is_refused_while_one_holds_the_run(table, tmp_path, cli):
    """Two processes: one holds the folder (as a training `deepfield train` does), this one's `deepfield train` is
    refused with the holder's pid; once the holder has ended, the same command trains."""
    config = write_config(regression(table, tmp_path / "run", epochs=2), tmp_path / "m.yaml")
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from deepfield.folder_lock import hold\n"
                               f"with hold({str(tmp_path / 'run')!r}, 'deepfield train'):\n"
                               "    print('held', flush=True); sys.stdin.readline()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=environment)
    assert holder.stdout.readline().strip() == "held"
    refused(cli("train", config),
            f"another deepfield is writing this run folder: process {holder.pid} on {socket.gethostname()}")
    assert not (tmp_path / "run" / "config.yaml").exists()
    holder.communicate("done\n", timeout=60)
    after = cli("train", config)
    assert after.returncode == 0, after.stderr
    with (tmp_path / "run" / "history.csv").open(newline="") as stream:
        assert [int(row["epoch"]) for row in csv.DictReader(stream)] == [0, 1]
