"""The deepfield optimiser: a ``torch.optim.Optimizer`` with a Keras face.

Two ways to make one:

* Keras face: ``Adam(learning_rate=1e-3)`` is *unbound* (it holds only its
  hyperparameters); ``opt.bind(model.parameters())`` attaches the parameters
  later, which is what ``compile``/``fit`` do;
* torch face: ``Adam(model.parameters(), learning_rate=1e-3)`` binds at once.

Once bound it is an ordinary torch optimiser: ``param_groups``, ``state``,
``state_dict``/``load_state_dict`` and ``torch.optim.lr_scheduler`` all work.
Each hyperparameter lives in every param group under its Keras name, except the
learning rate, which is the group's ``"lr"`` so that torch schedulers can drive it.

Keras semantics kept on purpose (they differ from torch's built-ins):

* ``decay`` is the Keras 2 time decay ``lr_t = lr / (1 + decay * iterations)``,
  ``iterations`` being the number of steps already taken; ``learning_rate``
  stays the undecayed base rate (what schedulers and users set);
* ``weight_decay`` is Keras 3's decoupled decay ``w <- w - lr_t * wd * w``
  applied before the update, not torch's L2 term added to the gradient;
* ``clipnorm`` clips each gradient tensor on its own (Keras 3), ``clipvalue``
  clamps elementwise, ``global_clipnorm`` clips all gradients jointly.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, ClassVar

import torch
from torch.optim.optimizer import ParamsT

from deepfield.arguments import is_number
from deepfield.errors import DeepfieldError, flag, unknown_name
from deepfield.registry import Registry

# The learning rate is stored as torch's "lr" so that lr schedulers can drive it.
_TORCH_KEYS = {"learning_rate": "lr"}
# K.epsilon() in Keras 2, which the course's `epsilon=None` falls back to.
KERAS_EPSILON = 1e-7


class Optimizer(torch.optim.Optimizer):
    """Base of every deepfield optimiser; subclasses register under ``name``.

    Subclasses build a dict of their Keras-named hyperparameters (learning rate
    first) and pass it to ``__init__``; ``get_config`` returns the same keys.
    """

    name: ClassVar[str] = ""
    requires_closure: ClassVar[bool] = False
    registry: ClassVar[Registry[type[Optimizer]]] = Registry("optimizer", any_case=True, class_names=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            Optimizer.registry.add(cls.name, cls)

    def __init__(self, params: ParamsT | None, hyper: dict[str, Any], **keras2: Any) -> None:
        hyper = self._accept_keras2(hyper, keras2)
        check_non_negative(self, "learning_rate", hyper["learning_rate"])
        check_non_negative(self, "decay", hyper["decay"])
        self._hyper_names = tuple(hyper)
        self.defaults = {_TORCH_KEYS.get(k, k): v for k, v in hyper.items()}
        self.iterations = 0
        # Unbound until bind(): empty groups keep repr() and learning_rate working.
        self.param_groups: list[dict[str, Any]] = []
        self.state: defaultdict[torch.Tensor, Any] = defaultdict(dict)
        if params is not None:
            if isinstance(params, (int, float)):
                raise DeepfieldError(
                    f"{self.name}: the first positional argument is the parameters to "
                    f"optimise, got the number {params!r}; write learning_rate={params!r}"
                )
            self.bind(params)

    # -- binding ----------------------------------------------------------------
    @property
    def bound(self) -> bool:
        """Whether parameters are attached."""
        return bool(self.param_groups)

    def bind(self, params: ParamsT) -> Optimizer:
        """Attach ``params`` (tensors or torch param-group dicts); returns ``self``.

        Binding again to the very same tensors is a no-op, so a model can be
        compiled twice with one optimiser; other tensors need a fresh optimiser.
        """
        params = list(params)
        if self.bound:
            if _tensors(params) == _tensors(self.param_groups):
                return self
            raise DeepfieldError(
                f"{self.name}: this optimiser is already bound to other parameters; make a "
                f"new one, e.g. optimizers.get({{'class_name': {type(self).__name__!r}, "
                "'config': opt.get_config()}})"
            )
        if not params:
            raise DeepfieldError(
                f"{self.name}: got no parameters to optimise; a deepfield model creates its "
                "weights on its first batch, so build it before binding"
            )
        torch.optim.Optimizer.__init__(self, params, self.defaults)
        return self

    # -- Keras face -------------------------------------------------------------
    @property
    def learning_rate(self) -> float:
        """The undecayed base learning rate (``param_groups[0]["lr"]`` once bound)."""
        return self.param_groups[0]["lr"] if self.param_groups else self.defaults["lr"]

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        check_non_negative(self, "learning_rate", value)
        self.defaults["lr"] = value
        for group in self.param_groups:
            group["lr"] = value

    def decayed_learning_rate(self, group: dict[str, Any] | None = None) -> float:
        """The rate the next step uses: ``lr / (1 + decay * iterations)`` (Keras 2)."""
        group = group if group is not None else (self.param_groups or [self.defaults])[0]
        decay = group["decay"]
        return group["lr"] / (1.0 + decay * self.iterations) if decay else group["lr"]

    def last_learning_rate(self) -> float:
        """The rate the last step used, ``lr / (1 + decay * (iterations - 1))`` (the base rate
        before any step): what ``fit`` logs as ``lr`` at the end of an epoch."""
        group = (self.param_groups or [self.defaults])[0]
        decay, done = group["decay"], max(self.iterations - 1, 0)
        return group["lr"] / (1.0 + decay * done) if decay else group["lr"]

    def get_config(self) -> dict[str, Any]:
        """The constructor's keyword arguments, JSON-ready; ``get`` rebuilds from them."""
        return {
            k: self.learning_rate if k == "learning_rate" else self.defaults[k]
            for k in self._hyper_names
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        where = (
            f"bound to {len(_tensors(self.param_groups))} tensors" if self.bound else "unbound"
        )
        return f"{type(self).__name__}({args}) [{where}]"

    # -- torch face: state carries the step count -------------------------------
    def state_dict(self) -> dict[str, Any]:
        """torch's state dict plus ``"iterations"`` (so a resumed run decays the same)."""
        self._require_bound("state_dict")
        state = super().state_dict()
        state.update(self._extra_state())
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned, the step count included."""
        self._require_bound("load_state_dict")
        state_dict = dict(state_dict)
        extra = {k: state_dict.pop(k) for k in self._extra_state() if k in state_dict}
        super().load_state_dict(state_dict)
        self._set_extra_state(extra)

    def __getstate__(self) -> dict[str, Any]:
        # torch's keeps only defaults/state/param_groups, which would lose the step
        # count and config on copy.deepcopy or pickling; drop only torch's hook
        # dicts (they may hold unpicklable callables; __setstate__ recreates them).
        return {k: v for k, v in vars(self).items() if not k.startswith("_optimizer_")}

    def _extra_state(self) -> dict[str, Any]:
        return {"iterations": self.iterations}

    def _set_extra_state(self, extra: dict[str, Any]) -> None:
        self.iterations = int(extra.get("iterations", 0))

    # -- helpers for subclasses -------------------------------------------------
    def _require_bound(self, what: str) -> None:
        if not self.param_groups:
            raise DeepfieldError(
                f"{self.name}: {what} needs parameters; bind them first: "
                "opt.bind(model.parameters())"
            )

    def _check(self, ok: bool, what: str) -> None:
        """Raise the one-line error ``"<name>: <what>"`` unless ``ok``."""
        if not ok:
            raise DeepfieldError(f"{self.name}: {what}")

    def _accept_keras2(self, hyper: dict[str, Any], keras2: dict[str, Any]) -> dict[str, Any]:
        """Accept the course's Keras 2 spellings: ``lr=`` and ``epsilon=None``."""
        hyper = dict(hyper)
        for key in keras2:
            if key != "lr":
                raise unknown_name(f"{self.name} argument", key, [*hyper, "lr"])
        if "lr" in keras2:
            hyper["learning_rate"] = keras2["lr"]
        if "epsilon" in hyper and hyper["epsilon"] is None:
            hyper["epsilon"] = KERAS_EPSILON
        return hyper

    def _slots(
        self, params: list[torch.Tensor], name: str, fill: float = 0.0
    ) -> list[torch.Tensor]:
        """The per-parameter state tensors called ``name``, created as ``fill`` on first use."""
        slots = []
        for p in params:
            state = self.state[p]
            slot = state.get(name)
            if slot is None:
                slot = state[name] = torch.full_like(p, fill, memory_format=torch.preserve_format)
            slots.append(slot)
        return slots


class GradientOptimizer(Optimizer):
    """A first-order optimiser: the loop calls ``loss.backward(); opt.step()``.

    ``step`` gathers each group's parameters that have a gradient, clips the
    gradients (Keras order: clip, then weight decay, then the update) and calls
    ``_update`` once per group with lists of tensors, so subclasses update with
    ``torch._foreach_*`` ops as fast as torch's own foreach optimisers.
    """

    def __init__(self, params: ParamsT | None, hyper: dict[str, Any], **keras2: Any) -> None:
        clips = {k: hyper[k] for k in ("clipnorm", "clipvalue", "global_clipnorm")}
        given = [k for k, v in clips.items() if v is not None]
        self._check(
            len(given) <= 1, f"give only one of clipnorm, clipvalue, global_clipnorm; got {given}"
        )
        for key in given:
            value = clips[key]
            self._check(is_number(value) and value > 0, f"{key} must be > 0, got {value!r}")
        if hyper["weight_decay"] is not None:
            check_non_negative(self, "weight_decay", hyper["weight_decay"])
        super().__init__(params, hyper, **keras2)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One update from the gradients in ``p.grad``.

        ``closure``, as in torch, recomputes the loss and calls ``backward`` itself.
        """
        self._require_bound("step")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        batches = []
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                batches.append((group, params, [p.grad for p in params]))
        # One norm over every group's gradients, so it is read from the first group.
        global_clipnorm = self.param_groups[0]["global_clipnorm"]
        if global_clipnorm is not None and batches:
            every = [g for _, _, grads in batches for g in grads]
            scale = _global_clip_scale(every, global_clipnorm)
            batches = [(gr, ps, torch._foreach_mul(grads, scale)) for gr, ps, grads in batches]
        for group, params, grads in batches:
            grads = _clip(grads, group["clipnorm"], group["clipvalue"])
            lr = self.decayed_learning_rate(group)
            if group["weight_decay"]:
                torch._foreach_mul_(params, 1.0 - lr * group["weight_decay"])
            self._update(group, params, grads, lr)
        self.iterations += 1
        return loss

    def _update(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        lr: float,
    ) -> None:
        """Update ``params`` in place from ``grads`` at (decayed) rate ``lr``."""
        raise NotImplementedError


def _clip(
    grads: list[torch.Tensor], clipnorm: float | None, clipvalue: float | None
) -> list[torch.Tensor]:
    """Per-tensor clipping as Keras 3 does it; never writes into ``p.grad``."""
    if clipnorm is not None:
        # g * c / max(||g||, c): unchanged below the norm, rescaled to norm c above it.
        scales = torch._foreach_norm(grads)
        torch._foreach_clamp_min_(scales, clipnorm)
        torch._foreach_reciprocal_(scales)
        torch._foreach_mul_(scales, clipnorm)
        return torch._foreach_mul(grads, scales)
    if clipvalue is not None:
        clipped = torch._foreach_clamp_min(grads, -clipvalue)
        torch._foreach_clamp_max_(clipped, clipvalue)
        return clipped
    return grads


def _global_clip_scale(grads: list[torch.Tensor], clipnorm: float) -> torch.Tensor:
    """``c / max(global_norm, c)`` on the device (a NaN norm gives a NaN scale, as Keras)."""
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    return clipnorm / total.clamp_min(clipnorm)


def _tensors(params: list[Any]) -> list[int]:
    """The identities of the tensors in a param list or list of param groups."""
    out: list[int] = []
    for item in params:
        out.extend(id(p) for p in (item["params"] if isinstance(item, dict) else [item]))
    return out


def check_flag(opt: Optimizer, name: str, value: Any) -> bool:
    """``value`` must be ``True`` or ``False`` (see :func:`deepfield.errors.flag`)."""
    return flag(opt.name, name, value)


def check_unit_interval(opt: Optimizer, name: str, value: float, *, closed: bool) -> None:
    """``value`` must lie in [0, 1] (``closed``) or [0, 1) — momenta and decay rates."""
    ok = is_number(value) and 0 <= value and (value <= 1 if closed else value < 1)
    opt._check(ok, f"{name} must be in [0, 1{']' if closed else ')'}, got {value!r}")


def check_non_negative(opt: Optimizer, name: str, value: float) -> None:
    """``value`` must be a finite number >= 0 (epsilons, accumulators)."""
    ok = is_number(value) and 0 <= value and math.isfinite(value)
    opt._check(ok, f"{name} must be a number >= 0, got {value!r}")
