"""Schedules: the learning rate (LearningRateScheduler per epoch, ReduceLROnPlateau) and the
KL term of variational layers (KLAnnealing)."""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from deepfield import arguments
from deepfield.arguments import is_number
from deepfield.errors import DeepfieldError
from deepfield.training.callbacks.base import Callback, Logs, Monitor


class LearningRateScheduler(Callback):
    """At the start of each epoch set the learning rate to ``schedule(epoch, lr)``.

    ``epoch`` counts from 0; ``lr`` is the current rate. A one-argument
    ``schedule(epoch)`` (the Keras 2 form) is accepted too.
    """

    def __init__(self, schedule: Callable[..., float], verbose: int = 0):
        super().__init__()
        if not callable(schedule):
            raise DeepfieldError(f"LearningRateScheduler needs a function schedule(epoch, lr), got {schedule!r}")
        self.schedule, self.verbose = schedule, verbose
        try:
            self._takes_lr = len(inspect.signature(schedule).parameters) >= 2
        except (TypeError, ValueError):  # builtins without a signature
            self._takes_lr = True

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        current = self.engine.learning_rate
        lr = self.schedule(epoch, current) if self._takes_lr else self.schedule(epoch)
        if not is_number(lr):
            raise DeepfieldError(f"LearningRateScheduler: schedule({epoch}) returned {lr!r}; expected a float")
        self.engine.learning_rate = float(lr)
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {float(lr)}.")


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` stalls for ``patience`` epochs.

    Keras semantics: an improvement must beat the best by ``min_delta``; after a
    reduction, ``cooldown`` epochs pass before waiting starts again; the rate never
    goes below ``min_lr``.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, verbose: int = 0,
                 mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0):
        super().__init__()
        if not 0.0 < factor < 1.0:
            raise DeepfieldError(f"ReduceLROnPlateau: factor must be in (0, 1), got {factor}")
        self.monitor = Monitor(monitor, mode, min_delta, "ReduceLROnPlateau")
        self.factor, self.patience, self.verbose = float(factor), int(patience), verbose
        self.cooldown, self.min_lr = int(cooldown), float(min_lr)
        self._reset()

    def _reset(self) -> None:
        self.best = self.monitor.worst
        self.wait = 0
        self.cooldown_counter = 0

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        current = self.monitor.value(logs)
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self.monitor.improved(current, self.best):
            self.best, self.wait = current, 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = self.engine.learning_rate
                if old > self.min_lr:
                    new = max(old * self.factor, self.min_lr)
                    self.engine.learning_rate = new
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.")
                    self.cooldown_counter, self.wait = self.cooldown, 0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait, "cooldown_counter": self.cooldown_counter}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.wait, self.cooldown_counter = state["best"], state["wait"], state["cooldown_counter"]


class KLAnnealing(Callback):
    """Ramp the KL term of variational layers up linearly over the first ``epochs`` epochs.

    In epoch ``e`` (from 0) each layer with a ``kl_scale`` attribute (the Bayesian layers of
    :mod:`deepfield.models.bayesian`) has ``kl_scale = min(1, (e + 1) / epochs)``: the network
    first fits the data, then the prior pulls the posteriors in (Blundell et al. 2015 §3.4;
    Sønderby et al. 2016's warm-up). Set from the epoch number, so a resumed run gets the
    same scale; back to 1 when training ends.
    """

    def __init__(self, epochs: int):
        super().__init__()
        if not arguments.is_integer(epochs):
            raise DeepfieldError(f"KLAnnealing needs a positive number of epochs, got {epochs!r}")
        self.epochs = int(epochs)

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._set(min(1.0, (epoch + 1) / self.epochs))

    def on_train_end(self, logs: Logs | None = None) -> None:
        self._set(1.0)

    def _set(self, scale: float) -> None:
        layers = [m for m in self.engine.model.modules() if hasattr(m, "kl_scale")]
        if not layers:
            raise DeepfieldError("KLAnnealing: the model has no variational (Bayesian) layer")
        for layer in layers:
            layer.kl_scale = scale
