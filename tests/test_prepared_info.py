"""``Prepared.info`` as typed models (deepfield.tasks.prepared_info): what each task writes to ``prepared.json``
is what the code at commit 2025028 wrote (tests/data/prepared_2025028, see prepared_cases.py), such files
load and predict as before, and a mistyped one is one clear error."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from deepfield.errors import DeepfieldError
from deepfield.tasks.pipeline import TASKS, prepare, task_for
from deepfield.tasks.prepared_info import (DeblendInfo, DenoiseInfo, GenerateInfo, ImagingInfo, PhotozInfo,
                                          PreparedInfo, SegmentInfo, TabularInfo)
from deepfield.tasks.run import load_run, train
from prepared_cases import CASES, FIXTURES, make, relative

MODELS = {"morphology": ImagingInfo, "photoz": PhotozInfo, "tabular": TabularInfo}


def fixture(case: str) -> dict:
    return json.loads((FIXTURES / f"{case}.json").read_text())


def assert_same(new, old, where="prepared.json"):
    """The same keys, types and values (floats to 1e-9: the statistics are fitted again here)."""
    assert type(new) is type(old), f"{where}: {type(new).__name__} is not {type(old).__name__}"
    if isinstance(old, dict):
        assert list(new) == list(old) or set(new) == set(old), f"{where}: keys {sorted(new)} != {sorted(old)}"
        for key in old:
            assert_same(new[key], old[key], f"{where}.{key}")
    elif isinstance(old, list):
        assert len(new) == len(old), f"{where}: {len(new)} items, not {len(old)}"
        for k, (a, b) in enumerate(zip(new, old)):
            assert_same(a, b, f"{where}[{k}]")
    elif isinstance(old, float):
        assert new == pytest.approx(old, rel=1e-9, abs=1e-12), where
    else:
        assert new == old, where


def test_every_task_names_its_info_model():
    assert {name: task.info_model for name, task in TASKS.items()} == {
        "morphology": ImagingInfo, "quality": ImagingInfo, "photoz": PhotozInfo, "tabular": TabularInfo,
        "denoise": DenoiseInfo, "deblend": DeblendInfo, "segment": SegmentInfo, "generate": GenerateInfo}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_prepared_json_of_2025028_reads_and_writes_back_the_same(case):
    info = MODELS[case.split("_")[0]].read(FIXTURES / f"{case}.json")
    assert json.loads(info.to_json()) == fixture(case)


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_task_records_what_2025028_recorded_and_reads_it_back(case, tmp_path):
    config = make(case, tmp_path)
    task = task_for(config)
    info = prepare(task, config).info
    assert type(info) is task.info_model
    assert_same(relative(json.loads(info.to_json()), tmp_path), fixture(case))
    again = task.info_model.model_validate_json(info.to_json())
    assert again == info and again.to_json() == info.to_json()


def test_keys_added_later_take_the_values_the_code_assumed_without_them():
    old = {key: value for key, value in fixture("photoz_pdf").items()
           if key not in ("point_estimate", "label_smoothing", "resample_errors")}
    info = PhotozInfo.model_validate(old)
    assert (info.point_estimate, info.label_smoothing, info.resample_errors, info.heteroscedastic) == (
        "median", 0.0, False, False)
    assert set(json.loads(info.to_json())) == set(old)  # nothing is added when it is written again
    images = {key: value for key, value in fixture("morphology_images").items() if key != "stretch"}
    assert ImagingInfo.model_validate(images).stretch == "none"


def test_a_key_unknown_here_is_ignored_and_a_typo_is_an_error():
    info = TabularInfo.model_validate({**fixture("tabular_classes"), "written_by_a_newer_deepfield": [1, 2]})
    assert "written_by_a_newer_deepfield" not in info.to_json()
    with pytest.raises(AttributeError):
        info.clases  # noqa: B018
    with pytest.raises(ValueError, match="clases"):
        info.clases = ["a"]
    with pytest.raises(ValidationError, match="problem"):
        info.problem = "ranking"


@pytest.mark.parametrize("key, value, message", [
    ("classes", "E,S", "classes: Input should be a valid list (got 'E,S')"),
    ("stretch", "log", "stretch: Input should be 'asinh' or 'none' (got 'log')"),
    ("bands", None, "bands: Input should be a valid list (got None)"),
    ("normalize", {"median": [0.0]}, "normalize"),
])
def test_a_wrong_type_in_prepared_json_is_one_error_naming_the_file_and_the_key(tiny_run, tmp_path, cli, key,
                                                                                  value, message):
    run, sky = tiny_run
    copy = shutil.copytree(run, tmp_path / "run")
    (copy / "prepared.json").write_text(json.dumps({**fixture("morphology_images"), key: value}))
    with pytest.raises(DeepfieldError) as error:
        load_run(copy)
    assert str(error.value).startswith(f"{copy / 'prepared.json'}: ") and message in str(error.value)
    result = cli("predict", copy, sky, "--out", tmp_path / "p.csv")
    assert result.returncode == 2 and f"{copy / 'prepared.json'}: {key}" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("text", ["[1, 2]\n", "{\"bands\": \n"])
def test_a_prepared_json_that_is_not_an_object_is_one_error(tmp_path, text):
    (tmp_path / "prepared.json").write_text(text)
    with pytest.raises(DeepfieldError, match=r"prepared.json: (expected an object|unreadable)"):
        PreparedInfo.read(tmp_path / "prepared.json")


def predictions(run: Path, data: Path, prepared: dict | None = None) -> dict[str, np.ndarray]:
    """``load_run(run).predict(data)`` with ``prepared`` written as the run's prepared.json (None: its own)."""
    if prepared is not None:
        (run / "prepared.json").write_text(json.dumps(prepared, indent=2) + "\n")
    table = load_run(run).predict(data)
    return {name: np.asarray(table[name]) for name in table.colnames}


def assert_equal_tables(a: dict, b: dict, exact: bool = True):
    assert list(a) == list(b)
    for name in a:
        if exact or a[name].dtype.kind not in "fc":
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        else:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-9, err_msg=name)


def test_a_morphology_run_predicts_the_same_from_the_prepared_json_of_2025028(tiny_run, tmp_path):
    run, sky = tiny_run  # the morphology_images case's data and seed: the same statistics
    copy = shutil.copytree(run, tmp_path / "run")
    assert_same(json.loads((run / "prepared.json").read_text()), fixture("morphology_images"))
    own = predictions(copy, sky)
    assert_equal_tables(predictions(copy, sky, fixture("morphology_images")), own, exact=False)
    assert_equal_tables(predictions(copy, sky, {**fixture("morphology_images"), "from_the_future": {}}),
                        predictions(copy, sky, fixture("morphology_images")))


@pytest.mark.parametrize("case", ["photoz_pdf", "tabular_regression"])
def test_a_trained_run_predicts_the_same_from_the_prepared_json_of_2025028(case, tmp_path):
    config = make(case, tmp_path)
    run = train(config, verbose=0)
    data = Path(config.data.path)
    own = predictions(run, data)
    assert_equal_tables(predictions(run, data, json.loads((run / "prepared.json").read_text())), own)
    assert_equal_tables(predictions(run, data, fixture(case)), own, exact=False)
    if case == "photoz_pdf":  # a run from before photoz.point_estimate: the PDF's median
        old = {k: v for k, v in fixture(case).items() if k not in ("point_estimate", "label_smoothing")}
        before = predictions(run, data, old)
        np.testing.assert_allclose(before["z_phot"], own["z_median"], rtol=1e-6)
