"""Segmentation end to end from examples/segment.yaml: a U-Net trained on a few simulated blends, the class and
detection metrics with the watershed baseline in metrics.json, predictions of class maps, a user's class maps,
and the errors of bad label maps."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.table import Table

from deepfield.analysis.segmentation import classes_from_instances
from deepfield.data.simulate.blends import read_blends, simulate_blends
from deepfield.errors import DeepfieldError
from deepfield.report.html import headline, write_report
from deepfield.tasks.config import load_config
from deepfield.tasks.pipeline import prepare
from deepfield.tasks.run import evaluate_run, predict_run, train
from deepfield.tasks.segment import Segment
from deepfield.training import losses

EXAMPLE = Path(__file__).parents[2] / "examples" / "segment.yaml"
TINY = ["training.epochs=2", "training.batch_size=8", "training.early_stopping=null",
        "model.options={depth: 2, filters: 4, normalization: null}"]


def blends(path, n, seed):
    return simulate_blends(n, path, size=16, bands="r", seed=seed, max_sources=3, mag_limit=22.0, workers=1,
                           progress=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("segment")
    config = load_config(EXAMPLE, [f"data.path={blends(folder / 'blends.h5', 40, seed=1)}", f"out={folder / 'run'}",
                                   *TINY])
    return config, train(config, verbose=0, report=write_report), folder


def test_prepare_learns_background_source_boundary_from_the_blends_instances(tmp_path):
    path = blends(tmp_path / "b.h5", 20, seed=2)
    prepared = Segment().prepare(load_config(None, document={"task": "segment", "data": {"path": str(path)}}))
    truth = read_blends(path)
    assert prepared.info.classes == ["background", "source", "boundary"] and prepared.info.label_map == "instances"
    test = prepared.ids["test"]
    np.testing.assert_array_equal(prepared.sources["test"], truth.segmentation[test])
    np.testing.assert_array_equal(prepared.y["test"], classes_from_instances(truth.segmentation[test]))
    assert prepared.y["train"].dtype == np.int64 and prepared.y["train"].shape[1:] == (16, 16)


def test_the_example_trains_and_records_the_metrics_and_the_watershed_row(trained):
    config, out, _ = trained
    assert config.model.preset == "unet"
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"mean_iou", "iou", "pixel_accuracy", "completeness", "purity", "n_true", "n_predicted",
            "n_matched"} <= set(metrics)
    assert set(metrics["iou"]) == {"background", "source", "boundary"} and 0.0 <= metrics["mean_iou"] <= 1.0
    rows = metrics["baselines"]
    assert [row["model"] for row in rows] == ["network (unet)", "threshold + watershed (photutils)"]
    assert rows[0]["mean_iou"] == metrics["mean_iou"] and rows[0]["iou_source"] == metrics["iou"]["source"]
    assert rows[1]["parameter"].startswith("n_sigma ") and 0.0 <= rows[1]["completeness"] <= 1.0
    assert headline(metrics).startswith("test mean IoU ")
    report = (out / "report.html").read_text()
    assert "Baselines on the test part" in report and (out / "figures" / "segment_gallery.png").is_file()


def test_predict_writes_class_maps_sources_and_probabilities(trained, tmp_path):
    _, out, _ = trained
    new = blends(tmp_path / "new.h5", 6, seed=9)
    table = Table.read(predict_run(out, new, tmp_path / "segmented.h5"), path="predictions")
    assert table["segmentation"].shape == (6, 16, 16) and table["segmentation"].dtype == np.int16
    assert table["sources"].shape == (6, 16, 16) and table["probability"].shape == (6, 3, 16, 16)
    np.testing.assert_allclose(np.sum(table["probability"], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(table["segmentation"], np.argmax(table["probability"], axis=1))
    metrics = evaluate_run(out, new)  # a labelled file: its own sources are counted
    assert metrics["n_true"] == sum(np.count_nonzero(np.unique(m)) for m in read_blends(new).segmentation)


def user_file(path, labels, images=None, **attrs):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(len(labels), 1, *labels.shape[1:])).astype(np.float32) if images is None else images
    np.savez(path, stamps=images, classes=labels)
    return path


def user_config(path, **data):
    return load_config(None, document={"task": "segment", "data": {"path": str(path), "images": "stamps",
                                                                   "target": "classes", "bands": ["r"], **data},
                                       "model": {"options": {"depth": 1, "filters": 2}}})


def test_a_users_class_maps_are_learnt_as_they_are(tmp_path):
    labels = np.zeros((20, 8, 8), dtype=np.int64)
    labels[:, 1:4, 1:4], labels[:, 5:7, 5:7] = 1, 3  # two morphology classes; class 2 in no stamp
    task = Segment()
    prepared = prepare(task, user_config(user_file(tmp_path / "mine.npz", labels)))
    assert prepared.info.classes == ["background", "class 1", "class 2", "class 3"]
    assert prepared.info.label_map == "classes"
    np.testing.assert_array_equal(prepared.y["test"], labels[prepared.ids["test"]])
    assert [len(np.unique(m)) - 1 for m in prepared.sources["test"]] == [2] * len(prepared.ids["test"])
    model = task.build_model(user_config(tmp_path / "mine.npz"), prepared)
    assert tuple(model(torch.from_numpy(prepared.x["test"][:2])).shape) == (2, 4, 8, 8)


@pytest.mark.parametrize("labels, message", [
    (np.full((20, 8, 9), 1), r"label maps 'classes' of shape \(20, 8, 9\) do not match the stamps: "
                             r"expected \(20, 8, 8\)"),
    (np.full((20, 8, 8), -1), "label maps 'classes' hold negative labels"),
    (np.full((20, 8, 8), 0.5), "label maps 'classes' hold values that are not whole numbers"),
])
def test_bad_label_maps_are_one_line_naming_them(tmp_path, labels, message):
    images = np.zeros((20, 1, 8, 8), dtype=np.float32)
    with pytest.raises(DeepfieldError, match=message):
        Segment().prepare(user_config(user_file(tmp_path / "bad.npz", labels, images)))


def test_labels_outside_the_classes_of_a_run_are_refused(tmp_path):
    path = blends(tmp_path / "other.h5", 6, seed=3)
    with pytest.raises(DeepfieldError, match="no label maps 'missing'"):
        Segment().prepare(load_config(None, document={"task": "segment",
                                                      "data": {"path": str(path), "target": "missing"}}))
    labels = np.zeros((20, 8, 8), dtype=np.int64)
    labels[:, 2:5, 2:5] = 2
    config = user_config(user_file(tmp_path / "mine.npz", labels))
    info = Segment().prepare(config).info
    seven = user_file(tmp_path / "seven.npz", np.full((6, 8, 8), 7))
    with pytest.raises(DeepfieldError, match=r"seven.npz: label maps 'classes' hold label 7, outside the 3 classes"):
        Segment().read_new(config, info, seven, labelled=True)


def test_per_pixel_cross_entropy_is_torchs():
    torch.manual_seed(0)
    logits, labels = torch.randn(3, 4, 5, 6), torch.randint(0, 4, (3, 5, 6))
    loss = losses.get({"class_name": "sparse_categorical_crossentropy", "config": {"from_logits": True}})
    torch.testing.assert_close(loss(logits, labels), torch.nn.functional.cross_entropy(logits, labels))
    probabilities = torch.softmax(logits, dim=1)
    torch.testing.assert_close(losses.get("sparse_categorical_crossentropy")(probabilities, labels),
                               torch.nn.functional.cross_entropy(logits, labels), rtol=1e-5, atol=1e-6)
