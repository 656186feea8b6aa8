"""The Keras face: ``compile`` / ``fit`` / ``evaluate`` / ``predict`` / ``save`` on torch modules.

>>> model = Sequential([Dense(64, activation="relu"), Dense(1)], input_shape=(10,))
>>> model.compile(optimizer="adam", loss="mse", metrics=["mae"])
>>> history = model.fit(x, y, epochs=20, validation_split=0.2, seed=0)
>>> model.evaluate(x_test, y_test)        # {"loss": ..., "mae": ...}

Any other module gets the same face by wrapping: ``Model(my_module).compile(...).fit(...)``.
The model stays an ``nn.Module`` throughout; ``compile`` only attaches an
:class:`~deepfield.training.engine.Engine`, which holds the loss, optimiser and metrics.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from deepfield.errors import DeepfieldError
from deepfield.models import functional as models_functional
from deepfield.models import keras_files
from deepfield.models.packed import Packed
from deepfield.models import sequential as models_sequential
from deepfield.models.serialization import (WEIGHTS_FILE, load_network, load_weights, save_model, save_weights,
                                            warn_if_run)
from deepfield.models.trainable import Trainable
from deepfield.training import structures
from deepfield.training.callbacks import History
from deepfield.training.engine import Engine

S = TypeVar("S", bound="Sequential")
K = TypeVar("K", bound="KerasModelMixin")


class KerasModelMixin(Trainable):
    """Keras's training methods for an ``nn.Module`` subclass (put it first among the bases).

    ``model.stop_training`` (set by callbacks) and ``model.history`` (the last fit's
    :class:`History`) behave as in Keras; so does ``model.trainable = False``
    (:mod:`deepfield.models.trainable`).
    """

    stop_training: bool = False
    history: History | None = None

    def compile(self: K, optimizer: Any = "rmsprop", loss: Any = None, metrics: Any = None, *,
                device: str | torch.device | None = None, precision: str | None = "auto",
                channels_last: bool | str = "auto", jit_compile: bool | str = "auto") -> K:
        """Choose loss, optimiser and metrics (names are checked now); returns the model.

        ``jit_compile`` is Keras's (here ``torch.compile``); ``device`` (default: cuda → mps →
        cpu), ``precision`` (``"fp32"``, ``"bf16"``, ``"fp16"``) and ``channels_last`` are
        deepfield's additions; ``"auto"`` picks what is fastest on the device (see :class:`Engine`).
        """
        self._engine = Engine(self, loss=loss, optimizer=optimizer, metrics=metrics,  # type: ignore[arg-type]
                              device=device, precision=precision, channels_last=channels_last,
                              jit_compile=jit_compile)
        return self

    @property
    def engine(self) -> Engine:
        """The engine ``compile`` made; an error if the model is not compiled."""
        engine = self.__dict__.get("_engine")
        if engine is None:
            raise DeepfieldError("the model is not compiled: call model.compile(optimizer=..., loss=...) first")
        return engine

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.engine.optimizer

    def fit(self, x: Any = None, y: Any = None, **kwargs: Any) -> History:
        """Train; arguments and defaults as :meth:`Engine.fit` (Keras's, plus ``seed``)."""
        self.history = self.engine.fit(x, y, **kwargs)
        return self.history

    def evaluate(self, x: Any = None, y: Any = None, **kwargs: Any) -> dict[str, float]:
        """``{"loss": ..., "<metric>": ...}`` on ``(x, y)``; see :meth:`Engine.evaluate`."""
        return self.engine.evaluate(x, y, **kwargs)

    def predict(self, x: Any, **kwargs: Any) -> np.ndarray:
        """Outputs for ``x`` as a numpy array; works before ``compile`` (on the model's device)."""
        engine = self.__dict__.get("_engine")
        if engine is None:
            device = next((p.device for p in self.parameters()), None)  # type: ignore[attr-defined]
            engine = Engine(self, device=device)  # type: ignore[arg-type]
        return engine.predict(x, **kwargs)

    def save_weights(self, path: str | os.PathLike[str]) -> None:
        """Write the ``state_dict`` to a safetensors file (atomically)."""
        save_weights(self, path)  # type: ignore[arg-type]

    def load_weights(self, path: str | os.PathLike[str]) -> None:
        """Load a safetensors weights file (names and shapes must match), or the weights Keras saved
        (``.weights.h5``, ``.h5``, ``.keras``) of a model built the same way
        (:func:`~deepfield.models.keras_files.load_keras_weights`)."""
        if str(path).endswith((".h5", ".keras")):
            keras_files.load_keras_weights(self, path)  # type: ignore[arg-type]
        else:
            load_weights(self, path)  # type: ignore[arg-type]

    def save_keras(self, path: str | os.PathLike[str]) -> Path:
        """Write a Keras 3 ``.keras`` archive that ``keras.saving.load_model`` reads, with equal outputs:
        channels last (Keras's default), so the Keras model takes ``(N, H, W, C)``
        (:func:`~deepfield.models.keras_files.save_keras`)."""
        return keras_files.save_keras(self, path)  # type: ignore[arg-type]


class Sequential(KerasModelMixin, models_sequential.Sequential):
    """The deepfield ``Sequential`` with the Keras training face.

    ``save(folder)`` writes ``model.json`` + ``weights.safetensors``;
    ``Sequential.load(folder)`` rebuilds it (no code is executed from the files).
    """

    def save(self, folder: str | os.PathLike[str]) -> Path:
        return save_model(self, folder)

    @classmethod
    def load(cls: type[S], folder: str | os.PathLike[str], *, trust: bool = False) -> S:
        """The network saved in ``folder``; on a run folder it warns that this is the bare network
        (``deepfield.load_run(folder).predict`` applies the run's normalisation, as the CLI does).
        ``trust``: load a model.json without checksums (written by hand or by another program)."""
        warn_if_run(folder)
        return load_network(folder, cls, trust=trust)


def _functional_arguments(args: tuple, kwargs: dict) -> bool:
    """Whether ``Model(...)`` was called as Keras's functional constructor ``Model(inputs, outputs)``."""
    return len(args) == 2 or (len(args) == 1 and "outputs" in kwargs) or ("inputs" in kwargs and "outputs" in kwargs)


class Model(KerasModelMixin, nn.Module):
    """Any ``nn.Module`` with the Keras training face: ``Model(my_module).compile(...).fit(...)``.

    ``forward`` calls the wrapped module unchanged; its parameters are this model's
    (``state_dict`` keys gain the prefix ``module.``). Only weights can be saved: the
    architecture is Python code, rebuilt by the user, then ``Model.load(folder, module)``.

    ``Model(inputs, outputs)`` (or ``Model(inputs=..., outputs=...)``) makes a :class:`Functional`
    instead, as Keras's ``Model`` does.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls is Model and _functional_arguments(args, kwargs):
            return super().__new__(Functional)  # Python then runs Functional.__init__(*args, **kwargs)
        return super().__new__(cls)

    def __init__(self, module: nn.Module):
        super().__init__()
        if not isinstance(module, nn.Module):
            raise DeepfieldError(f"Model wraps a torch.nn.Module, got {type(module).__name__}")
        self.module = module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``folder/weights.safetensors``."""
        path = Path(folder) / WEIGHTS_FILE
        save_weights(self, path)
        return Path(folder)

    @classmethod
    def load(cls, folder: str | os.PathLike[str], module: nn.Module) -> Model:
        """``module`` (freshly built by the user) wrapped, with the weights saved in ``folder``;
        on a run folder it warns that this is the bare network (see :meth:`Sequential.load`)."""
        warn_if_run(folder)
        model = cls(module)
        load_weights(model, Path(folder) / WEIGHTS_FILE)
        return model


class Functional(Model, models_functional.Functional):
    """A functional model (:class:`deepfield.models.functional.Functional`) with the Keras training face.

    ``df.Model(inputs, outputs)`` returns one. ``compile`` takes a loss, a list of losses (one per
    output) or a dict by output name, ``loss_weights`` (list or dict) and metrics per output (a
    list with one entry per output, or a dict), as Keras 3 does; ``fit``/``evaluate``/``predict``
    take arrays, lists or dicts (by input and output name). ``save(folder)`` writes ``model.json``
    (the graph) + ``weights.safetensors``; ``Functional.load(folder)`` rebuilds it.
    """

    def __init__(self, inputs: Any = None, outputs: Any = None, name: str | None = None):
        models_functional.Functional.__init__(self, inputs, outputs, name=name)

    forward = models_functional.Functional.forward

    @property
    def _several(self) -> bool:
        """Whether data go through the engine packed (several inputs or outputs); else as for a Sequential."""
        return len(self.input_names) > 1 or len(self.output_names) > 1

    def compile(self, optimizer: Any = "rmsprop", loss: Any = None, metrics: Any = None,  # type: ignore[override]
                loss_weights: Any = None, **kwargs: Any) -> Functional:
        """As :meth:`KerasModelMixin.compile`, with a loss, metrics and ``loss_weights`` per output
        (:mod:`deepfield.training.structures`)."""
        names = self.output_names
        if len(names) == 1:  # one output: as a Sequential (a dict or list by output is its one entry)
            loss = structures.weighted(structures.one_output(loss, names, "loss"),
                                       structures.one_output(loss_weights, names, "loss_weights"))
            return super().compile(optimizer, loss, structures.one_output(metrics, names, "metrics", many=True),
                                   **kwargs)
        total = None if loss is None else structures.output_loss(names, loss, loss_weights)
        tracked = [*(total.output_metrics() if total is not None else []), *structures.output_metrics(names, metrics)]
        return super().compile(optimizer, total, tracked, **kwargs)

    def _pack(self, x: Any, y: Any = None, what: str = "") -> tuple[Any, Any]:
        several = self._several
        if several and isinstance(x, (Dataset, DataLoader)):
            raise DeepfieldError(f"model {self.name!r} has several inputs or outputs: fit, evaluate and predict take "
                                 "its data as arrays (a list or a dict by name), not yet a Dataset or DataLoader")
        packed = structures.pack(x, self.input_names, f"{what}x", several)
        if isinstance(packed, Packed):
            structures.check_shapes(packed, self.input_names, [t.sample_shape for t in self.inputs])
        return packed, None if y is None else structures.pack(y, self.output_names, f"{what}y",
                                                               len(self.output_names) > 1)

    def fit(self, x: Any = None, y: Any = None, **kwargs: Any) -> History:
        x, y = self._pack(x, y)
        data = kwargs.get("validation_data")
        if isinstance(data, (tuple, list)) and len(data) in (2, 3):  # (x, y) or (x, y, sample_weight)
            kwargs["validation_data"] = (*self._pack(*data[:2], what="validation "), *data[2:])
        return super().fit(x, y, **kwargs)

    def evaluate(self, x: Any = None, y: Any = None, **kwargs: Any) -> dict[str, float]:
        return super().evaluate(*self._pack(x, y), **kwargs)

    def predict(self, x: Any, **kwargs: Any) -> Any:
        """Outputs for ``x``: one array, or for several outputs a list (a dict when the outputs were a dict)."""
        if self._several and kwargs.get("mc_samples"):
            raise DeepfieldError("predict(mc_samples=...) takes models with one input and one output")
        result = super().predict(self._pack(x)[0], **kwargs)
        return structures.unpack(result, self.output_names, self._output_dict)

    def save(self, folder: str | os.PathLike[str]) -> Path:
        return save_model(self, folder)

    @classmethod
    def load(cls, folder: str | os.PathLike[str], *, trust: bool = False) -> Functional:  # type: ignore[override]
        """The functional model saved in ``folder`` (see :meth:`Sequential.load`)."""
        warn_if_run(folder)
        return load_network(folder, cls, trust=trust)


# load_keras builds the face's classes (see deepfield.models.keras_files.loading)
keras_files.MODEL_CLASSES.add("Sequential", Sequential)
keras_files.MODEL_CLASSES.add("Functional", Functional)
