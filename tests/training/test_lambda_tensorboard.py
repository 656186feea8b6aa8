"""LambdaCallback (Keras's hook arguments) and TensorBoard (event files read back with tensorboard itself)."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from deepfield.errors import DeepfieldError
from deepfield.layers import Dense, Dropout
from deepfield.training import LambdaCallback, Sequential, TensorBoard


def model_and_data() -> tuple[Sequential, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype("float32")
    y = (x[:, :1] - x[:, 1:2]).astype("float32")
    model = Sequential([Dense(4, activation="relu"), Dropout(0.1), Dense(1)], input_shape=(3,))
    return model.compile(optimizer="adam", loss="mse", metrics=["mae"]), x, y


def test_lambda_callback_calls_each_given_hook_with_keras_arguments() -> None:
    calls: list[tuple] = []
    callback = LambdaCallback(
        on_train_begin=lambda logs: calls.append(("train_begin",)),
        on_epoch_begin=lambda epoch, logs: calls.append(("epoch_begin", epoch)),
        on_batch_begin=lambda batch, logs: calls.append(("batch_begin", batch)),
        on_batch_end=lambda batch, logs: calls.append(("batch_end", batch, sorted(logs))),
        on_epoch_end=lambda epoch, logs: calls.append(("epoch_end", epoch, sorted(logs))),
        on_train_end=lambda logs: calls.append(("train_end",)),
    )
    model, x, y = model_and_data()
    model.fit(x, y, batch_size=20, epochs=2, verbose=0, callbacks=[callback], seed=0)
    batch = [("batch_begin", 0), ("batch_end", 0, ["loss", "size"]),
             ("batch_begin", 1), ("batch_end", 1, ["loss", "size"])]
    assert calls == [("train_begin",),
                     ("epoch_begin", 0), *batch, ("epoch_end", 0, ["loss", "lr", "mae"]),
                     ("epoch_begin", 1), *batch, ("epoch_end", 1, ["loss", "lr", "mae"]),
                     ("train_end",)]


def test_lambda_callback_takes_keras_3_batch_names_and_costs_nothing_per_batch_when_not_given() -> None:
    seen: list[int] = []
    model, x, y = model_and_data()
    model.fit(x, y, batch_size=10, epochs=1, verbose=0, seed=0,
              callbacks=[LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(batch))])
    assert seen == [0, 1, 2, 3]
    epochs_only = LambdaCallback(on_epoch_end=lambda epoch, logs: None)
    model.fit(x, y, batch_size=10, epochs=1, verbose=0, callbacks=[epochs_only])
    assert epochs_only not in model.engine._callbacks.batch_begin + model.engine._callbacks.batch_end
    import deepfield as df

    assert df.callbacks.LambdaCallback is LambdaCallback and df.callbacks.TensorBoard is TensorBoard
    with pytest.raises(DeepfieldError, match="LambdaCallback: on_batch_end and on_train_batch_end are one hook"):
        LambdaCallback(on_batch_end=print, on_train_batch_end=print)
    with pytest.raises(DeepfieldError, match="unknown LambdaCallback argument 'on_epoch_ends'; expected one of"):
        LambdaCallback(on_epoch_ends=print)
    with pytest.raises(DeepfieldError, match="LambdaCallback: on_epoch_end must be a function, got 3"):
        LambdaCallback(on_epoch_end=3)


def test_tensorboard_without_the_package_says_how_to_install_it(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were absent
    with pytest.raises(DeepfieldError, match=r"TensorBoard needs the tensorboard package: pip install tensorboard"):
        TensorBoard(tmp_path)


def read(folder):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    events = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0})
    events.Reload()
    return events


def values(events, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_tensorboard_writes_keras_tags_per_epoch_with_histograms_and_graph(tmp_path) -> None:
    pytest.importorskip("tensorboard")
    model, x, y = model_and_data()
    history = model.fit(x, y, batch_size=10, epochs=3, verbose=0, validation_split=0.25, seed=0,
                        callbacks=[TensorBoard(tmp_path / "logs", histogram_freq=2)])
    train, validation = read(tmp_path / "logs" / "train"), read(tmp_path / "logs" / "validation")
    assert set(train.Tags()["scalars"]) == {"epoch_loss", "epoch_mae", "epoch_learning_rate"}
    assert set(validation.Tags()["scalars"]) == {"epoch_loss", "epoch_mae"}
    for mine, (step, value) in zip(history.history["loss"], values(train, "epoch_loss")):
        assert value == pytest.approx(mine, rel=1e-6)
    assert [s for s, _ in values(train, "epoch_loss")] == [0, 1, 2]
    assert [v for _, v in values(validation, "epoch_loss")] == pytest.approx(history.history["val_loss"], rel=1e-6)
    assert [v for _, v in values(train, "epoch_learning_rate")] == pytest.approx([0.001] * 3)
    histograms = train.Tags()["histograms"]
    assert len(histograms) == 4 and all(tag.endswith(("weight/histogram", "bias/histogram")) for tag in histograms)
    assert [e.step for e in train.Histograms(histograms[0])] == [0, 2]  # Keras: epochs with epoch % freq == 0
    assert train.Tags()["graph"]


@pytest.mark.parametrize(("update_freq", "steps"), [("batch", [1, 2, 3, 4, 5, 6, 7, 8]), (3, [3, 6])])
def test_tensorboard_batch_level_scalars(tmp_path, update_freq, steps) -> None:
    """Keras's steps: the global batch counted from 1, written when it is a multiple of update_freq."""
    pytest.importorskip("tensorboard")
    model, x, y = model_and_data()
    model.fit(x, y, batch_size=10, epochs=2, verbose=0, seed=0,
              callbacks=[TensorBoard(tmp_path, update_freq=update_freq, write_graph=False)])
    train = read(tmp_path / "train")
    assert [s for s, _ in values(train, "batch_loss")] == steps
    assert not train.Tags()["graph"]


def test_tensorboard_epoch_logging_costs_nothing_per_batch_and_bad_arguments_are_named(tmp_path) -> None:
    pytest.importorskip("tensorboard")
    callback = TensorBoard(tmp_path)
    model, x, y = model_and_data()
    model.fit(x, y, batch_size=10, epochs=1, verbose=0, callbacks=[callback])
    assert callback not in model.engine._callbacks.batch_begin + model.engine._callbacks.batch_end
    with pytest.raises(DeepfieldError, match="TensorBoard: update_freq must be 'epoch', 'batch' or a positive"):
        TensorBoard(tmp_path, update_freq="often")
    with pytest.raises(DeepfieldError, match="TensorBoard: profile_batch is not supported"):
        TensorBoard(tmp_path, profile_batch=5)


def test_tensorboard_batch_steps_go_on_after_a_resume(tmp_path) -> None:
    pytest.importorskip("tensorboard")
    from deepfield.training import BackupAndRestore, Callback

    class Crash(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2 and self.engine.optimizer.iterations == 7:  # epoch 1, batch 2 (4 batches an epoch)
                raise KeyboardInterrupt

    model, x, y = model_and_data()
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=10, epochs=2, verbose=0, seed=0,
                  callbacks=[TensorBoard(tmp_path / "tb", update_freq=1, write_graph=False),
                             BackupAndRestore(tmp_path / "backup", save_freq=2), Crash()])
    model, x, y = model_and_data()
    model.fit(x, y, batch_size=10, epochs=2, verbose=0, seed=0,
              callbacks=[TensorBoard(tmp_path / "tb", update_freq=1, write_graph=False),
                         BackupAndRestore(tmp_path / "backup", save_freq=2)])
    steps = [s for s, _ in values(read(tmp_path / "tb" / "train"), "batch_loss")]
    assert steps[-2:] == [7, 8]  # the resumed run wrote batches 7 and 8 as such, not as 1 and 2
