"""Looking inside a run's network: `explain.run` in train, `deepfield explain`, the report's section."""
import json

import numpy as np
import pytest

from deepfield.data.simulate import simulate_morphology
from deepfield.errors import DeepfieldError
from deepfield.report.html import write_report
from deepfield.tasks.config import load_config
from deepfield.tasks.explain import choose_stamps, methods_from, row_titles
from deepfield.tasks.run import explain_run, train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("explain")
    sky = simulate_morphology(120, folder / "sky.h5", size=24, seed=5, workers=1, progress=False)
    config = load_config(None, document={
        "task": "morphology", "out": str(folder / "run"), "seed": 2, "data": {"path": str(sky)},
        "model": {"preset": "lecture-cnn"}, "training": {"epochs": 1, "batch_size": 32},
        "explain": {"run": True, "per_class": 1, "steps": 16, "class_model_steps": 40,
                    "methods": ["filters", "feature-maps", "patches", "saliency", "integrated-gradients",
                                "occlusion", "class-model"],
                    "occlusion": {"size": 6, "stride": 6}}})
    return train(config, verbose=0, report=write_report), sky


def test_train_explains_its_test_stamps_into_the_report(run):
    out, _ = run
    figures = {p.name for p in (out / "figures").iterdir()}
    assert {"explain_filters.png", "explain_feature_maps.png", "explain_patches.png", "explain_attributions.png",
            "explain_class_models.png"} <= figures
    summary = json.loads((out / "explain" / "explain.json").read_text())
    n = len(summary["stamps"])
    assert 1 <= n <= 5 and len(summary["labels"]) == n and summary["layer"] == "conv2d_3"
    assert len(summary["integrated_gradients"]["relative_error"]) == n
    assert all(r["final_score"] > r["start_score"] for r in summary["class_models"].values())
    with np.load(out / "explain" / "explain.npz", allow_pickle=False) as arrays:
        assert arrays["stamps"].shape == (n, 3, 24, 24)
        assert arrays["filters"].shape == (32, 3, 6, 6)
        assert arrays["saliency"].shape == (n, 3, 24, 24) and arrays["occlusion"].shape == (n, 24, 24)
        assert arrays["patches"].shape[:2] == (128, 9)
        ig = arrays["integrated_gradients"]
    delta = np.asarray(summary["integrated_gradients"]["completeness_delta"])
    assert ig.shape == (n, 3, 24, 24) and np.all(np.isfinite(delta))
    html = (out / "report.html").read_text()
    section = html.split('<section id="explain">')[1].split("</section>")[0]
    assert section.count("<img") == 5


def test_explain_run_on_a_new_file_with_chosen_methods(run, tmp_path):
    out, sky = run
    folder = explain_run(out, sky, tmp_path / "look", ["saliency", "guided_backprop"], per_class=2)
    summary = json.loads((folder / "explain.json").read_text())
    assert summary["methods"] == ["saliency", "guided-backprop"] and summary["labels"] is None
    assert {p.name for p in folder.glob("*.png")} == {"explain_attributions.png"}


def test_methods_and_stamps_are_chosen_as_documented():
    assert methods_from(["occlusion", "filters"]) == ["filters", "occlusion"]
    assert len(methods_from(["all"])) == 9
    with pytest.raises(DeepfieldError, match="unknown explain method 'gradcam'"):
        methods_from(["gradcam"])
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6], [0.6, 0.4]])
    assert choose_stamps(scores, None, 2).tolist() == [0, 2, 1, 3]  # by the network's choice
    assert choose_stamps(scores, np.array([1, 1, 1, 0, 0]), 1).tolist() == [3, 0]  # by the labels


def test_the_command_line_explains_and_names_bad_methods(run, tmp_path, cli):
    out, sky = run
    command = ["explain", out, sky, "--out", tmp_path / "o", "--method", "occlusion", "--size", "8", "--stride", "8"]
    done = cli(*command)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "o" / "explain.json").read_text())["occlusion"]["size"] == 8
    bad = cli(*command[:-6], "--method", "gradcam")
    assert bad.returncode == 2 and "unknown explain method 'gradcam'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_the_command_line_explains_a_convolution_inside_a_residual_block(tiny_run, tmp_path, cli):
    out, sky = tiny_run
    done = cli("explain", out, sky, "--method", "filters,feature-maps,patches", "--out", tmp_path / "inner",
               "--layer", "stage2_block1.conv2")
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "inner" / "explain.json").read_text())
    assert summary["layer"] == "stage2_block1.conv2" and summary["filters_layer"] == "stage2_block1.conv2"
    # field on 16×16: stem 3, stage1_block1 5 and 7, stage2_block1.conv1 (stride 2) 9, .conv2 9 + 2·2 = 13
    assert summary["receptive_field"] == {"size": [13, 13], "jump": [2, 2], "start": [-5, -5]}
    with np.load(tmp_path / "inner" / "explain.npz", allow_pickle=False) as arrays:
        assert arrays["filters"].shape == (6, 6, 3, 3)
        assert arrays["feature_maps"].shape == (1, 6, 8, 8)
        assert arrays["patches"].shape == (6, 9, 3, 13, 13)
    with pytest.raises(DeepfieldError, match="no layer 'stage2_block1.conv3' \\(did you mean 'stage2_block1.conv2'"):
        explain_run(out, sky, tmp_path / "bad", ["patches"], layer="stage2_block1.conv3")
    assert not (tmp_path / "bad").exists()  # checked before any work


def test_a_block_gives_its_maps_and_patches_and_the_first_convolution_its_filters(tiny_run, tmp_path):
    out, sky = tiny_run
    folder = explain_run(out, sky, tmp_path / "block", ["filters", "feature-maps"], layer="stage2_block1")
    summary = json.loads((folder / "explain.json").read_text())
    assert summary["layer"] == "stage2_block1" and summary["filters_layer"] == "conv2d"
    with np.load(folder / "explain.npz", allow_pickle=False) as arrays:
        assert arrays["filters"].shape == (4, 3, 3, 3) and arrays["feature_maps"].shape == (1, 6, 8, 8)


def test_explain_picks_a_block_whose_field_is_a_sizeable_part_of_the_stamp(tiny_run, tmp_path):
    out, sky = tiny_run
    summary = json.loads((explain_run(out, sky, tmp_path / "look", ["patches"]) / "explain.json").read_text())
    # fields on 16×16: stage2_block1 13 (≥ 16 / 4, ≤ 16) is the deepest
    assert summary["layer"] == "stage2_block1" and summary["receptive_field"]["size"] == [13, 13]


def test_attribution_rows_name_the_true_and_the_predicted_class_with_its_probability():
    softmax = np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]])
    assert row_titles(softmax, np.array([1, 0]), ["E", "S", "M"], ["M", "E"]) == [
        "true M\npred S (0.70)", "true E\npred E (0.60)"]
    sigmoid = np.array([[0.2], [0.9]])  # one output: p(class 1); class 0 has 1 - p
    assert row_titles(sigmoid, np.array([0, 1]), ["clean", "spoiled"], None) == [
        "pred clean (0.80)", "pred spoiled (0.90)"]
