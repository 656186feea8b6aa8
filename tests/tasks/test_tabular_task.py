"""The tabular task on tables written here, Model A vs Model B, and the seat forecast built on it."""
import json

import numpy as np
import pytest
import torch
from astropy.table import Table
from torch import nn

from deepfield.errors import DeepfieldError
from deepfield.models.serialization import load_network
from deepfield.tasks.config import load_config
from deepfield.tasks.forecast import (PAST_ELECTIONS, forecast_seats, plot_seat_distribution, sample_outputs,
                                      seat_distribution, simulate_elections)
from deepfield.tasks.prepared_info import TabularInfo
from deepfield.tasks.run import train
from deepfield.tasks.tabular import Tabular, unscale
from deepfield.training import Engine


def config_for(tmp_path, data, epochs=30, hidden=(32, 32), dropout=0.0, name="run"):
    return load_config(None, document={
        "task": "tabular", "out": str(tmp_path / name), "seed": 0, "data": data,
        "model": {"preset": "mlp", "options": {"hidden": list(hidden), "dropout": dropout}},
        "training": {"epochs": epochs, "batch_size": 32, "optimizer": "adam", "learning_rate": 0.005},
    })


def read_run(out):
    return json.loads((out / "metrics.json").read_text()), TabularInfo.read(out / "prepared.json")


def test_regression_learns_a_known_function_in_the_targets_units(tmp_path):
    rng = np.random.default_rng(0)
    a, b, c = rng.normal(size=(3, 800))
    y = 20.0 + 3.0 * a - 2.0 * b + c ** 2 + rng.normal(0.0, 0.3, 800)
    a[5], b[9] = np.nan, 99.0  # a missing value and a sentinel: two rows dropped
    path = tmp_path / "table.csv"
    Table({"a": a, "b": b, "c": c, "y": y}).write(path)
    out = train(config_for(tmp_path, {"path": str(path), "target": "y"}), verbose=0)
    metrics, info = read_run(out)
    assert info.problem == "regression" and info.features == ["a", "b", "c"]
    assert info.dropped == {str(path): 2}
    assert metrics["r2"] > 0.8
    assert metrics["rmse"] >= metrics["mae"] > 0 and abs(metrics["bias"]) < 0.5  # in the target's units
    assert (out / "figures" / "regression.png").is_file()
    assert "mae" in (out / "history.csv").read_text().splitlines()[0]

    task = Tabular()
    new = task.read_new(config_for(tmp_path, {"path": str(path), "target": "y"}), info, path, labelled=False)
    assert len(new.ids) == 798 and 5 not in new.ids and 9 not in new.ids
    predicted = task.describe(Engine(load_network(out)).predict(new.x, verbose=0), info)["predicted_y"]
    assert np.mean(np.abs(predicted - y[new.ids])) == pytest.approx(metrics["mae"], rel=0.5)


def test_classification_maps_string_labels_to_classes(tmp_path):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 600))
    labels = np.where(a > 0.5, "star", np.where(a < -0.5, "qso", "galaxy"))
    path = tmp_path / "objects.csv"
    Table({"a": a, "b": b, "kind": labels}).write(path)
    out = train(config_for(tmp_path, {"path": str(path), "target": "kind"}), verbose=0)
    metrics, info = read_run(out)
    assert info.problem == "classification" and info.classes == ["galaxy", "qso", "star"]
    assert set(metrics["per_class"]) == {"galaxy", "qso", "star"} and metrics["accuracy"] > 0.8
    assert {p.name for p in (out / "figures").iterdir()} >= {"confusion_matrix.png", "roc.png"}


def test_few_integer_values_are_classes_and_many_a_quantity(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "t.csv"
    Table({"x": rng.normal(size=200), "flag": rng.integers(0, 2, 200), "count": rng.integers(0, 500, 200)}).write(path)
    task = Tabular()
    binary = task.prepare(config_for(tmp_path, {"path": str(path), "target": "flag"}))
    assert binary.info.classes == ["0", "1"] and task.head(binary) == (1, "sigmoid")
    assert task.default_loss(binary) == "binary_crossentropy" and binary.y["train"].shape[1:] == (1,)
    counts = task.prepare(config_for(tmp_path, {"path": str(path), "target": "count"}))
    assert counts.info.problem == "regression" and counts.info.features == ["x", "flag"]
    assert task.head(counts) == (1, None) and abs(float(counts.y["train"].mean())) < 1e-5  # standardised


def test_a_missing_target_names_the_file_and_lists_the_columns(tmp_path):
    path = tmp_path / "survey.csv"
    Table({"ra": [1.0, 2.0], "dec": [3.0, 4.0], "redshift": [0.1, 0.2]}).write(path)
    with pytest.raises(DeepfieldError, match=r"survey\.csv: no column 'redshfit' \(near: redshift\); "
                                             r"columns are: ra, dec, redshift"):
        Tabular().prepare(config_for(tmp_path, {"path": str(path), "target": "redshfit"}))


def test_dropping_an_informative_group_costs_more_than_dropping_a_useless_one(tmp_path):
    rng = np.random.default_rng(3)
    x1, x2, z, n1, n2 = rng.normal(size=(5, 800))
    path = tmp_path / "groups.csv"
    Table({"x1": x1, "x2": x2, "z": z, "n1": n1, "n2": n2,
           "y": x1 + x2 + 0.3 * z + rng.normal(0.0, 0.05, 800)}).write(path)
    data = {"path": str(path), "target": "y", "feature_groups": {"informative": ["x1", "x2"], "useless": ["n1", "n2"]}}
    metrics, _ = read_run(train(config_for(tmp_path, data, epochs=20), verbose=0))
    rows = {row["model"]: row for row in metrics["baselines"]}
    assert list(rows) == ["all features", "without informative", "without useless"]
    assert rows["all features"]["mae"] == metrics["mae"] and rows["without useless"]["n_features"] == 3
    assert rows["without informative"]["mae"] > 4 * rows["without useless"]["mae"]
    assert rows["without informative"]["r2"] < 0.5 < 0.9 < rows["without useless"]["r2"]


def test_a_separate_test_file_is_read_the_same_way(tmp_path):
    rng = np.random.default_rng(4)

    def write(name, n, classes):
        Table({"x": rng.normal(size=n), "flag": rng.uniform(size=n) > 0.5, "k": rng.choice(classes, n)}).write(
            tmp_path / name)
        return str(tmp_path / name)

    train_file, test_file = write("train.parquet", 100, ["a", "b"]), write("test.csv", 30, ["a", "b"])
    prepared = Tabular().prepare(config_for(tmp_path, {"path": train_file, "target": "k", "test": test_file}))
    assert prepared.info.features == ["x", "flag"] and prepared.x["test"].shape == (30, 2)  # CSV booleans as text
    with pytest.raises(DeepfieldError, match=r"unknown\.csv: column 'k' holds classes c not in the training"):
        Tabular().prepare(config_for(tmp_path, {"path": train_file, "target": "k",
                                                "test": write("unknown.csv", 30, ["a", "c"])}))


def test_a_feature_group_must_name_features(tmp_path):
    path = tmp_path / "t.csv"
    Table({"a": [1.0, 2.0, 3.0], "b": [1.0, 2.0, 3.0], "y": [0.5, 0.1, 0.2]}).write(path)
    data = {"path": str(path), "target": "y", "features": ["a"], "feature_groups": {"extra": ["b"]}}
    with pytest.raises(DeepfieldError, match=r"data\.feature_groups\.extra: b not among the features"):
        Tabular().prepare(config_for(tmp_path, data))


# -- the forecast -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def election_run(tmp_path_factory):
    """A run trained on 120 simulated districts over 6 elections, with MC dropout."""
    folder = tmp_path_factory.mktemp("forecast")
    elections = simulate_elections(120, cycles=6, seed=1)
    elections.history.write(folder / "elections.csv")
    features = ["generic_ballot", "incumbent", "urban", "college", "median_age", "income", *PAST_ELECTIONS]
    config = config_for(folder, {"path": str(folder / "elections.csv"), "target": "dem_share", "features": features},
                        epochs=15, dropout=0.1)
    out = train(config, verbose=0)
    return load_network(out), TabularInfo.read(out / "prepared.json"), elections


def test_without_uncertainty_the_seats_are_the_deterministic_count(election_run):
    model, info, elections = election_run
    shares = unscale(Engine(model).predict(Tabular.transform(elections.upcoming, info), verbose=0).reshape(-1),
                     info.target_scale)
    forecast = forecast_seats(model, info, elections.upcoming, samples=20, mc_dropout=False, majority=61)
    as_read = forecast_seats(model, json.loads(info.to_json()), elections.upcoming, samples=20, mc_dropout=False,
                             majority=61)  # the file's object as json.load gives it
    assert np.array_equal(as_read["seats"], forecast["seats"])
    assert np.all(forecast["seats"] == np.sum(shares > 0.5))
    assert forecast["p_majority"] == float(np.sum(shares > 0.5) >= 61)
    assert forecast["seats_interval"][0] == forecast["seats_interval"][1] == forecast["seats_mean"]


def test_the_majority_probability_grows_with_the_national_swing(election_run, tmp_path):
    model, info, elections = election_run
    results = [forecast_seats(model, info, elections.upcoming, swing_shift=shift, swing_sigma=0.02,
                              noise_sigma=0.03, samples=300, majority=61)
               for shift in (-0.08, -0.04, -0.02, 0.0, 0.02, 0.04, 0.08)]
    p = [r["p_majority"] for r in results]
    assert p == sorted(p) and p[0] < 0.1 and p[-1] > 0.9
    assert np.all(np.diff([r["seats_mean"] for r in results]) > 0)
    assert len(set(results[3]["seats"].tolist())) > 5  # the uncertainty spreads the seats
    assert plot_seat_distribution({"swing 0": results[3]}, tmp_path / "seats.png").is_file()


def test_mc_dropout_draws_one_network_for_all_rows_of_a_sample():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 1))
    rows = np.ones((10, 1), dtype=np.float32)
    samples = torch.from_numpy(sample_outputs(model, rows, np.zeros(5), column=None, seed=0))
    assert torch.allclose(samples, samples[:, :1].expand_as(samples), atol=1e-6)  # one network for all rows
    assert len(set(samples[:, 0].tolist())) == 5  # a new network for every draw
    assert model.training and not model[2]._forward_hooks  # the model is left as it was


def test_seat_distribution_counts_seats_and_the_majority():
    shares = np.array([[0.6, 0.6, 0.4], [0.6, 0.4, 0.4], [0.7, 0.6, 0.55], [0.3, 0.2, 0.6]])
    result = seat_distribution(shares, majority=2, interval=0.5)
    assert result["seats"].tolist() == [2, 1, 3, 1] and result["p_majority"] == 0.5
    assert result["seats_mean"] == 1.75 and result["p_win"].tolist() == [0.75, 0.5, 0.5]
