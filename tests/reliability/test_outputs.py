"""Outputs never replace inputs (issue 15, items 5 and 6): a command's --out may not be one of its
inputs nor a file inside a run folder, an existing output is replaced only with --overwrite, and
`deepfield report` writes only into a folder it recognises as a run. Each refusal: exit 2, one line
on stderr naming the path, and the files as they were (compared byte for byte)."""
import os

import pytest

from deepfield.errors import DeepfieldError
from deepfield.outputs import check_output
from probes import refused



def snapshot(folder):
    """Every file under ``folder`` with its bytes."""
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_predict_refuses_its_input_as_output_and_leaves_it_unchanged(trained, cli, monkeypatch):
    run, sky = trained
    before = sky.read_bytes()
    refused(cli("predict", run, sky, "--out", sky), sky)
    refused(cli("predict", run, sky, "--out", sky, "--overwrite"), sky)  # --overwrite never covers an input
    monkeypatch.chdir(sky.parent)  # the same file by a relative path and through a symlink
    refused(cli("predict", run, sky, "--out", f"./{sky.name}"), sky.name)
    os.symlink(sky, sky.parent / "link.h5")
    refused(cli("predict", run, "link.h5", "--out", sky), sky)
    assert sky.read_bytes() == before
    labels = sky.parent / "labels.csv"  # a --labels table is an input too
    labels.write_text("id,label\n0,disk\n")
    refused(cli("predict", run, sky, "--labels", labels, "--id-column", "id", "--out", labels, "--overwrite"), labels)
    assert labels.read_text() == "id,label\n0,disk\n"


def test_features_and_explain_refuse_outputs_inside_the_run(trained, cli, tmp_path):
    run, sky = trained
    files = snapshot(run)
    refused(cli("predict", run, sky, "--out", run / "metrics.json", "--overwrite"), run / "metrics.json")
    refused(cli("features", run, sky, "--out", run / "features.csv"), run / "features.csv")
    refused(cli("explain", run, sky, "--out", run / "explain", "--method", "filters"), run / "explain")
    refused(cli("explain", run, sky, "--out", run, "--method", "filters"), run)
    assert snapshot(run) == files


def test_no_command_writes_into_any_run_folder(trained, cli, tmp_path):
    run, sky = trained
    other = tmp_path / "other"  # another run: config.yaml beside metrics.json
    other.mkdir()
    (other / "config.yaml").write_text("task: morphology\n")
    (other / "metrics.json").write_text("{}")
    files = snapshot(run)
    refused(cli("predict", run, sky, "--out", other / "p.csv"), other / "p.csv")
    refused(cli("simulate", "spectra", "--n", 3, "--out", run / "sky.h5"), run / "sky.h5")
    refused(cli("playground", "depth", "--depth", 2, "--out", run), run)
    refused(cli("playground", "optimizers", "--steps", 2, "--out", other / "play"), other / "play")
    assert snapshot(run) == files and sorted(p.name for p in other.iterdir()) == ["config.yaml", "metrics.json"]


def test_an_existing_output_is_replaced_only_with_overwrite(trained, cli, tmp_path):
    run, sky = trained
    table = tmp_path / "p.csv"
    table.write_text("mine\n")
    refused(cli("predict", run, sky, "--out", table), table)
    assert table.read_text() == "mine\n"
    done = cli("predict", run, sky, "--out", table, "--overwrite")
    assert done.returncode == 0, done.stderr
    lines = table.read_text().splitlines()
    assert lines[0].startswith("id,") and len(lines) == 41  # the header and the run's 40 stamps


def test_explain_writes_into_a_non_empty_folder_only_with_overwrite_or_over_an_earlier_explain(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DeepfieldError, match="is not empty and holds no explain.json; pass --overwrite"):
        check_output(tmp_path, folder="explain.json")
    assert check_output(tmp_path, folder="explain.json", overwrite=True) == tmp_path
    assert check_output(tmp_path / "new", folder="explain.json") == tmp_path / "new"
    (tmp_path / "explain.json").write_text("{}")  # an earlier explain's folder is rewritten
    assert check_output(tmp_path, folder="explain.json") == tmp_path
    with pytest.raises(DeepfieldError, match="is a file; --out must name a folder"):
        check_output(tmp_path / "notes.txt", folder="explain.json")


def test_simulate_over_an_existing_file_needs_overwrite(cli, tmp_path):
    target = tmp_path / "sky.h5"
    target.write_bytes(b"not yet a sky")
    refused(cli("simulate", "spectra", "--n", 3, "--length", 50, "--out", target), target)
    assert target.read_bytes() == b"not yet a sky"
    done = cli("simulate", "spectra", "--n", 3, "--length", 50, "--out", target, "--overwrite")
    assert done.returncode == 0, done.stderr
    assert target.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"


def test_report_writes_only_into_a_run_folder(trained, cli, tmp_path):
    (tmp_path / "config.yaml").write_text("task: morphology\n")
    refused(cli("report", tmp_path), tmp_path)
    assert not (tmp_path / "report.html").exists()
    run, _ = trained
    done = cli("report", run)
    assert done.returncode == 0, done.stderr
    assert (run / "report.html").read_text().startswith("<!DOCTYPE html>")
