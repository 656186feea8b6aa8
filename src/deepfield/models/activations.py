"""Activation functions by Keras name, as ``nn.Module`` objects.

``softmax`` normalises over axis 1 (the feature / channel axis: deepfield is
channels-first). ``prelu`` carries one learnable slope (init 0.25). The definitions are
Keras 3's: ``hard_sigmoid`` is ``relu6(x + 3) / 6`` (slope 1/6; Keras 2's was 0.2),
``gelu`` the exact erf form (Keras's ``approximate=False``), ``hard_silu`` is ``x * hard_sigmoid(x)``.
"""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from deepfield.registry import Registry

REGISTRY: Registry[Callable[[], nn.Module]] = Registry("activation", {
    "linear": nn.Identity,
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "sigmoid": nn.Sigmoid,
    "hard_sigmoid": nn.Hardsigmoid,
    "tanh": nn.Tanh,
    "softmax": lambda: nn.Softmax(dim=1),
    "log_softmax": lambda: nn.LogSoftmax(dim=1),
    "prelu": nn.PReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),  # Keras 3 default negative_slope
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
    "softsign": nn.Softsign,
    "mish": nn.Mish,
    "swish": nn.SiLU,
    "silu": nn.SiLU,
    "hard_silu": nn.Hardswish,
    "hard_swish": nn.Hardswish,
}, any_case=True)
"""Keras names -> factories of fresh modules."""
NAMES = REGISTRY.names()


def get(name: str | None) -> nn.Module:
    """A fresh activation module; ``None`` means linear."""
    if name is None:
        return nn.Identity()
    return REGISTRY.lookup(name)()
