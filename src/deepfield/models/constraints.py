"""Weight constraints with Keras 3's names, arguments and numbers, applied after each optimiser step.

``kernel_constraint`` / ``bias_constraint`` (``depthwise_constraint``, ``pointwise_constraint``) of
Dense and the convolutions take a constraint object, a name (``"max_norm"``, ``"non_neg"``,
``"unit_norm"``, ``"min_max_norm"``) or a ``{"class_name", "config"}`` mapping.

``axis`` means what it means in Keras: an axis of Keras's (channels-last) kernel, e.g. Dense
``(in, units)``, Conv2D ``(kh, kw, in, filters)``, so ``MaxNorm(axis=0)`` on a Dense bounds the
incoming weights of each unit and ``MaxNorm(axis=[0, 1, 2])`` on a Conv2D bounds each filter.
A layer states how its channels-first weight maps to that kernel (:class:`KernelLayout`) and the
constraint is computed on that view, so the numbers are Keras's.
:func:`after_each_step` wraps a training step once when ``fit`` starts: without constraints the
step is returned unchanged.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from deepfield.errors import DeepfieldError
from deepfield.registry import Registry

EPSILON = 1e-7
"""Keras's ``backend.epsilon()``, added to norms before dividing."""

Spec = Any  # a Constraint, a name, a {"class_name", "config"} mapping or None
Axis = int | list[int] | tuple[int, ...]


def _axes(owner: str, axis: Axis) -> int | list[int]:
    values = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    if not values or any(isinstance(a, bool) or not isinstance(a, int) for a in values):
        raise DeepfieldError(f"{owner} axis must be an int or a list of ints, got {axis!r}")
    return values if isinstance(axis, (list, tuple)) else values[0]


class Constraint:
    """Base class: ``c(w)`` is the constrained version of ``w`` (in Keras's kernel layout)."""

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


class _Norm(Constraint):
    def __init__(self, axis: Axis):
        self.axis = _axes(type(self).__name__, axis)

    def norms(self, w: torch.Tensor) -> torch.Tensor:
        dims = self.axis if isinstance(self.axis, list) else [self.axis]
        return w.square().sum(dim=dims, keepdim=True).sqrt()


class MaxNorm(_Norm):
    """Scales each slice along ``axis`` down to an L2 norm of at most ``max_value``."""

    def __init__(self, max_value: float = 2, axis: Axis = 0):
        super().__init__(axis)
        self.max_value = max_value

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        norms = self.norms(w)
        return w * (norms.clamp(0, self.max_value) / (EPSILON + norms))

    def get_config(self) -> dict[str, Any]:
        return {"max_value": self.max_value, "axis": self.axis}


class MinMaxNorm(_Norm):
    """Moves each slice's norm ``n`` toward ``[min_value, max_value]`` by ``rate`` (1: all the way)."""

    def __init__(self, min_value: float = 0.0, max_value: float = 1.0, rate: float = 1.0, axis: Axis = 0):
        super().__init__(axis)
        self.min_value, self.max_value, self.rate = min_value, max_value, rate

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        norms = self.norms(w)
        desired = self.rate * norms.clamp(self.min_value, self.max_value) + (1 - self.rate) * norms
        return w * (desired / (EPSILON + norms))

    def get_config(self) -> dict[str, Any]:
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate, "axis": self.axis}


class UnitNorm(_Norm):
    """Scales each slice along ``axis`` to an L2 norm of 1."""

    def __init__(self, axis: Axis = 0):
        super().__init__(axis)

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return w / (EPSILON + self.norms(w))

    def get_config(self) -> dict[str, Any]:
        return {"axis": self.axis}


class NonNeg(Constraint):
    """Negative weights set to 0."""

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return w.clamp_min(0)


max_norm, min_max_norm, non_neg, unit_norm = MaxNorm, MinMaxNorm, NonNeg, UnitNorm
"""Keras's lower-case spellings (``constraints.max_norm(3)``)."""

__all__ = ["Constraint", "MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm", "max_norm", "min_max_norm", "non_neg",
           "unit_norm", "get"]

REGISTRY: Registry[Callable[[], Constraint]] = Registry("constraint", {
    "max_norm": MaxNorm, "min_max_norm": MinMaxNorm, "non_neg": NonNeg, "unit_norm": UnitNorm,
}, any_case=True)
"""Keras names -> factories of fresh constraints."""

CLASSES: Registry[type[Constraint]] = Registry(
    "constraint class", {c.__name__: c for c in (MaxNorm, MinMaxNorm, NonNeg, UnitNorm)})
"""Class names, as a ``model.json`` (and a Keras file) writes them."""


def get(spec: Spec) -> Constraint | None:
    """A constraint from a name, an instance or ``{"class_name", "config"}``; ``None`` stays ``None``."""
    if spec is None or isinstance(spec, Constraint):
        return spec
    if isinstance(spec, dict):
        return CLASSES.from_config(spec)
    return REGISTRY.lookup(spec)()


@dataclass(frozen=True)
class KernelLayout:
    """How a deepfield (channels-first) weight maps to Keras's kernel: ``permutation`` of the torch
    axes, after splitting axis 0 into ``(axis 0 / groups_of, groups_of)`` and dropping axis 1 when
    ``groups_of`` is set (a depthwise kernel ``(C*m, 1, *k)`` whose Keras form is ``(*k, C, m)``)."""

    permutation: tuple[int, ...]
    groups_of: int | None = None

    def to_keras(self, w: torch.Tensor) -> torch.Tensor:
        if self.groups_of is not None:
            w = w.reshape(w.shape[0] // self.groups_of, self.groups_of, *w.shape[2:])
        return w.permute(self.permutation)

    def from_keras(self, k: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        inverse = sorted(range(len(self.permutation)), key=self.permutation.__getitem__)
        return k.permute(inverse).reshape(shape)


DENSE = KernelLayout((1, 0))
"""Dense: ``(units, in)`` here, ``(in, units)`` in Keras."""


def conv_layout(rank: int) -> KernelLayout:
    """Conv: ``(filters, in, *k)`` here, ``(*k, in, filters)`` in Keras; also the transposed
    convolutions: ``(in, filters, *k)`` here, ``(*k, filters, in)`` in Keras."""
    return KernelLayout((*range(2, 2 + rank), 1, 0))


def depthwise_layout(rank: int, depth_multiplier: int) -> KernelLayout:
    """Depthwise: ``(C * m, 1, *k)`` here, ``(*k, C, m)`` in Keras."""
    return KernelLayout((*range(2, 2 + rank), 0, 1), depth_multiplier)


def attach(layer: nn.Module, weights: dict[str, tuple[Spec, KernelLayout | None]]) -> None:
    """Give ``layer`` its constraints: ``weights`` maps a parameter's attribute name to
    ``(spec, layout)``, the layout ``None`` for vectors (biases)."""
    layer.weight_constraints = {name: (c, layout) for name, (spec, layout) in weights.items()
                                if (c := get(spec)) is not None}


Target = tuple[nn.Module, str, Constraint, KernelLayout | None]


def _targets(model: nn.Module) -> list[Target]:
    """The constrained weights of ``model`` the optimiser updates (frozen ones are left alone, as in Keras)."""
    return [(module, name, constraint, layout) for module in model.modules()
            for name, (constraint, layout) in getattr(module, "weight_constraints", {}).items()
            if getattr(module, name, None) is None or getattr(module, name).requires_grad]


def _apply(targets: list[Target]) -> None:
    with torch.no_grad():
        for module, name, constraint, layout in targets:
            w = getattr(module, name, None)
            if w is None:  # a bias-free layer, a layer made Bayesian
                continue
            w.copy_(constraint(w) if layout is None else layout.from_keras(constraint(layout.to_keras(w)), w.shape))


def apply(model: nn.Module) -> None:
    """Constrain every constrained weight of ``model`` in place (Keras does after each optimiser step)."""
    _apply(_targets(model))


def after_each_step(step: Callable[..., Any], model: nn.Module) -> Callable[..., Any]:
    """``step`` followed by the constraints of ``model``'s weights, or ``step`` itself when it has none."""
    targets = _targets(model)
    if not targets:
        return step

    def constrained_step(*args: Any, **kwargs: Any) -> Any:
        result = step(*args, **kwargs)
        _apply(targets)
        return result

    return constrained_step
