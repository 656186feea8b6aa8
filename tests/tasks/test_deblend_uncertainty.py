"""Deblending with uncertainty: each source's σ carried back through the asinh stretch to nJy (a case with known
noise holds its coverage, the σ left in stretched units does not), the run's recalibration in calibration.json, the
coverage in metrics.json and predict's flux and half-width columns."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.table import Table

from deepfield.analysis.image_uncertainty import interval_coverage
from deepfield.analysis.interval_recalibration import record_widths
from deepfield.data.simulate.blends import simulate_blends
from deepfield.report.html import write_report
from deepfield.tasks.config import load_config
from deepfield.tasks.deblend import DeblendPrepared, source_uncertainty
from deepfield.tasks.pixel_scaling import from_network
from deepfield.tasks.prepared_info import DeblendInfo, RobustStatistics
from deepfield.tasks.run import load_run, predict_run, train
from deepfield.tasks.stamp_uncertainty import mapped_sigma
from deepfield.training.mc_dropout import MCPrediction

EXAMPLE = Path(__file__).parents[2] / "examples" / "deblend.yaml"
RNG = np.random.default_rng(18)
INFO = DeblendInfo(bands=["r"], unit="nJy", inputs="images", targets="sources", marker_sigma=1.5, stretch="asinh",
                   normalize=RobustStatistics(median=[0.5], sigma=[2.0]))


def known(n, side=4):
    """``n`` stamps whose network-unit values span the faint (linear) to the bright (logarithmic) part of the
    stretch, as a prepared test part of one target per stamp (the truth filled in by the caller)."""
    mean = RNG.uniform(-1.0, 6.0, (n, 1, side, side))  # asinh units: up to 3 sinh(6) ≈ 600 sky σ
    prepared = DeblendPrepared(x={"test": np.zeros((n, 2, side, side), np.float32)}, y={}, info=INFO,
                               targets={"test": np.zeros((n, 2))},
                               slots={"test": np.column_stack([np.arange(n), np.zeros(n, np.int64)])})
    return mean, prepared


def test_a_heads_sigma_carried_through_sinh_covers_the_truth_and_left_stretched_it_does_not():
    mean, prepared = known(800)
    sigma = np.full_like(mean, 0.05)  # the head's σ in asinh units: 5 % of the flux on the bright part
    prepared.y["test"] = (mean + sigma * RNG.standard_normal(mean.shape)).astype(np.float32)  # the truth: one draw
    prediction = MCPrediction("gaussian", mean, np.zeros_like(mean), aleatoric=sigma, total=sigma)
    maps = source_uncertainty(prediction, prepared, "test")
    quantities = maps.quantities()
    pixel, flux = (interval_coverage(*quantities[name]) for name in ("pixel", "flux"))
    assert pixel["68"] == pytest.approx(0.683, abs=0.02) and pixel["95"] == pytest.approx(0.954, abs=0.015)
    # the flux of the whole stamp (independent pixel errors, as the truth's): its σ adds the pixels' in quadrature
    assert flux["68"] == pytest.approx(0.683, abs=0.05) and flux["95"] == pytest.approx(0.954, abs=0.03)
    stretched = sigma * INFO.normalize.sigma[0]  # σ rescaled but not carried through sinh: far too narrow
    assert interval_coverage(maps.truth, maps.output, stretched)["68"] < 0.2
    np.testing.assert_allclose(maps.output, from_network(mean, INFO))
    exact = 3.0 * np.cosh(mean) * sigma * INFO.normalize.sigma[0]  # the delta method: |d flux / d value| σ
    np.testing.assert_allclose(maps.aleatoric, exact, rtol=0.01)


def test_mc_draws_are_carried_one_by_one_and_their_spread_covers_a_truth_drawn_alike():
    mean, prepared = known(100)
    spread = 0.05
    draws = mean[None] + spread * RNG.standard_normal((200, *mean.shape))
    prepared.y["test"] = (mean + spread * RNG.standard_normal(mean.shape)).astype(np.float32)
    prediction = MCPrediction.from_samples(torch.from_numpy(draws), kind="values", keep_samples=True)
    maps = source_uncertainty(prediction, prepared, "test")
    assert maps.aleatoric is None and maps.draws.shape == (200, 100, 1, 4, 4)
    np.testing.assert_allclose(maps.draws[7], from_network(draws[7], INFO), rtol=1e-5)
    np.testing.assert_allclose(maps.epistemic, maps.draws.std(axis=0))
    quantities = maps.quantities()
    pixel, flux = (interval_coverage(*quantities[name]) for name in ("pixel", "flux"))
    assert pixel["68"] == pytest.approx(0.683, abs=0.03) and pixel["95"] == pytest.approx(0.954, abs=0.02)
    assert flux["68"] == pytest.approx(0.683, abs=0.1) and flux["95"] == pytest.approx(0.954, abs=0.06)


def test_the_secant_sigma_is_exact_for_a_linear_map_and_the_delta_method_for_a_small_one():
    values, sigma = np.array([[-2.0, 0.0, 4.0]]), np.array([[0.3, 0.3, 0.3]])
    np.testing.assert_allclose(mapped_sigma(lambda v: 2.5 * v + 7.0, values, sigma), 2.5 * sigma)
    small = 1e-4 * np.ones_like(values)
    np.testing.assert_allclose(mapped_sigma(np.sinh, values, small), np.cosh(values) * small, rtol=1e-7)


@pytest.fixture(scope="module")
def uncertain(tmp_path_factory):
    """A tiny run with both σ: the heteroscedastic head and MC dropout (4 draws)."""
    folder = tmp_path_factory.mktemp("deblend_uncertainty")
    blends = simulate_blends(40, folder / "blends.h5", size=16, bands="r", seed=1, min_sources=2, max_sources=2,
                             star_fraction=0.0, mag_limit=22.0, workers=1, progress=False)
    config = load_config(EXAMPLE, [f"data.path={blends}", f"out={folder / 'run'}", "training.epochs=1",
                                   "training.batch_size=16", "baselines.run=false", "uncertainty.heteroscedastic=true",
                                   "uncertainty.mc_samples=4",
                                   "model.options={depth: 2, filters: 4, normalization: null, dropout: 0.2}"])
    return train(config, verbose=0, report=write_report), blends


def test_the_run_recalibrates_on_validation_and_reports_each_sources_pixel_and_flux_coverage(uncertain):
    out, _ = uncertain
    record = json.loads((out / "calibration.json").read_text())["intervals"]
    assert record["fitted_on"] == "validation" and set(record["half_widths"]) == {"pixel", "flux"}
    assert record["n"] == {"pixel": 12 * 16 * 16, "flux": 12}  # 6 validation blends, two sources each, band r
    assert load_run(out).calibration == {"intervals": record}
    metrics = json.loads((out / "metrics.json").read_text())
    uncertainty = metrics["uncertainty"]
    assert uncertainty["draws"] == 4 and uncertainty["sigma"] == "MC-dropout spread ⊕ heteroscedastic head"
    for quantity in ("pixel", "flux"):
        raw, calibrated = uncertainty[f"{quantity}_coverage"], uncertainty[f"{quantity}_coverage_calibrated"]
        assert set(raw) == set(calibrated) == {"68", "95"} and 0 <= calibrated["68"] <= calibrated["95"] <= 1
    assert {"pixel_calibrated", "flux_calibrated"} <= set(uncertainty["coverage_curve"][0])
    assert metrics["n_sources"] == 12 and "flux_mape" in metrics and metrics["test"]["loss"] == metrics["test"]["loss"]
    assert {"uncertainty_coverage.png", "deblend_gallery.png"} <= {p.name for p in (out / "figures").iterdir()}
    assert 'id="uncertainty"' in (out / "report.html").read_text()


def test_predict_writes_each_sources_flux_with_its_raw_sigma_and_recalibrated_half_widths(uncertain, tmp_path):
    out, blends = uncertain
    table = Table.read(predict_run(out, blends, tmp_path / "deblended.h5"), path="predictions")
    assert len(table) == 80 and table["id"][1] == "0:1"
    for name in ("deblended", "deblended_err", "deblended_spread", "deblended_halfwidth_68", "deblended_halfwidth_95"):
        assert table[name].shape == (80, 1, 16, 16) and table[name].dtype == np.float32
    for name in ("deblended_flux", "deblended_flux_err", "deblended_flux_halfwidth_68", "deblended_flux_halfwidth_95"):
        assert table[name].shape == (80, 1) and table[name].dtype == np.float32
    np.testing.assert_allclose(table["deblended_flux"], table["deblended"].sum(axis=(2, 3)), rtol=1e-4)
    record = json.loads((out / "calibration.json").read_text())["intervals"]
    for quantity, name, sigma in (("flux", "deblended_flux", table["deblended_flux_err"]),
                                  ("pixel", "deblended", np.hypot(table["deblended_err"], table["deblended_spread"]))):
        for level, z in zip((68, 95), record_widths(record, quantity, (0.68, 0.95))):
            np.testing.assert_allclose(table[f"{name}_halfwidth_{level}"], z * sigma, rtol=1e-4)
    assert np.all(table["deblended_flux_err"] > 0)
