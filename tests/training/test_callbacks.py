"""Callbacks: Keras semantics of each, hook dispatch, gradient-norm logging."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from torch import nn

from deepfield.errors import DeepfieldError
from deepfield.models import Dense
from deepfield.models.initializers import RandomNormal
from deepfield.models.serialization import load_model
from deepfield.plots import plot_gradient_norms
from deepfield.training import (
    BackupAndRestore,
    Callback,
    CSVLogger,
    EarlyStopping,
    GradientNormLogger,
    LearningRateScheduler,
    Model,
    ModelCheckpoint,
    ReduceLROnPlateau,
    Sequential,
    TerminateOnNaN,
)
from deepfield.training.callbacks import CallbackList, Monitor


def data(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=gen)
    return x, x.sum(dim=1, keepdim=True)


def model(lr: float = 0.05, metrics: list[str] | None = None) -> Sequential:
    torch.manual_seed(0)
    net = Sequential([Dense(8, activation="tanh"), Dense(1)], input_shape=(3,))
    return net.compile(optimizer={"class_name": "sgd", "config": {"learning_rate": lr}}, loss="mse", metrics=metrics)


class WeightsPerEpoch(Callback):
    def __init__(self) -> None:
        super().__init__()
        self.weights: list[dict[str, torch.Tensor]] = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append({k: v.clone() for k, v in self.model.state_dict().items()})


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


# -- dispatch ------------------------------------------------------------------------------------

def test_per_batch_hooks_are_called_only_on_callbacks_that_override_them():
    class EpochOnly(Callback):
        def on_epoch_end(self, epoch, logs=None): ...

    class BatchEnd(Callback):
        def on_train_batch_end(self, batch, logs=None): ...

    cbs = CallbackList([EpochOnly(), BatchEnd(), GradientNormLogger()], engine=model().engine)
    assert [type(c).__name__ for c in cbs.batch_end] == ["BatchEnd"]
    assert cbs.batch_begin == []
    assert [type(c).__name__ for c in cbs.after_backward] == ["GradientNormLogger"]


def test_hook_order_and_arguments():
    calls: list[str] = []

    class Recorder(Callback):
        def on_train_begin(self, logs=None): calls.append("train_begin")
        def on_epoch_begin(self, epoch, logs=None): calls.append(f"epoch_begin {epoch}")
        def on_train_batch_begin(self, batch, logs=None): calls.append(f"batch_begin {batch}")
        def on_after_backward(self, model):
            assert all(p.grad is not None for p in model.parameters())
            calls.append("after_backward")
        def on_train_batch_end(self, batch, logs=None):
            assert isinstance(logs["loss"], torch.Tensor) and logs["loss"].dim() == 0
            calls.append(f"batch_end {batch}")
        def on_test_begin(self, logs=None): calls.append("test_begin")
        def on_test_end(self, logs=None): calls.append(f"test_end {sorted(logs)}")
        def on_epoch_end(self, epoch, logs=None): calls.append(f"epoch_end {epoch} {sorted(logs)}")
        def on_train_end(self, logs=None): calls.append("train_end")

    x, y = data(8)
    model().fit(x, y, batch_size=4, epochs=1, validation_data=(x, y), callbacks=[Recorder()], verbose=0)
    assert calls == [
        "train_begin", "epoch_begin 0",
        "batch_begin 0", "after_backward", "batch_end 0",
        "batch_begin 1", "after_backward", "batch_end 1",
        "test_begin", "test_end ['loss']", "epoch_end 0 ['loss', 'lr', 'val_loss']", "train_end",
    ]


def test_callbacks_must_be_callback_instances():
    x, y = data(8)
    with pytest.raises(DeepfieldError, match="callbacks must be deepfield Callback instances, got function"):
        model().fit(x, y, callbacks=[lambda: None], verbose=0)


def test_monitor_guesses_direction_like_keras():
    assert Monitor("val_accuracy").mode == "max"
    assert Monitor("val_auc").mode == "max"
    assert Monitor("val_loss").mode == "min"
    assert Monitor("loss", min_delta=-0.1).improved(0.85, 1.0)
    assert not Monitor("loss", min_delta=0.1).improved(0.95, 1.0)
    with pytest.raises(DeepfieldError, match="mode must be 'auto', 'min' or 'max'"):
        Monitor("loss", mode="up")


# -- EarlyStopping ---------------------------------------------------------------------------------

def test_early_stopping_stops_after_patience_and_restores_best_weights():
    x, y = data()
    # In "max" mode a falling loss never improves: epoch 0 stays the best.
    stopper = EarlyStopping(monitor="loss", mode="max", patience=2, restore_best_weights=True)
    recorder = WeightsPerEpoch()
    net = model()
    history = net.fit(x, y, epochs=20, callbacks=[stopper, recorder], verbose=0)
    assert history.epoch == [0, 1, 2]
    assert stopper.stopped_epoch == 2 and stopper.best_epoch == 0
    assert net.stop_training
    assert same(net.state_dict(), recorder.weights[0])
    assert not same(net.state_dict(), recorder.weights[2])


def test_early_stopping_keeps_going_while_improving_and_honours_start_from_epoch():
    x, y = data()
    history = model().fit(x, y, epochs=6, callbacks=[EarlyStopping(monitor="loss", patience=1)], verbose=0)
    assert len(history.epoch) == 6
    stopper = EarlyStopping(monitor="loss", mode="max", patience=0, start_from_epoch=3)
    history = model().fit(x, y, epochs=10, callbacks=[stopper], verbose=0)
    assert history.epoch == [0, 1, 2, 3, 4]


def test_early_stopping_warns_when_the_monitored_value_is_missing():
    x, y = data(16)
    with pytest.warns(UserWarning, match="'val_loss' is not in the logs"):
        model().fit(x, y, epochs=1, callbacks=[EarlyStopping()], verbose=0)


# -- learning rate ----------------------------------------------------------------------------------

def test_reduce_lr_on_plateau_lowers_the_rate():
    x, y = data()
    net = model(lr=0.1)
    reducer = ReduceLROnPlateau(monitor="loss", mode="max", factor=0.5, patience=2, min_lr=0.02)
    history = net.fit(x, y, epochs=8, callbacks=[reducer], verbose=0)
    # history records the rate each epoch ran with; reductions happen at epochs 2, 4, 6 (floor 0.02).
    assert history.history["lr"] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.02])
    assert net.optimizer.learning_rate == pytest.approx(0.02)


def test_reduce_lr_on_plateau_cooldown_and_factor_check():
    x, y = data()
    net = model(lr=0.1)
    reducer = ReduceLROnPlateau(monitor="loss", mode="max", factor=0.5, patience=1, cooldown=2)
    history = net.fit(x, y, epochs=6, callbacks=[reducer], verbose=0)
    # Keras: reduce after epoch 1, cool down through epochs 2-3, reduce again after epoch 3.
    assert history.history["lr"] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    with pytest.raises(DeepfieldError, match=r"factor must be in \(0, 1\)"):
        ReduceLROnPlateau(factor=1.5)


def test_learning_rate_scheduler_sets_the_rate_each_epoch():
    x, y = data()
    net = model()
    history = net.fit(x, y, epochs=4, verbose=0,
                      callbacks=[LearningRateScheduler(lambda epoch, lr: 0.1 * 0.5**epoch)])
    assert history.history["lr"] == pytest.approx([0.1, 0.05, 0.025, 0.0125])
    history = net.fit(x, y, epochs=2, verbose=0, callbacks=[LearningRateScheduler(lambda epoch: 0.3 + epoch)])
    assert history.history["lr"] == pytest.approx([0.3, 1.3])
    with pytest.raises(DeepfieldError, match="expected a float"):
        net.fit(x, y, epochs=1, verbose=0, callbacks=[LearningRateScheduler(lambda epoch, lr: "fast")])


def test_the_logged_rate_is_the_decayed_rate_of_the_epoch_s_last_step(tmp_path):
    """Keras 2 time decay: step ``t`` (0-based) runs at ``lr / (1 + decay * t)``; the logged ``lr`` is the
    rate of the epoch's last step (4 steps per epoch here), in the history and the CSV alike."""
    x, y = data()  # 64 samples, batches of 16
    torch.manual_seed(0)
    net = Sequential([Dense(8, activation="tanh"), Dense(1)], input_shape=(3,))
    net.compile(optimizer={"class_name": "sgd", "config": {"learning_rate": 0.1, "decay": 0.25}}, loss="mse")
    history = net.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[CSVLogger(tmp_path / "h.csv")])
    expected = [0.1 / (1 + 0.25 * last_step) for last_step in (3, 7, 11)]
    assert history.history["lr"] == pytest.approx(expected, rel=1e-12)
    with open(tmp_path / "h.csv", newline="") as fh:
        assert [float(row["lr"]) for row in csv.DictReader(fh)] == pytest.approx(expected)
    assert net.optimizer.learning_rate == 0.1  # the base rate, which schedulers set, is not decayed in place


@pytest.mark.parametrize("make, owner, key", [
    (lambda v: EarlyStopping(restore_best_weights=v), "EarlyStopping", "restore_best_weights"),
    (lambda v: ModelCheckpoint("best", save_best_only=v), "ModelCheckpoint", "save_best_only"),
    (lambda v: ModelCheckpoint("best", save_weights_only=v), "ModelCheckpoint", "save_weights_only"),
    (lambda v: BackupAndRestore("backup", delete_checkpoint=v), "BackupAndRestore", "delete_checkpoint"),
    (lambda v: CSVLogger("h.csv", append=v), "CSVLogger", "append"),
])
def test_callback_switches_take_booleans_only(make, owner, key):
    for value in ("maybe", "false", 1):
        with pytest.raises(DeepfieldError, match=rf"^{owner}: {key} must be true or false, got {value!r}$"):
            make(value)
    make(True)


# -- CSVLogger, TerminateOnNaN -------------------------------------------------------------------

def test_csv_logger_writes_one_row_per_epoch(tmp_path):
    x, y = data()
    path = tmp_path / "logs" / "history.csv"
    history = model(metrics=["mae"]).fit(x, y, epochs=3, validation_data=(x, y), verbose=0,
                                         callbacks=[CSVLogger(path)])
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["epoch", "loss", "lr", "mae", "val_loss", "val_mae"]
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    for key in ("loss", "val_mae", "lr"):
        assert [float(r[key]) for r in rows] == pytest.approx(history.history[key])


def test_csv_logger_append_and_separator(tmp_path):
    x, y = data(16)
    path = tmp_path / "h.tsv"
    model().fit(x, y, epochs=2, verbose=0, callbacks=[CSVLogger(path, separator="\t")])
    model().fit(x, y, epochs=1, verbose=0, callbacks=[CSVLogger(path, separator="\t", append=True)])
    lines = path.read_text().splitlines()
    assert lines[0] == "epoch\tloss\tlr" and len(lines) == 4
    model().fit(x, y, epochs=1, verbose=0, callbacks=[CSVLogger(path, separator="\t")])
    assert len(path.read_text().splitlines()) == 2  # without append the file starts over


def test_terminate_on_nan_stops_at_the_bad_batch(capsys):
    x, y = data(32)
    calls = {"n": 0}

    def loss(pred, target):
        calls["n"] += 1
        value = ((pred - target) ** 2).mean()
        return value * math.nan if calls["n"] == 3 else value

    class Batches(Callback):
        seen: list[int] = []

        def on_train_batch_end(self, batch, logs=None):
            self.seen.append(batch)

    counter = Batches()
    net = Sequential([Dense(1)], input_shape=(3,)).compile(optimizer="sgd", loss=loss)
    history = net.fit(x, y, batch_size=4, epochs=5, callbacks=[TerminateOnNaN(), counter], verbose=0)
    assert counter.seen == [0, 1, 2]
    assert len(history.epoch) == 1 and math.isnan(history.history["loss"][0])
    assert "Batch 2: Invalid loss, terminating training" in capsys.readouterr().out


# -- ModelCheckpoint --------------------------------------------------------------------------------

def test_model_checkpoint_best_only_writes_a_reloadable_model(tmp_path):
    x, y = data()
    net = model()
    recorder = WeightsPerEpoch()
    # In "max" mode a falling loss is best at epoch 0: only that epoch is saved.
    checkpoint = ModelCheckpoint(tmp_path / "best", monitor="loss", save_best_only=True, mode="max")
    history = net.fit(x, y, epochs=4, callbacks=[checkpoint, recorder], verbose=0)
    assert history.history["loss"][0] == max(history.history["loss"])
    saved = load_model(tmp_path / "best")
    assert same(saved.state_dict(), recorder.weights[0])
    assert sorted(p.name for p in (tmp_path / "best").iterdir()) == ["model.json", "weights.safetensors"]


def test_model_checkpoint_every_epoch_with_formatted_names(tmp_path):
    x, y = data()
    net = model()
    net.fit(x, y, epochs=2, verbose=0, callbacks=[ModelCheckpoint(str(tmp_path / "ep{epoch:02d}-{loss:.3f}"))])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and names[0].startswith("ep01-") and names[1].startswith("ep02-")
    with pytest.raises(DeepfieldError, match="uses 'val_acc', which is not in the logs"):
        net.fit(x, y, epochs=1, verbose=0, callbacks=[ModelCheckpoint(str(tmp_path / "{val_acc}"))])


def test_model_checkpoint_of_a_plain_module_saves_weights(tmp_path):
    x, y = data()
    wrapped = Model(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))).compile(optimizer="sgd", loss="mse")
    wrapped.fit(x, y, epochs=1, verbose=0,
                callbacks=[ModelCheckpoint(tmp_path / "ckpt"), ModelCheckpoint(tmp_path / "w.safetensors")])
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["weights.safetensors"]
    fresh = Model(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)))
    fresh.load_weights(tmp_path / "w.safetensors")
    assert same(fresh.state_dict(), wrapped.state_dict())


# -- GradientNormLogger -----------------------------------------------------------------------------

def test_gradient_norms_vanish_towards_the_input_of_a_deep_sigmoid_net(tmp_path):
    torch.manual_seed(0)
    small = RandomNormal(stddev=0.1)
    layers = [Dense(32, activation="sigmoid", kernel_initializer=small) for _ in range(8)]
    net = Sequential([*layers, Dense(1, kernel_initializer=small)], input_shape=(16,))
    net.compile(optimizer="sgd", loss="mse")
    x = torch.randn(64, 16)
    y = torch.randn(64, 1)
    logger = GradientNormLogger(sync_every=3)
    net.fit(x, y, batch_size=16, epochs=2, callbacks=[logger], verbose=0)

    assert logger.names[0] == "dense" and logger.names[-1] == "dense_8"
    assert logger.norms.shape == (8, 9) and list(logger.steps) == list(range(8))
    first, last = logger.norms[:, 0], logger.norms[:, -1]
    assert np.all(first < 1e-4 * last)  # vanishing gradient: orders of magnitude apart

    path = plot_gradient_norms(logger.steps, logger.history(), tmp_path / "figures" / "grad.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_gradient_norm_matches_a_hand_computed_norm():
    torch.manual_seed(0)
    net = Sequential([Dense(4, activation="relu"), Dense(1)], input_shape=(3,)).compile(optimizer="sgd", loss="mse")
    x, y = data(8)
    logger = GradientNormLogger()
    net.build()
    reference = [p.detach().clone() for p in net.parameters()]
    net.fit(x, y, batch_size="full", epochs=1, callbacks=[logger], verbose=0)

    twin = Sequential([Dense(4, activation="relu"), Dense(1)], input_shape=(3,)).build()
    with torch.no_grad():
        for p, r in zip(twin.parameters(), reference):
            p.copy_(r)
    nn.functional.mse_loss(twin(x), y).backward()
    expected = [torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in layer.parameters()])).item()
                for layer in (twin.dense, twin.dense_1)]
    assert logger.norms[0] == pytest.approx(expected, rel=1e-5)


def test_gradient_norm_plot_needs_data(tmp_path):
    with pytest.raises(DeepfieldError, match="nothing recorded yet"):
        plot_gradient_norms([], {}, tmp_path / "g.png")
