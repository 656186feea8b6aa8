"""Stopping rules: EarlyStopping (patience on a monitored quantity) and TerminateOnNaN."""
from __future__ import annotations

import math
from typing import Any

import torch

from deepfield.errors import flag
from deepfield.training import distributed
from deepfield.training.callbacks.base import Callback, Logs, Monitor


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs (Keras 3 semantics).

    Args:
        monitor: a key of the epoch logs, e.g. ``"val_loss"`` or ``"val_accuracy"``.
        min_delta: smallest change that counts as an improvement.
        patience: epochs without improvement before stopping.
        mode: ``"auto"``, ``"min"`` or ``"max"`` (see :class:`Monitor`).
        baseline: the wait only restarts for values that also beat this.
        restore_best_weights: at the end of training, load the weights of the best epoch
            (kept as a device copy of the state dict).
        start_from_epoch: epochs of warm-up during which nothing is monitored.
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0, verbose: int = 0,
                 mode: str = "auto", baseline: float | None = None, restore_best_weights: bool = False,
                 start_from_epoch: int = 0):
        super().__init__()
        self.monitor = Monitor(monitor, mode, min_delta, "EarlyStopping")
        self.patience, self.verbose, self.baseline = int(patience), verbose, baseline
        self.restore_best_weights = flag("EarlyStopping", "restore_best_weights", restore_best_weights)
        self.start_from_epoch = int(start_from_epoch)
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best: float | None = None
        self.best_epoch = 0
        self.best_weights: dict[str, torch.Tensor] | None = None

    def _weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if epoch < self.start_from_epoch:
            return
        current = self.monitor.value(logs)
        if current is None:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self._weights(), epoch
        self.wait += 1
        if self.monitor.improved(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self._weights()
            if self.baseline is None or self.monitor.improved(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        return {"wait": self.wait, "stopped_epoch": self.stopped_epoch, "best": self.best,
                "best_epoch": self.best_epoch, "best_weights": self.best_weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.wait, self.stopped_epoch, self.best = state["wait"], state["stopped_epoch"], state["best"]
        self.best_epoch, weights = state["best_epoch"], state["best_weights"]
        device = next((p.device for p in self.model.parameters()), None)
        self.best_weights = None if weights is None else {k: v.to(device) for k, v in weights.items()}


class TrainingDiverged(RuntimeError):
    """Raised by ``TerminateOnNaN(raise_error=True)``: the loss of ``epoch`` (0-based), ``batch`` was ``loss``."""

    def __init__(self, epoch: int, batch: int | None, loss: float):
        where = f"epoch {epoch + 1}" + ("" if batch is None else f", batch {batch + 1}")
        super().__init__(f"training diverged at {where} (loss {loss})")
        self.epoch, self.batch, self.loss = epoch, batch, loss


class TerminateOnNaN(Callback):
    """Stop as soon as a batch loss is NaN or infinite (one host sync per batch while attached).

    ``raise_error``: raise :class:`TrainingDiverged` at once instead (as Keras 3's ``raise_error``), before
    the epoch ends, so that no checkpoint, backup or history row of the diverged epoch is written; an
    epoch whose ``loss`` or ``val_loss`` is not finite (weights spoiled by its last step) raises too.
    Under a process group every rank raises at the same batch.
    """

    order = -50  # before the callbacks that save (checkpoints, backup, CSV) at the end of an epoch

    def __init__(self, raise_error: bool = False):
        super().__init__()
        self.raise_error = raise_error
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        loss = (logs or {}).get("loss")
        bad = loss is not None and not bool(torch.isfinite(torch.as_tensor(loss)))
        if self.raise_error:
            if distributed.is_distributed():  # the same batch on every rank
                device = next((p.device for p in self.model.parameters()), torch.device("cpu"))
                bad = distributed.any_rank(bad, device)
            if bad:
                raise TrainingDiverged(self.epoch, batch, float(loss) if loss is not None else math.nan)
        elif bad:
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if not self.raise_error:
            return
        for key in ("loss", "val_loss"):
            value = (logs or {}).get(key)
            if value is not None and not math.isfinite(float(value)):
                raise TrainingDiverged(epoch, None, float(value))
