"""Nadam, Keras update rule (Dozat 2016 with Keras's momentum schedule)."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch.optim.optimizer import ParamsT

from deepfield.training.optimizers.base import GradientOptimizer, check_non_negative, check_unit_interval


class Nadam(GradientOptimizer):
    """Adam with Nesterov momentum, its momentum warmed up by a fixed schedule.

    At step ``t = iterations + 1``, with ``m``, ``v`` starting at zero and ``P_t`` the
    product ``u_1 u_2 ... u_t``::

        u_t = beta_1 * (1 - 0.5 * 0.96**t)
        m <- beta_1 * m + (1 - beta_1) * g
        v <- beta_2 * v + (1 - beta_2) * g**2
        m_hat = u_{t+1} * m / (1 - P_{t+1}) + (1 - u_t) * g / (1 - P_t)
        w <- w - lr * m_hat / (sqrt(v / (1 - beta_2**t)) + epsilon)

    Written here rather than through ``torch.optim.NAdam``, whose rule is this one only with
    ``momentum_decay=1`` (its default 0.004 stretches the schedule 250 times): torch keeps a
    step count and ``P`` per tensor, as tensors read back to the host every step (and moved
    to the parameters' device by ``load_state_dict``, syncing each tensor each step after a
    resume); Keras keeps one product for all variables, from the global step, as here: a
    host float, so a tensor without a gradient at some step changes nothing for the others.

    Args:
        params: the tensors to optimise (torch face) or ``None`` (bind later).
        learning_rate: default 0.001 (a number or a schedule).
        beta_1, beta_2: decay rates of the moments, in [0, 1) (0.9, 0.999).
        epsilon: default 1e-7 (``None`` means 1e-7).
        clipnorm, clipvalue, global_clipnorm, weight_decay, decay: see ``base``.
    """

    name = "nadam"

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
        self._products: dict[float, tuple[int, float]] = {}  # beta_1 -> (t, P_t) of the last step
        super().__init__(
            params,
            dict(
                learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, clipnorm=clipnorm,
                clipvalue=clipvalue, global_clipnorm=global_clipnorm, weight_decay=weight_decay, decay=decay,
            ),
            **keras2,
        )
        check_non_negative(self, "epsilon", self.defaults["epsilon"])

    def _momentum_product(self, beta_1: float, t: int) -> float:
        """``P_t``, from the cached ``P_{t-1}`` in the loop (one product a step), else recomputed
        (after a resume); per ``beta_1``, which param groups may set apart."""
        done, product = self._products.get(beta_1, (0, 1.0))
        if done != t:
            start = done + 1 if done == t - 1 else 1
            product = product if start > 1 else 1.0
            for k in range(start, t + 1):
                product *= beta_1 * (1.0 - 0.5 * 0.96**k)
            self._products[beta_1] = (t, product)
        return product

    def _update(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        lr: float,
    ) -> None:
        beta_1, beta_2 = group["beta_1"], group["beta_2"]
        t = self.iterations + 1
        u_t, u_next = beta_1 * (1.0 - 0.5 * 0.96**t), beta_1 * (1.0 - 0.5 * 0.96 ** (t + 1))
        product = self._momentum_product(beta_1, t)
        m = self._slots(params, "momentum")
        v = self._slots(params, "velocity")
        torch._foreach_lerp_(m, grads, 1 - beta_1)
        torch._foreach_mul_(v, beta_2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - beta_2)
        denominator = torch._foreach_sqrt(v)
        torch._foreach_div_(denominator, math.sqrt(1 - beta_2**t))
        torch._foreach_add_(denominator, group["epsilon"])
        torch._foreach_addcdiv_(params, m, denominator, value=-lr * u_next / (1 - product * u_next))
        torch._foreach_addcdiv_(params, grads, denominator, value=-lr * (1 - u_t) / (1 - product))
