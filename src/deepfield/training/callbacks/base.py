"""The callback contract: Keras's hook names, called by the engine at fixed points.

A callback overrides the hooks it needs. ``self.model`` is the module being trained
(set ``self.model.stop_training = True`` to stop after the current batch, as in Keras)
and ``self.engine`` the :class:`~deepfield.training.engine.Engine` running it
(``self.engine.optimizer``, ``self.engine.learning_rate``).

Order of calls in ``fit``::

    on_train_begin
      on_epoch_begin(epoch)
        on_train_batch_begin(batch) -> forward, loss, backward -> on_after_backward(model)
          -> optimiser step -> on_train_batch_end(batch, {"loss": <0-d tensor>, "size": n})
      [validation: on_test_begin, on_test_end]
      on_epoch_end(epoch, logs)      logs: {"loss", metrics..., "val_loss", "val_"metrics..., "lr"}
                                     ("lr": the rate of the epoch's last step, decay included)
    on_train_end

Per-batch hooks are called only on callbacks that override them, so a callback
that does not look at batches costs nothing per step. The batch ``loss`` is the
batch's own loss as a device tensor (not Keras's running mean, and not synced to
the host: call ``float()`` on it only if you need the number).

A callback whose state matters for resuming returns it from ``state_dict()`` (a tree
of numbers, strings, lists, dicts and tensors) and takes it back in
``load_state_dict``; :class:`BackupAndRestore` saves and restores them all.

Distributed training (:mod:`deepfield.training.distributed`): every rank runs the
callbacks on the same, all-reduced epoch logs, except those whose class sets
``writes_files = True`` (CSVLogger, ModelCheckpoint, a callback of yours that writes):
they run on rank 0 only, so one process writes each file. A callback that must run on
every rank but write once (BackupAndRestore) leaves it False and checks
``distributed.is_main()`` around its writes.
"""
from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

from deepfield.errors import DeepfieldError
from deepfield.training import distributed

if TYPE_CHECKING:
    import torch

    from deepfield.training.engine import Engine

Logs = dict[str, Any]


class Callback:
    """Base class: every hook does nothing. ``order`` sorts callbacks (lower runs first)."""

    order: ClassVar[int] = 0
    writes_files: ClassVar[bool] = False  # True: under a process group, run on rank 0 only

    def __init__(self) -> None:
        self.model: nn.Module | None = None
        self.engine: Engine | None = None
        self.params: dict[str, Any] = {}

    def set_engine(self, engine: Engine) -> None:
        self.engine = engine
        self.model = engine.model

    def set_params(self, params: dict[str, Any]) -> None:
        """Keras's ``self.params`` of the run: ``{"verbose", "epochs", "steps"}`` in ``fit``."""
        self.params = params

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        assert self.engine is not None, "callback used outside fit"
        return self.engine.optimizer

    # -- hooks (Keras names) ------------------------------------------------------
    def on_train_begin(self, logs: Logs | None = None) -> None: ...
    def on_train_end(self, logs: Logs | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None: ...
    def on_train_batch_begin(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_test_begin(self, logs: Logs | None = None) -> None: ...
    def on_test_end(self, logs: Logs | None = None) -> None: ...

    def on_after_backward(self, model: nn.Module) -> None:
        """After ``backward``, before the optimiser step: gradients are in ``p.grad`` (unscaled)."""

    # -- resumable state ------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back what ``state_dict`` returned (called after ``on_train_begin``)."""


def _overrides(callback: Callback, hook: str) -> bool:
    """Whether ``callback`` has its own ``hook``: in its class, or set on it (``cb.on_epoch_end = f``)."""
    return getattr(type(callback), hook) is not getattr(Callback, hook) or hook in vars(callback)


class CallbackList:
    """The callbacks of one fit/evaluate, sorted by ``order``, with per-batch hook lists precomputed."""

    def __init__(self, callbacks: list[Callback], engine: Engine, params: dict[str, Any] | None = None):
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise DeepfieldError(f"callbacks must be deepfield Callback instances, got {type(cb).__name__}")
            cb.set_engine(engine)
            cb.set_params(dict(params or {}))
        if not distributed.is_main():
            callbacks = [cb for cb in callbacks if not cb.writes_files]
        self.callbacks = sorted(callbacks, key=lambda cb: cb.order)
        self.batch_begin = [cb for cb in self.callbacks if _overrides(cb, "on_train_batch_begin")]
        self.batch_end = [cb for cb in self.callbacks if _overrides(cb, "on_train_batch_end")]
        self.after_backward = [cb for cb in self.callbacks if _overrides(cb, "on_after_backward")]

    def call(self, hook: str, *args: Any) -> None:
        """Call an epoch-level hook on every callback, in order."""
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

    def keys(self) -> list[str]:
        """A stable key per callback: its class name, ``#2``, ``#3``... for repeats."""
        seen: dict[str, int] = {}
        keys = []
        for cb in self.callbacks:
            name = type(cb).__name__
            seen[name] = seen.get(name, 0) + 1
            keys.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
        return keys

    def state_dict(self) -> dict[str, Any]:
        return {key: cb.state_dict() for key, cb in zip(self.keys(), self.callbacks)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore each callback found in ``state``; callbacks new since the backup start fresh."""
        for key, cb in zip(self.keys(), self.callbacks):
            if key in state:
                cb.load_state_dict(state[key])


class History(Callback):
    """Records the epoch logs: ``history.history["val_loss"][k]`` is epoch ``history.epoch[k]``'s value."""

    order = -100  # first, so other callbacks see this epoch recorded

    def __init__(self) -> None:
        super().__init__()
        self.epoch: list[int] = []
        self.history: dict[str, list[float]] = {}

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": list(self.epoch), "history": {k: list(v) for k, v in self.history.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = list(state["epoch"])
        self.history = {k: list(v) for k, v in state["history"].items()}


class Monitor:
    """Which way a logged quantity improves, as Keras decides it.

    ``mode="auto"`` means "max" for names containing acc, auc, precision, recall or f1
    and "min" otherwise. ``min_delta`` is the smallest change that counts (its sign
    is ignored).
    """

    _MAXIMISED = ("acc", "auc", "precision", "recall", "f1")

    def __init__(self, monitor: str, mode: str = "auto", min_delta: float = 0.0, owner: str = "callback"):
        if mode not in ("auto", "min", "max"):
            raise DeepfieldError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}")
        if mode == "auto":
            mode = "max" if any(s in monitor for s in self._MAXIMISED) else "min"
        self.monitor, self.mode, self.min_delta, self.owner = monitor, mode, abs(float(min_delta)), owner

    @property
    def worst(self) -> float:
        return math.inf if self.mode == "min" else -math.inf

    def improved(self, current: float, reference: float | None) -> bool:
        """``current`` beats ``reference`` by more than ``min_delta`` (``None``: anything finite does;
        a NaN or infinite value never improves)."""
        if not math.isfinite(current):
            return False
        if reference is None:
            return True
        if self.mode == "min":
            return current < reference - self.min_delta
        return current > reference + self.min_delta

    def value(self, logs: Logs | None) -> float | None:
        """The monitored value from epoch ``logs``, warning (as Keras) when it is absent."""
        value = (logs or {}).get(self.monitor)
        if value is None:
            warnings.warn(
                f"{self.owner}: {self.monitor!r} is not in the logs (available: {', '.join(logs or {})}); "
                "it does nothing this epoch", stacklevel=3,
            )
            return None
        return float(value)
