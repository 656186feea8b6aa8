"""Adadelta: ``torch.optim``'s update, which is Keras's rule (epsilon inside both roots)."""
from __future__ import annotations

from typing import Any

import torch
from torch.optim.adadelta import adadelta
from torch.optim.optimizer import ParamsT

from deepfield.training.optimizers.base import GradientOptimizer, check_non_negative, check_unit_interval


class Adadelta(GradientOptimizer):
    """Steps scaled by the ratio of running RMS of past steps to running RMS of gradients (Zeiler 2012).

    With ``G``, ``D`` starting at zero::

        G <- rho * G + (1 - rho) * g**2
        d  = -sqrt(D + epsilon) / sqrt(G + epsilon) * g
        D <- rho * D + (1 - rho) * d**2
        w <- w + lr * d

    The update is ``torch.optim.adadelta``'s functional form, which computes exactly this;
    clipping, weight decay and the learning rate (``decay``, schedules) are the base's.

    Args:
        params: the tensors to optimise (torch face) or ``None`` (bind later).
        learning_rate: default 0.001 as in Keras (the paper's form is 1.0; a number or a schedule).
        rho: decay rate of the running averages, in [0, 1] (0.95).
        epsilon: default 1e-7 (``None`` means 1e-7).
        clipnorm, clipvalue, global_clipnorm, weight_decay, decay: see ``base``.
    """

    name = "adadelta"

    def __init__(
        self,
        params: ParamsT | None = None,
        learning_rate: Any = 0.001,
        rho: float = 0.95,
        epsilon: float | None = 1e-7,
        *,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        weight_decay: float | None = None,
        decay: float = 0.0,
        **keras2: Any,
    ) -> None:
        check_unit_interval(self, "rho", rho, closed=True)
        super().__init__(
            params,
            dict(
                learning_rate=learning_rate, rho=rho, epsilon=epsilon, clipnorm=clipnorm, clipvalue=clipvalue,
                global_clipnorm=global_clipnorm, weight_decay=weight_decay, decay=decay,
            ),
            **keras2,
        )
        check_non_negative(self, "epsilon", self.defaults["epsilon"])

    def _update(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        lr: float,
    ) -> None:
        # torch's functional form counts steps per tensor, as torch.optim.Adadelta keeps them (on the CPU).
        steps = [self.state[p].get("step") for p in params]
        if any(step is None for step in steps):
            steps = [self.state[p].setdefault("step", torch.tensor(0.0)) for p in params]
        adadelta(params, grads, self._slots(params, "square_avg"), self._slots(params, "acc_delta"), steps,
                 lr=lr, rho=group["rho"], eps=group["epsilon"], weight_decay=0.0, maximize=False)
