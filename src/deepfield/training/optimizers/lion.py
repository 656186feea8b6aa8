"""Lion, Keras update rule (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms")."""
from __future__ import annotations

from typing import Any

import torch
from torch.optim.optimizer import ParamsT

from deepfield.training.optimizers.base import GradientOptimizer, check_unit_interval, is_number


class Lion(GradientOptimizer):
    """The sign of an interpolated momentum: every weight moves by exactly ``lr`` each step.

    With ``m`` starting at zero::

        w <- w - lr * sign(beta_1 * m + (1 - beta_1) * g)
        m <- beta_2 * m + (1 - beta_2) * g

    Written here: torch has no Lion. Its steps are larger than Adam's for the same rate, so
    the paper advises a rate 3-10 times smaller (and a weight decay as many times larger).

    Args:
        params: the tensors to optimise (torch face) or ``None`` (bind later).
        learning_rate: default 0.001 (a number or a schedule).
        beta_1: interpolation of the update, in (0, 1] (0.9; 0 would be SignSGD, refused as in Keras).
        beta_2: decay rate of the momentum, in [0, 1] (0.99).
        clipnorm, clipvalue, global_clipnorm, weight_decay, decay: see ``base``.
    """

    name = "lion"

    def __init__(
        self,
        params: ParamsT | None = None,
        learning_rate: Any = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.99,
        *,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        weight_decay: float | None = None,
        decay: float = 0.0,
        **keras2: Any,
    ) -> None:
        self._check(is_number(beta_1) and 0 < beta_1 <= 1, f"beta_1 must be in (0, 1], got {beta_1!r}")
        check_unit_interval(self, "beta_2", beta_2, closed=True)
        super().__init__(
            params,
            dict(
                learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, clipnorm=clipnorm, clipvalue=clipvalue,
                global_clipnorm=global_clipnorm, weight_decay=weight_decay, decay=decay,
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
        m = self._slots(params, "momentum")
        direction = torch._foreach_mul(m, group["beta_1"])
        torch._foreach_add_(direction, grads, alpha=1 - group["beta_1"])
        torch._foreach_sign_(direction)
        torch._foreach_add_(params, direction, alpha=-lr)
        torch._foreach_lerp_(m, grads, 1 - group["beta_2"])
