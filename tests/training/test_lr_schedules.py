"""Learning-rate schedules against keras.optimizers.schedules, and inside optimisers, fit, resume and configs."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from deepfield.errors import DeepfieldError
from deepfield.training import load_state, optimizers, save_state
from deepfield.training.optimizers import SGD, Adam, schedules

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

CASES = [
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=7, decay_rate=0.5)),
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=7, decay_rate=0.5, staircase=True)),
    ("InverseTimeDecay", dict(initial_learning_rate=0.1, decay_steps=5, decay_rate=0.7)),
    ("InverseTimeDecay", dict(initial_learning_rate=0.1, decay_steps=5, decay_rate=0.7, staircase=True)),
    ("PiecewiseConstantDecay", dict(boundaries=[10, 25, 40], values=[0.1, 0.05, 0.01, 0.001])),
    ("PolynomialDecay", dict(initial_learning_rate=0.1, decay_steps=30)),
    ("PolynomialDecay", dict(initial_learning_rate=0.1, decay_steps=30, end_learning_rate=0.01, power=2.0)),
    ("PolynomialDecay", dict(initial_learning_rate=0.1, decay_steps=13, power=0.5, cycle=True)),
    ("CosineDecay", dict(initial_learning_rate=0.1, decay_steps=30)),
    ("CosineDecay", dict(initial_learning_rate=0.1, decay_steps=30, alpha=0.1)),
    ("CosineDecay", dict(initial_learning_rate=0.0, decay_steps=30, warmup_target=0.1, warmup_steps=10)),
    ("CosineDecay", dict(initial_learning_rate=0.01, decay_steps=20, alpha=0.2, warmup_target=0.1, warmup_steps=7)),
    ("CosineDecayRestarts", dict(initial_learning_rate=0.1, first_decay_steps=5)),
    ("CosineDecayRestarts", dict(initial_learning_rate=0.1, first_decay_steps=4, t_mul=1.0, m_mul=0.5)),
    ("CosineDecayRestarts", dict(initial_learning_rate=0.1, first_decay_steps=3, t_mul=1.5, m_mul=0.8, alpha=0.1)),
]
STEPS = range(0, 120)


def keras_schedule(name: str, config: dict):
    return getattr(keras.optimizers.schedules, name)(**config)


@pytest.mark.parametrize(("name", "config"), CASES, ids=lambda v: str(v))
def test_values_per_step_equal_keras(name: str, config: dict) -> None:
    ours, theirs = schedules.get({"class_name": name, "config": config}), keras_schedule(name, config)
    got = np.array([ours(step) for step in STEPS])
    want = np.array([float(theirs(step)) for step in STEPS])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)
    assert ours.get_config() == theirs.get_config()


@pytest.mark.parametrize(("name", "config"), CASES[:1] + CASES[4:5] + CASES[11:13], ids=lambda v: str(v))
def test_config_round_trips_and_reads_keras_serialized_form(name: str, config: dict) -> None:
    ours = schedules.get({"class_name": name, "config": config})
    again = schedules.get(json.loads(json.dumps(schedules.serialize(ours))))
    assert again == ours and again is not ours
    from_keras = schedules.get(keras.optimizers.schedules.serialize(keras_schedule(name, config)))
    assert [from_keras(s) for s in STEPS] == [ours(s) for s in STEPS]


def test_bad_schedules_give_one_clear_error() -> None:
    with pytest.raises(DeepfieldError, match="unknown learning rate schedule 'CosineDecayy'; expected one of: "):
        schedules.get({"class_name": "CosineDecayy", "config": {}})
    with pytest.raises(DeepfieldError, match="ExponentialDecay: decay_steps must be a number > 0, got 0"):
        schedules.ExponentialDecay(0.1, decay_steps=0, decay_rate=0.5)
    with pytest.raises(DeepfieldError, match="boundaries must be one shorter than values"):
        schedules.PiecewiseConstantDecay([1, 2], [0.1, 0.2])
    with pytest.raises(DeepfieldError, match="learning rate schedule CosineDecay: bad config"):
        schedules.get({"class_name": "CosineDecay", "config": {"initial_learning_rate": 0.1}})


# -- inside an optimiser -----------------------------------------------------------------
START = [np.array([0.5, -1.0, 2.0]), np.array([[0.3, -0.2], [1.5, 0.1]])]
GRADS = [[np.random.default_rng(s).normal(size=x.shape) for x in START] for s in range(12)]
EXP = dict(initial_learning_rate=0.1, decay_steps=3, decay_rate=0.5)


def deepfield_run(opt: optimizers.Optimizer, steps: range, params: list[torch.Tensor] | None = None) -> list:
    params = params or [torch.tensor(x) for x in START]
    if not opt.bound:
        opt.bind(params)
    for it in steps:
        for p, g in zip(params, GRADS[it]):
            p.grad = torch.tensor(g)
        opt.step()
    return [p.detach().numpy().copy() for p in params]


def keras_run(opt, steps: range) -> list:
    variables = [keras.Variable(x, dtype="float64") for x in START]
    for it in steps:
        opt.apply_gradients(zip([keras.ops.convert_to_tensor(g, dtype="float64") for g in GRADS[it]], variables))
    return [np.asarray(keras.ops.convert_to_numpy(v)) for v in variables]


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_optimiser_with_a_schedule_steps_as_keras(name: str) -> None:
    extra = dict(momentum=0.9) if name == "sgd" else {}
    schedule = {"class_name": "ExponentialDecay", "config": EXP}
    ours = optimizers.get({"class_name": name, "config": {"learning_rate": schedule, "weight_decay": 0.1, **extra}})
    theirs = getattr(keras.optimizers, type(ours).__name__)(
        learning_rate=keras.optimizers.schedules.ExponentialDecay(**EXP), weight_decay=0.1, **extra)
    for a, b in zip(deepfield_run(ours, range(10)), keras_run(theirs, range(10))):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    # What Keras shows as optimizer.learning_rate: the schedule at the steps taken (the next update's rate).
    assert ours.learning_rate == pytest.approx(float(theirs.learning_rate), rel=1e-6)
    assert ours.learning_rate == schedules.ExponentialDecay(**EXP)(10)


def test_a_schedule_is_not_settable_and_its_config_is_the_schedule() -> None:
    opt = Adam(learning_rate=schedules.CosineDecay(0.01, decay_steps=10))
    with pytest.raises(DeepfieldError, match="learning_rate is the schedule CosineDecay"):
        opt.learning_rate = 0.1
    config = opt.get_config()
    assert config["learning_rate"] == {"class_name": "CosineDecay",
                                       "config": schedules.CosineDecay(0.01, decay_steps=10).get_config()}
    rebuilt = optimizers.get(json.loads(json.dumps({"class_name": "Adam", "config": config})))
    assert rebuilt.get_config() == config
    with pytest.raises(DeepfieldError, match=r"adam: learning_rate must be a number >= 0, got .fast. \(or a schedule"):
        Adam(learning_rate="fast")


def test_resumed_optimiser_continues_the_schedule(tmp_path) -> None:
    spec = {"class_name": "SGD", "config": {"learning_rate": {"class_name": "CosineDecayRestarts",
                                                               "config": dict(initial_learning_rate=0.1,
                                                                              first_decay_steps=3)}}}
    straight = deepfield_run(optimizers.get(spec), range(10))
    params = [torch.tensor(x) for x in START]
    first = optimizers.get(spec)
    deepfield_run(first, range(4), params)
    save_state(tmp_path / "state.safetensors", {"optimizer": first.state_dict(), "config": first.get_config()})
    state = load_state(tmp_path / "state.safetensors")
    second = optimizers.get({"class_name": "SGD", "config": state["config"]}).bind(params)
    second.load_state_dict(state["optimizer"])
    assert second.iterations == 4
    for a, b in zip(deepfield_run(second, range(4, 10), params), straight):
        np.testing.assert_array_equal(a, b)


def test_fit_logs_the_rate_of_each_epochs_last_step() -> None:
    from deepfield.layers import Dense
    from deepfield.training import Sequential

    x, y = np.random.default_rng(0).normal(size=(40, 3)).astype("float32"), np.zeros((40, 1), "float32")
    model = Sequential([Dense(1)], input_shape=(3,))
    schedule = schedules.PiecewiseConstantDecay([3, 6], [0.1, 0.01, 0.001])
    model.compile(optimizer=SGD(learning_rate=schedule), loss="mse")
    history = model.fit(x, y, batch_size=10, epochs=3, verbose=0, seed=0)  # 4 steps an epoch: 0-3, 4-7, 8-11
    assert history.history["lr"] == [schedule(3), schedule(7), schedule(11)] == [0.1, 0.001, 0.001]


# -- in a run config ------------------------------------------------------------------------
def test_run_config_takes_a_schedule_as_the_optimizers_learning_rate(tmp_path) -> None:
    from deepfield.tasks.base import make_optimizer
    from deepfield.tasks.config import load_config

    path = tmp_path / "run.yaml"
    path.write_text("task: tabular\ndata: {path: x}\ntraining:\n  optimizer:\n    name: nadam\n    learning_rate:\n"
                    "      class_name: CosineDecay\n      config: {initial_learning_rate: 1.0e-3, decay_steps: 1000,"
                    " warmup_target: 1.0e-2, warmup_steps: 100}\n")
    optimizer = make_optimizer(load_config(path))
    assert type(optimizer).__name__ == "Nadam"
    assert optimizer.schedule == schedules.CosineDecay(1e-3, 1000, warmup_target=1e-2, warmup_steps=100)
    path.write_text("task: tabular\ndata: {path: x}\ntraining:\n  optimizer: {name: lion, learning_rate: 1.0e-4}\n")
    assert make_optimizer(load_config(path)).get_config()["learning_rate"] == 1e-4
    path.write_text("task: tabular\ndata: {path: x}\ntraining:\n  optimizer:\n    name: adam\n    learning_rate:"
                    " {class_name: CosineDecay, config: {initial_learning_rate: 1.0e-3}}\n")
    with pytest.raises(DeepfieldError, match="training.optimizer: adam: learning_rate: learning rate schedule "
                                             "CosineDecay: bad config"):
        load_config(path)


def test_backup_and_restore_continues_the_schedule_at_the_right_step(tmp_path) -> None:
    from deepfield.layers import Dense
    from deepfield.training import BackupAndRestore, Callback, Sequential

    class Crash(Callback):
        def __init__(self, at: int) -> None:
            super().__init__()
            self.at, self.seen = at, 0

        def on_train_batch_end(self, batch, logs=None):
            self.seen += 1
            if self.seen == self.at:
                raise KeyboardInterrupt

    def model() -> Sequential:
        schedule = schedules.CosineDecayRestarts(0.05, first_decay_steps=3, t_mul=1.5)
        return Sequential([Dense(8, activation="relu"), Dense(1)], input_shape=(4,)).compile(
            optimizer=Adam(learning_rate=schedule), loss="mse", device="cpu")

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 4, generator=gen)
    y = x[:, :1] - 2 * x[:, 1:2]
    reference = model()
    ref_history = reference.fit(x, y, batch_size=8, epochs=4, seed=3, verbose=0)
    with pytest.raises(KeyboardInterrupt):
        model().fit(x, y, batch_size=8, epochs=4, seed=3, verbose=0,
                    callbacks=[BackupAndRestore(tmp_path, save_freq=2), Crash(9)])
    resumed = model()
    history = resumed.fit(x, y, batch_size=8, epochs=4, seed=3, verbose=0, callbacks=[BackupAndRestore(tmp_path)])
    assert resumed.optimizer.iterations == reference.optimizer.iterations == 20
    assert history.history["lr"] == ref_history.history["lr"]
    assert len(set(history.history["lr"])) >= 3  # the schedule moved (and restarted)
    for got, want in zip(resumed.state_dict().values(), reference.state_dict().values()):
        assert torch.equal(got, want)


def test_callbacks_that_set_the_rate_refuse_a_schedule_when_fit_starts() -> None:
    from deepfield.layers import Dense
    from deepfield.training import LearningRateScheduler, ReduceLROnPlateau, Sequential

    x, y = np.zeros((8, 3), "float32"), np.zeros((8, 1), "float32")
    for callback in [ReduceLROnPlateau(monitor="loss"), LearningRateScheduler(lambda epoch, lr: lr)]:
        model = Sequential([Dense(1)], input_shape=(3,))
        model.compile(optimizer=SGD(learning_rate=schedules.ExponentialDecay(0.1, 10, 0.5)), loss="mse")
        with pytest.raises(DeepfieldError, match=f"{type(callback).__name__} sets the learning rate, but the "
                                                 "optimizer's learning_rate is the schedule ExponentialDecay"):
            model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])


def test_the_package_face_has_keras_address() -> None:
    import deepfield as df

    assert df.optimizers.schedules.CosineDecay is schedules.CosineDecay
    assert df.optimizers.Nadam is optimizers.Nadam
