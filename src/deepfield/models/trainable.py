"""Keras's ``trainable`` switch on torch modules: ``layer.trainable = False`` freezes its weights.

As in Keras 3, setting the switch on a layer or a model sets it on every layer inside, both ways
(``model.trainable = True`` unfreezes everything, a layer frozen before included), and sets
``requires_grad`` on every weight inside, plain torch modules' included. A frozen weight gets no
gradient, so the optimiser leaves it alone: no step, no weight decay, no momentum. The summary counts
it as non-trainable. A layer frozen before it is built makes its weights frozen when it builds
(:meth:`deepfield.models.base.Layer.build_for`), and a frozen BatchNormalization normalises with its
moving statistics and leaves them as they are, in ``fit`` too (Keras 3's rule for fine-tuning).
torch's own ``nn.BatchNorm*d`` inside a frozen model have their weights frozen but, in train mode,
still move their running statistics (call ``.eval()`` on them, or use deepfield's layer).
"""
from __future__ import annotations

from torch import nn

from deepfield.errors import flag


class Trainable:
    """Mixin for ``nn.Module`` subclasses: the ``trainable`` property (``True`` until switched off)."""

    @property
    def trainable(self) -> bool:
        return self.__dict__.get("_trainable", True)

    @trainable.setter
    def trainable(self, value: bool) -> None:
        owner = getattr(self, "label", None) or type(self).__name__
        set_trainable(self, flag(owner, "trainable", value))  # type: ignore[arg-type]


def set_trainable(module: nn.Module, value: bool) -> None:
    """Switch ``module`` and everything inside it to ``value``: the flags and ``requires_grad``."""
    for sub in module.modules():
        if isinstance(sub, Trainable):
            sub.__dict__["_trainable"] = value
    module.requires_grad_(value)
