"""Adam, AMSGrad and AdamW, Keras update rule."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch.optim.optimizer import ParamsT

from deepfield.training.optimizers.base import (
    GradientOptimizer,
    check_flag,
    check_non_negative,
    check_unit_interval,
)


class Adam(GradientOptimizer):
    """Adaptive moments: momentum on ``g`` scaled by a running ``g**2``.

    At step ``t = iterations + 1``, with ``m``, ``v`` (and ``v_hat``) starting at zero::

        m <- beta_1 * m + (1 - beta_1) * g
        v <- beta_2 * v + (1 - beta_2) * g**2
        v_hat <- max(v_hat, v);  use v_hat for v            (amsgrad only)
        alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)
        w <- w - alpha * m / (sqrt(v) + epsilon)

    This is the Kingma & Ba "epsilon hat" form Keras uses: the bias corrections
    are folded into ``alpha`` and epsilon is not rescaled. ``torch.optim.Adam``
    divides by ``sqrt(v / (1 - beta_2**t)) + eps`` instead, which differs while
    ``v`` is small.

    Args:
        params: the tensors to optimise (torch face) or ``None`` (bind later).
        learning_rate: default 0.001.
        beta_1, beta_2: decay rates of the moments, in [0, 1) (0.9, 0.999).
        epsilon: default 1e-7 (``None`` means 1e-7).
        amsgrad: use the running maximum of ``v`` (Reddi et al. 2018).
        clipnorm, clipvalue, global_clipnorm, weight_decay, decay: see ``base``.
    """

    name = "adam"

    def __init__(
        self,
        params: ParamsT | None = None,
        learning_rate: float = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float | None = 1e-7,
        amsgrad: bool = False,
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
                learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                amsgrad=check_flag(self, "amsgrad", amsgrad), clipnorm=clipnorm, clipvalue=clipvalue,
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
        beta_1, beta_2 = group["beta_1"], group["beta_2"]
        t = self.iterations + 1
        # Host-side scalar: no per-step tensor op or device sync for the bias correction.
        alpha = lr * math.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        m = self._slots(params, "momentum")
        v = self._slots(params, "velocity")
        torch._foreach_lerp_(m, grads, 1 - beta_1)
        torch._foreach_mul_(v, beta_2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - beta_2)
        if group["amsgrad"]:
            v_hat = self._slots(params, "velocity_hat")
            torch._foreach_maximum_(v_hat, v)
            v = v_hat
        denominator = torch._foreach_sqrt(v)
        torch._foreach_add_(denominator, group["epsilon"])
        torch._foreach_addcdiv_(params, m, denominator, value=-alpha)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as Keras 3's ``AdamW``.

    Before each Adam update, ``w <- w - lr_t * weight_decay * w``; the decay
    never enters the moments. ``weight_decay`` defaults to 0.004 as in Keras.
    """

    name = "adamw"

    def __init__(self, params: ParamsT | None = None, learning_rate: float = 0.001, weight_decay: float = 0.004,
                 **options: Any) -> None:
        """Adam's arguments (``beta_1``, ``beta_2``, ``epsilon``, ``amsgrad``, clipping, ``decay``) by keyword."""
        check_non_negative(self, "weight_decay", weight_decay)
        super().__init__(params, learning_rate, weight_decay=weight_decay, **options)
