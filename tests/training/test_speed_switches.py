"""precision / channels_last / jit_compile: "auto" picks per device, explicit choices are kept,
compiled training equals eager training, bad values are one clear error."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from deepfield.errors import DeepfieldError
from deepfield.models import Dense
from deepfield.models.conv import Conv2D
from deepfield.models.core import Flatten
from deepfield.tasks.config import TrainingConfig
from deepfield.training import Sequential
from deepfield.training.device import (Precision, cpu_has_amx, fastest_precision, wants_channels_last,
                                       wants_compile)

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def dense() -> Sequential:
    return Sequential([Dense(8, activation="relu"), Dense(1)], input_shape=(4,))


def conv() -> Sequential:
    model = Sequential([Conv2D(4, 3, padding="same", activation="relu"), Flatten(), Dense(1)], input_shape=(2, 8, 8))
    model(torch.zeros(1, 2, 8, 8))  # builds the lazy layers: their kernels exist from here
    return model


def test_auto_precision_is_bf16_on_recent_gpus_fp16_on_older_and_fp32_on_cpu():
    assert fastest_precision(CUDA, bf16_supported=True) == "bf16"
    assert fastest_precision(CUDA, bf16_supported=False) == "fp16"
    assert fastest_precision(CPU) == "fp32"
    assert fastest_precision(torch.device("mps"), conv()) == "fp32"
    auto = Precision("auto", CPU)
    assert auto.name == "fp32" and auto.autocast is None and auto.scaler is None
    assert Precision(None, CPU).name == "fp32"


def test_auto_precision_on_cpu_is_bf16_for_convolutional_networks_where_amx_is():
    assert fastest_precision(CPU, conv(), bf16_supported=True) == "bf16"
    assert fastest_precision(CPU, conv(), bf16_supported=False) == "fp32"
    assert fastest_precision(CPU, dense(), bf16_supported=True) == "fp32"  # small products: bf16 is slower
    assert fastest_precision(CPU, conv()) == ("bf16" if cpu_has_amx() else "fp32")


def test_fp16_scales_the_loss_only_on_cuda():
    assert Precision("fp16", CPU).scaler is None
    assert Precision("bf16", CPU).dtype is torch.bfloat16


def test_auto_channels_last_is_for_two_d_convolutions_only():
    assert wants_channels_last("auto", conv(), CPU) and wants_channels_last("auto", conv(), CUDA)
    assert not wants_channels_last("auto", dense(), CPU)
    assert not wants_channels_last("auto", conv(), torch.device("mps"))
    assert not wants_channels_last(False, conv(), CPU)
    assert wants_channels_last(True, dense(), CPU)  # an explicit choice is kept


def test_auto_compile_is_off_and_an_explicit_choice_is_kept():
    assert wants_compile("auto") is False
    assert wants_compile(True) is True and wants_compile(False) is False


@pytest.mark.parametrize("name, value", [("channels_last", "yes"), ("jit_compile", 1)])
def test_a_switch_takes_only_true_false_or_auto(name, value):
    with pytest.raises(DeepfieldError, match=f"{name} must be true, false or 'auto', got {value!r}"):
        dense().compile(loss="mse", **{name: value})


def test_the_engine_reports_what_auto_chose_once_the_model_is_placed():
    x = torch.randn(16, 2, 8, 8)
    model = conv().compile(optimizer="sgd", loss="mse", device="cpu")
    assert model.engine.settings()["channels_last"] is None  # not decided before the model is seen
    assert model.engine.settings()["precision"] is None
    model.fit(x, x.mean(dim=(1, 2, 3)).unsqueeze(1), batch_size=8, verbose=0)
    assert model.engine.settings() == {"device": "cpu", "precision": "bf16" if cpu_has_amx() else "fp32",
                                       "channels_last": True, "jit_compile": False}
    assert next(p for p in model.parameters() if p.dim() == 4).is_contiguous(memory_format=torch.channels_last)
    flat = dense().compile(optimizer="sgd", loss="mse", device="cpu")
    flat.fit(np.ones((4, 4), np.float32), np.ones((4, 1), np.float32), verbose=0)
    assert flat.engine.settings()["channels_last"] is False and flat.engine.settings()["precision"] == "fp32"


def test_channels_last_training_equals_contiguous_training():
    x = torch.randn(48, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    y = x.mean(dim=(1, 2, 3)).unsqueeze(1)
    runs = []
    for layout in (False, True):
        torch.manual_seed(0)
        model = conv().compile(optimizer="adam", loss="mse", device="cpu", channels_last=layout, precision="fp32")
        runs.append((model.fit(x, y, batch_size=16, epochs=3, verbose=0, seed=0).history["loss"],
                     model.predict(x, verbose=0)))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-4)
    np.testing.assert_allclose(runs[0][1], runs[1][1], rtol=1e-4, atol=1e-5)


def test_jit_compile_trains_through_torch_compile_and_equals_eager(monkeypatch):
    # aot_eager traces forward and backward as inductor does, without its C++ build (~30 s on 2 cores)
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    torch._dynamo.reset()
    x = np.random.default_rng(0).normal(size=(96, 4)).astype(np.float32)
    y = x[:, :1] * 2.0 - x[:, 1:2]
    results = []
    for jit in (False, True):
        torch.manual_seed(0)
        model = dense().compile(optimizer="adam", loss="mse", device="cpu", jit_compile=jit)
        history = model.fit(x, y, batch_size=32, epochs=3, verbose=0, seed=0, validation_split=0.25)
        results.append((history.history, model.evaluate(x, y, verbose=0), model.predict(x[:5], verbose=0),
                        model.engine))
    (eager, eager_eval, eager_pred, _), (jit, jit_eval, jit_pred, engine) = results
    assert isinstance(engine._compiled, torch._dynamo.eval_frame.OptimizedModule)
    assert engine.settings()["jit_compile"] is True
    np.testing.assert_allclose(eager["loss"], jit["loss"], rtol=1e-5)
    np.testing.assert_allclose(eager["val_loss"], jit["val_loss"], rtol=1e-5)
    assert jit_eval["loss"] == pytest.approx(eager_eval["loss"], rel=1e-5)
    np.testing.assert_allclose(eager_pred, jit_pred, rtol=1e-5, atol=1e-6)
    # what is saved is the model itself, not the compiled wrapper (no "_orig_mod." keys)
    assert not any(k.startswith("_orig_mod") for k in engine.model.state_dict())


def test_the_run_config_takes_the_switches_and_defaults_to_auto():
    default = TrainingConfig()
    assert (default.precision, default.channels_last, default.jit_compile) == ("auto", "auto", "auto")
    chosen = TrainingConfig(precision="bf16", channels_last=False, jit_compile=True)
    assert (chosen.precision, chosen.channels_last, chosen.jit_compile) == ("bf16", False, True)
    with pytest.raises(ValueError, match="precision"):
        TrainingConfig(precision="fp8")


def test_auto_keeps_nchw_on_cpu_for_torch_strided_pointwise_convolutions():
    from torch import nn

    shortcut = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 16, 1, stride=2))
    assert not wants_channels_last("auto", shortcut, CPU)  # oneDNN issue #6035, see device.py
    assert wants_channels_last("auto", shortcut, CUDA)
    assert wants_channels_last("auto", nn.Sequential(nn.Conv2d(3, 8, 1)), CPU)


CHANNELS_LAST_RESNET = """
import numpy as np, torch
from deepfield.models import zoo
from deepfield.training.engine import Engine
for seed in range(6):
    torch.manual_seed(seed)
    x = np.random.default_rng(seed).normal(size=(53, 3, 16, 16)).astype("float32")
    y = np.random.default_rng(seed).integers(0, 3, 53)
    model = zoo.get("resnet", input_shape=(3, 16, 16), n_outputs=3, filters=[8, 16], blocks=1)
    engine = Engine(model, loss="sparse_categorical_crossentropy", optimizer="adam", device="cpu",
                    channels_last=True)
    engine.fit(x, y, batch_size=9, epochs=2, verbose=0, seed=seed)  # odd batches: 9 and a last one of 8
print("trained")
"""


def test_a_channels_last_resnet_trains_on_odd_batches_without_corrupting_the_heap(tmp_path):
    """glibc's checks (MALLOC_CHECK_=3) abort at the first corrupted heap block: before the 1x1
    projection shortcuts were computed as subsample-then-convolve, this died within a few steps."""
    import os
    import subprocess
    import sys

    script = tmp_path / "train.py"
    script.write_text(CHANNELS_LAST_RESNET)
    env = {**os.environ, "MALLOC_CHECK_": "3", "MALLOC_PERTURB_": "165"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "trained" in done.stdout


# -- where in-memory arrays live, and loaders -----------------------------------------------------

def test_arrays_stay_on_the_host_when_they_would_take_more_than_half_the_gpu():
    from deepfield.training.batches import resident_device

    gib = 1 << 30
    assert resident_device(10 * gib, CUDA, free_bytes=40 * gib) == CUDA
    assert resident_device(30 * gib, CUDA, free_bytes=40 * gib) == CPU
    assert resident_device(10**12, CPU) == CPU  # the CPU trains where the data are


def test_host_resident_batches_travel_to_the_device_one_at_a_time():
    """The same batches, in the same seeded order, reach the device whether the data live there or not
    (the "meta" device stands in for a GPU: it takes copies and keeps only shapes)."""
    from deepfield.training.batches import TensorBatches

    x, y = torch.arange(20.0).reshape(10, 2), torch.arange(10)
    on_device = TensorBatches(x, y, 4, shuffle=True)
    on_host = TensorBatches(x, y, 4, shuffle=True, device=torch.device("meta"))
    host_batches, device_batches = list(on_host.epoch(3, seed=7)), list(on_device.epoch(3, seed=7))
    assert [xb.device.type for xb, _ in host_batches] == ["meta"] * 3
    assert [tuple(xb.shape) for xb, _ in host_batches] == [tuple(xb.shape) for xb, _ in device_batches] == [
        (4, 2), (4, 2), (2, 2)]
    assert on_host.example().device.type == "meta"


def test_a_dataset_trains_through_one_persistent_seeded_loader(tmp_path):
    """fit(dataset) sees the batches fit(arrays) sees: same seeded order, same losses."""
    from torch.utils.data import TensorDataset

    x = torch.randn(60, 4, generator=torch.Generator().manual_seed(0))
    y = x[:, :1] * 3.0
    losses = []
    for data in ((x, y), (TensorDataset(x, y), None)):
        torch.manual_seed(0)
        model = dense().compile(optimizer="sgd", loss="mse", device="cpu")
        losses.append(model.fit(*data, batch_size=16, epochs=3, verbose=0, seed=5).history["loss"])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-6)


def test_mixed_precision_trains_but_evaluate_and_predict_report_float32_numbers():
    torch.manual_seed(0)
    model = Sequential([Dense(16, activation="relu"), Dense(3, activation="softmax")], input_shape=(4,))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", precision="bf16", device="cpu")
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(2))
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, seed=0)
    probabilities = model.predict(x, verbose=0)
    with torch.no_grad():
        exact = model.eval()(x).numpy()
    np.testing.assert_array_equal(probabilities, exact)  # the float32 network, not a bf16 rounding of it
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        rounded = model(x).float().numpy()
    assert np.abs(rounded.sum(axis=1) - 1.0).max() > 1e-4  # what bf16 outputs would have given
