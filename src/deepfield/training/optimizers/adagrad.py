"""Adagrad, Keras update rule (epsilon inside the square root)."""
from __future__ import annotations

from typing import Any

import torch
from torch.optim.optimizer import ParamsT

from deepfield.training.optimizers.base import GradientOptimizer, check_non_negative


class Adagrad(GradientOptimizer):
    """Per-weight rates shrinking with the history of squared gradients.

    With the accumulator ``G`` starting at ``initial_accumulator_value``::

        G <- G + g**2
        w <- w - lr * g / sqrt(G + epsilon)

    This is the course's formula. ``torch.optim.Adagrad`` differs: it puts
    epsilon outside the root (``sqrt(G) + eps``) and starts ``G`` at 0.

    Args:
        params: the tensors to optimise (torch face) or ``None`` (bind later).
        learning_rate: default 0.001 (the Duchi et al. paper's form is 1.0).
        initial_accumulator_value: starting ``G``, >= 0 (default 0.1).
        epsilon: added to ``G`` under the root (default 1e-7; ``None`` means 1e-7).
        clipnorm, clipvalue, global_clipnorm, weight_decay, decay: see ``base``.
    """

    name = "adagrad"

    def __init__(
        self,
        params: ParamsT | None = None,
        learning_rate: float = 0.001,
        initial_accumulator_value: float = 0.1,
        epsilon: float | None = 1e-7,
        *,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        weight_decay: float | None = None,
        decay: float = 0.0,
        **keras2: Any,
    ) -> None:
        check_non_negative(self, "initial_accumulator_value", initial_accumulator_value)
        super().__init__(
            params,
            dict(
                learning_rate=learning_rate, initial_accumulator_value=initial_accumulator_value,
                epsilon=epsilon, clipnorm=clipnorm, clipvalue=clipvalue,
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
        accumulator = self._slots(params, "accumulator", fill=group["initial_accumulator_value"])
        torch._foreach_addcmul_(accumulator, grads, grads)
        denominator = torch._foreach_add(accumulator, group["epsilon"])
        torch._foreach_sqrt_(denominator)
        torch._foreach_addcdiv_(params, grads, denominator, value=-lr)
