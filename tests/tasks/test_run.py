"""`train` end to end on a small simulated sky: the run folder holds every file of the contract."""
import json

import pytest
import yaml

from deepfield.data.simulate import simulate_quality
from deepfield.models.serialization import load_network
from deepfield.report.html import write_report
from deepfield.tasks.config import load_config
from deepfield.tasks.run import train
from deepfield.training.device import cpu_has_amx


def test_morphology_run_writes_the_run_folder(sky, tmp_path):
    config = load_config(None, document={
        "task": "morphology", "out": str(tmp_path / "run"), "seed": 1,
        "data": {"path": str(sky)},
        "model": {"preset": "resnet", "options": {"filters": [8, 16], "blocks": 1}},
        "training": {"epochs": 2, "batch_size": 32},
    })
    out = train(config, verbose=0, report=write_report)
    names = {p.name for p in out.iterdir()}
    assert {"config.yaml", "model.json", "weights.safetensors", "checkpoints", "history.csv", "metrics.json",
            "summary.txt", "figures", "report.html"} <= names
    assert {p.name for p in (out / "figures").iterdir()} >= {"learning_curves.png", "confusion_matrix.png",
                                                              "roc.png", "gallery.png"}
    assert yaml.safe_load((out / "config.yaml").read_text())["training"]["epochs"] == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["training"] == {"processes": 1, "device": "cpu", "precision": "bf16" if cpu_has_amx() else "fp32",
                                   "channels_last": True, "jit_compile": False}  # what "auto" chose for a CNN
    assert metrics["task"] == "morphology" and set(metrics["per_class"]) == {
        "spheroid", "disk", "irregular", "point", "merger"}
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["test"]["accuracy"] == pytest.approx(metrics["accuracy"])
    assert len((out / "history.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs
    model = load_network(out)  # the saved network reads back
    assert sum(p.numel() for p in model.parameters()) > 0
    html = (out / "report.html").read_text()
    assert "Confusion matrix" in html or "confusion" in html.lower()


def test_quality_run_reports_precision_at_fixed_recall(tmp_path):
    data = simulate_quality(120, tmp_path / "q.h5", size=24, seed=3, workers=1, progress=False)
    config = load_config(None, document={
        "task": "quality", "out": str(tmp_path / "run"),
        "data": {"path": str(data)}, "model": {"preset": "resnet", "options": {"filters": [8], "blocks": 1}},
        "training": {"epochs": 1},
    })
    metrics = json.loads((train(config, verbose=0) / "metrics.json").read_text())
    point = metrics["clean_selection"]
    assert point["target"] == 0.99 and (point["threshold"] is None or point["recall"] >= 0.99)
    assert (tmp_path / "run" / "figures" / "precision_recall.png").is_file()


def test_baselines_run_beside_the_network_on_its_split(sky, tmp_path):
    from deepfield.tasks.pipeline import baselines_run

    document = {
        "task": "morphology", "out": str(tmp_path / "run"), "seed": 1, "data": {"path": str(sky)},
        "model": {"preset": "resnet", "options": {"filters": [8], "blocks": 1}}, "training": {"epochs": 1},
        "baselines": {"run": True, "features": ["hog", "texture"], "learners": ["knn"]},
    }
    out = train(load_config(None, document=document), verbose=0, report=write_report)
    rows = json.loads((out / "metrics.json").read_text())["baselines"]
    assert [row["model"] for row in rows] == ["network (resnet)", "hog + knn", "texture + knn"]
    assert rows[1]["n_features"] == 144 and 0.0 <= rows[1]["accuracy"] <= 1.0  # hog of 24x24: 2x2 blocks of 2x2 cells
    assert "texture + knn" in (out / "report.html").read_text()
    document["baselines"] = {"learners": ["svm_linear"], "features": ["texture"]}
    baselines_run(load_config(None, document=document), report=write_report)  # again: rows added, not duplicated
    rows = json.loads((out / "metrics.json").read_text())["baselines"]
    assert [row["model"] for row in rows].count("network (resnet)") == 1 and rows[-1]["model"] == "texture + svm_linear"


def test_gradient_norms_are_recorded_and_shown_in_the_training_section(sky, tmp_path):
    config = load_config(None, document={
        "task": "morphology", "out": str(tmp_path / "run"), "data": {"path": str(sky)},
        "model": {"preset": "resnet", "options": {"filters": [4], "blocks": 1}},
        "training": {"epochs": 1, "batch_size": 16, "gradient_norms": True}})
    out = train(config, verbose=0, report=write_report)
    assert (out / "figures" / "gradient_norms.png").is_file()
    html = (out / "report.html").read_text()
    training = html.split('<section id="training">')[1].split("</section>")[0]
    assert "Gradient norm of each layer" in training
