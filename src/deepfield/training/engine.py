"""The training loop: fit / evaluate / predict on any ``torch.nn.Module``.

>>> engine = Engine(model, loss="mse", optimizer="adam", metrics=["mae"])
>>> history = engine.fit(x, y, batch_size=64, epochs=10, validation_split=0.2, seed=0)
>>> engine.evaluate(x_test, y_test)            # {"loss": ..., "mae": ...}
>>> engine.predict(x_test)                      # numpy array (N, ...)

What one training step costs beyond PyTorch itself, and nothing more: slicing the batch
from tensors already on the device, one ``detach`` and list append for the running loss,
a ``perf_counter`` comparison when the progress bar is shown, and the calls to callbacks
that override a per-batch hook. No host sync happens per step: the running loss and
the metrics stay on the device and are read when the display refreshes (a few times a
second) and at the end of the epoch.

Randomness: ``fit(seed=s)`` seeds the global torch RNG once (weights still to be built,
dropout) and orders epoch ``e`` with a private generator seeded from ``(s, e)``; without a
seed, ``s`` is drawn from the global RNG. ``fit(augment=...)`` draws the augmentation of
batch ``b`` of epoch ``e`` from a private generator seeded from ``(s, e, b)``, for the
global batch whatever the number of processes (:mod:`deepfield.training.augment`). A run is reproducible, and resumable
mid-epoch (see :class:`~deepfield.training.callbacks.BackupAndRestore`). In a data-parallel
fit the per-sample noise of the CPU (dropout) comes from a stream shared by the ranks, so
that each sample gets the mask one process would draw for it (:mod:`deepfield.models.batch_noise`).

The engine is the loop alone. How the processes share the work is a strategy
(:func:`deepfield.training.distributed.current_strategy`): under an initialised process
group (torchrun, :func:`~deepfield.training.distributed.launch`) a
:class:`~deepfield.training.distributed.DataParallel` one, with which each rank trains on its
part of every global batch (``batch_size`` is the global batch) in DistributedDataParallel,
the epoch logs are all-reduced so every rank has the same ones, only rank 0 shows progress
and runs the callbacks that write files, and ``predict`` returns the full array on every
rank; without one, :class:`~deepfield.training.distributed.SingleProcess`. Where and how
fast the model runs (device, precision, channels_last, torch.compile) is the engine's
:class:`~deepfield.training.device.Placement`.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.models import constraints, regularizers
from deepfield.models.base import ensure_built
from deepfield.models.folding import fold_batch_norm
from deepfield.models.modes import eval_mode
from deepfield.models.packed import Packed
from deepfield.training import distributed, losses, optimizers, sample_weights
from deepfield.training import metrics as metric_registry
from deepfield.training.augment import BatchAugment, as_augment
from deepfield.training.batches import BatchSize, Batches, check_batch_size, make_batches, split_validation
from deepfield.training.callbacks import Callback, CallbackList, History
from deepfield.training.device import AUTO, Placement, Precision, resolve_device, rng_state, set_rng_state
from deepfield.training.distributed import SingleProcess, Step, Strategy
from deepfield.training.mc_dropout import MCPrediction, sample_outputs
from deepfield.training.progress import EpochProgress

__all__ = ["Engine", "RunningMean", "declared_input_shape", "eval_mode", "expected_input_shape", "rng_state",
           "set_rng_state"]


class RunningMean:
    """Sample-weighted mean of per-batch 0-d tensors, accumulated on their device.

    ``add`` only appends to a list (no device op, no sync); every ``fold_every`` values
    the list is reduced into a device total. ``result()`` is the one host sync.
    """

    fold_every = 256

    def __init__(self) -> None:
        self._values: list[torch.Tensor] = []
        self._counts: list[int] = []
        self._total: torch.Tensor | None = None
        self._count = 0

    def add(self, value: torch.Tensor, count: int) -> None:
        self._values.append(value)
        self._counts.append(count)
        if len(self._values) >= self.fold_every:
            self._fold()

    def _fold(self) -> None:
        if not self._values:
            return
        values = torch.stack(self._values).float()
        weights = torch.tensor(self._counts, dtype=values.dtype).to(values.device, non_blocking=True)
        part = torch.dot(values, weights)
        self._total = part if self._total is None else self._total + part
        self._count += sum(self._counts)
        self._values, self._counts = [], []

    def result(self) -> float:
        """The mean so far (NaN before any value)."""
        self._fold()
        return float(self._total) / self._count if self._count else float("nan")

    def totals(self) -> tuple[torch.Tensor | float, int]:
        """(sum of the weighted values, sum of the weights) so far: what is summed over processes."""
        self._fold()
        return 0.0 if self._total is None else self._total, self._count

    def state_dict(self) -> dict[str, Any]:
        self._fold()
        return {"total": self._total, "count": self._count}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        total = state["total"]
        self._values, self._counts = [], []
        self._total = None if total is None else total.to(device)
        self._count = int(state["count"])


def declared_input_shape(model: nn.Module) -> tuple[int, ...] | None:
    """The sample shape the model (or its first layer) was declared or built for, if it says."""
    for module in model.modules():
        shape = getattr(module, "input_shape", None)
        if shape:
            return tuple(shape)
    return None


def expected_input_shape(model: nn.Module) -> str | None:
    """What one sample should look like for ``model``, as far as it or its first layer tells."""
    declared = declared_input_shape(model)
    if declared is not None:
        return str(declared)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            return f"({module.in_features},)"
        if isinstance(module, nn.modules.conv._ConvNd):
            return f"({module.in_channels}, {', '.join('...' for _ in module.kernel_size)})"
    return None



def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DeepfieldError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


class Engine:
    """Trains, evaluates and runs one model; what ``compile`` builds behind the Keras face.

    Args:
        model: any ``nn.Module`` mapping a batch ``(N, ...)`` to predictions.
        loss: a loss name or spec for :func:`deepfield.training.losses.get` (needed by
            fit and evaluate, not by predict).
        optimizer: a name, deepfield optimiser or config for
            :func:`deepfield.training.optimizers.get`; bound to the model's parameters at
            the first ``fit``, after lazily built layers exist (frozen ones included: they get
            no gradient, so no update, and ``trainable`` may change between fits).
        metrics: names or metric objects (:func:`deepfield.training.metrics.get`).
        device: ``"cuda"``, ``"mps"``, ``"cpu"``, a ``torch.device``, or ``None`` for the best present.
        precision: of the training steps: ``"auto"`` (default: what is fastest for the model
            on the device, decided when the model is first placed), ``"fp32"``/``None``,
            ``"bf16"`` or ``"fp16"`` (mixed precision, see :mod:`.device`). ``evaluate`` and
            ``predict`` (and validation) always run in float32: bf16 probabilities miss a
            sum of 1 by up to 2e-3 and a bf16 redshift is rounded to 0.4 %.
        channels_last: store 4-d weights NHWC; ``"auto"`` (default) does for networks with
            2-d convolutions (faster convolutions on GPUs and CPUs: +25 % on the course CNN
            on 2 CPU cores).
        jit_compile: Keras's name: train and evaluate through ``torch.compile(model)``;
            ``"auto"`` (default) is off, see :mod:`.device`. Monte-Carlo sampling and the
            explanation methods run the model itself (they hook its layers).

    ``device``, ``precision`` (a :class:`~deepfield.training.device.Precision`),
    ``channels_last`` and ``jit_compile`` read what is in force from :attr:`placement`.

    Auxiliary losses: submodules with an ``auxiliary_loss()`` method (the variational layers
    of :mod:`deepfield.models.bayesian`, whose term is ``kl_weight * KL``) and the penalties of
    weight and activity regularisers (:mod:`deepfield.models.regularizers`) add to the
    training loss, and the reported ``loss`` includes them, as Keras reports added losses.
    Weight constraints (:mod:`deepfield.models.constraints`) apply after each optimiser step.
    ``evaluate`` and ``val_loss`` are the data loss alone, of the network in eval mode: the
    KL term belongs to the weights, not to the data evaluated, and without it the
    validation loss compares with that of a deterministic network.
    """

    def __init__(self, model: nn.Module, loss: Any = None, optimizer: Any = "rmsprop", metrics: Any = None, *,
                 device: str | torch.device | None = None, precision: str | None = AUTO,
                 channels_last: bool | str = AUTO, jit_compile: bool | str = AUTO):
        if not isinstance(model, nn.Module):
            raise DeepfieldError(f"the model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        local = distributed.current_strategy().local_device(resolve_device(device))
        self.placement = Placement(local, precision, channels_last, jit_compile)
        self.loss_fn = None if loss is None else losses.get(loss)
        self.metrics = [metric_registry.get(m) for m in _as_list(metrics)]
        self.optimizer = optimizers.get(optimizer)
        self.history: History | None = None
        self._seed = 0
        self._resume: tuple[int, int] | None = None
        self._tracker = RunningMean()
        self._callbacks = CallbackList([], self)
        self._after_backward: list[Callback] = []
        self._auxiliary: list[Callable[[], torch.Tensor]] = []  # KL terms, regularisation penalties
        self._net: nn.Module = model  # what training steps call: the model (compiled), or its DDP wrapper
        self._strategy: Strategy = SingleProcess()  # how the processes of the fit under way share it
        self._augment: BatchAugment | None = None  # what the fit under way does to its training batches
        self._labels: Any = None  # the labels of a packed batch, in a run with sample weights (else None)

    # -- placement (what settings() reports) -------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.placement.device

    @property
    def precision(self) -> Precision:
        return self.placement.precision

    @property
    def channels_last(self) -> bool | None:
        """Whether 4-d weights are stored NHWC; ``None`` until the model is first placed."""
        return self.placement.channels_last

    @property
    def jit_compile(self) -> bool:
        return self.placement.jit_compile

    @property
    def _compiled(self) -> nn.Module | None:
        """``torch.compile(model)`` once placed with ``jit_compile`` (the placement's; tests look at it)."""
        return self.placement.compiled

    # -- learning rate (what LR callbacks read and set) ------------------------------------
    @property
    def learning_rate(self) -> float:
        return float(self.optimizer.learning_rate)

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self.optimizer.learning_rate = value

    # -- fit --------------------------------------------------------------------------------
    def fit(self, x: Any = None, y: Any = None, batch_size: BatchSize | None = 32, epochs: int = 1,
            verbose: int = 1, callbacks: Iterable[Callback] | None = None, validation_split: float = 0.0,
            validation_data: Any = None, shuffle: bool = True, initial_epoch: int = 0,
            seed: int | None = None, augment: Any = None, class_weight: Any = None,
            sample_weight: Any = None) -> History:
        """Train for epochs ``initial_epoch .. epochs - 1``; returns the :class:`History`.

        Args:
            x, y: arrays/tensors ``(N, ...)``; or ``x`` a Dataset of ``(x, y)`` pairs or a
                DataLoader, with ``y=None``.
            batch_size: samples per step: 1 is stochastic, ``"full"`` full-batch gradient
                descent (one step per epoch, never shuffled), anything else mini-batch.
                Ignored for a DataLoader.
            validation_split: the LAST fraction of ``x``/``y`` (taken before shuffling)
                held out for ``val_*`` logs; ignored when ``validation_data`` is given.
            validation_data: ``(x_val, y_val)``, a Dataset or a DataLoader.
            shuffle: reshuffle the training samples every epoch.
            verbose: 0 silent, 1 a progress bar per epoch, 2 one line per epoch.
            callbacks: :class:`~deepfield.training.callbacks.Callback` instances.
            initial_epoch: the epoch to start at (to continue an earlier fit).
            seed: seeds the global torch RNG once and the epoch orders (see the module doc).
            augment: random transforms applied to each training batch on the device (never
                to validation): names, config mappings or transforms of
                :mod:`deepfield.data.transforms`, e.g. ``["dihedral", {"name": "shift",
                "max_shift": 2}]``, or a :class:`~deepfield.training.augment.BatchAugment`;
                ``BatchAugment(..., targets=True)`` moves each target image or label map ``y`` with
                its ``x`` (pixel-moving transforms only). Drawn per batch from ``seed``: reproducible
                and resumable.
            class_weight, sample_weight: Keras's: ``{class: weight}`` or one weight per sample ``(N,)``,
                for arrays ``x``, ``y`` (:mod:`~deepfield.training.sample_weights`); ``validation_data``
                may then be ``(x_val, y_val, w_val)``.
        """
        self._require_loss("fit")
        if x is None:
            raise DeepfieldError("fit needs training data: fit(x, y) or fit(dataset)")
        epochs = arguments.integer("epochs", epochs, minimum=0)  # 0 trains nothing, as in Keras
        initial_epoch = arguments.integer("initial_epoch", initial_epoch, minimum=0)
        batch_size = check_batch_size(batch_size)
        strategy = distributed.current_strategy()
        if seed is not None:
            self._seed = _check_seed(seed)
            strategy.seed_rng(self._seed)
        else:
            self._seed = strategy.broadcast(int(torch.randint(0, 2**62, (1,)).item()))
        packing = None
        if sample_weight is not None or class_weight is not None or sample_weights.is_weighted_validation(
                validation_data):
            y, validation_data, packing = sample_weights.for_fit(x, y, sample_weight, class_weight, validation_data)
        if validation_data is None and validation_split:
            (x, y), validation_data = split_validation(x, y, validation_split)
        train = make_batches(x, y, batch_size=batch_size, shuffle=shuffle, device=self.device, with_y=True)
        val = self._validation_batches(validation_data, batch_size)
        self._ready([("x", train), *([("validation x", val)] if val is not None else [])])
        self._augment = as_augment(augment)
        if self._augment is not None:
            self._augment.check(train.example())
            if self._augment.targets and packing is not None:
                raise DeepfieldError(f"{self._augment.name}: the targets move with the inputs, which sample_weight "
                                     "and class_weight do not take (they travel packed with the labels)")
        train, val = strategy.fit_batches(train, val)
        with strategy.training(self.model, self.optimizer, self.placement) as net:
            # every weight, frozen or not: a frozen one has no gradient and is left alone, so `trainable`
            # may change between fits without a new optimiser (Keras 3 refuses an unfreeze after compile)
            self.optimizer.bind(self.model.parameters())
            self._auxiliary = [m.auxiliary_loss for m in self.model.modules()
                               if callable(getattr(m, "auxiliary_loss", None))] + regularizers.loss_terms(self.model)
            self._strategy, self._net = strategy, net
            try:
                with self._weighted(packing):
                    return self._fit(train, val, epochs, verbose if strategy.is_main else 0, callbacks, initial_epoch)
            finally:
                self._strategy, self._net = SingleProcess(), self.model

    def _fit(self, train: Batches, val: Batches | None, epochs: int, verbose: int,
             callbacks: Iterable[Callback] | None, initial_epoch: int) -> History:
        """The epochs of ``fit`` on this process's batches, as :attr:`_strategy` shares them."""
        strategy = self._strategy
        self.history = History()
        cbs = self._callbacks = CallbackList([self.history, *_as_list(callbacks)], self,
                                             params={"verbose": verbose, "epochs": epochs, "steps": train.steps})
        self._after_backward = cbs.after_backward
        train_step = self._closure_step if getattr(self.optimizer, "requires_closure", False) else self._gradient_step
        train_step = constraints.after_each_step(train_step, self.model)  # unchanged without constraints
        if not any(p.requires_grad for p in self.model.parameters()):  # everything frozen: Keras warns and runs
            warnings.warn("the model has no trainable weights (trainable = False): fit changes nothing", stacklevel=3)
            train_step = self._forward_step
        self.model.stop_training = False
        self._resume, self._tracker = None, RunningMean()
        cbs.call("on_train_begin", None)
        first_epoch, start = self._resume or (int(initial_epoch), 0)
        logs: dict[str, float] = {}
        progress = EpochProgress(verbose) if verbose else None
        with progress or nullcontext():
            for epoch in range(first_epoch, epochs):
                logs = self._train_epoch(epoch, epochs, start, train, train_step, cbs, progress)
                start = 0
                if val is not None:
                    val_logs = self._evaluate(val, cbs, None, strategy)
                    logs.update({f"val_{k}": v for k, v in val_logs.items()})
                logs["lr"] = self.optimizer.last_learning_rate()  # decayed, as the epoch's last step ran
                if progress is not None:
                    progress.finish(logs)
                cbs.call("on_epoch_end", epoch, logs)
                self._tracker = RunningMean()
                if strategy.any_rank(self.model.stop_training, self.device):  # a stop anywhere stops every process
                    self.model.stop_training = True
                if self.model.stop_training:
                    break
        cbs.call("on_train_end", logs)
        return self.history

    def _train_epoch(self, epoch: int, epochs: int, start: int, batches: Batches, train_step: Step,
                     cbs: CallbackList, progress: EpochProgress | None) -> dict[str, float]:
        """One epoch from batch ``start``; returns ``{"loss": ..., metric: ...}``."""
        model, metrics, tracker, strategy = self.model, self.metrics, self._tracker, self._strategy
        batch_begin, batch_end = cbs.batch_begin, cbs.batch_end
        for metric in metrics:
            metric.reset()
        model.train()
        cbs.call("on_epoch_begin", epoch, None)
        if progress is not None:
            progress.start(f"Epoch {epoch + 1}/{epochs}", batches.steps, start,
                           lambda: distributed.local_logs(tracker, metrics))
        step, samples = start, 0
        augment, unpack = self._augment, self._labels
        for x, y in batches.epoch(epoch, self._seed, start):
            if augment is not None and augment.targets:
                x, y = augment.pair(x, y, self._seed, epoch, step, strategy.part(batches, step))
            elif augment is not None:
                x = augment(x, self._seed, epoch, step, strategy.part(batches, step))
            if batch_begin:
                for cb in batch_begin:
                    cb.on_train_batch_begin(step, None)
            pred, loss, n = strategy.step(train_step, batches, step, x, y)
            loss = loss.detach()
            tracker.add(loss, n)
            if metrics and n:
                pred = pred.detach()
                labels = y if unpack is None else unpack(y)
                for metric in metrics:
                    metric.update(pred, labels)
            if batch_end:
                batch_logs = {"loss": loss, "size": n}
                for cb in batch_end:
                    cb.on_train_batch_end(step, batch_logs)
                if strategy.any_rank(model.stop_training, self.device):  # every process stops at the same step
                    model.stop_training = True
            step += 1
            samples += n
            if progress is not None:
                progress.advance(step, samples)
            if model.stop_training:
                break
        return strategy.logs(tracker, metrics, self.device)

    def _forward(self, x: torch.Tensor, net: nn.Module | None = None) -> torch.Tensor:
        """The float32 output of ``net`` (default: the model), what evaluate and predict report."""
        return (self.model if net is None else net)(x)

    def _gradient_step(self, x: torch.Tensor, y: torch.Tensor,
                       weight: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step; ``weight`` (a process's share of a global batch) multiplies the loss differentiated."""
        precision, optimizer = self.precision, self.optimizer
        pred = precision.forward(self._net, x)
        loss = self._training_loss(pred, y)
        precision.step(loss if weight is None else loss * weight, optimizer,
                       self._notify_after_backward if self._after_backward else None)
        optimizer.zero_grad(set_to_none=True)
        return pred, loss

    def _forward_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A training step of a model without trainable weights: the loss, no update."""
        pred = self.precision.forward(self._net, x)
        return pred, self._training_loss(pred, y)

    def _closure_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For optimisers that evaluate the loss themselves (Newton): ``step(closure)``."""
        first: list[torch.Tensor] = []

        def closure() -> torch.Tensor:
            pred = self.precision.forward(self.model, x)
            if not first:
                first.append(pred)
            return self._training_loss(pred, y)

        loss = self.optimizer.step(closure)
        self.optimizer.zero_grad(set_to_none=True)
        return first[0], loss

    def _training_loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The data loss plus the auxiliary losses of the modules found when ``fit`` began."""
        loss = self.loss_fn(pred, y)
        for term in self._auxiliary:
            loss = loss + term()
        return loss

    def _notify_after_backward(self) -> None:
        for cb in self._after_backward:
            cb.on_after_backward(self.model)

    # -- evaluate and predict -------------------------------------------------------------
    def evaluate(self, x: Any = None, y: Any = None, batch_size: BatchSize | None = 32, verbose: int = 1,
                 callbacks: Iterable[Callback] | None = None, sample_weight: Any = None) -> dict[str, float]:
        """Loss and metrics on ``(x, y)``, as a dict ``{"loss": ..., "<metric>": ...}``.

        Keras returns a scalar or a list unless ``return_dict=True``; deepfield always
        returns the dict, so values are looked up by name, never by position.
        ``sample_weight`` ``(N,)`` weighs the loss as in ``fit`` (not the metrics).
        """
        self._require_loss("evaluate")
        packing = None
        if sample_weight is not None:
            y, _, packing = sample_weights.for_fit(x, y, sample_weight, None, None)
        batches = make_batches(x, y, batch_size=check_batch_size(batch_size), shuffle=False,
                               device=self.device, with_y=True)
        self._ready([("x", batches)])
        strategy = distributed.current_strategy()
        batches, over = strategy.evaluation_batches(batches)
        verbose = verbose if strategy.is_main else 0
        with self._weighted(packing):
            return self._evaluate(batches, CallbackList(_as_list(callbacks), self),
                                  EpochProgress(verbose) if verbose else None, over)

    def _evaluate(self, batches: Batches, cbs: CallbackList, progress: EpochProgress | None,
                  strategy: Strategy) -> dict[str, float]:
        """Loss and metrics over ``batches``, this process's, reduced over the processes of ``strategy``."""
        metrics, tracker, unpack = self.metrics, RunningMean(), self._labels
        penalties = regularizers.loss_terms(self.model)  # in Keras's evaluate and val_loss too; [] without
        for metric in metrics:
            metric.reset()
        cbs.call("on_test_begin", None)
        with eval_mode(self.model), progress or nullcontext():
            if progress is not None:
                progress.start("Evaluate", batches.steps, 0, lambda: distributed.local_logs(tracker, metrics))
            step = samples = 0
            net = self.placement.net(self.model)
            for x, y in batches.epoch(0, 0):
                pred = self._forward(x, net)
                n = x.shape[0]
                loss = self.loss_fn(pred, y)
                for term in penalties:
                    loss = loss + term()
                tracker.add(loss, n)
                labels = y if unpack is None else unpack(y)
                for metric in metrics:
                    metric.update(pred, labels)
                step, samples = step + 1, samples + n
                if progress is not None:
                    progress.advance(step, samples)
            logs = strategy.logs(tracker, metrics, self.device)
            if progress is not None:
                progress.finish(logs)
        cbs.call("on_test_end", logs)
        return logs

    def predict(self, x: Any, batch_size: BatchSize | None = 32, verbose: int = 1, *, mc_samples: int = 0,
                seed: int = 0, kind: str = "auto", return_samples: bool = False,
                memory_mb: float = 512.0) -> np.ndarray | MCPrediction:
        """The model's outputs for ``x`` (arrays, a Dataset or a DataLoader), as one numpy array.

        Runs in eval mode (dropout off) without gradients; outputs stay on the device
        until the end, then come to the host in one copy.

        With ``mc_samples=T`` (Monte-Carlo dropout), dropout stays on (and only dropout:
        batch norm stays in inference mode; variational layers sample their weights) and
        the result is an :class:`~deepfield.training.mc_dropout.MCPrediction`: the mean,
        the spread, for class probabilities the predictive entropy and the mutual information
        and, with ``return_samples``, the draws ``(T, N, ...)``. The T draws are batched
        and the layers before the first dropout run once per input
        (:func:`~deepfield.training.mc_dropout.sample_outputs`, which ``seed`` and
        ``memory_mb`` are for). ``kind`` says how to read the outputs: ``"probabilities"``
        (needed for a binary sigmoid head), ``"values"``, ``"gaussian"`` (mean | log-variance)
        or ``"auto"`` (probabilities when every row is a softmax).

        Under a process group each rank predicts its block of the samples and every rank
        gets the whole array, in order; Monte-Carlo draws (and a DataLoader) run whole on
        every rank, with the same seed, so they agree without communication.
        """
        batches = make_batches(x, None, batch_size=check_batch_size(batch_size), shuffle=False,
                               device=self.device, with_y=False)
        self._ready([("x", batches)])
        strategy = distributed.current_strategy()
        verbose = verbose if strategy.is_main else 0
        if mc_samples:
            draws = sample_outputs(self.model, (xb for xb, _ in batches.epoch(0, 0)), mc_samples, seed=seed,
                                   memory_mb=memory_mb)
            return MCPrediction.from_samples(draws, kind, keep_samples=return_samples)
        batches, over = strategy.evaluation_batches(batches)
        outputs = []
        progress = EpochProgress(verbose) if verbose else None
        with eval_mode(self.model), progress or nullcontext():
            if progress is not None:
                progress.start("Predict", batches.steps, 0, dict)
            samples = 0
            net = self.placement.net(self.model)
            net = fold_batch_norm(net) if net is self.model else net  # the model itself is untouched
            for step, (xb, _) in enumerate(batches.epoch(0, 0), 1):
                outputs.append(self._forward(xb, net))
                samples += xb.shape[0]
                if progress is not None:
                    progress.advance(step, samples)
            if progress is not None:
                progress.finish({})
        return over.gather_rows(torch.cat(outputs).cpu().numpy() if outputs else None)

    # -- setup ------------------------------------------------------------------------------
    @contextmanager
    def _weighted(self, packing: sample_weights.Packing | None) -> Iterator[None]:
        """While a run with sample weights lasts: batches hold packed labels, the loss is weighted."""
        if packing is None:
            yield
            return
        loss = self.loss_fn
        self.loss_fn, self._labels = sample_weights.WeightedLoss(loss, packing), packing.labels
        try:
            yield
        finally:
            self.loss_fn, self._labels = loss, None

    def _require_loss(self, what: str) -> None:
        if self.loss_fn is None:
            raise DeepfieldError(f"{what} needs a loss: compile the model with loss=... first")

    def _validation_batches(self, data: Any, batch_size: BatchSize) -> Batches | None:
        if data is None:
            return None
        if isinstance(data, (Dataset, DataLoader)):
            return make_batches(data, None, batch_size=batch_size, shuffle=False, device=self.device, with_y=True)
        if isinstance(data, (tuple, list)) and len(data) == 2:
            return make_batches(data[0], data[1], batch_size=batch_size, shuffle=False, device=self.device,
                                with_y=True, prefix="validation ")
        raise DeepfieldError("validation_data must be (x_val, y_val), a Dataset or a DataLoader")

    def _ready(self, inputs: list[tuple[str, Batches]]) -> None:
        """Move the model to the device, build lazy layers, check every input fits it, and place it."""
        self.model.to(self.device)
        for name, batches in inputs:
            if batches.samples == 0:
                raise DeepfieldError(f"{name} has no samples")
            self._probe(name, batches.example())
        self.placement.place(self.model)  # the first placement: "auto" choices see the built model

    def settings(self) -> dict[str, Any]:
        """The device and speed choices in force (``"auto"`` resolved once the model was placed)."""
        return self.placement.settings()

    def _probe(self, name: str, example: torch.Tensor) -> None:
        """One forward pass on one sample; a shape error names what the model expects and what it got."""
        expected, got = expected_input_shape(self.model), tuple(example.shape[1:])
        # several inputs (a generative model's images and conditions): the model's own checks say what is wrong
        declared = None if isinstance(example, Packed) else declared_input_shape(self.model)
        if declared is not None and declared != got:
            raise DeepfieldError(f"{name} does not fit the model: its samples have shape {got}, "
                                 f"the model expects {declared}")
        try:
            ensure_built(self.model, example)
            with eval_mode(self.model):
                self._forward(example)
        except RuntimeError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DeepfieldError(
                f"{name} does not fit the model: its samples have shape {got}, "
                f"the model expects {expected or 'another shape'} ({reason})"
            ) from None

    # -- resumable state (BackupAndRestore) --------------------------------------------------
    def training_state(self, epoch: int, step: int) -> dict[str, Any]:
        """Everything needed to continue at batch ``step`` of ``epoch`` exactly as if never stopped."""
        scaler, strategy = self.precision.scaler, self._strategy
        state = {
            "epoch": epoch,
            "step": step,
            "seed": self._seed,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng_state(),
            # the per-sample noise stream: the global CPU generator alone, the shared one in a data-parallel fit
            "batch_noise": strategy.noise_state(),
            "epoch_loss": self._tracker.state_dict() if step else None,
            "callbacks": self._callbacks.state_dict(),
        }
        # collectives in a data-parallel fit: every rank calls this at the same point; rank 0 writes the result
        return strategy.gather_state(state, self._tracker, self.device)

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`training_state`; ``fit`` then continues from its position."""
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise DeepfieldError(f"the backup does not fit this model or optimiser ({exc})") from None
        if state["scaler"] is not None and self.precision.scaler is not None:
            self.precision.scaler.load_state_dict(state["scaler"])
        self._strategy.restore_rng(state)  # continued in one process or many alike
        self._seed = int(state["seed"])
        if state["epoch_loss"] is not None:
            if self._strategy.is_main:  # the epoch's loss so far is counted once, on rank 0
                self._tracker.load_state_dict(state["epoch_loss"], self.device)
            else:
                self._tracker = RunningMean()
        self._callbacks.load_state_dict(state["callbacks"])
        self._resume = (int(state["epoch"]), int(state["step"]))
