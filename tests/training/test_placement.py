"""The placement the engine holds: "auto" settled by the first model placed, compiled once, and the
precision of a training step (autocast dtype, float32 outputs, gradients unscaled before callbacks)."""
from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from deepfield.errors import DeepfieldError
from deepfield.training.device import Placement, Precision, cpu_has_amx

CPU = torch.device("cpu")


def conv() -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 1))


def test_auto_is_settled_by_the_first_model_placed_and_kept():
    placement = Placement(CPU)
    assert placement.settings() == {"device": "cpu", "precision": None, "channels_last": None, "jit_compile": False}
    model = conv()
    placement.place(model)
    assert placement.settings() == {"device": "cpu", "precision": "bf16" if cpu_has_amx() else "fp32",
                                    "channels_last": True, "jit_compile": False}
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    placement.place(nn.Linear(3, 1))  # a later placement keeps what the first one settled
    assert placement.settings()["channels_last"] is True
    assert placement.net(model) is model and placement.compile(model) is model


def test_explicit_choices_are_kept_and_bad_ones_refused_at_once():
    placement = Placement(CPU, precision="bf16", channels_last=False)
    placement.place(conv())
    assert placement.settings()["precision"] == "bf16" and placement.settings()["channels_last"] is False
    with pytest.raises(DeepfieldError, match="precision"):
        Placement(CPU, precision="fp8")
    with pytest.raises(DeepfieldError, match="channels_last must be true, false or 'auto'"):
        Placement(CPU, channels_last="yes")


def test_jit_compile_compiles_the_model_once(monkeypatch):
    calls = []

    def fake_compile(module):
        calls.append(module)
        return functools.partial(module)  # stands in for the OptimizedModule

    monkeypatch.setattr(torch, "compile", fake_compile)
    placement, model = Placement(CPU, jit_compile=True), nn.Linear(3, 1)
    placement.place(model)
    placement.place(model)
    assert calls == [model] and placement.net(model) is placement.compiled
    assert placement.compile(model) is not model  # e.g. a DDP wrapper, compiled for a data-parallel fit


class DtypeProbe(nn.Module):
    """A linear layer that records the dtype its product came out in."""

    def __init__(self):
        super().__init__()
        self.linear, self.seen = nn.Linear(4, 2), []

    def forward(self, x):
        out = self.linear(x)
        self.seen.append(out.dtype)
        return out


@pytest.mark.parametrize("name, inside", [("fp32", torch.float32), ("bf16", torch.bfloat16), (None, torch.float32)])
def test_the_training_forward_runs_in_the_precision_and_returns_float32(name, inside):
    probe = DtypeProbe()
    out = Precision(name, CPU).forward(probe, torch.randn(3, 4))
    assert probe.seen == [inside] and out.dtype is torch.float32


def test_the_step_calls_back_between_backward_and_the_optimiser_step():
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.weight.detach().clone()
    seen = []

    def after_backward():
        seen.append((model.weight.grad.clone(), torch.equal(model.weight, before)))

    loss = model(torch.ones(2, 3)).sum()
    Precision("fp32", CPU).step(loss, optimizer, after_backward)
    (grad, unchanged), = seen
    assert unchanged and torch.equal(grad, torch.full((1, 3), 2.0))
    torch.testing.assert_close(model.weight.detach(), before - 0.1 * grad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="loss scaling is for fp16 on CUDA")
def test_fp16_on_cuda_unscales_the_gradients_before_the_callback():
    model = nn.Linear(3, 1).cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    precision, seen = Precision("fp16", torch.device("cuda")), []
    loss = precision.forward(model, torch.ones(2, 3, device="cuda")).sum()
    precision.step(loss, optimizer, lambda: seen.append(model.weight.grad.clone()))
    torch.testing.assert_close(seen[0].cpu(), torch.full((1, 3), 2.0))
