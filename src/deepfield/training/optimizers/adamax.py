"""Adamax, Keras update rule (epsilon added after the running maximum)."""
from __future__ import annotations

from typing import Any

import torch
from torch.optim.optimizer import ParamsT

from deepfield.training.optimizers.base import GradientOptimizer, check_non_negative, check_unit_interval


class Adamax(GradientOptimizer):
    """Adam with the infinity norm: the second moment is a decaying running maximum of ``|g|``.

    At step ``t = iterations + 1``, with ``m``, ``u`` starting at zero::

        m <- beta_1 * m + (1 - beta_1) * g
        u <- max(beta_2 * u, |g|)
        w <- w - lr * m / ((1 - beta_1**t) * (u + epsilon))

    Written here because ``torch.optim.Adamax`` takes ``u <- max(beta_2 * u, |g| + eps)``:
    its epsilon enters the maximum (and so the memory of ``u``), Keras's only the division.

    Args:
        params: the tensors to optimise (torch face) or ``None`` (bind later).
        learning_rate: default 0.001 (a number or a schedule).
        beta_1, beta_2: decay rates, in [0, 1) (0.9, 0.999).
        epsilon: default 1e-7 (``None`` means 1e-7).
        clipnorm, clipvalue, global_clipnorm, weight_decay, decay: see ``base``.
    """

    name = "adamax"

    def __init__(
        self,
        params: ParamsT | None = None,
        learning_rate: Any = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float | None = 1e-7,
        *,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        weight_decay: float | None = None,
        decay: float = 0.0,
        **keras2: Any,
    ) -> None:
        check_unit_interval(self, "beta_1", beta_1, closed=False)
        check_unit_interval(self, "beta_2", beta_2, closed=False)
        super().__init__(
            params,
            dict(
                learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, clipnorm=clipnorm,
                clipvalue=clipvalue, global_clipnorm=global_clipnorm, weight_decay=weight_decay, decay=decay,
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
        beta_1, beta_2 = group["beta_1"], group["beta_2"]
        t = self.iterations + 1
        m = self._slots(params, "momentum")
        u = self._slots(params, "norm")
        torch._foreach_lerp_(m, grads, 1 - beta_1)
        torch._foreach_mul_(u, beta_2)
        torch._foreach_maximum_(u, torch._foreach_abs(grads))
        denominator = torch._foreach_add(u, group["epsilon"])
        torch._foreach_addcdiv_(params, m, denominator, value=-lr / (1 - beta_1**t))
