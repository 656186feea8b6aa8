"""The Keras face: compile/fit/evaluate/predict/save on Sequential and on any module wrapped in Model."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from deepfield.errors import DeepfieldError
from deepfield.models import Dense, Dropout
from deepfield.models import sequential as models_sequential
from deepfield.training import History, KerasModelMixin, Model, Sequential
from deepfield.training.optimizers import Optimizer


def data(n: int = 96) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    return x, (x[:, :1] > 0).astype(np.float32)


def classifier() -> Sequential:
    torch.manual_seed(0)
    return Sequential([Dense(16, activation="relu"), Dropout(0.2), Dense(1, activation="sigmoid")], input_shape=(5,))


def test_sequential_is_a_module_with_the_keras_face():
    model = classifier()
    assert isinstance(model, nn.Module) and isinstance(model, models_sequential.Sequential)
    assert isinstance(model, KerasModelMixin)
    assert model.compile(optimizer="adam", loss="binary_crossentropy") is model


def test_compile_fit_evaluate_predict():
    x, y = data()
    model = classifier().compile(optimizer={"class_name": "adam", "config": {"learning_rate": 0.02}},
                                 loss="binary_crossentropy", metrics=["accuracy", "auc"])
    history = model.fit(x, y, batch_size=16, epochs=10, validation_split=0.25, verbose=0, seed=0)
    assert isinstance(history, History) and model.history is history
    assert set(history.history) == {"loss", "accuracy", "auc", "val_loss", "val_accuracy", "val_auc", "lr"}
    scores = model.evaluate(x, y, batch_size=32, verbose=0)
    assert set(scores) == {"loss", "accuracy", "auc"} and scores["accuracy"] > 0.9
    probabilities = model.predict(x, batch_size=7, verbose=0)
    assert probabilities.shape == (96, 1) and ((probabilities >= 0) & (probabilities <= 1)).all()
    accuracy = ((probabilities > 0.5) == (y > 0.5)).mean()
    assert accuracy == pytest.approx(scores["accuracy"])  # predict runs in eval mode, as evaluate does
    assert model.training  # both leave the model in the mode they found


def test_optimizer_is_bound_to_the_model_parameters_at_fit():
    x, y = data(32)
    model = classifier().compile(optimizer="rmsprop", loss="binary_crossentropy")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert isinstance(model.optimizer, Optimizer) and model.optimizer.bound
    bound = {id(p) for group in model.optimizer.param_groups for p in group["params"]}
    assert bound == {id(p) for p in model.parameters()}
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # a second fit continues with the same optimiser state
    assert model.optimizer.iterations == 4


def test_fit_and_evaluate_before_compile_are_errors():
    x, y = data(8)
    with pytest.raises(DeepfieldError, match=r"not compiled: call model.compile\(optimizer=..., loss=...\) first"):
        classifier().fit(x, y)
    with pytest.raises(DeepfieldError, match="not compiled"):
        classifier().evaluate(x, y)


def test_predict_works_before_compile():
    model = classifier()
    assert model.predict(data(4)[0], verbose=0).shape == (4, 1)


def test_compile_checks_names_at_once():
    with pytest.raises(DeepfieldError, match="unknown optimizer 'adamw2'"):
        classifier().compile(optimizer="adamw2", loss="mse")
    with pytest.raises(DeepfieldError, match="unknown loss 'cross_entropy'"):
        classifier().compile(loss="cross_entropy")


def test_model_wraps_any_module():
    x, y = data()
    torch.manual_seed(0)
    wrapped = Model(nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 1), nn.Sigmoid()))
    wrapped.compile(optimizer={"class_name": "adam", "config": {"learning_rate": 0.05}}, loss="binary_crossentropy",
                    metrics=["accuracy"])
    history = wrapped.fit(x, y, batch_size=16, epochs=10, verbose=0)
    assert history.history["accuracy"][-1] > 0.9
    assert wrapped.predict(torch.from_numpy(x), verbose=0).shape == (96, 1)
    with pytest.raises(DeepfieldError, match="Model wraps a torch.nn.Module, got str"):
        Model("not a module")


def test_save_and_load_round_trip(tmp_path):
    x, y = data()
    model = classifier().compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(x, y, epochs=2, verbose=0)
    model.save(tmp_path / "seq")
    again = Sequential.load(tmp_path / "seq")
    assert type(again) is Sequential
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))

    torch.manual_seed(1)
    wrapped = Model(nn.Sequential(nn.Linear(5, 3), nn.Tanh(), nn.Linear(3, 1)))
    wrapped.save(tmp_path / "plain")
    restored = Model.load(tmp_path / "plain", nn.Sequential(nn.Linear(5, 3), nn.Tanh(), nn.Linear(3, 1)))
    np.testing.assert_array_equal(restored.predict(x, verbose=0), wrapped.predict(x, verbose=0))
    model.save_weights(tmp_path / "w.safetensors")
    fresh = classifier()
    fresh.build()
    fresh.load_weights(tmp_path / "w.safetensors")
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), model.predict(x, verbose=0))


def test_the_model_stays_usable_by_plain_pytorch():
    x, _ = data(8)
    model = classifier().compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(*data(16), epochs=1, verbose=0)
    scripted_input = torch.from_numpy(x)
    assert model(scripted_input).shape == (8, 1)
    assert all(k.startswith(("dense", "dropout")) for k in model.state_dict())  # compile adds no state
