"""A kill at any atomic write of a run, then `deepfield train` again: between the two the folder loads (or says it
is unfinished and how to resume), the rerun ends as an uninterrupted run would, and the temporary file the kill
left is cleaned (issue 15, item 3). Each write of a 2-epoch run and of a 1 -> 2 epoch extension is killed in turn.
"""
import base64
import csv
import itertools
import os
import shutil
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from probes import regression

from deepfield import atomic
from deepfield.errors import DeepfieldError
from deepfield.report.html import write_report
from deepfield.tasks.config import load_config
from deepfield.tasks.run import load_run, train

BLANK_PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJ"
                             "RU5ErkJggg==")
LEFT = "killed_0"  # the random part of the temporary file a kill leaves (atomic.LEFTOVER)


@pytest.fixture
def quick_figures(monkeypatch):
    """Figures written as a blank 1x1 PNG, not drawn: the writes stay, the seconds of drawing go."""
    monkeypatch.setattr(Figure, "savefig", lambda self, path, **_: Path(path).write_bytes(BLANK_PNG))


def kill_at(monkeypatch, run, k):
    """The ``k``-th atomic write into ``run`` is killed before its rename, leaving its temporary file."""
    count, real = itertools.count(1), os.replace

    def replace(source, target):
        if str(target).startswith(str(run)) and next(count) == k:
            os.link(source, os.path.join(os.path.dirname(source), f".{os.path.basename(target)}.{LEFT}.tmp"))
            raise KeyboardInterrupt
        return real(source, target)

    monkeypatch.setattr(atomic.os, "replace", replace)


def epochs(run):
    with (run / "history.csv").open(newline="") as stream:
        return [int(row["epoch"]) for row in csv.DictReader(stream)]


def loads_or_says_unfinished(run):
    """Between the kill and the rerun the folder is a run (or not yet one), never a broken one."""
    try:
        load_run(run)
    except DeepfieldError as exc:
        assert "is not finished" in str(exc) and "to resume" in str(exc) or "not a run folder" in str(exc), exc


def killed_then_rerun(monkeypatch, config, run, k):
    """Train ``config`` with its ``k``-th write killed, then again; False when the run has fewer writes."""
    kill_at(monkeypatch, run, k)
    try:
        train(config, verbose=0, report=write_report)
    except KeyboardInterrupt:
        pass
    else:
        return False
    finally:
        monkeypatch.setattr(atomic.os, "replace", os.replace)
    loads_or_says_unfinished(run)
    train(config, verbose=0, report=write_report)
    return True


@pytest.fixture(scope="module")
def straight(table, tmp_path_factory):
    """The uninterrupted 2-epoch run every rerun must equal."""
    out = tmp_path_factory.mktemp("straight") / "run"
    train(load_config(None, document=regression(table, out, epochs=2)), verbose=0)
    return out


def check_equals(run, straight):
    assert (run / "weights.safetensors").read_bytes() == (straight / "weights.safetensors").read_bytes()
    assert epochs(run) == [0, 1]
    assert (run / "metrics.json").is_file() and (run / "report.html").is_file()
    assert not list(run.rglob("*.tmp"))
    assert len(load_run(run).models) == 1


def test_a_kill_at_any_write_of_a_new_run(table, straight, tmp_path, monkeypatch, quick_figures):
    for k in itertools.count(1):
        run = tmp_path / f"run{k}"
        if not killed_then_rerun(monkeypatch, load_config(None, document=regression(table, run, epochs=2)), run, k):
            break
        check_equals(run, straight)
    assert k > 15  # every write was killed once: config, prepared, summary, checkpoints, model, figures, metrics...


def test_a_kill_at_any_write_of_an_extended_run(table, straight, tmp_path, monkeypatch, quick_figures):
    one = tmp_path / "one"
    train(load_config(None, document=regression(table, one, epochs=1)), verbose=0)
    for k in itertools.count(1):
        run = tmp_path / f"run{k}"
        shutil.copytree(one, run)
        if not killed_then_rerun(monkeypatch, load_config(None, document=regression(table, run, epochs=2)), run, k):
            break
        check_equals(run, straight)
    assert k > 10


def test_leftovers_of_killed_writers_are_cleaned_at_the_next_start(table, tmp_path):
    config = load_config(None, document=regression(table, tmp_path / "run", epochs=1))
    train(config, verbose=0)
    left = [tmp_path / "run" / f".weights.safetensors.{LEFT}.tmp",
            tmp_path / "run" / "checkpoints" / "backup" / f".backup.safetensors.{LEFT}.tmp"]
    mine = tmp_path / "run" / "my.tmp"  # not a name deepfield makes: kept
    for path in (*left, mine):
        path.write_bytes(b"half")
    train(config, verbose=0)
    assert not any(path.exists() for path in left) and mine.exists()
