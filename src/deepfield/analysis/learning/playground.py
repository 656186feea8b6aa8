"""The 2-D classification playground: watch a small network's decision boundary form.

>>> from deepfield.data.toy2d import make_toy
>>> x, y = make_toy("moons", n=300)
>>> play = learn_2d(x, y, hidden=(8, 8), activation="relu", epochs=200, frames=40)
>>> play.probabilities.shape        # (40, 100, 100): P(class 1) on the mesh, one map per frame
>>> play.frame_epochs[[0, -1]]      # [0, 200]: before training, after the last epoch

Everything runs through deepfield itself: the network is a :class:`deepfield.Sequential`
of :class:`~deepfield.models.core.Dense` layers (with
:class:`~deepfield.models.normalization.BatchNormalization` when asked), the weights come
from the named initialisers, and ``fit`` trains it with a :class:`BoundaryRecorder`
callback that predicts the mesh at the chosen epochs. What the maps show is what
``model.predict`` gives at that moment (evaluation mode: batch norm uses its moving
statistics).
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.models import initializers as initializer_registry
from deepfield.models.core import Activation, Dense
from deepfield.models.normalization import BatchNormalization
from deepfield.training import optimizers
from deepfield.training.batches import BatchSize
from deepfield.training.callbacks import Callback
from deepfield.training.keras import Sequential

INITIALIZER_ALIASES = {"small_uniform": "random_uniform"}
"""Names the course uses for initialisers deepfield knows by their Keras name:
``small_uniform`` is ``RandomUniform(-0.05, 0.05)`` (Keras ``random_uniform``)."""


def check_points(x: Any, y: Any, owner: str) -> tuple[np.ndarray, np.ndarray, int]:
    """``(x (N, 2) float32, y (N,) int64, number of classes)``, or a one-line error naming ``owner``."""
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 2 or x.shape[1] != 2:
        raise DeepfieldError(f"{owner}: x must have shape (N, 2), got {x.shape}")
    if y.shape != (len(x),):
        raise DeepfieldError(f"{owner}: y must have shape ({len(x)},) to match x, got {y.shape}")
    if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
        raise DeepfieldError(f"{owner}: x must hold finite numbers")
    if not np.issubdtype(y.dtype, np.number) or (y != np.round(y)).any() or (y < 0).any():
        raise DeepfieldError(f"{owner}: y must hold integer class labels >= 0")
    y = y.astype(np.int64)
    classes = int(y.max()) + 1 if len(y) else 0
    if classes < 2 or len(np.unique(y)) < 2:
        raise DeepfieldError(f"{owner}: y must hold at least two classes, got {np.unique(y).tolist()}")
    return np.ascontiguousarray(x, dtype=np.float32), y, classes


def check_hidden(hidden: Any, owner: str) -> tuple[int, ...]:
    hidden = (hidden,) if isinstance(hidden, (int, np.integer)) else tuple(hidden)
    if not all(arguments.is_integer(h) for h in hidden):
        raise DeepfieldError(f"{owner}: hidden must be positive layer widths, e.g. (8, 8); got {hidden!r}")
    return tuple(int(h) for h in hidden)


def initializer(spec: Any) -> initializer_registry.Initializer:
    """An initialiser from a Keras name, a course alias (:data:`INITIALIZER_ALIASES`) or an instance."""
    if isinstance(spec, str):
        spec = INITIALIZER_ALIASES.get(spec.lower(), spec)
    return initializer_registry.get(spec)


def classifier(n_classes: int, hidden: Sequence[int] = (8, 8), activation: str = "relu",
               kernel_initializer: Any = "glorot_uniform", batch_norm: bool = False,
               input_dim: int = 2) -> Sequential:
    """An unbuilt deepfield ``Sequential`` for ``input_dim`` features: hidden Dense layers, then the head.

    With ``batch_norm`` each hidden layer is ``Dense (linear) → BatchNormalization → Activation``
    (normalise the pre-activations, as Ioffe & Szegedy do). The head is ``Dense(1, "sigmoid")``
    for two classes, ``Dense(n_classes, "softmax")`` otherwise. Every Dense layer, the head
    included, draws its kernel from ``kernel_initializer`` (biases start at zero, as in Keras);
    the weights are drawn when the model first sees data, i.e. inside ``fit`` after its seed.
    """
    layers: list[Any] = []
    for units in hidden:
        if batch_norm:
            layers += [Dense(units, kernel_initializer=initializer(kernel_initializer)),
                       BatchNormalization(), Activation(activation)]
        else:
            layers.append(Dense(units, activation=activation, kernel_initializer=initializer(kernel_initializer)))
    head = (1, "sigmoid") if n_classes == 2 else (n_classes, "softmax")
    layers.append(Dense(head[0], activation=head[1], kernel_initializer=initializer(kernel_initializer)))
    return Sequential(layers, input_shape=(input_dim,))


def compile_classifier(model: Sequential, n_classes: int, optimizer: Any, learning_rate: float | None,
                       device: Any) -> Sequential:
    """``model`` compiled with the cross-entropy matching its head, ``accuracy``, and the optimiser."""
    opt = optimizers.get(optimizer)
    if isinstance(optimizer, optimizers.Optimizer) and opt.bound:
        raise DeepfieldError("the optimizer is already bound to another model; pass its name or a fresh one")
    if learning_rate is not None:
        opt.learning_rate = float(learning_rate)
    loss = "binary_crossentropy" if n_classes == 2 else "sparse_categorical_crossentropy"
    return model.compile(optimizer=opt, loss=loss, metrics=["accuracy"], device=device)


def mesh(x: np.ndarray, grid: int = 100, margin: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(xx (grid,), yy (grid,), points (grid*grid, 2))``: a mesh over ``x``'s box widened by ``margin``
    of its size on each side; ``points[i * grid + j] = (xx[j], yy[i])`` (rows are y, as in an image)."""
    lo, hi = x.min(axis=0).astype(np.float64), x.max(axis=0).astype(np.float64)
    pad = margin * np.maximum(hi - lo, 1e-6)
    xx = np.linspace(lo[0] - pad[0], hi[0] + pad[0], grid)
    yy = np.linspace(lo[1] - pad[1], hi[1] + pad[1], grid)
    gx, gy = np.meshgrid(xx, yy)
    return xx, yy, np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)


def frame_schedule(epochs: int, frames: int) -> np.ndarray:
    """``min(frames, epochs + 1)`` distinct epochs evenly spread over ``0 .. epochs``, both ends included."""
    count = max(2, min(int(frames), epochs + 1))
    return np.round(np.linspace(0, epochs, count)).astype(np.int64)


class BoundaryRecorder(Callback):
    """Records the model's class probabilities on ``points`` and its loss/accuracy on ``(x, y)``
    before training (epoch 0) and after each epoch listed in ``frame_epochs`` (epoch ``k`` = after
    ``k`` epochs), through ``engine.predict`` and ``engine.evaluate`` (evaluation mode, full batch)."""

    def __init__(self, points: np.ndarray, x: np.ndarray, y: np.ndarray, frame_epochs: Sequence[int]):
        super().__init__()
        self.points, self.x, self.y = points, x, y
        self.frame_epochs = [int(e) for e in frame_epochs]
        self._wanted = set(self.frame_epochs)
        self.maps: list[np.ndarray] = []
        self.epochs: list[int] = []
        self.loss: list[float] = []
        self.accuracy: list[float] = []

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if 0 in self._wanted:
            self.snapshot(0)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if epoch + 1 in self._wanted:
            self.snapshot(epoch + 1)

    def snapshot(self, epoch: int) -> None:
        engine = self.engine
        self.maps.append(engine.predict(self.points, batch_size="full", verbose=0))
        scores = engine.evaluate(self.x, self.y, batch_size="full", verbose=0)
        self.epochs.append(epoch)
        self.loss.append(float(scores["loss"]))
        self.accuracy.append(float(scores["accuracy"]))


@dataclass
class Playground:
    """What :func:`learn_2d` recorded.

    ``probabilities[f, i, j]`` is P(class 1) at ``(xx[j], yy[i])`` after ``frame_epochs[f]``
    epochs (two classes); with more classes a last axis holds every class's probability,
    ``(frames, grid, grid, classes)``. ``frame_loss``/``frame_accuracy`` are the training
    set's loss and accuracy at each frame (evaluation mode, so frame 0 is the untrained
    network); ``history`` holds Keras's per-epoch ``loss`` and ``accuracy`` (running means
    during each epoch), one entry per epoch.
    """

    x: np.ndarray
    y: np.ndarray
    xx: np.ndarray
    yy: np.ndarray
    probabilities: np.ndarray
    frame_epochs: np.ndarray
    frame_loss: np.ndarray
    frame_accuracy: np.ndarray
    history: dict[str, np.ndarray]
    model: Sequential
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return 2 if self.probabilities.ndim == 3 else int(self.probabilities.shape[-1])

    @property
    def frames(self) -> int:
        return len(self.frame_epochs)

    def predicted_classes(self, frame: int = -1) -> np.ndarray:
        """``(grid, grid)`` class chosen on the mesh at ``frame`` (P > 0.5, or the most probable)."""
        p = self.probabilities[frame]
        return (p > 0.5).astype(np.int64) if p.ndim == 2 else p.argmax(axis=-1)


def learn_2d(x: Any, y: Any, hidden: Sequence[int] = (8, 8), activation: str = "relu", optimizer: Any = "adam",
             learning_rate: float | None = 0.01, epochs: int = 200, batch_size: BatchSize = 32,
             kernel_initializer: Any = "glorot_uniform", batch_norm: bool = False, frames: int = 40,
             grid: int = 100, seed: int = 0, device: Any = "cpu") -> Playground:
    """Train a small classifier on 2-D points with deepfield's ``fit`` and record its decision boundary.

    Args:
        x, y: points ``(N, 2)`` and integer labels ``(N,)`` (two classes or more).
        hidden: widths of the hidden Dense layers; ``()`` is logistic regression.
        activation: of the hidden layers (any Keras name: relu, tanh, sigmoid, ...).
        optimizer: a name or a fresh deepfield optimiser; ``learning_rate`` overrides its rate
            (``None`` keeps it). Adam at 0.01 draws a clean boundary in a few hundred steps.
        epochs, batch_size: as in ``fit`` (``"full"`` is full-batch gradient descent).
        kernel_initializer: for every Dense kernel: a Keras name, ``"small_uniform"`` or an instance.
        batch_norm: put a BatchNormalization before each hidden activation.
        frames: snapshots spread evenly over training, epoch 0 (before any step) and the last
            included; at most ``epochs + 1``.
        grid: mesh points per axis; the mesh covers the data plus 10 % on each side.
        seed: seeds the weights and the batch order (``fit(seed=...)``).
        device: ``"cpu"`` by default: a network of a few hundred weights trains faster there
            than on a GPU, whose kernel launches would dominate (and on one thread: see
            :func:`few_threads`).
    """
    x, y, classes = check_points(x, y, "learn_2d")
    hidden = check_hidden(hidden, "learn_2d")
    epochs = arguments.integer("learn_2d: epochs", epochs, expected="a positive integer")
    if not (arguments.is_integer(frames, 2) and arguments.is_integer(grid, 2)):
        raise DeepfieldError(f"learn_2d: frames and grid must be at least 2, got {frames}, {grid}")
    xx, yy, points = mesh(x, int(grid))
    schedule = frame_schedule(int(epochs), int(frames))
    model = classifier(classes, hidden, activation, kernel_initializer, batch_norm)
    compile_classifier(model, classes, optimizer, learning_rate, device)
    recorder = BoundaryRecorder(points, x, y, schedule)
    with few_threads(device):
        history = model.fit(x, y, batch_size=batch_size, epochs=int(epochs), verbose=0, callbacks=[recorder],
                            seed=seed)
    maps = np.stack(recorder.maps).astype(np.float32)
    shape = (len(maps), int(grid), int(grid))
    probabilities = maps.reshape(shape) if classes == 2 else maps.reshape(*shape, classes)
    return Playground(
        x=x, y=y, xx=xx, yy=yy, probabilities=probabilities,
        frame_epochs=np.asarray(recorder.epochs, dtype=np.int64),
        frame_loss=np.asarray(recorder.loss), frame_accuracy=np.asarray(recorder.accuracy),
        history={k: np.asarray(history.history[k], dtype=np.float64) for k in ("loss", "accuracy")},
        model=model,
        settings=dict(hidden=hidden, activation=activation, optimizer=model.optimizer.name,
                      learning_rate=model.engine.learning_rate, batch_size=batch_size,
                      kernel_initializer=str(kernel_initializer), batch_norm=bool(batch_norm), seed=seed),
    )


@contextlib.contextmanager
def few_threads(device: Any, threads: int = 1) -> Iterator[None]:
    """Run torch's CPU ops on ``threads`` threads inside, then restore the count.

    The playground's layers have a few units: splitting their matrix products over threads
    costs more than it saves, and on a busy machine waiting threads slow every step tenfold.
    Nothing changes when ``device`` is not the CPU.
    """
    if str(device) != "cpu" or torch.get_num_threads() <= threads:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def steps_per_epoch(n: int, batch_size: BatchSize) -> int:
    """Optimiser steps one epoch of ``n`` samples takes at ``batch_size`` (``"full"``: one)."""
    return 1 if batch_size == "full" else math.ceil(n / int(batch_size))
