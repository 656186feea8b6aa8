"""Weight and activity regularisers with Keras 3's names, arguments and numbers.

``kernel_regularizer`` / ``bias_regularizer`` (``depthwise_regularizer``, ``pointwise_regularizer``)
/ ``activity_regularizer`` of Dense and the convolutions take a regulariser object, a name or a
``{"class_name", "config"}`` mapping:

==========  ==============================  ======================================
name        object                          penalty
==========  ==============================  ======================================
``"l1"``    ``L1(l1=0.01)``                 ``l1 * sum(|w|)``
``"l2"``    ``L2(l2=0.01)``                 ``l2 * sum(w**2)``
``"l1l2"``  ``L1L2(l1=0.0, l2=0.0)``        both (Keras 3's name and defaults)
``"l1_l2"`` ``L1L2(l1=0.01, l2=0.01)``      both (the name and defaults Keras's docs give)
==========  ==============================  ======================================

A sum does not depend on the order of the weights, so the penalties of deepfield's
channels-first weights equal Keras's on its channels-last ones. The training loss is the data
loss plus every penalty, as Keras's (and the reported ``loss`` includes them); an activity
penalty is that of the layer's output in the training step, divided by the batch size (Keras 3).
:func:`loss_terms` finds them once when ``fit`` starts: a network without regularisers pays nothing.
``evaluate`` and ``val_loss`` are the data loss alone, as for every added loss in deepfield
(:class:`~deepfield.training.engine.Engine`); Keras adds the penalties there too.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.models.base import Layer
from deepfield.registry import Registry

Spec = Any  # a Regularizer, a name, a {"class_name", "config"} mapping or None


def _factor(owner: str, name: str, value: object) -> float:
    if not arguments.is_number(value) or not value >= 0:
        raise DeepfieldError(f"{owner} {name} must be a non-negative number, got {value!r}")
    return float(value)


class Regularizer:
    """Base class: ``reg(w)`` is the penalty of tensor ``w`` (a 0-d tensor)."""

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


class L1(Regularizer):
    """``l1 * sum(|w|)``."""

    def __init__(self, l1: float = 0.01):
        self.l1 = _factor("L1", "l1", l1)

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return self.l1 * w.abs().sum()

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1}


class L2(Regularizer):
    """``l2 * sum(w**2)``."""

    def __init__(self, l2: float = 0.01):
        self.l2 = _factor("L2", "l2", l2)

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return self.l2 * w.square().sum()

    def get_config(self) -> dict[str, Any]:
        return {"l2": self.l2}


class L1L2(Regularizer):
    """``l1 * sum(|w|) + l2 * sum(w**2)``; ``None`` counts as 0 (Keras)."""

    def __init__(self, l1: float | None = 0.0, l2: float | None = 0.0):
        self.l1 = _factor("L1L2", "l1", 0.0 if l1 is None else l1)
        self.l2 = _factor("L1L2", "l2", 0.0 if l2 is None else l2)

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        total = w.new_zeros(())
        if self.l1:
            total = total + self.l1 * w.abs().sum()
        if self.l2:
            total = total + self.l2 * w.square().sum()
        return total

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1, "l2": self.l2}


l1, l2, l1_l2 = L1, L2, L1L2
"""Keras's lower-case spellings (``regularizers.l2(1e-4)``); Keras's ``l1_l2`` is the class, factors 0 by default."""

__all__ = ["Regularizer", "L1", "L2", "L1L2", "l1", "l2", "l1_l2", "get", "ActivityRegularization"]

REGISTRY: Registry[Callable[[], Regularizer]] = Registry("regularizer", {
    "l1": L1,
    "l2": L2,
    "l1l2": L1L2,
    "l1_l2": lambda: L1L2(0.01, 0.01),
}, any_case=True)
"""Keras names -> factories of fresh regularisers."""

CLASSES: Registry[type[Regularizer]] = Registry("regularizer class", {c.__name__: c for c in (L1, L2, L1L2)})
"""Class names, as a ``model.json`` (and a Keras file) writes them."""


def get(spec: Spec) -> Regularizer | None:
    """A regulariser from a name, an instance or ``{"class_name", "config"}``; ``None`` stays ``None``."""
    if spec is None or isinstance(spec, Regularizer):
        return spec
    if isinstance(spec, dict):
        return CLASSES.from_config(spec)
    return REGISTRY.lookup(spec)()


def attach(layer: nn.Module, weights: dict[str, Spec], activity: Spec) -> None:
    """Give ``layer`` its regularisers: ``weights`` maps a parameter's attribute name (``"weight"``,
    ``"bias"``) to a spec; ``activity`` regularises the layer's output (its penalty is part of the loss in training and evaluation)."""
    layer.weight_regularizers = {name: reg for name, spec in weights.items() if (reg := get(spec)) is not None}
    layer.activity_regularizer = get(activity)
    if layer.activity_regularizer is not None:
        layer.register_forward_hook(_record_activity)


def _record_activity(layer: nn.Module, inputs: Any, output: torch.Tensor) -> None:
    # in evaluation too: Keras's evaluate and val_loss include the penalty of the batch evaluated
    layer.activity_loss = layer.activity_regularizer(output) / max(output.shape[0], 1)


def loss_terms(model: nn.Module) -> list[Callable[[], torch.Tensor]]:
    """The penalties of ``model``'s regularised trainable weights and of its outputs, each a function of
    no argument giving a 0-d tensor (an activity penalty: of the latest forward pass); empty without
    regularisers. Weights frozen now (``requires_grad`` off) are left out, as Keras regularises trainable
    weights only."""
    terms: list[Callable[[], torch.Tensor]] = []
    for module in model.modules():
        for name, reg in getattr(module, "weight_regularizers", {}).items():
            weight = getattr(module, name, None)  # None: a bias-free layer, a layer made Bayesian
            if weight is not None and weight.requires_grad:  # frozen weights are not regularised (Keras)
                terms.append(lambda m=module, n=name, r=reg: r(getattr(m, n)))
        if getattr(module, "activity_regularizer", None) is not None:
            # taken, not read: the layer keeps no graph of the last batch once the loss is formed
            terms.append(lambda m=module: m.__dict__.pop("activity_loss", torch.zeros(())))
    return terms


class ActivityRegularization(Layer):
    """Passes its input on and adds ``l1 * sum(|x|) + l2 * sum(x**2)`` of it, divided by the batch size,
    to the training loss (Keras's layer; no parameters)."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0, name: str | None = None,
                 input_shape: tuple[int, ...] | None = None):
        super().__init__(name=name, input_shape=input_shape)
        penalty = L1L2(l1, l2)
        self.l1, self.l2 = penalty.l1, penalty.l2
        attach(self, {}, penalty)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
