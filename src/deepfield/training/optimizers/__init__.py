"""Optimisers with Keras names, defaults and update rules, as ``torch.optim.Optimizer`` s.

``get(spec)`` turns what a user writes in ``compile(optimizer=...)`` or a YAML
config into an unbound optimiser:

>>> opt = get("adam")           # unbound: compile/fit binds it to the model
>>> opt.learning_rate, opt.requires_closure
(0.001, False)
"""
from __future__ import annotations

from typing import Any

import torch

from deepfield.errors import DeepfieldError
from deepfield.training.optimizers import schedules
from deepfield.training.optimizers.adadelta import Adadelta
from deepfield.training.optimizers.adagrad import Adagrad
from deepfield.training.optimizers.adam import Adam, AdamW
from deepfield.training.optimizers.adamax import Adamax
from deepfield.training.optimizers.base import GradientOptimizer, Optimizer
from deepfield.training.optimizers.ftrl import Ftrl
from deepfield.training.optimizers.lion import Lion
from deepfield.training.optimizers.nadam import Nadam
from deepfield.training.optimizers.newton import Newton
from deepfield.training.optimizers.rmsprop import RMSprop
from deepfield.training.optimizers.sgd import SGD

NAMES = Optimizer.registry.names()


def get(spec: str | Optimizer | dict[str, Any]) -> Optimizer:
    """An optimiser from a name (``"adam"``), an instance (returned as is) or a config.

    A config is ``{"class_name": "Adam", "config": opt.get_config()}``; the class
    name may be given as the registry name too (``"adam"``), in any case.
    """
    if isinstance(spec, Optimizer):
        return spec
    if isinstance(spec, torch.optim.Optimizer):
        raise DeepfieldError(
            f"optimizer: got a torch {type(spec).__name__}; use a deepfield one "
            f"({', '.join(NAMES)}), which is a torch.optim.Optimizer with a Keras face"
        )
    if isinstance(spec, str):
        return Optimizer.registry.lookup(spec)()
    if isinstance(spec, dict) and "class_name" in spec:
        return Optimizer.registry.from_config(spec)
    raise DeepfieldError(
        "optimizer must be a name, a deepfield optimizer or "
        f"{{'class_name': ..., 'config': {{...}}}}, got {type(spec).__name__}"
    )



__all__ = [
    "NAMES", "Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "Ftrl", "GradientOptimizer", "Lion", "Nadam",
    "Newton", "Optimizer", "RMSprop", "SGD", "get", "schedules",
]
