"""Weight initialisers by Keras name, with the published variance rules.

Each initialiser fills a tensor in place given its fans. For a dense kernel
``fan_in`` is the number of inputs; for a convolution kernel it is
``in_channels * prod(kernel_size)`` (and ``fan_out`` is ``filters * prod(kernel_size)``).

Variance rules (Keras 3 ``VarianceScaling``):

==============  ===========  ===========================================
name            variance     distribution
==============  ===========  ===========================================
he_normal       2 / fan_in   normal truncated at 2 sigma, rescaled so
                             the variance is exact
he_uniform      2 / fan_in   uniform in ±sqrt(6 / fan_in)
lecun_normal    1 / fan_in   truncated normal as above
lecun_uniform   1 / fan_in   uniform in ±sqrt(3 / fan_in)
glorot_normal   2/(in+out)   truncated normal as above
glorot_uniform  2/(in+out)   uniform in ±sqrt(6 / (fan_in + fan_out))
==============  ===========  ===========================================

plus ``random_normal`` (stddev 0.05), ``random_uniform`` (±0.05, the old Keras
``init='uniform'``), ``zeros``, ``ones``, ``constant`` and ``orthogonal`` (the recurrent kernels' default).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from deepfield.errors import DeepfieldError
from deepfield.registry import Registry

# std of a unit normal truncated to [-2, 2]; dividing by it makes the truncated
# draw have exactly the target variance (the constant Keras uses).
_TRUNCATED_STD = 0.87962566103423978


class Initializer:
    """Base class: ``init(tensor, fan_in, fan_out)`` fills ``tensor`` in place."""

    def __call__(self, tensor: torch.Tensor, fan_in: int, fan_out: int) -> torch.Tensor:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class VarianceScaling(Initializer):
    """Draws with variance ``scale / n``, ``n`` = fan_in, fan_out or their mean."""

    def __init__(self, scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal"):
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise DeepfieldError(f"VarianceScaling mode {mode!r}; expected fan_in, fan_out or fan_avg")
        if distribution not in ("truncated_normal", "untruncated_normal", "uniform"):
            raise DeepfieldError(
                f"VarianceScaling distribution {distribution!r}; expected truncated_normal, untruncated_normal or uniform"
            )
        self.scale, self.mode, self.distribution = float(scale), mode, distribution

    def __call__(self, tensor: torch.Tensor, fan_in: int, fan_out: int) -> torch.Tensor:
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        variance = self.scale / max(1.0, n)
        with torch.no_grad():
            if self.distribution == "uniform":
                limit = math.sqrt(3.0 * variance)
                return tensor.uniform_(-limit, limit)
            if self.distribution == "untruncated_normal":
                return tensor.normal_(0.0, math.sqrt(variance))
            std = math.sqrt(variance) / _TRUNCATED_STD
            return torch.nn.init.trunc_normal_(tensor, 0.0, std, -2 * std, 2 * std)

    def get_config(self) -> dict[str, Any]:
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution}


class RandomUniform(Initializer):
    def __init__(self, minval: float = -0.05, maxval: float = 0.05):
        self.minval, self.maxval = float(minval), float(maxval)

    def __call__(self, tensor: torch.Tensor, fan_in: int, fan_out: int) -> torch.Tensor:
        with torch.no_grad():
            return tensor.uniform_(self.minval, self.maxval)

    def get_config(self) -> dict[str, Any]:
        return {"minval": self.minval, "maxval": self.maxval}


class RandomNormal(Initializer):
    def __init__(self, mean: float = 0.0, stddev: float = 0.05):
        self.mean, self.stddev = float(mean), float(stddev)

    def __call__(self, tensor: torch.Tensor, fan_in: int, fan_out: int) -> torch.Tensor:
        with torch.no_grad():
            return tensor.normal_(self.mean, self.stddev)

    def get_config(self) -> dict[str, Any]:
        return {"mean": self.mean, "stddev": self.stddev}


class Constant(Initializer):
    def __init__(self, value: float = 0.0):
        self.value = float(value)

    def __call__(self, tensor: torch.Tensor, fan_in: int, fan_out: int) -> torch.Tensor:
        with torch.no_grad():
            return tensor.fill_(self.value)

    def get_config(self) -> dict[str, Any]:
        return {"value": self.value}


class Orthogonal(Initializer):
    """``gain`` times an orthogonal matrix (Keras 3's): a 2-D tensor ``(rows, cols)`` gets orthonormal
    rows when rows <= cols, else orthonormal columns; the QR of a normal draw with the signs of R's
    diagonal fixed, as ``torch.nn.init.orthogonal_`` computes it."""

    def __init__(self, gain: float = 1.0):
        self.gain = float(gain)

    def __call__(self, tensor: torch.Tensor, fan_in: int, fan_out: int) -> torch.Tensor:
        with torch.no_grad():
            return torch.nn.init.orthogonal_(tensor, self.gain)

    def get_config(self) -> dict[str, Any]:
        return {"gain": self.gain}


REGISTRY: Registry[Callable[[], Initializer]] = Registry("initializer", {
    "he_normal": lambda: VarianceScaling(2.0, "fan_in", "truncated_normal"),
    "he_uniform": lambda: VarianceScaling(2.0, "fan_in", "uniform"),
    "lecun_normal": lambda: VarianceScaling(1.0, "fan_in", "truncated_normal"),
    "lecun_uniform": lambda: VarianceScaling(1.0, "fan_in", "uniform"),
    "glorot_normal": lambda: VarianceScaling(1.0, "fan_avg", "truncated_normal"),
    "glorot_uniform": lambda: VarianceScaling(1.0, "fan_avg", "uniform"),
    "random_normal": RandomNormal,
    "random_uniform": RandomUniform,
    "zeros": lambda: Constant(0.0),
    "ones": lambda: Constant(1.0),
    "constant": Constant,
    "orthogonal": Orthogonal,
}, any_case=True)
"""Keras names -> factories of fresh initialisers."""
REGISTRY.alias("uniform", "random_uniform")  # the old Keras init='uniform'

CLASSES: Registry[type[Initializer]] = Registry(
    "initializer class",
    {cls.__name__: cls for cls in (VarianceScaling, RandomUniform, RandomNormal, Constant, Orthogonal)})
"""Class names, as a ``model.json`` writes them (:func:`serialize`)."""


def get(spec: str | Initializer | dict[str, Any]) -> Initializer:
    """An initialiser from a Keras name, an instance, or ``{"class_name", "config"}``."""
    if isinstance(spec, Initializer):
        return spec
    if isinstance(spec, dict):
        return CLASSES.from_config(spec)
    return REGISTRY.lookup(spec)()


def serialize(init: Initializer) -> dict[str, Any]:
    """JSON-ready form that :func:`get` reads back."""
    return {"class_name": type(init).__name__, "config": init.get_config()}
