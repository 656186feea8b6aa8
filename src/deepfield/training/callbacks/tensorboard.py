"""TensorBoard: Keras's event-file layout and tags, written by ``torch.utils.tensorboard``."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from deepfield import arguments
from deepfield.errors import DeepfieldError, flag, unknown_name
from deepfield.training.callbacks.base import Callback, Logs

# Keras arguments deepfield does not implement, with the value that means "off".
_UNSUPPORTED = {"write_images": False, "write_steps_per_second": False, "profile_batch": 0, "embeddings_freq": 0,
                "embeddings_metadata": None}


class TensorBoard(Callback):
    """Log the run for TensorBoard (``tensorboard --logdir LOG_DIR``), as Keras's ``TensorBoard``.

    Keras's layout and tags: ``LOG_DIR/train`` holds ``epoch_loss``, ``epoch_<metric>`` and
    ``epoch_learning_rate`` (the optimiser's rate at the epoch's end) at step ``epoch``;
    ``LOG_DIR/validation`` holds the ``val_`` logs under the same tags. With ``update_freq``
    ``"batch"`` or ``N``, ``batch_loss`` is written at step ``b`` (the global batch, from 1) when
    ``b`` is a multiple of ``N``: the batch's own loss (Keras logs the running mean), read from
    the device each time it is written; with ``"epoch"`` (the default) nothing happens per batch.
    ``histogram_freq=N`` writes a histogram of every weight (``<name>/histogram``) at epochs
    ``0, N, 2N, ...``; ``write_graph`` the traced graph of the model (in evaluation mode, on zeros
    of its declared input shape) when training begins.

    Needs the ``tensorboard`` package (``pip install tensorboard``); ``write_images``,
    ``write_steps_per_second``, ``profile_batch`` and the embeddings are not implemented.
    """

    writes_files = True  # rank 0 only in distributed training

    def __init__(self, log_dir: str | os.PathLike[str] = "logs", histogram_freq: int = 0, write_graph: bool = True,
                 update_freq: str | int = "epoch", **keras_options: Any) -> None:
        super().__init__()
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise DeepfieldError("TensorBoard needs the tensorboard package: pip install tensorboard") from None
        for key, value in keras_options.items():
            if key not in _UNSUPPORTED:
                raise unknown_name("TensorBoard argument", key, ["log_dir", "histogram_freq", "write_graph",
                                                                  "update_freq", *_UNSUPPORTED])
            if value != _UNSUPPORTED[key]:
                raise DeepfieldError(f"TensorBoard: {key} is not supported (deepfield writes scalars, weight "
                                     "histograms and the graph)")
        if update_freq != "epoch" and update_freq != "batch" and not arguments.is_integer(update_freq):
            raise DeepfieldError(f"TensorBoard: update_freq must be 'epoch', 'batch' or a positive integer, "
                                 f"got {update_freq!r}")
        self.log_dir = Path(log_dir)
        self.histogram_freq = arguments.integer("TensorBoard histogram_freq", histogram_freq, minimum=0)
        self.write_graph = flag("TensorBoard", "write_graph", write_graph)
        self.update_freq = update_freq
        self._writer_class = SummaryWriter
        self._writers: dict[str, Any] = {}
        self._batch = 0
        if update_freq != "epoch":  # a per-batch hook only when batches are logged (CallbackList sees it)
            self._every = 1 if update_freq == "batch" else int(update_freq)
            self.on_train_batch_end = self._write_batch

    def _writer(self, part: str) -> Any:
        if part not in self._writers:
            self._writers[part] = self._writer_class(log_dir=str(self.log_dir / part))
        return self._writers[part]

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self._batch = 0
        if self.write_graph:
            self._add_graph()

    def _add_graph(self) -> None:
        model = self.engine.model
        shape = next((tuple(m.input_shape) for m in model.modules() if getattr(m, "input_shape", None)), None)
        if shape is None:
            warnings.warn("TensorBoard: the model declares no input shape, so its graph is not written "
                          "(give input_shape=..., or write_graph=False)", stacklevel=2)
            return
        parameter = next(model.parameters(), None)
        example = torch.zeros((1, *shape), device=parameter.device if parameter is not None else None)
        was_training = model.training
        model.eval()  # tracing runs the model: no dropout draw, no batch-norm update
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's warnings about Python control flow
                self._writer("train").add_graph(model, example)
        except Exception as exc:  # a model the tracer cannot follow still trains and logs
            warnings.warn(f"TensorBoard: the model's graph could not be traced ({exc}); not written", stacklevel=2)
        finally:
            model.train(was_training)

    def _write_batch(self, batch: int, logs: Logs | None = None) -> None:
        self._batch += 1
        if self._batch % self._every == 0 and logs and "loss" in logs:
            self._writer("train").add_scalar("batch_loss", float(logs["loss"]), self._batch)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        logs = dict(logs or {})
        logs.pop("lr", None)  # written as Keras's epoch_learning_rate below
        train = self._writer("train")
        for key, value in logs.items():
            if not key.startswith("val_"):
                train.add_scalar(f"epoch_{key}", float(value), epoch)
        train.add_scalar("epoch_learning_rate", float(self.engine.learning_rate), epoch)
        validation = {key[4:]: value for key, value in logs.items() if key.startswith("val_")}
        for key, value in validation.items():
            self._writer("validation").add_scalar(f"epoch_{key}", float(value), epoch)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            for name, weight in self.engine.model.named_parameters():
                train.add_histogram(f"{name.replace('.', '/')}/histogram", weight.detach().float().cpu(), epoch)
        for writer in self._writers.values():
            writer.flush()

    def state_dict(self) -> dict[str, Any]:
        return {"batch": self._batch}  # a resumed run goes on numbering batch_loss steps

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._batch = int(state["batch"])

    def on_train_end(self, logs: Logs | None = None) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}
