"""Uncertainty through the run folder: MC dropout, calibration, heteroscedastic heads, ensembles, Bayesian layers."""
import json

import numpy as np
import pytest
from astropy.table import Table

from deepfield.data.simulate import simulate_photoz
from deepfield.errors import DeepfieldError
from deepfield.models.bayesian import is_stochastic_layer
from deepfield.report.html import write_report
from deepfield.tasks.config import load_config
from deepfield.tasks.run import evaluate_run, load_run, predict_run, train
from helpers import LSST


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    return simulate_photoz(500, tmp_path_factory.mktemp("photoz") / "photoz.h5", seed=4, workers=1, progress=False)


def morphology(sky, out, **extra):
    return load_config(None, document={
        "task": "morphology", "out": str(out), "seed": 1, "data": {"path": str(sky)},
        "model": {"preset": "lecture-cnn"},
        "training": {"epochs": 2, "batch_size": 32}, **extra})


def photoz(catalogue, out, **extra):
    return load_config(None, document={
        "task": "photoz", "out": str(out), "seed": 3, "data": {"path": str(catalogue), **LSST},
        "model": {"preset": "mlp", "options": {"dropout": 0.1}},
        "training": {"epochs": 15, "batch_size": 32, "learning_rate": 0.003}, **extra})


def test_mc_dropout_classification_run_reports_calibration_and_writes_uncertainty_columns(sky, tmp_path):
    out = train(morphology(sky, tmp_path / "run", uncertainty={"mc_samples": 6}), verbose=0, report=write_report)
    metrics = json.loads((out / "metrics.json").read_text())
    u = metrics["uncertainty"]
    assert u["draws"] == 6
    assert 0.0 <= u["ece"] <= 1.0 and u["nll"] > 0 and u["mean_mutual_information"] > 0
    assert 0.0 <= u["entropy_flags_errors_auroc"] <= 1.0
    assert u["temperature"] > 0 and 0.0 <= u["ece_calibrated"] <= 1.0
    assert json.loads((out / "calibration.json").read_text())["temperature"] == pytest.approx(u["temperature"])
    figures = {p.name for p in (out / "figures").iterdir()}
    assert {"uncertainty_reliability.png", "uncertainty_flags.png", "uncertainty_most_uncertain.png"} <= figures
    html = (out / "report.html").read_text()
    assert 'id="uncertainty"' in html and "uncertainty_reliability.png" not in html.split('id="figures"')[-1]

    table = Table.read(predict_run(out, sky, tmp_path / "predictions.csv"), format="ascii.csv")
    assert {"id", "predicted", "entropy", "mutual_information", "confidence_calibrated"} <= set(table.colnames)
    p = np.column_stack([table[c] for c in table.colnames if c.startswith("p_")])
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-4)
    assert np.allclose(table["entropy"], -(p * np.log(np.clip(p, 1e-12, 1))).sum(axis=1), atol=1e-4)
    assert np.all(table["mutual_information"] <= table["entropy"] + 1e-6)


def test_a_deterministic_classifier_still_gets_its_calibration(tiny_run):
    out, _ = tiny_run  # a morphology run without uncertainty options
    u = json.loads((out / "metrics.json").read_text())["uncertainty"]
    assert u["draws"] == 1 and "ece" in u and "mean_mutual_information" not in u


def test_heteroscedastic_photoz_reports_aleatoric_and_epistemic_error(catalogue, tmp_path):
    config = photoz(catalogue, tmp_path / "run", uncertainty={"heteroscedastic": True, "mc_samples": 8})
    out = train(config, verbose=0)
    head = [m for m in load_run(out).models[0].modules() if hasattr(m, "units")][-1]
    assert head.units == 2  # mean | log-variance
    metrics = json.loads((out / "metrics.json").read_text())
    u = metrics["uncertainty"]
    assert set(u["coverage"]) == {"0.68", "0.95"} and 0.0 <= u["coverage"]["0.68"] <= u["coverage"]["0.95"] <= 1.0
    assert u["sigma_aleatoric_mean"] > 0 and u["sigma_epistemic_mean"] > 0
    assert u["sigma_mean"] >= u["sigma_aleatoric_mean"]  # total σ ≥ its aleatoric part, object by object
    assert metrics["sigma_nmad"] < 0.2  # the mean half of the head still predicts z
    assert {"uncertainty_error_vs_sigma.png", "uncertainty_coverage.png"} <= {p.name for p in (out / "figures").iterdir()}
    table = Table.read(predict_run(out, catalogue, tmp_path / "z.fits"))
    assert {"z_phot", "z_err", "z_err_epistemic", "z_err_aleatoric"} <= set(table.colnames)
    assert np.allclose(table["z_err"] ** 2, table["z_err_epistemic"] ** 2 + table["z_err_aleatoric"] ** 2, rtol=1e-4)
    assert table.meta["DRAWS"] == 8  # FITS keeps meta as upper-case header keywords


def test_heteroscedastic_is_refused_for_a_classification(sky, tmp_path):
    with pytest.raises(DeepfieldError, match="heteroscedastic.*classification"):
        train(morphology(sky, tmp_path / "run", uncertainty={"heteroscedastic": True}), verbose=0)


def test_a_deep_ensemble_trains_members_with_their_own_seeds_and_pools_them(catalogue, tmp_path):
    config = photoz(catalogue, tmp_path / "run", ensemble=3, training={"epochs": 4, "batch_size": 32})
    out = train(config, verbose=0)
    members = sorted(p.name for p in (out / "members").iterdir())
    assert members == ["0", "1", "2"] and all((out / "members" / m / "weights.safetensors").is_file() for m in members)
    weights = [(out / "members" / m / "weights.safetensors").read_bytes() for m in members]
    assert len(set(weights)) == 3  # different seeds, different networks
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["members"]) == 3 and metrics["uncertainty"]["draws"] == 3
    assert metrics["test"]["loss"] == pytest.approx(np.mean([m["loss"] for m in metrics["members"]]))
    assert metrics["uncertainty"]["sigma_epistemic_mean"] > 0
    # a finished member is loaded, not trained again: running the config again changes no member
    train(config, verbose=0)
    assert [(out / "members" / m / "weights.safetensors").read_bytes() for m in members] == weights
    again = evaluate_run(out)
    assert again["sigma_nmad"] == pytest.approx(metrics["sigma_nmad"], rel=1e-5)


def test_the_bayesian_switch_trains_variational_layers_and_samples_them(catalogue, tmp_path):
    config = photoz(catalogue, tmp_path / "run", model={"preset": "mlp", "bayesian": {"prior_sigma": 0.5}},
                    uncertainty={"mc_samples": 10})
    out = train(config, verbose=0)
    model = load_run(out).models[0]
    layers = [m for m in model.modules() if is_stochastic_layer(m)]
    assert layers and all(m.prior_sigma == 0.5 and m.kl_weight == pytest.approx(1 / 350) for m in layers)
    u = json.loads((out / "metrics.json").read_text())["uncertainty"]
    assert u["draws"] == 10 and u["sigma_epistemic_mean"] > 0
