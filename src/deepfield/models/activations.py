"""Activation functions by Keras name, as ``nn.Module`` objects.

``softmax`` normalises over axis 1 (the feature / channel axis: deepfield is
channels-first). ``prelu`` carries one learnable slope (init 0.25).
"""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from deepfield.errors import unknown_name

_FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "linear": nn.Identity,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "softmax": lambda: nn.Softmax(dim=1),
    "log_softmax": lambda: nn.LogSoftmax(dim=1),
    "prelu": nn.PReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),  # Keras 3 default negative_slope
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
    "swish": nn.SiLU,
    "silu": nn.SiLU,
}
NAMES = tuple(sorted(_FACTORIES))


def get(name: str | None) -> nn.Module:
    """A fresh activation module; ``None`` means linear."""
    if name is None:
        return nn.Identity()
    key = name.lower() if isinstance(name, str) else name
    if key not in _FACTORIES:
        raise unknown_name("activation", name, _FACTORIES)
    return _FACTORIES[key]()
