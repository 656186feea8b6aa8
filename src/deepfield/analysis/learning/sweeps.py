"""Sweeps: the same small network trained over learning rates × initialisers × batch sizes.

>>> x, y = make_toy("circles", n=200)
>>> s = sweep(x, y)                                   # 4 × 4 × 3 runs, 200 steps each
>>> s.final_accuracy[:, s.initializers.index("zeros"), 0]   # zeros: stuck at chance
>>> s.diverged                                        # (lr, init, batch) booleans

Design:

* **Every combination** (a full grid, not one axis at a time): the course's claims are about
  interactions (a rate that suits full-batch descent diverges with single samples; a good
  initialiser rescues a small rate), which a one-at-a-time sweep would miss.
* **The same number of optimiser steps per run** (``steps``), not of epochs: full-batch,
  mini-batch and single-sample runs then cost the same and their loss curves share an x axis
  (one point per step, each the loss of that step's own batch, so the mini-batch fluctuations
  show). A run takes ``ceil(steps / steps_per_epoch)`` epochs, the last one cut at ``steps``.
  Memory is ``runs × steps`` floats. With the defaults (48 runs × 200 steps of an 8-8
  network) the whole grid trains in well under a minute on two CPU cores.
* **Same seed for every run**: the same initialiser draws the same weights and every run
  of a batch size sees the samples in the same order, so one axis changes at a time.
* **Divergence** (:func:`is_diverging`): a step loss that is NaN or infinite, or the mean
  loss of the last window of steps (one epoch, at most 32 steps, once that many were
  taken) above ``divergence_factor`` times the untrained network's loss on the whole set.
  A diverging run is stopped there (``model.stop_training``, no exception); its curve is NaN
  after the stop. A run whose final full-set loss is non-finite or above the same threshold
  counts as diverged too.

Final loss and accuracy are evaluated on the whole training set after the last step
(evaluation mode), so runs of every batch size compare.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepfield import arguments
from deepfield.analysis.learning.playground import (
    check_hidden,
    check_points,
    classifier,
    compile_classifier,
    few_threads,
    initializer,
    steps_per_epoch,
)
from deepfield.errors import DeepfieldError
from deepfield.models import activations
from deepfield.models.core import Dense
from deepfield.training.batches import BatchSize, check_batch_size
from deepfield.training.callbacks import Callback

DEFAULT_INITIALIZERS = ("zeros", "small_uniform", "glorot_uniform", "he_normal")
DEFAULT_BATCH_SIZES: tuple[BatchSize, ...] = ("full", 32, 1)


def is_diverging(losses: np.ndarray, reference: float, factor: float, window: int) -> bool:
    """The divergence rule on the step losses so far: the last one non-finite, or (once ``window``
    steps exist) the mean of the last ``window`` above ``factor × reference``."""
    if len(losses) == 0:
        return False
    if not math.isfinite(float(losses[-1])):
        return True
    return len(losses) >= window and float(np.mean(losses[-window:])) > factor * reference


class StepLossRecorder(Callback):
    """Each step's batch loss (one host sync per step), the divergence check, and the step budget.

    Stops training (``model.stop_training``) after ``steps`` steps or when
    :func:`is_diverging` says so; ``reference`` is the loss of the untrained network on
    ``(x, y)``, evaluated when training begins.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, steps: int, factor: float, window: int):
        super().__init__()
        self.x, self.y = x, y
        self.losses = np.full(steps, np.nan, dtype=np.float32)
        self.factor, self.window = float(factor), int(window)
        self.step = 0
        self.reference = math.nan
        self.diverged = False

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.reference = float(self.engine.evaluate(self.x, self.y, batch_size="full", verbose=0)["loss"])

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.step >= len(self.losses):
            self.model.stop_training = True
            return
        self.losses[self.step] = float(logs["loss"])
        self.step += 1
        if is_diverging(self.losses[: self.step], self.reference, self.factor, self.window):
            self.diverged = True
            self.model.stop_training = True
        elif self.step >= len(self.losses):
            self.model.stop_training = True


@dataclass
class Sweep:
    """Runs indexed ``[learning rate, initialiser, batch size]``.

    ``losses[l, i, b, s]`` is the batch loss of step ``s`` (NaN after a run stopped);
    ``initial_loss``, ``final_loss`` and ``final_accuracy`` are on the whole training set
    before and after training; ``steps_run`` counts the steps taken (``steps`` unless
    the run diverged); ``first_kernels[l, i, b]`` is the trained first Dense layer's
    weight ``(units, 2)`` (its rows are the units: equal rows, a symmetric network).
    """

    learning_rates: np.ndarray
    initializers: tuple[str, ...]
    batch_sizes: tuple[BatchSize, ...]
    steps: int
    losses: np.ndarray
    initial_loss: np.ndarray
    final_loss: np.ndarray
    final_accuracy: np.ndarray
    diverged: np.ndarray
    steps_run: np.ndarray
    first_kernels: np.ndarray
    settings: dict[str, Any]

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.final_loss.shape  # type: ignore[return-value]

    def index(self, learning_rate: float, initializer: str, batch_size: BatchSize) -> tuple[int, int, int]:
        """The grid index of one run, by its values."""
        found = np.flatnonzero(np.isclose(self.learning_rates, float(learning_rate), rtol=1e-9, atol=0.0))
        if not len(found):
            raise DeepfieldError(f"sweep has no learning rate {learning_rate} (has {self.learning_rates.tolist()})")
        l = int(found[0])
        if initializer not in self.initializers:
            raise DeepfieldError(f"sweep has no initializer {initializer!r} (has {', '.join(self.initializers)})")
        if batch_size not in self.batch_sizes:
            raise DeepfieldError(f"sweep has no batch size {batch_size!r} (has {list(self.batch_sizes)})")
        return l, self.initializers.index(initializer), self.batch_sizes.index(batch_size)

    def curve(self, learning_rate: float, initializer: str, batch_size: BatchSize) -> np.ndarray:
        """One run's step losses, up to where it stopped."""
        at = self.index(learning_rate, initializer, batch_size)
        return self.losses[at][: self.steps_run[at]]

    def roughness(self) -> np.ndarray:
        """``(lr, init, batch)``: mean |step-to-step change| of the loss over its mean, per run
        (NaN for runs with fewer than 2 finite steps). Full-batch descent is smooth (small values);
        single-sample steps fluctuate (order one)."""
        out = np.full(self.shape, np.nan)
        for at in np.ndindex(*self.shape):
            curve = self.losses[at][: self.steps_run[at]].astype(np.float64)
            curve = curve[np.isfinite(curve)]
            if len(curve) >= 2 and curve.mean() > 0:
                out[at] = np.abs(np.diff(curve)).mean() / curve.mean()
        return out

    def unit_spread(self) -> np.ndarray:
        """``(lr, init, batch)``: the largest distance of a first-layer unit's weights from the
        first unit's; 0 when every unit is the same (symmetry never broken)."""
        k = self.first_kernels.astype(np.float64)
        return np.abs(k - k[..., :1, :]).max(axis=(-2, -1))


def _batch_label(batch_size: Any) -> BatchSize:
    batch_size = check_batch_size(batch_size)
    return batch_size if batch_size == "full" else int(batch_size)


def sweep(x: Any, y: Any, learning_rates: Sequence[float] = (0.01, 0.1, 1.0, 10.0),
          initializers: Sequence[Any] = DEFAULT_INITIALIZERS, batch_sizes: Sequence[BatchSize] = DEFAULT_BATCH_SIZES,
          hidden: Sequence[int] = (8, 8), activation: str = "relu", optimizer: str = "sgd", steps: int = 200,
          divergence_factor: float = 3.0, seed: int = 0, device: Any = "cpu") -> Sweep:
    """Train ``classifier(hidden, activation)`` on ``(x, y)`` for every (learning rate, initialiser,
    batch size), ``steps`` optimiser steps each; see the module doc for the choices.

    Args:
        learning_rates: positive rates; the default spans "too small to get anywhere in 200
            steps" to "diverges" for plain gradient descent.
        initializers: names for every Dense kernel (``"small_uniform"`` is
            RandomUniform(-0.05, 0.05); ``"zeros"`` shows the symmetry problem).
        batch_sizes: ``"full"`` (gradient descent), mini-batch sizes, 1 (stochastic).
        optimizer: a name (a fresh optimiser per run); ``"sgd"`` (no momentum) by default, so
            the learning rate means what the course says, Adam rescaling the steps.
        steps: optimiser steps per run.
        divergence_factor: a run diverges when its recent loss exceeds this many times the
            untrained network's loss.
        seed: for every run (weights and batch order).
    """
    x, y, classes = check_points(x, y, "sweep")
    hidden = check_hidden(hidden, "sweep")
    rates = np.asarray([float(r) for r in learning_rates], dtype=np.float64)
    if len(rates) == 0 or not np.all(np.isfinite(rates) & (rates > 0)):
        raise DeepfieldError(f"sweep: learning_rates must be positive numbers, got {list(learning_rates)}")
    inits = tuple(initializers)
    sizes = tuple(_batch_label(b) for b in batch_sizes)
    if not inits or not sizes:
        raise DeepfieldError("sweep: needs at least one initializer and one batch size")
    for spec in inits:
        initializer(spec)  # unknown names fail now, not after the first runs
    activations.get(activation)
    steps = arguments.integer("sweep: steps", steps, 2, expected="an integer >= 2")
    if not divergence_factor > 1:
        raise DeepfieldError(f"sweep: divergence_factor must be > 1, got {divergence_factor}")
    if not isinstance(optimizer, str):
        raise DeepfieldError("sweep: optimizer must be a name (each run needs a fresh optimiser)")
    shape = (len(rates), len(inits), len(sizes))
    units = hidden[0] if hidden else 1
    out = dict(
        losses=np.full((*shape, steps), np.nan, dtype=np.float32),
        initial_loss=np.full(shape, np.nan), final_loss=np.full(shape, np.nan),
        final_accuracy=np.full(shape, np.nan), diverged=np.zeros(shape, dtype=bool),
        steps_run=np.zeros(shape, dtype=np.int64), first_kernels=np.full((*shape, units, 2), np.nan, np.float32),
    )
    with few_threads(device):
        for l, i, b in np.ndindex(*shape):
            model = classifier(classes, hidden, activation, inits[i])
            compile_classifier(model, classes, optimizer, rates[l], device)
            _record(out, (l, i, b), _train(model, x, y, sizes[b], steps, divergence_factor, seed),
                    divergence_factor)
    return Sweep(
        learning_rates=rates, initializers=tuple(str(s) for s in inits), batch_sizes=sizes, steps=int(steps),
        settings=dict(hidden=hidden, activation=activation, optimizer=optimizer, seed=seed,
                      divergence_factor=float(divergence_factor), samples=len(x)),
        **out,
    )


def _train(model: Any, x: np.ndarray, y: np.ndarray, batch_size: BatchSize, steps: int, factor: float,
           seed: int) -> tuple[Any, StepLossRecorder, dict[str, float]]:
    """Fit ``model`` for ``steps`` steps (fewer if it diverges); ``(model, recorder, final scores)``."""
    per_epoch = steps_per_epoch(len(x), batch_size)
    recorder = StepLossRecorder(x, y, steps, factor, window=min(per_epoch, 32))
    model.fit(x, y, batch_size=batch_size, epochs=math.ceil(steps / per_epoch), verbose=0, callbacks=[recorder],
              seed=seed)
    return model, recorder, model.evaluate(x, y, batch_size="full", verbose=0)


def _record(out: dict[str, np.ndarray], at: tuple[int, int, int],
            run: tuple[Any, StepLossRecorder, dict[str, float]], factor: float) -> None:
    model, recorder, scores = run
    final = float(scores["loss"])
    out["losses"][at] = recorder.losses
    out["initial_loss"][at] = recorder.reference
    out["final_loss"][at] = final
    out["final_accuracy"][at] = float(scores["accuracy"])
    out["diverged"][at] = recorder.diverged or not math.isfinite(final) or final > factor * recorder.reference
    out["steps_run"][at] = recorder.step
    first = next(m for m in model.modules() if isinstance(m, Dense))
    out["first_kernels"][at] = first.weight.detach().cpu().numpy()[: out["first_kernels"].shape[-2]]
