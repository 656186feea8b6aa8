"""Writing to disk while training: ModelCheckpoint (the model) and BackupAndRestore (everything).

Every file is written atomically (temporary file in the same folder, fsync,
``os.replace``), so a crash or a kill never leaves a half-written checkpoint.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from deepfield import arguments
from deepfield.errors import DeepfieldError, flag
from deepfield.training import distributed
from deepfield.models.serialization import WEIGHTS_FILE, has_architecture, save_model, save_weights
from deepfield.training.callbacks.base import Callback, Logs, Monitor
from deepfield.training.checkpoint import load_state, save_state


class ModelCheckpoint(Callback):
    """Save the model at the end of each epoch, or only when ``monitor`` improves.

    ``filepath`` may hold format fields filled from the epoch (1-based) and the logs,
    e.g. ``"checkpoints/epoch{epoch:02d}-{val_loss:.3f}"``. What is written there:

    * a path ending in ``.safetensors``: that file, with the weights (``state_dict``);
    * otherwise a folder: ``model.json`` + ``weights.safetensors`` for a deepfield
      ``Sequential`` (reloadable with ``load_model``), ``weights.safetensors`` alone
      for any other module or with ``save_weights_only=True``.

    Only ``save_freq="epoch"`` is supported. In distributed training it runs on rank 0 only.
    """

    writes_files = True

    def __init__(self, filepath: str | os.PathLike[str], monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool = False, mode: str = "auto",
                 save_freq: str = "epoch", initial_value_threshold: float | None = None):
        super().__init__()
        if save_freq != "epoch":
            raise DeepfieldError(f"ModelCheckpoint: only save_freq='epoch' is supported, got {save_freq!r}")
        self.filepath, self.verbose = str(filepath), verbose
        self.save_best_only = flag("ModelCheckpoint", "save_best_only", save_best_only)
        self.save_weights_only = flag("ModelCheckpoint", "save_weights_only", save_weights_only)
        self.monitor = Monitor(monitor, mode, 0.0, "ModelCheckpoint")
        self.initial_value_threshold = initial_value_threshold
        self.best = self.monitor.worst if initial_value_threshold is None else float(initial_value_threshold)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        logs = logs or {}
        try:
            path = Path(self.filepath.format(epoch=epoch + 1, **logs))
        except KeyError as exc:
            raise DeepfieldError(
                f"ModelCheckpoint: filepath {self.filepath!r} uses {exc}, which is not in the logs "
                f"(available: epoch, {', '.join(logs)})"
            ) from None
        if self.save_best_only:
            current = self.monitor.value(logs)
            if current is None:
                return
            if not self.monitor.improved(current, self.best):
                if self.verbose:
                    print(f"Epoch {epoch + 1}: {self.monitor.monitor} did not improve from {self.best:.5f}")
                return
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor.monitor} improved from {self.best:.5f} to "
                      f"{current:.5f}, saving model to {path}")
            self.best = current
        self.save(path)

    def save(self, path: Path) -> None:
        """Write the model to ``path`` (a ``.safetensors`` file or a folder, see the class)."""
        if path.suffix == ".safetensors":
            save_weights(self.model, path)
        elif has_architecture(self.model) and not self.save_weights_only:
            save_model(self.model, path)
        else:
            save_weights(self.model, path / WEIGHTS_FILE)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]


class BackupAndRestore(Callback):
    """Back up the whole training state so that a killed run continues where it stopped.

    The backup (``backup_dir/backup.safetensors``, see :mod:`deepfield.training.checkpoint`)
    holds the weights, the optimiser state, the global torch RNG states (dropout), the
    position (epoch and batch), the epoch's running loss, the history and every
    callback's state. When ``fit`` starts and a backup exists, it is loaded and training
    continues from that position with the same batch order, so the final weights equal
    those of an uninterrupted run with the same seed.

    Args:
        backup_dir: folder of the backup (created).
        save_freq: ``"epoch"`` (at each epoch end) or an int: every that many batches.
        delete_checkpoint: remove the backup when training ends normally.

    In distributed training it runs on every rank (the state gathers every rank's RNG);
    rank 0 alone reads the backup, hands it to the others, and writes it.
    """

    order = 100  # last: it saves the other callbacks' state after they have updated it
    FILENAME = "backup.safetensors"

    def __init__(self, backup_dir: str | os.PathLike[str], save_freq: str | int = "epoch",
                 delete_checkpoint: bool = True):
        super().__init__()
        if save_freq != "epoch":
            save_freq = arguments.integer("BackupAndRestore: save_freq", save_freq,
                                          expected="'epoch' or a positive int")
        self.path = Path(backup_dir) / self.FILENAME
        self.save_freq = save_freq
        self.delete_checkpoint = flag("BackupAndRestore", "delete_checkpoint", delete_checkpoint)
        self.restored_from: tuple[int, int] | None = None  # (epoch, batch) of the backup resumed from
        self._epoch = self._batches = 0

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.restored_from, self._batches = None, 0
        state = load_state(self.path) if distributed.is_main() and self.path.exists() else None
        state = distributed.broadcast_object(state)
        if state is not None:
            self.engine.load_training_state(state)
            self.restored_from = (state["epoch"], state["step"])
            if self.params.get("verbose") and distributed.is_main():
                print(f"resuming from the backup {self.path} {self._position()}", flush=True)

    def _position(self) -> str:
        """Where the restored run continues, as the progress display counts: ``at epoch 3/10[, after its batch 5]``."""
        epoch, step = self.restored_from or (0, 0)
        epochs = self.params["epochs"]
        if epoch >= epochs:
            return f"with all {epochs} epochs done"
        return f"at epoch {epoch + 1}/{epochs}" + (f", after its batch {step}" if step else "")

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        if self.save_freq == "epoch":
            return
        self._batches += 1
        if self._batches >= self.save_freq:
            self._batches = 0
            self._save(self.engine.training_state(self._epoch, batch + 1))

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if self.save_freq == "epoch":
            self._save(self.engine.training_state(epoch + 1, 0))

    def _save(self, state: dict[str, Any]) -> None:
        if distributed.is_main():
            save_state(self.path, state)

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.delete_checkpoint and distributed.is_main():
            self.path.unlink(missing_ok=True)

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self._batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._batches = state["batches"]
