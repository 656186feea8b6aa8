"""Classical baselines: learners beat chance, rules place points as the papers draw them, rows read back."""
from __future__ import annotations

import csv
import json
import sys
import types
from dataclasses import dataclass, field

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression

import deepfield.tasks
from deepfield.analysis.photoz import photoz_metrics
from deepfield.errors import DeepfieldError
from deepfield.tasks.base import Prepared
from deepfield.tasks.prepared_info import PreparedInfo
from deepfield.tasks.baselines import (NAMES, append_rows, class_scores, image_baselines, make_learner, run_baselines,
                                       uvj_course, uvj_course_score, uvj_williams09, williams09_intercept)
from helpers import stamps


def classification_data(n_classes: int = 2, seed: int = 0) -> tuple[np.ndarray, ...]:
    x, y = make_classification(n_samples=300, n_features=10, n_informative=5, n_classes=n_classes,
                               class_sep=1.5, random_state=seed)
    return x[:200], y[:200], x[200:], y[200:]


def regression_data(seed: int = 0) -> tuple[np.ndarray, ...]:
    x, y = make_regression(n_samples=300, n_features=8, n_informative=5, noise=5.0, random_state=seed)
    return x[:200], y[:200], x[200:], y[200:]


# ---------------------------------------------------------------- learners

@pytest.mark.parametrize("name", NAMES)
def test_each_learner_beats_chance_on_classification(name):
    x_train, y_train, x_test, y_test = classification_data(n_classes=3)
    model = make_learner(name, "classification", seed=0).fit(x_train, y_train)
    assert np.mean(model.predict(x_test) == y_test) > 0.6  # chance is 1/3
    scores = class_scores(model, x_test)
    assert scores.shape == (100, 3)
    assert set(model.best_params_) <= {f"model__{k}" for k in ("C", "max_depth", "learning_rate", "n_neighbors")}


@pytest.mark.parametrize("name", NAMES)
def test_each_learner_fits_a_regression(name):
    x_train, y_train, x_test, y_test = regression_data()
    model = make_learner(name, "regression", seed=0).fit(x_train, y_train)
    assert model.score(x_test, y_test) > 0.5  # R²


def test_binary_scores_are_one_column_and_rank_the_classes():
    x_train, y_train, x_test, y_test = classification_data()
    model = make_learner("svm_rbf", "classification", seed=0).fit(x_train, y_train)
    scores = class_scores(model, x_test)  # decision_function: threshold 0
    assert scores.shape == (100,)
    np.testing.assert_array_equal(scores > 0, model.predict(x_test) == 1)


def test_nan_rows_are_imputed_not_fatal():
    x_train, y_train, x_test, y_test = classification_data()
    x_train, x_test = x_train.copy(), x_test.copy()
    x_train[::10] = np.nan  # whole rows, as a failed feature extraction leaves them
    x_test[::10] = np.nan
    for name in ("svm_rbf", "knn"):
        model = make_learner(name, "classification", seed=0).fit(x_train, y_train)
        assert np.mean(model.predict(x_test) == y_test) > 0.7


def test_learners_are_reproducible_with_the_seed():
    x_train, y_train, x_test, _ = classification_data()
    first, second = (make_learner("random_forest", seed=3).fit(x_train, y_train) for _ in range(2))
    np.testing.assert_array_equal(class_scores(first, x_test), class_scores(second, x_test))


def test_unknown_learner_and_task_name_the_choices():
    with pytest.raises(DeepfieldError, match="unknown baseline learner 'svm'.*svm_rbf"):
        make_learner("svm")
    with pytest.raises(DeepfieldError, match="task must be one of"):
        make_learner("knn", task="ranking")


# ---------------------------------------------------------------- rules

def test_course_rule_sign():
    # the line u-v = 0.8 (v-j) + 0.7: at v-j = 1 it passes u-v = 1.5
    u_v, v_j = np.array([1.8, 1.2, 2.5, 0.5, 1.5]), np.array([1.0, 1.0, 2.0, 0.0, 1.0])
    np.testing.assert_array_equal(uvj_course(u_v, v_j), [1, 0, 1, 0, 0])  # on the line: star-forming
    np.testing.assert_allclose(uvj_course_score(u_v, v_j), [0.3, -0.3, 0.2, -0.2, 0.0], atol=1e-12)


def test_williams09_box():
    # inside; too blue in U-V; too red in V-J (dusty star-forming); below the diagonal; blue cloud
    u_v = np.array([2.0, 1.2, 2.2, 1.4, 0.6])
    v_j = np.array([0.8, 0.2, 1.8, 1.2, 0.5])
    np.testing.assert_array_equal(uvj_williams09(u_v, v_j), [1, 0, 0, 0, 0])


def test_williams09_diagonal_moves_with_redshift():
    np.testing.assert_allclose(williams09_intercept([0.2, 0.7, 1.5, 2.5]), [0.69, 0.59, 0.49, 0.49])
    # u-v = 1.5 at v-j = 1.0: the diagonal is at 1.57 (z < 0.5), 1.47 (0.5 < z < 1), 1.37 (1 < z < 2)
    u_v, v_j = np.full(3, 1.5), np.full(3, 1.0)
    np.testing.assert_array_equal(uvj_williams09(u_v, v_j, z=[0.3, 0.8, 1.5]), [0, 1, 1])
    np.testing.assert_array_equal(uvj_williams09(u_v, v_j, z=0.3), [0, 0, 0])
    np.testing.assert_array_equal(uvj_williams09(u_v, v_j), [1, 1, 1])  # default: 0.5 < z < 1


def test_rules_refuse_missing_colours():
    with pytest.raises(DeepfieldError, match="1 object.*row 1"):
        uvj_course([1.0, np.nan], [1.0, 1.0])


# ---------------------------------------------------------------- rows

def test_classification_rows():
    x_train, y_train, x_test, y_test = classification_data()
    rows = run_baselines(x_train, y_train.astype(np.float32).reshape(-1, 1), x_test, y_test, task="classification",
                         learners=("svm_linear", "knn"), seed=0, feature_name="colours")
    assert [r["model"] for r in rows] == ["colours + svm_linear", "colours + knn"]
    for row in rows:
        assert set(row) == {"model", "features", "n_features", "accuracy", "macro_auc", "fit_time_s", "predict_time_s"}
        assert row["features"] == "colours" and row["n_features"] == 10
        assert 0.75 < row["accuracy"] <= 1.0 and 0.8 < row["macro_auc"] <= 1.0
        assert row["fit_time_s"] >= 0 and row["predict_time_s"] >= 0


def test_regression_rows():
    x_train, y_train, x_test, y_test = regression_data()
    (row,) = run_baselines(x_train, y_train, x_test, y_test, task="regression", learners=("svm_linear",))
    assert {"mae", "r2"} <= set(row) and row["r2"] > 0.5 and row["mae"] > 0


def test_redshift_rows_use_the_photoz_metrics():
    rng = np.random.default_rng(0)
    colours = rng.normal(size=(400, 4))
    z = np.clip(0.8 + 0.3 * colours[:, 0] + 0.1 * colours[:, 1] + 0.02 * rng.normal(size=400), 0.01, None)
    rows = run_baselines(colours[:300], z[:300], colours[300:], z[300:], task="redshift",
                         learners=("knn", "svm_rbf"), seed=0)
    for row in rows:
        assert {"sigma_nmad", "outlier_fraction_0.15", "bias"} <= set(row) and "mae" not in row
        assert 0 < row["sigma_nmad"] < 0.1 and row["outlier_fraction_0.15"] < 0.1 and abs(row["bias"]) < 0.05
    predicted = make_learner("knn", "regression", seed=0).fit(colours[:300], z[:300]).predict(colours[300:])
    assert rows[0]["sigma_nmad"] == pytest.approx(photoz_metrics(z[300:], predicted).sigma_nmad)


def test_rows_refuse_bad_inputs():
    x_train, y_train, x_test, y_test = classification_data()
    with pytest.raises(DeepfieldError, match="task must be one of"):
        run_baselines(x_train, y_train, x_test, y_test, task="clustering")
    with pytest.raises(DeepfieldError, match="one F"):
        run_baselines(x_train, y_train, x_test[:, :3], y_test, task="classification")
    with pytest.raises(DeepfieldError, match="classes the training part lacks"):
        run_baselines(x_train, y_train, x_test, y_test + 5, task="classification", learners=("knn",))


def test_append_rows_reads_back_and_replaces_same_model(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"accuracy": 0.9, "baselines": [{"model": "all features"}]}))
    append_rows(tmp_path, [{"model": "hog + svm_rbf", "accuracy": 0.8, "macro_auc": float("nan")}])
    append_rows(tmp_path, [{"model": "hog + svm_rbf", "accuracy": 0.85, "macro_auc": 0.9}])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["accuracy"] == 0.9
    assert metrics["baselines"] == [{"model": "all features"},
                                    {"model": "hog + svm_rbf", "accuracy": 0.85, "macro_auc": 0.9}]


def test_append_rows_needs_a_run(tmp_path):
    with pytest.raises(DeepfieldError, match="metrics.json"):
        append_rows(tmp_path, [{"model": "x"}])


# ---------------------------------------------------------------- image baselines

@dataclass
class FakeFeatureSet:
    values: np.ndarray
    names: list[str]
    failed: list[tuple[int, str]] = field(default_factory=list)


class MeanFlux:
    """Mean of each band; the first stamp 'fails'."""

    name = "mean_flux"

    def extract(self, images: np.ndarray) -> FakeFeatureSet:
        values = images.mean(axis=(2, 3)).astype(np.float64)
        values[0] = np.nan
        return FakeFeatureSet(values, [f"mean_{c}" for c in range(images.shape[1])], [(0, "no source")])


class Centred:
    """Needs fitting: pixel sums minus the training mean; records what it was fitted on."""

    name = "centred"

    def fit(self, images: np.ndarray) -> None:
        self.fitted_on = len(images)
        self.mean = images.sum(axis=(1, 2, 3)).mean()

    def extract(self, images: np.ndarray) -> FakeFeatureSet:
        return FakeFeatureSet((images.sum(axis=(1, 2, 3)) - self.mean).reshape(-1, 1), ["sum"])


@pytest.fixture
def fake_features(monkeypatch):
    made = {}

    def get(name, **options):
        made[name] = {"mean_flux": MeanFlux, "centred": Centred}[name]()
        return made[name]

    module = types.ModuleType("deepfield.tasks.features")
    module.get = get
    monkeypatch.setitem(sys.modules, "deepfield.tasks.features", module)
    monkeypatch.setattr(deepfield.tasks, "features", module, raising=False)
    return made


def labelled_stamps(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 2, 8, 8)`` noise stamps, those of class 1 brighter by 0.8, and their ``(n,)`` labels 0 or 1."""
    labels = rng.integers(0, 2, n)
    return stamps(n, bands=2, rng=rng) + labels[:, None, None, None] * 0.8, labels


def test_image_baselines_on_the_networks_split(fake_features):
    rng = np.random.default_rng(1)
    (xa, ya), (xb, yb), (xc, yc) = labelled_stamps(120, rng), labelled_stamps(30, rng), labelled_stamps(60, rng)
    prepared = Prepared(x={"train": xa, "validation": xb, "test": xc},
                        y={"train": ya.astype(np.float32).reshape(-1, 1), "validation": yb.reshape(-1, 1),
                           "test": yc.astype(np.float32).reshape(-1, 1)},
                        info=PreparedInfo(classes=["smooth", "featured"]))
    rows = image_baselines(prepared, extractors=("mean_flux", "centred"), learners=("svm_rbf", "knn"), seed=0)
    assert [r["model"] for r in rows] == ["mean_flux + svm_rbf", "mean_flux + knn", "centred + svm_rbf",
                                          "centred + knn"]
    assert fake_features["centred"].fitted_on == 120  # fitted on the training stamps only
    assert [r["n_features"] for r in rows] == [2, 2, 1, 1]
    assert [r["n_failed"] for r in rows] == [2, 2, 0, 0]
    assert all(r["accuracy"] > 0.8 and r["extract_time_s"] >= 0 for r in rows)


def test_image_baselines_list_the_stamps_they_could_not_measure(fake_features, tmp_path):
    rng = np.random.default_rng(1)
    (xa, ya), (xc, yc) = labelled_stamps(40, rng), labelled_stamps(20, rng)
    prepared = Prepared(x={"train": xa, "test": xc}, y={"train": ya, "test": yc}, info=PreparedInfo(classes=["a", "b"]),
                        ids={"test": np.array([f"obj{i}" for i in range(20)])})
    stale = tmp_path / "baselines" / "centred_failures.csv"
    stale.parent.mkdir()
    stale.write_text("part,index,id,reason\ntest,3,,old\n")
    image_baselines(prepared, ("mean_flux", "centred"), ("knn",), failures=tmp_path / "baselines")
    with open(tmp_path / "baselines" / "mean_flux_failures.csv", newline="") as fh:
        listed = list(csv.DictReader(fh))
    assert listed == [{"part": "train", "index": "0", "id": "", "reason": "no source"},
                      {"part": "test", "index": "0", "id": "obj0", "reason": "no source"}]
    assert not stale.exists()  # centred measured every stamp this time


def test_image_baselines_score_redshifts_when_the_task_keeps_them(fake_features):
    @dataclass
    class WithZ(Prepared):
        z: dict[str, np.ndarray] = field(default_factory=dict)

    rng = np.random.default_rng(2)
    z = {part: rng.uniform(0.2, 1.5, n) for part, n in (("train", 150), ("test", 50))}
    x = {part: rng.normal(size=(len(v), 1, 4, 4)).astype(np.float32) + v[:, None, None, None] for part, v in z.items()}
    prepared = WithZ(x=x, y={p: v.reshape(-1, 1) for p, v in z.items()}, info=PreparedInfo(), z=z)
    (row,) = image_baselines(prepared, extractors=("centred",), learners=("knn",))
    assert row["sigma_nmad"] < 0.15 and "accuracy" not in row


def test_image_baselines_need_images(fake_features):
    prepared = Prepared(x={"train": np.zeros((5, 3)), "test": np.zeros((5, 3))},
                        y={"train": np.zeros(5), "test": np.zeros(5)}, info=PreparedInfo(classes=["a", "b"]))
    with pytest.raises(DeepfieldError, match=r"not images"):
        image_baselines(prepared)


def test_classical_features_beat_chance_on_the_simulated_sky(tmp_path):
    from deepfield.data.simulate import simulate_morphology
    from deepfield.tasks.config import load_config
    from deepfield.tasks.imaging import Morphology
    from deepfield.tasks.baselines.runner import image_baselines

    data = simulate_morphology(300, tmp_path / "sky.h5", size=32, seed=7, workers=1, progress=False)
    config = load_config(None, document={"task": "morphology", "data": {"path": str(data)}})
    prepared = Morphology().prepare(config)
    rows = image_baselines(prepared, ("hog", "colour_histogram"), ("svm_rbf",), seed=0)
    accuracy = {row["features"]: row["accuracy"] for row in rows}
    assert accuracy["colour_histogram"] > 0.4 and accuracy["hog"] > 0.25  # 5 balanced classes: chance is 0.2


def test_morphology_baseline_writes_why_statmorph_could_not_measure(tmp_path):
    """Real statmorph: blank and pure-noise stamps are listed in baselines/morphology_failures.csv."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:32, :32] - 15.5

    def blob(width: float) -> np.ndarray:
        return 40.0 * np.exp(-(xx ** 2 + yy ** 2) / (2 * width ** 2)) + rng.normal(0, 1, (32, 32))

    train = [blob(w) for w in (1.5, 1.6, 1.7, 4.0, 4.2, 4.4)] + [np.zeros((32, 32)), rng.normal(0, 1, (32, 32))]
    test = [blob(1.6), blob(4.1), np.zeros((32, 32))]
    prepared = Prepared(x={"train": np.stack(train)[:, None].astype(np.float32),
                           "test": np.stack(test)[:, None].astype(np.float32)},
                        y={"train": np.array([0, 0, 0, 1, 1, 1, 0, 1]), "test": np.array([0, 1, 0])},
                        info=PreparedInfo(classes=["compact", "extended"]))
    (row,) = image_baselines(prepared, ("morphology",), ("knn",), failures=tmp_path / "baselines")
    with open(tmp_path / "baselines" / "morphology_failures.csv", newline="") as fh:
        listed = [(r["part"], int(r["index"]), r["reason"]) for r in csv.DictReader(fh)]
    assert row["n_failed"] == len(listed) >= 3
    reasons = {(part, index): reason for part, index, reason in listed}
    assert reasons[("train", 6)].startswith("flat stamp") and reasons[("test", 2)].startswith("flat stamp")
    assert "no source above 3 sigma" in reasons[("train", 7)]
