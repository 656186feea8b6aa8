"""The training loop: batching modes, validation split, seeds, inputs of every kind, errors, precision."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from deepfield.errors import DeepfieldError
from deepfield.models import Dense, Dropout
from deepfield.training import Callback, Engine, Sequential
from deepfield.training.batches import epoch_order
from deepfield.training.device import resolve_device
from deepfield.training.engine import RunningMean


def separable(n: int = 400, features: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two classes split by a hyperplane with a margin: ``x (n, features)``, ``y (n, 1)`` in {0, 1}."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    w = rng.normal(size=features).astype(np.float32)
    score = x @ w
    keep = np.abs(score) > 0.3
    return x[keep], (score[keep] > 0).astype(np.float32)[:, None]


def regression(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=gen)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3


def mlp(*layers: nn.Module, input_shape: tuple[int, ...] = (3,)) -> Sequential:
    return Sequential(list(layers) or [Dense(8, activation="tanh"), Dense(1)], input_shape=input_shape)


ADAM_FAST = {"class_name": "adam", "config": {"learning_rate": 0.02}}


class CountBatches(Callback):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[tuple[int, int]] = []  # (batch index, batch size)

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append((batch, logs["size"]))


# -- learning --------------------------------------------------------------------------------

def test_fit_learns_a_linearly_separable_problem():
    torch.manual_seed(0)
    x, y = separable()
    model = mlp(Dense(8, activation="relu"), Dense(1, activation="sigmoid"), input_shape=(4,))
    model.compile(optimizer={"class_name": "adam", "config": {"learning_rate": 0.01}}, loss="binary_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, batch_size=16, epochs=15, verbose=0, seed=1)
    assert history.history["accuracy"][-1] > 0.95
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.evaluate(x, y, verbose=0)["accuracy"] > 0.95


def test_full_batch_sgd_equals_hand_written_gradient_descent():
    x, y = regression()
    torch.manual_seed(3)
    model = mlp().build()
    twin = copy.deepcopy(model)
    model.compile(optimizer={"class_name": "sgd", "config": {"learning_rate": 0.05}}, loss="mse", device="cpu")
    model.fit(x, y, batch_size="full", epochs=6, verbose=0, shuffle=True, seed=0)

    for _ in range(6):
        loss = nn.functional.mse_loss(twin(x), y)
        loss.backward()
        with torch.no_grad():
            for p in twin.parameters():
                p -= 0.05 * p.grad
                p.grad = None
    for (name, got), want in zip(model.state_dict().items(), twin.state_dict().values()):
        torch.testing.assert_close(got, want, atol=1e-7, rtol=0, msg=name)
    assert model.optimizer.iterations == 6  # one step per epoch


@pytest.mark.parametrize("batch_size, steps", [(1, 50), (16, 4), ("full", 1), (64, 1)])
def test_steps_per_epoch_follow_the_batch_size(batch_size, steps):
    x, y = regression(50)
    counter = CountBatches()
    model = mlp().compile(optimizer="sgd", loss="mse")
    model.fit(x, y, batch_size=batch_size, epochs=2, verbose=0, callbacks=[counter])
    assert len(counter.batches) == 2 * steps
    assert sum(size for _, size in counter.batches) == 2 * 50
    assert [b for b, _ in counter.batches[:steps]] == list(range(steps))


def test_validation_split_takes_the_last_fraction_before_shuffling():
    x, y = regression(100)
    y[80:] += 10.0  # the held-out tail is far from the rest: its loss is unmistakable
    model = mlp().compile(optimizer={"class_name": "sgd", "config": {"learning_rate": 0.0}}, loss="mse")
    history = model.fit(x, y, batch_size=7, epochs=1, validation_split=0.2, verbose=0, seed=4)
    with torch.no_grad():
        tail = nn.functional.mse_loss(model(x[80:]), y[80:]).item()
        head = nn.functional.mse_loss(model(x[:80]), y[:80]).item()
    assert history.history["val_loss"][0] == pytest.approx(tail, rel=1e-5)
    assert history.history["loss"][0] == pytest.approx(head, rel=1e-5)


def test_validation_data_gives_val_metrics_and_lr_in_history():
    x, y = regression(64)
    model = mlp().compile(optimizer="adam", loss="mse", metrics=["mae"])
    history = model.fit(x, y, epochs=2, validation_data=(x[:10], y[:10]), verbose=0)
    assert set(history.history) == {"loss", "mae", "val_loss", "val_mae", "lr"}
    assert history.history["lr"] == [pytest.approx(0.001)] * 2
    assert history.epoch == [0, 1]


def test_the_same_seed_gives_the_same_weights_and_another_seed_does_not():
    x, y = regression(96)

    def run(seed: int) -> list[torch.Tensor]:
        model = mlp(Dense(16, activation="relu"), Dropout(0.3), Dense(1))
        model.compile(optimizer="adam", loss="mse").fit(x, y, batch_size=8, epochs=2, verbose=0, seed=seed)
        return [p.detach().clone() for p in model.parameters()]

    first, again, other = run(5), run(5), run(6)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_epoch_order_is_a_pure_function_of_seed_and_epoch():
    before = torch.get_rng_state()
    order = epoch_order(10, seed=3, epoch=2)
    assert torch.equal(torch.get_rng_state(), before)  # the global RNG is not touched
    assert torch.equal(order, epoch_order(10, seed=3, epoch=2))
    assert sorted(order.tolist()) == list(range(10))
    assert not torch.equal(order, epoch_order(10, seed=3, epoch=3))


def test_initial_epoch_and_epochs_count_like_keras():
    x, y = regression(32)
    history = mlp().compile(optimizer="sgd", loss="mse").fit(x, y, epochs=5, initial_epoch=3, verbose=0)
    assert history.epoch == [3, 4]


def test_running_mean_is_the_sample_weighted_mean_across_folds():
    values = torch.rand(600)
    counts = [32] * 599 + [7]
    mean = RunningMean()
    for v, c in zip(values, counts):
        mean.add(v, c)
    expected = float((values.double() * torch.tensor(counts, dtype=torch.float64)).sum() / sum(counts))
    assert mean.result() == pytest.approx(expected, rel=1e-5)
    assert math.isnan(RunningMean().result())


# -- inputs of every kind --------------------------------------------------------------------

def plain_module() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))


@pytest.mark.parametrize("kind", ["numpy", "tensor", "dataset", "dataloader"])
def test_fit_evaluate_predict_on_a_plain_module(kind):
    x, y = regression(128)
    data = {
        "numpy": (x.numpy(), y.numpy()),
        "tensor": (x, y),
        "dataset": (TensorDataset(x, y), None),
        "dataloader": (DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True), None),
    }[kind]
    engine = Engine(plain_module(), loss="mse", optimizer=ADAM_FAST, metrics=["mae"], device="cpu")
    before = engine.evaluate(*data, verbose=0)
    history = engine.fit(*data, batch_size=16, epochs=8, verbose=0, seed=0)
    after = engine.evaluate(*data, verbose=0)
    assert set(after) == {"loss", "mae"}
    assert after["loss"] < 0.5 * before["loss"]
    assert len(history.history["loss"]) == 8
    # predictions come in the input's order: predict from an unshuffled loader
    ordered = DataLoader(TensorDataset(x, y), batch_size=16) if kind == "dataloader" else data[0]
    predicted = engine.predict(ordered, verbose=0)
    assert isinstance(predicted, np.ndarray) and predicted.shape == (128, 1)
    with torch.no_grad():
        np.testing.assert_allclose(predicted, engine.model(x).numpy(), rtol=1e-5, atol=1e-6)


def test_dataset_validation_split_and_validation_loader():
    x, y = regression(100)
    engine = Engine(plain_module(), loss="mse", optimizer="adam", device="cpu")
    history = engine.fit(TensorDataset(x, y), epochs=1, validation_split=0.25, verbose=0)
    with torch.no_grad():
        tail = nn.functional.mse_loss(engine.model(x[75:]), y[75:]).item()
    assert history.history["val_loss"][0] == pytest.approx(tail, rel=1e-5)
    loader = DataLoader(TensorDataset(x[:20], y[:20]), batch_size=8)
    history = engine.fit(x, y, epochs=1, validation_data=loader, verbose=0)
    assert "val_loss" in history.history


def test_float64_and_integer_inputs_are_converted():
    x, y = regression(40)
    model = mlp().compile(optimizer="sgd", loss="mse")
    model.fit(x.double().numpy(), y.double().numpy(), epochs=1, verbose=0)
    assert model.predict(np.arange(6).reshape(2, 3), verbose=0).dtype == np.float32


def test_newton_optimizer_uses_the_closure_path():
    x, y = regression(64)
    model = Sequential([Dense(1)], input_shape=(3,)).compile(optimizer="newton", loss="mse")
    history = model.fit(x, y, batch_size="full", epochs=3, verbose=0)
    assert history.history["loss"][-1] < 1e-6


# -- progress display --------------------------------------------------------------------------

@pytest.mark.parametrize("verbose, expect", [(1, "Epoch 2/2"), (2, "Epoch 2/2 - ")])
def test_progress_shows_loss_metrics_and_rate(capsys, verbose, expect):
    x, y = regression(64)
    mlp().compile(optimizer="adam", loss="mse", metrics=["mae"]).fit(x, y, epochs=2, verbose=verbose)
    out = capsys.readouterr().out
    assert expect in out and "loss:" in out and "mae:" in out and "samples/s" in out


def test_progress_refreshes_by_the_clock_not_by_the_step(monkeypatch):
    from deepfield.training import progress as progress_module

    now = [100.0]
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: now[0])
    reads = []
    bar = progress_module.EpochProgress(verbose=1, refresh_per_second=4)
    with bar:
        bar.start("Epoch 1/1", 5000, 0, lambda: reads.append(1) or {"loss": 1.0})
        for step in range(1, 2001):
            bar.advance(step, 32 * step)
        assert reads == []  # 2000 steps within one refresh interval: the values are never read
        now[0] += 0.3
        for step in range(2001, 4001):
            bar.advance(step, 32 * step)
        assert len(reads) == 1


def test_host_syncs_do_not_grow_with_the_number_of_steps(monkeypatch):
    """The loop reads values back from the device per epoch (and per display refresh), never per step."""
    conversions = []
    for name in ("item", "__float__", "__int__", "__bool__", "tolist"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, **kwargs):
            conversions.append(1)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)

    def syncs(samples: int) -> int:
        x, y = regression(samples)
        model = mlp().compile(optimizer="adam", loss="mse", metrics=["mae"], device="cpu")
        model.fit(x, y, batch_size=4, epochs=2, seed=0, verbose=0)  # 8 or 64 steps per epoch
        conversions.clear()
        model.fit(x, y, batch_size=4, epochs=2, seed=0, verbose=0)
        return len(conversions)

    assert syncs(32) == syncs(256)


def test_verbose_zero_prints_nothing(capsys):
    x, y = regression(64)
    model = mlp().compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=1, verbose=0)
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    assert capsys.readouterr().out == ""


# -- precision, device, memory format ---------------------------------------------------------

def test_bf16_autocast_trains_on_cpu():
    x, y = regression(256)
    torch.manual_seed(0)
    model = mlp(Dense(32, activation="relu"), Dense(1)).compile(optimizer=ADAM_FAST, loss="mse", precision="bf16",
                                                                device="cpu")
    history = model.fit(x, y, batch_size=32, epochs=6, verbose=0, seed=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay float32
    assert model.predict(x[:4], verbose=0).dtype == np.float32


def test_channels_last_option_trains_a_convolutional_model():
    from deepfield.models.conv import Conv2D
    from deepfield.models.core import Flatten

    torch.manual_seed(0)
    x = torch.randn(32, 2, 8, 8)
    y = x.mean(dim=(1, 2, 3)).unsqueeze(1)
    model = Sequential([Conv2D(4, 3, padding="same", activation="relu"), Flatten(), Dense(1)], input_shape=(2, 8, 8))
    model.compile(optimizer="adam", loss="mse", channels_last=True, device="cpu")
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    conv_weight = next(p for p in model.parameters() if p.dim() == 4)
    assert conv_weight.is_contiguous(memory_format=torch.channels_last)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_device_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type in {"cpu", "cuda", "mps"}
    with pytest.raises(DeepfieldError, match="not a torch device"):
        resolve_device("warp-drive")
    with pytest.raises(DeepfieldError, match="unknown precision 'fp8'"):
        mlp().compile(loss="mse", precision="fp8")


# -- errors: one clear line naming the thing ---------------------------------------------------

@pytest.fixture
def compiled() -> Sequential:
    return mlp().compile(optimizer="sgd", loss="mse")


def test_error_lengths_differ(compiled):
    x, y = regression(20)
    with pytest.raises(DeepfieldError, match=r"x has 20 samples but y has 19"):
        compiled.fit(x, y[:19], verbose=0)


@pytest.mark.parametrize("where", ["x", "y"])
def test_error_nan_or_inf_names_the_array_and_count(compiled, where):
    x, y = regression(20)
    bad = x if where == "x" else y
    bad[3, 0] = float("nan")
    bad[7, 0] = float("inf")
    with pytest.raises(DeepfieldError, match=rf"^{where} contains 2 NaN or infinite values \(first in sample 3\)"):
        compiled.fit(x, y, verbose=0)


def test_error_nan_in_validation_data_is_named(compiled):
    x, y = regression(20)
    xv = x[:5].clone()
    xv[1, 1] = float("nan")
    with pytest.raises(DeepfieldError, match=r"^validation x contains 1 NaN"):
        compiled.fit(x, y, validation_data=(xv, y[:5]), verbose=0)


def test_error_wrong_input_shape_names_expected_and_got(compiled):
    with pytest.raises(DeepfieldError, match=r"samples have shape \(5,\), the model expects \(3,\)"):
        compiled.fit(torch.randn(10, 5), torch.randn(10, 1), verbose=0)
    plain = Engine(plain_module(), loss="mse", device="cpu")
    with pytest.raises(DeepfieldError, match=r"shape \(4, 4\), the model expects \(3,\)"):
        plain.predict(torch.randn(6, 4, 4), verbose=0)


def test_error_wrong_label_shape_comes_from_the_loss(compiled):
    x, _ = regression(10)
    with pytest.raises(DeepfieldError, match="mse: labels of shape"):
        compiled.fit(x, torch.randn(10, 2), verbose=0)


def test_error_non_numeric_dtype(compiled):
    x, y = regression(4)
    with pytest.raises(DeepfieldError, match=r"^x has dtype <U1; expected numbers"):
        compiled.fit(np.array([["a", "b", "c"]] * 4), y, verbose=0)
    with pytest.raises(DeepfieldError, match=r"^y has dtype object"):
        compiled.fit(x, np.array([{}, {}, {}, {}], dtype=object), verbose=0)


def test_error_bad_arguments(compiled):
    x, y = regression(10)
    with pytest.raises(DeepfieldError, match="batch_size must be a positive integer or 'full'"):
        compiled.fit(x, y, batch_size=0, verbose=0)
    with pytest.raises(DeepfieldError, match=r"validation_split must be in \[0, 1\)"):
        compiled.fit(x, y, validation_split=1.5, verbose=0)
    with pytest.raises(DeepfieldError, match="y must be None when x is a Dataset"):
        compiled.fit(TensorDataset(x, y), y, verbose=0)
    with pytest.raises(DeepfieldError, match="seed must be a non-negative integer"):
        compiled.fit(x, y, seed=-1, verbose=0)
    with pytest.raises(DeepfieldError, match="y is missing"):
        compiled.fit(x, verbose=0)


@pytest.mark.parametrize("kwargs, message", [
    ({"loss": "mse", "optimizer": "adamm"}, "unknown optimizer 'adamm'"),
    ({"loss": "msee"}, "unknown loss 'msee'"),
    ({"loss": "mse", "metrics": ["acuracy"]}, "unknown metric 'acuracy'"),
])
def test_error_unknown_names(kwargs, message):
    with pytest.raises(DeepfieldError, match=message):
        Engine(plain_module(), **kwargs)


def test_error_fit_without_a_loss():
    with pytest.raises(DeepfieldError, match="fit needs a loss"):
        Engine(plain_module()).fit(*regression(8), verbose=0)
