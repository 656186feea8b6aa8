"""Classical learners from scikit-learn, the course's "SVM? or any other learning algorithm".

Every learner is one scikit-learn estimator: a :class:`~sklearn.pipeline.Pipeline`
``SimpleImputer(median) -> StandardScaler -> model`` inside a :class:`GridSearchCV` over a
small grid (3-fold, shuffled with the seed, ``n_jobs=1``), refitted on the whole training
part with the best values. The imputer fills the NaN rows a failed feature extraction
leaves (with the training medians), so such rows are scored, not dropped or fatal.

===================== ======================================= ============================
name                  model (classification / regression)     grid
===================== ======================================= ============================
``svm_rbf``           ``SVC`` / ``SVR``, RBF, gamma "scale"    C in {1, 10}
``svm_linear``        ``LinearSVC`` / ``LinearSVR``            C in {0.1, 1}
``random_forest``     200 trees                               max_depth in {None, 12}
``gradient_boosting`` ``HistGradientBoosting*``                learning_rate in {0.1, 0.3}
``knn``               k nearest neighbours                    k in {5, 15}
===================== ======================================= ============================

Histogram gradient boosting stands for gradient boosting: the same method, an order of
magnitude faster on thousands of rows. The SVMs are built without ``probability=True``
(that refits five times more, with an internal cross-validation): their
``decision_function`` is the score for ROC curves, see :func:`class_scores`.

>>> model = make_learner("svm_rbf", "classification", seed=0).fit(x_train, y_train)
>>> model.best_params_, model.predict(x_test), class_scores(model, x_test)
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.ensemble import (HistGradientBoostingClassifier, HistGradientBoostingRegressor,
                              RandomForestClassifier, RandomForestRegressor)
from sklearn.impute import SimpleImputer
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR, LinearSVC, LinearSVR

from deepfield.errors import DeepfieldError, unknown_name

PROBLEMS = ("classification", "regression")
CV_FOLDS = 3
MAX_ITER_LINEAR = 5000  # liblinear iterations; the default 1000 often stops short on ~500 features


def _svm_rbf(problem: str, seed: int) -> Any:
    return SVC(kernel="rbf", gamma="scale", random_state=seed) if problem == "classification" \
        else SVR(kernel="rbf", gamma="scale")


def _svm_linear(problem: str, seed: int) -> Any:
    if problem == "classification":
        return LinearSVC(max_iter=MAX_ITER_LINEAR, random_state=seed)
    return LinearSVR(max_iter=MAX_ITER_LINEAR, random_state=seed)


def _random_forest(problem: str, seed: int) -> Any:
    forest = RandomForestClassifier if problem == "classification" else RandomForestRegressor
    return forest(n_estimators=200, n_jobs=1, random_state=seed)


def _gradient_boosting(problem: str, seed: int) -> Any:
    boosting = HistGradientBoostingClassifier if problem == "classification" else HistGradientBoostingRegressor
    return boosting(random_state=seed)


def _knn(problem: str, seed: int) -> Any:
    return KNeighborsClassifier() if problem == "classification" else KNeighborsRegressor()


LEARNERS: dict[str, tuple[Callable[[str, int], Any], dict[str, list[Any]]]] = {
    "svm_rbf": (_svm_rbf, {"C": [1.0, 10.0]}),
    "svm_linear": (_svm_linear, {"C": [0.1, 1.0]}),
    "random_forest": (_random_forest, {"max_depth": [None, 12]}),
    "gradient_boosting": (_gradient_boosting, {"learning_rate": [0.1, 0.3]}),
    "knn": (_knn, {"n_neighbors": [5, 15]}),
}
"""name -> (model builder ``(problem, seed) -> estimator``, grid of the model's parameters)."""

NAMES: tuple[str, ...] = tuple(LEARNERS)


def make_learner(name: str, task: str = "classification", seed: int = 0) -> GridSearchCV:
    """The unfitted learner ``name`` (one of :data:`NAMES`) for the problem ``task`` (:data:`PROBLEMS`).

    ``fit(x (N, F), y (N,))`` accepts NaN in ``x``; the fitted search's ``best_params_``
    names the chosen grid point (keys prefixed ``model__``).
    """
    if name not in LEARNERS:
        raise unknown_name("baseline learner", name, LEARNERS)
    if task not in PROBLEMS:
        raise DeepfieldError(f"baseline learner {name}: task must be one of {', '.join(PROBLEMS)}, got {task!r}")
    build, grid = LEARNERS[name]
    pipeline = Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                         ("scale", StandardScaler()),
                         ("model", build(task, seed))])
    folds = StratifiedKFold if task == "classification" else KFold
    return GridSearchCV(pipeline, {f"model__{key}": values for key, values in grid.items()},
                        cv=folds(CV_FOLDS, shuffle=True, random_state=seed), n_jobs=1)


def class_scores(model: Any, x: np.ndarray) -> np.ndarray:
    """Scores for ROC curves from a fitted classifier: ``(N,)`` for class ``classes_[1]`` when
    binary, else ``(N, K)`` in the order of ``classes_``; higher means more likely.

    Class probabilities where the model gives them (forest, boosting, kNN); otherwise the
    SVMs' signed distance to the separating surface (``decision_function``), which ranks
    objects just as well for an AUC but is not a probability (its threshold is 0, not 0.5).
    """
    if hasattr(model, "predict_proba"):
        scores = model.predict_proba(x)
        return scores[:, 1] if scores.shape[1] == 2 else scores
    return np.asarray(model.decision_function(x), dtype=np.float64)
