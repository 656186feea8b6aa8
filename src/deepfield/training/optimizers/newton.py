"""Newton's method with the exact Hessian: the course's ``W <- W - lambda H^-1 grad f``.

For small networks only: the Hessian is a dense ``n x n`` matrix over all ``n``
parameters, computed exactly by differentiating the gradient once more (batched
reverse mode), and solved by Cholesky in float64. Two safeguards make it usable
away from a minimum, where ``H`` need not be positive definite:

* Levenberg-Marquardt damping: solve ``(H + mu I) d = -g``; ``mu`` starts at
  ``damping``, grows tenfold whenever ``H + mu I`` is not positive definite or a
  step fails to lower the loss, and shrinks tenfold (not below ``damping``)
  after a full step that succeeds;
* a backtracking (Armijo) line search along ``d``, starting at the learning rate.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.optim.optimizer import ParamsT
from torch.overrides import TorchFunctionMode

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.training.optimizers.base import Optimizer, check_flag, check_non_negative

# Rows of the Hessian computed per batched backward pass: bounds the memory of
# the vmapped backward (which holds this many copies of the activations' grads).
_ROWS_PER_PASS = 256
_ARMIJO = 1e-4  # the sufficient-decrease constant of the line search
_HALVINGS = 30  # backtracking tries before a step counts as failed
_MAX_DAMPING_RAISES = 60


class Newton(Optimizer):
    """Damped Newton with line search; the loop calls ``opt.step(closure)``.

    ``closure()`` returns the loss tensor. The optimiser differentiates it itself,
    twice, and calls it again (under ``no_grad``) to try steps; a torch-style
    closure that calls ``zero_grad()`` and ``loss.backward()`` works as it is (its
    ``backward`` calls are skipped: they would free the graph the Hessian needs).
    After ``step``, ``p.grad`` holds the gradient at the point the step started from.

    Args:
        params: the tensors to optimise (torch face) or ``None`` (bind later);
            all are optimised jointly, as one parameter group.
        learning_rate: the step multiplier ``lambda`` (1.0 is the pure Newton
            step); with ``line_search`` it is the first step length tried.
        damping: the smallest Levenberg-Marquardt ``mu`` (0 allows pure Newton).
        line_search: backtrack (halve the step) until the loss falls enough.
        max_params: refuse networks with more parameters (memory is ``8 n**2`` bytes).
        decay: Keras 2 time decay of the learning rate, as the other optimisers.
    """

    name = "newton"
    requires_closure = True

    def __init__(
        self,
        params: ParamsT | None = None,
        learning_rate: float = 1.0,
        damping: float = 1e-4,
        line_search: bool = True,
        max_params: int = 5000,
        *,
        decay: float = 0.0,
        **keras2: Any,
    ) -> None:
        check_non_negative(self, "damping", damping)
        self._check(
            arguments.is_integer(max_params, 1, math.inf),
            f"max_params must be a positive integer, got {max_params!r}",
        )
        self._damping_now = float(damping)
        super().__init__(
            params,
            dict(
                learning_rate=learning_rate, damping=damping, line_search=check_flag(self, "line_search", line_search),
                max_params=int(max_params), decay=decay,
            ),
            **keras2,
        )

    def bind(self, params: ParamsT) -> Newton:
        """Attach ``params``; fails at once when the dense Hessian would be too big."""
        super().bind(params)
        self._check(
            len(self.param_groups) == 1,
            f"optimises all parameters jointly; give it one parameter group, "
            f"not {len(self.param_groups)}",
        )
        self._trainable()
        return self

    def step(  # type: ignore[override]
        self, closure: Callable[[], torch.Tensor] | None = None
    ) -> torch.Tensor:
        """One damped Newton step; returns the loss before it (detached)."""
        if closure is None:
            raise DeepfieldError(
                "newton: step() needs a closure returning the loss (computed with grad "
                "enabled, without backward)"
            )
        self._require_bound("step")
        group = self.param_groups[0]
        params = self._trainable()
        with torch.enable_grad():
            with _SkipBackward():
                loss = closure()
            grad, hessian = _gradient_and_hessian(loss, params)
        start = float(loss.detach())
        finite = bool(grad.isfinite().all()) and bool(hessian.isfinite().all())
        if not (finite and math.isfinite(start)):
            raise DeepfieldError(
                f"newton: the loss, gradient or Hessian is not finite at iteration "
                f"{self.iterations} (loss = {start})"
            )
        hessian, grad = hessian.double(), grad.double()
        floor = group["damping"]
        scale = float(hessian.diagonal().abs().mean())
        mu, chol = self._factor(hessian, max(self._damping_now, floor), scale)
        direction = torch.cholesky_solve(-grad[:, None], chol)[:, 0]
        slope = float(grad @ direction)  # < 0: d is a descent direction

        origin = [p.detach().clone() for p in params]
        t = self.decayed_learning_rate(group)
        tries = _HALVINGS if group["line_search"] else 1
        for attempt in range(tries):
            _move(params, origin, direction, t)
            with torch.no_grad(), _SkipBackward():
                trial = float(closure())
            if trial <= start + _ARMIJO * t * slope:  # False for NaN, too
                if attempt == 0:
                    mu = max(mu / 10, floor)
                break
            t /= 2
        else:  # no acceptable step: stay put, lean further towards gradient descent
            _move(params, origin, direction, 0.0)
            mu = _raised(mu, scale)
        self._damping_now = mu
        self.iterations += 1
        _set_gradients(params, grad)
        return loss.detach()

    def _trainable(self) -> list[torch.Tensor]:
        """The parameters that require grad, refused when the Hessian would be too big."""
        params = [p for p in self.param_groups[0]["params"] if p.requires_grad]
        n = sum(p.numel() for p in params)
        limit = self.param_groups[0]["max_params"]
        if n > limit:
            raise DeepfieldError(
                f"newton needs a dense {n:,} x {n:,} Hessian; this network has {n:,} "
                f"parameters (max_params={limit:,}); use a first-order optimiser such as "
                f"'adam', or raise max_params if {8 * n * n / 1e9:.1f} GB of memory is fine"
            )
        return params

    def _factor(
        self, hessian: torch.Tensor, mu: float, scale: float
    ) -> tuple[float, torch.Tensor]:
        """The first ``mu`` tried that makes ``H + mu I`` positive definite, and its Cholesky factor."""
        eye = torch.eye(hessian.shape[0], dtype=hessian.dtype, device=hessian.device)
        for _ in range(_MAX_DAMPING_RAISES):
            chol, info = torch.linalg.cholesky_ex(hessian + mu * eye)
            if int(info) == 0:
                return mu, chol
            mu = _raised(mu, scale)
        raise DeepfieldError(
            f"newton: the Hessian could not be made positive definite (damping reached {mu:.3g})"
        )

    def _extra_state(self) -> dict[str, Any]:
        return {**super()._extra_state(), "damping_now": self._damping_now}

    def _set_extra_state(self, extra: dict[str, Any]) -> None:
        super()._set_extra_state(extra)
        self._damping_now = float(extra.get("damping_now", self.defaults["damping"]))


def _gradient_and_hessian(
    loss: torch.Tensor, params: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(g, H)``: the flat gradient ``(n,)`` and the symmetric Hessian ``(n, n)`` of ``loss``."""
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    flat = torch.cat([_flat(g, p) for g, p in zip(grads, params)])
    n = flat.numel()
    if not flat.requires_grad:  # the loss is linear in the parameters
        return flat.detach(), flat.new_zeros(n, n)
    eye = torch.eye(n, dtype=flat.dtype, device=flat.device)
    blocks = []
    for start in range(0, n, _ROWS_PER_PASS):
        seeds = eye[start : start + _ROWS_PER_PASS]
        rows = torch.autograd.grad(
            flat, params, grad_outputs=seeds, is_grads_batched=True,
            retain_graph=True, allow_unused=True,
        )
        blocks.append(
            torch.cat([_flat(r, p, batch=len(seeds)) for r, p in zip(rows, params)], dim=1)
        )
    hessian = torch.cat(blocks)
    # Exact up to rounding; symmetrising makes the Cholesky test meaningful.
    return flat.detach(), (hessian + hessian.T).detach() / 2


class _SkipBackward(TorchFunctionMode):
    """Within (this thread only): ``loss.backward()`` and ``torch.autograd.backward`` do nothing.

    A torch-style closure calls them; run, they would free the graph that the Hessian is
    computed from, and under ``no_grad`` (the line search) fail on a loss without a graph.
    """

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        if func is torch.Tensor.backward or func is torch.autograd.backward:
            return None
        return func(*args, **(kwargs or {}))


def _set_gradients(params: list[torch.Tensor], grad: torch.Tensor) -> None:
    """``p.grad`` of each parameter from the flat gradient ``grad`` (float64), in its dtype."""
    offset = 0
    for p in params:
        p.grad = grad[offset : offset + p.numel()].view_as(p).to(p.dtype).clone()
        offset += p.numel()


def _flat(
    value: torch.Tensor | None, param: torch.Tensor, batch: int | None = None
) -> torch.Tensor:
    """``value`` flattened per row (zeros where autograd found no dependence)."""
    shape = (param.numel(),) if batch is None else (batch, param.numel())
    if value is None:
        return param.new_zeros(shape)
    return value.reshape(shape)


def _move(
    params: list[torch.Tensor], origin: list[torch.Tensor], direction: torch.Tensor, t: float
) -> None:
    """Set ``params`` to ``origin + t * direction`` (``direction`` flat, float64)."""
    offset = 0
    with torch.no_grad():
        for p, p0 in zip(params, origin):
            step = direction[offset : offset + p.numel()].view_as(p).to(p.dtype)
            p.copy_(p0 + t * step)
            offset += p.numel()


def _raised(mu: float, scale: float) -> float:
    """The next, larger damping: tenfold, and at least a millionth of the Hessian's scale."""
    return max(10 * mu, 1e-6 * scale, 1e-12)
