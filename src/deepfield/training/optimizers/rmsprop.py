"""RMSprop, Keras update rule (epsilon inside the square root, optional momentum, centred)."""
from __future__ import annotations

from typing import Any

import torch
from torch.optim.optimizer import ParamsT

from deepfield.training.optimizers.base import (
    GradientOptimizer,
    check_flag,
    check_non_negative,
    check_unit_interval,
)


class RMSprop(GradientOptimizer):
    """Adagrad with an exponentially decaying average of squared gradients.

    With ``v`` (and ``a``, ``m``) starting at zero::

        v <- rho * v + (1 - rho) * g**2
        a <- rho * a + (1 - rho) * g                  (centered only)
        D  = v - a**2 + epsilon   (centered)  or  v + epsilon
        m <- momentum * m + lr * g / sqrt(D);  w <- w - m      (momentum > 0)
        w <- w - lr * g / sqrt(D)                              (momentum = 0)

    ``torch.optim.RMSprop`` puts epsilon outside the root (``sqrt(v) + eps``);
    Keras, and so deepfield, put it inside.

    Args:
        params: the tensors to optimise (torch face) or ``None`` (bind later).
        learning_rate: default 0.001.
        rho: decay of the running average, in [0, 1] (default 0.9).
        momentum: in [0, 1] (default 0).
        epsilon: added under the root (default 1e-7; ``None`` means 1e-7).
        centered: divide by the estimated variance instead of the second moment.
        clipnorm, clipvalue, global_clipnorm, weight_decay, decay: see ``base``.
    """

    name = "rmsprop"

    def __init__(
        self,
        params: ParamsT | None = None,
        learning_rate: float = 0.001,
        rho: float = 0.9,
        momentum: float = 0.0,
        epsilon: float | None = 1e-7,
        centered: bool = False,
        *,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        weight_decay: float | None = None,
        decay: float = 0.0,
        **keras2: Any,
    ) -> None:
        check_unit_interval(self, "rho", rho, closed=True)
        check_unit_interval(self, "momentum", momentum, closed=True)
        super().__init__(
            params,
            dict(
                learning_rate=learning_rate, rho=rho, momentum=momentum, epsilon=epsilon,
                centered=check_flag(self, "centered", centered), clipnorm=clipnorm, clipvalue=clipvalue,
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
        rho, momentum = group["rho"], group["momentum"]
        velocity = self._slots(params, "velocity")
        torch._foreach_mul_(velocity, rho)
        torch._foreach_addcmul_(velocity, grads, grads, value=1 - rho)
        if group["centered"]:
            average = self._slots(params, "average_gradient")
            torch._foreach_lerp_(average, grads, 1 - rho)
            denominator = torch._foreach_addcmul(velocity, average, average, value=-1)
            torch._foreach_add_(denominator, group["epsilon"])
        else:
            denominator = torch._foreach_add(velocity, group["epsilon"])
        torch._foreach_sqrt_(denominator)
        if momentum > 0:
            moment = self._slots(params, "momentum")
            torch._foreach_mul_(moment, momentum)
            torch._foreach_addcdiv_(moment, grads, denominator, value=lr)
            torch._foreach_sub_(params, moment)
        else:
            torch._foreach_addcdiv_(params, grads, denominator, value=-lr)
