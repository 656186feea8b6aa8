"""Segmentation into Morpheus-style morphology classes (``data.label_map: morphology``) on simulated blends:
what is prepared from the file, and a tiny run's metrics and report with the class names."""
import json
from pathlib import Path

import numpy as np
import pytest

from deepfield.data.simulate.blends import read_blends, simulate_blends
from deepfield.data.simulate.morpheus import MORPHOLOGY_CLASSES
from deepfield.errors import DeepfieldError
from deepfield.report.html import write_report
from deepfield.tasks.config import load_config
from deepfield.tasks.run import train
from deepfield.tasks.segment import Segment

EXAMPLE = Path(__file__).parents[2] / "examples" / "segment.yaml"
TINY = ["training.epochs=1", "training.batch_size=8", "training.early_stopping=null", "data.label_map=morphology",
        "model.options={depth: 1, filters: 4, normalization: null}"]


@pytest.fixture(scope="module")
def blends(tmp_path_factory):
    return simulate_blends(30, tmp_path_factory.mktemp("morph") / "blends.h5", size=16, bands="r", seed=2,
                           max_sources=3, star_fraction=0.4, mag_limit=22.0, workers=1, progress=False,
                           galaxy_kinds=("spheroid", "disk", "irregular"))


def test_prepare_reads_the_class_maps_and_the_sources_of_the_blends_file(blends):
    config = load_config(None, document={"task": "segment", "data": {"path": str(blends), "label_map": "morphology"}})
    prepared = Segment().prepare(config)
    truth = read_blends(blends)
    test = prepared.ids["test"]
    assert prepared.info.classes == list(MORPHOLOGY_CLASSES) and prepared.info.targets == "morphology"
    np.testing.assert_array_equal(prepared.y["test"], truth.morphology[test])
    np.testing.assert_array_equal(prepared.sources["test"], truth.segmentation[test])


def test_a_file_without_morphology_maps_is_one_line(tmp_path):
    np.savez(tmp_path / "mine.npz", images=np.zeros((6, 1, 8, 8), np.float32), morphology=np.zeros((6, 8, 8)))
    config = load_config(None, document={"task": "segment", "data": {
        "path": str(tmp_path / "mine.npz"), "label_map": "morphology", "bands": ["r"]}})
    with pytest.raises(DeepfieldError, match="mine.npz: no label maps 'segmentation'; it holds 'images', 'morph"):
        Segment().prepare(config)


def test_a_morphology_run_scores_each_class_by_name(blends, tmp_path):
    config = load_config(EXAMPLE, [f"data.path={blends}", f"out={tmp_path / 'run'}", *TINY])
    out = train(config, verbose=0, report=write_report)
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["iou"]) == list(MORPHOLOGY_CLASSES)
    assert 0.0 <= metrics["source_class_purity"] <= 1.0 or np.isnan(metrics["source_class_purity"])
    assert metrics["n_classified"] <= metrics["n_matched"]
    assert [row["model"] for row in metrics["baselines"]] == ["network (unet)"]  # no watershed for 5 classes
    assert "point source" in (out / "report.html").read_text()
