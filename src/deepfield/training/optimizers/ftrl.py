"""FTRL-Proximal, Keras update rule (McMahan et al. 2013, "Ad Click Prediction: a View from the Trenches")."""
from __future__ import annotations

from typing import Any

import torch
from torch.optim.optimizer import ParamsT

from deepfield.training.optimizers.base import GradientOptimizer, check_non_negative, is_number


class Ftrl(GradientOptimizer):
    """Follow The Regularised Leader: weights solved in closed form from a running linear term.

    With ``n`` starting at ``initial_accumulator_value``, ``z`` at zero, ``p = -learning_rate_power``,
    ``l1``, ``l2`` the regularisation strengths (``l2`` plus ``beta / (2 lr)``) and ``s`` the shrinkage::

        n_new = n + g**2
        z <- z + (g + 2 s w) - (n_new**p - n**p) / lr * w
        w <- (clip(z, -l1, l1) - z) / (n_new**p / lr + 2 l2)
        n <- n_new

    Written here: torch has no FTRL.

    Args:
        params: the tensors to optimise (torch face) or ``None`` (bind later).
        learning_rate: default 0.001 (a number or a schedule).
        learning_rate_power: how the per-weight rate falls with ``n``, <= 0 (-0.5; 0 is a fixed rate).
        initial_accumulator_value: starting ``n``, >= 0 (0.1).
        l1_regularization_strength, l2_regularization_strength: >= 0 (0).
        l2_shrinkage_regularization_strength: an L2 penalty on the gradient's side (magnitude
            shrinkage), >= 0 (0).
        beta: >= 0 (0), added to ``l2`` as ``beta / (2 lr)`` (the paper's beta).
        clipnorm, clipvalue, global_clipnorm, weight_decay, decay: see ``base``.
    """

    name = "ftrl"

    def __init__(
        self,
        params: ParamsT | None = None,
        learning_rate: Any = 0.001,
        learning_rate_power: float = -0.5,
        initial_accumulator_value: float = 0.1,
        l1_regularization_strength: float = 0.0,
        l2_regularization_strength: float = 0.0,
        l2_shrinkage_regularization_strength: float = 0.0,
        beta: float = 0.0,
        *,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        weight_decay: float | None = None,
        decay: float = 0.0,
        **keras2: Any,
    ) -> None:
        self._check(is_number(learning_rate_power) and learning_rate_power <= 0,
                    f"learning_rate_power must be <= 0, got {learning_rate_power!r}")
        for key, value in [("initial_accumulator_value", initial_accumulator_value),
                           ("l1_regularization_strength", l1_regularization_strength),
                           ("l2_regularization_strength", l2_regularization_strength),
                           ("l2_shrinkage_regularization_strength", l2_shrinkage_regularization_strength),
                           ("beta", beta)]:
            check_non_negative(self, key, value)
        super().__init__(
            params,
            dict(
                learning_rate=learning_rate, learning_rate_power=learning_rate_power,
                initial_accumulator_value=initial_accumulator_value,
                l1_regularization_strength=l1_regularization_strength,
                l2_regularization_strength=l2_regularization_strength,
                l2_shrinkage_regularization_strength=l2_shrinkage_regularization_strength, beta=beta,
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
        power, l1 = -group["learning_rate_power"], group["l1_regularization_strength"]
        l2 = group["l2_regularization_strength"] + group["beta"] / (2.0 * lr)
        shrinkage = group["l2_shrinkage_regularization_strength"]
        accumulator = self._slots(params, "accumulator", fill=group["initial_accumulator_value"])
        linear = self._slots(params, "linear")
        old = torch._foreach_pow(accumulator, power)
        torch._foreach_addcmul_(accumulator, grads, grads)
        new = torch._foreach_pow(accumulator, power)
        # z += g + 2 s w - (n_new**p - n**p) / lr * w
        torch._foreach_add_(linear, grads)
        if shrinkage:
            torch._foreach_add_(linear, params, alpha=2 * shrinkage)
        torch._foreach_sub_(old, new)
        torch._foreach_div_(old, lr)
        torch._foreach_addcmul_(linear, old, params)
        # w = (clip(z, -l1, l1) - z) / (n_new**p / lr + 2 l2)
        numerator = torch._foreach_clamp_min(linear, -l1)
        torch._foreach_clamp_max_(numerator, l1)
        torch._foreach_sub_(numerator, linear)
        torch._foreach_div_(new, lr)
        torch._foreach_add_(new, 2 * l2)
        torch._foreach_div_(numerator, new)
        torch._foreach_copy_(params, numerator)
