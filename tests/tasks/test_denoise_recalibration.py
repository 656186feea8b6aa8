"""A denoising run recalibrates its σ on the validation part: calibration.json, the raw and recalibrated coverage
of the test part in metrics.json, the recalibrated half-width columns of predict; old calibration files still load."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

import deepfield.atomic
from deepfield.analysis.image_uncertainty import CURVE_LEVELS
from deepfield.analysis.interval_recalibration import record_widths
from deepfield.data.simulate.denoise import simulate_denoise
from deepfield.errors import DeepfieldError
from deepfield.tasks.config import load_config
from deepfield.tasks.denoise import Denoise
from deepfield.tasks.run import load_run, predict_run, read_calibration, train

EXAMPLE = Path(__file__).parents[2] / "examples" / "denoise.yaml"


def config_for(folder, epochs=1):
    """examples/denoise.yaml, a tiny U-Net with a heteroscedastic head on ``folder/pairs.h5``."""
    return load_config(EXAMPLE, [f"data.path={folder / 'pairs.h5'}", f"out={folder / 'run'}",
                                 "uncertainty.heteroscedastic=true", "baselines.run=false", "training.batch_size=16",
                                 "training.early_stopping=null", f"training.epochs={epochs}",
                                 "model.options={depth: 2, filters: 8, normalization: null}"])


@pytest.fixture(scope="module")
def heteroscedastic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recalibrated")
    # bright galaxies (AB < 22) on 32×32 stamps, one band, noise-free targets
    simulate_denoise(60, folder / "pairs.h5", size=32, bands="r", seed=2, mag_limit=22.0, workers=1, progress=False)
    return train(config_for(folder), verbose=0), folder


def test_the_run_fits_half_widths_on_validation_and_reports_raw_and_recalibrated_test_coverage(heteroscedastic):
    out, _ = heteroscedastic
    record = json.loads((out / "calibration.json").read_text())["intervals"]
    assert record["fitted_on"] == "validation" and record["levels"] == list(CURVE_LEVELS)
    assert set(record["half_widths"]) == {"pixel", "flux"}
    assert record["n"] == {"pixel": 9 * 32 * 32, "flux": 9}  # 15 % of 60 stamps, one band
    for widths in record["half_widths"].values():
        assert widths == sorted(widths) and widths[0] > 0  # wider intervals for higher levels
    uncertainty = json.loads((out / "metrics.json").read_text())["uncertainty"]
    assert uncertainty["calibration"] == "half-width per level fitted on the validation part"
    for quantity in ("pixel", "flux"):
        raw, calibrated = uncertainty[f"{quantity}_coverage"], uncertainty[f"{quantity}_coverage_calibrated"]
        assert set(raw) == set(calibrated) == {"68", "95"} and calibrated["68"] <= calibrated["95"]
        widths = record_widths(record, quantity, (0.68, 0.95))
        assert uncertainty["calibrated_half_widths"][quantity] == {"68": widths[0], "95": widths[1]}
    rows = uncertainty["coverage_curve"]
    assert {"pixel", "flux", "flux_coherent", "pixel_calibrated", "flux_calibrated"} <= set(rows[0])
    assert next(row["pixel_calibrated"] for row in rows if row["level"] == 0.95) == \
        uncertainty["pixel_coverage_calibrated"]["95"]
    assert load_run(out).calibration == {"intervals": record} and load_run(out).temperature is None


def test_predict_writes_the_raw_sigma_and_the_recalibrated_half_widths(heteroscedastic, tmp_path):
    out, folder = heteroscedastic
    table = Table.read(predict_run(out, folder / "pairs.h5", tmp_path / "denoised.h5"), path="predictions")
    widths = record_widths(json.loads((out / "calibration.json").read_text())["intervals"], "pixel", (0.68, 0.95))
    assert table["denoised_halfwidth_68"].shape == table["denoised_err"].shape == (60, 1, 32, 32)
    assert table["denoised_halfwidth_95"].dtype == np.float32
    for level, z in zip((68, 95), widths):  # the head's raw σ times the width fitted for the level
        np.testing.assert_allclose(table[f"denoised_halfwidth_{level}"], z * table["denoised_err"], rtol=1e-5)


def test_an_old_temperature_file_loads_as_before_and_a_bad_one_is_named(tmp_path):
    assert read_calibration(tmp_path) is None
    (tmp_path / "calibration.json").write_text(json.dumps({"temperature": 1.25}, indent=2) + "\n")
    temperature = read_calibration(tmp_path)
    assert temperature == 1.25 and type(temperature) is float
    for bad in ("[1.5]", "{}", "not json"):
        (tmp_path / "calibration.json").write_text(bad)
        with pytest.raises(DeepfieldError, match="calibration.json: unreadable"):
            read_calibration(tmp_path)


def test_a_rerun_killed_or_failing_at_its_calibration_keeps_the_finished_one(heteroscedastic, tmp_path, monkeypatch):
    out, folder = heteroscedastic
    shutil.copytree(out, tmp_path / "run")
    shutil.copy(folder / "pairs.h5", tmp_path / "pairs.h5")
    finished = (tmp_path / "run" / "calibration.json").read_bytes()

    replace = deepfield.atomic.os.replace
    killed_at = []

    def killed(source, target):  # killed when the new calibration is written, before it replaces the old one
        if Path(target).name == "calibration.json":
            killed_at.append(json.loads(Path(source).read_text()))
            raise KeyboardInterrupt
        replace(source, target)

    monkeypatch.setattr(deepfield.atomic.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        train(config_for(tmp_path, epochs=2), verbose=0)  # one epoch more, then the calibration
    monkeypatch.undo()
    assert "intervals" in killed_at[0] and (tmp_path / "run" / "calibration.json").read_bytes() == finished
    assert [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".calibration")] == []

    def failing(self, prediction, prepared):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(Denoise, "fit_calibration", failing)
    with pytest.raises(RuntimeError, match="out of memory"):
        train(config_for(tmp_path, epochs=2), verbose=0)
    monkeypatch.undo()
    assert (tmp_path / "run" / "calibration.json").read_bytes() == finished
    train(config_for(tmp_path, epochs=2), verbose=0)  # resumed: the calibration of the new weights, then metrics
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert "intervals" in json.loads((tmp_path / "run" / "calibration.json").read_text())
