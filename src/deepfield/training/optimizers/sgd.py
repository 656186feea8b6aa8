"""Stochastic gradient descent with optional (Nesterov) momentum, Keras update rule."""
from __future__ import annotations

from typing import Any

import torch
from torch.optim.optimizer import ParamsT

from deepfield.training.optimizers.base import GradientOptimizer, check_flag, check_unit_interval


class SGD(GradientOptimizer):
    """Gradient descent ``w <- w - lr * g``, with Keras-style momentum.

    With ``momentum > 0`` (velocity ``v`` starts at zero)::

        v <- momentum * v - lr * g
        w <- w + v                          (nesterov=False)
        w <- w + momentum * v - lr * g      (nesterov=True)

    Unlike ``torch.optim.SGD``, the velocity holds ``lr``-scaled steps, so a
    learning rate that changes (``decay``, schedulers) only affects new gradients.

    Args:
        params: the tensors to optimise (torch face) or ``None`` (bind later).
        learning_rate: step size, default 0.01.
        momentum: in [0, 1]; 0 is plain gradient descent.
        nesterov: use Nesterov momentum.
        clipnorm, clipvalue, global_clipnorm, weight_decay, decay: see ``base``.
    """

    name = "sgd"

    def __init__(
        self,
        params: ParamsT | None = None,
        learning_rate: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        *,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        weight_decay: float | None = None,
        decay: float = 0.0,
        **keras2: Any,
    ) -> None:
        check_unit_interval(self, "momentum", momentum, closed=True)
        super().__init__(
            params,
            dict(
                learning_rate=learning_rate, momentum=momentum, nesterov=check_flag(self, "nesterov", nesterov),
                clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm,
                weight_decay=weight_decay, decay=decay,
            ),
            **keras2,
        )

    def _update(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        lr: float,
    ) -> None:
        momentum = group["momentum"]
        if momentum == 0:
            torch._foreach_add_(params, grads, alpha=-lr)
            return
        velocity = self._slots(params, "momentum")
        torch._foreach_mul_(velocity, momentum)
        torch._foreach_add_(velocity, grads, alpha=-lr)
        if group["nesterov"]:
            torch._foreach_add_(params, velocity, alpha=momentum)
            torch._foreach_add_(params, grads, alpha=-lr)
        else:
            torch._foreach_add_(params, velocity)
