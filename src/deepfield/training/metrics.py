"""Streaming training metrics by Keras name: ``update`` every batch, ``compute`` per epoch.

``update(y_pred, y_true)`` only queues device ops (no ``.item()``, no host
sync), so the fit loop can call it every step on a GPU at no wait; the one
sync happens in ``compute() -> float``. ``reset()`` starts a new epoch.
A metric that has seen nothing computes to NaN.

Shapes follow the losses (``(N, outputs)`` predictions, labels of the same
shape, ``(N,)`` accepted for ``(N, 1)``); ``accuracy`` also takes integer class
labels ``(N,)`` against ``(N, C)`` scores.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.registry import Registry
from deepfield.training.losses import KerasFunction, Loss, align_labels


def _sum(values: torch.Tensor) -> torch.Tensor:
    """A device-side sum accumulated in float64 (float32 on Apple's MPS, which lacks it)."""
    return values.sum(dtype=torch.float32 if values.device.type == "mps" else torch.float64)


class Metric:
    """Base of the streaming metrics; ``name`` is the key shown in the history."""

    name: ClassVar[str] = ""
    registry: ClassVar[Registry[type[Metric]]] = Registry("metric", any_case=True, class_names=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            Metric.registry.add(cls.name, cls)

    def __init__(self, name: str | None = None) -> None:
        if name is not None:
            self.name = name  # type: ignore[misc]  # an instance may be shown under an alias
        self.reset()

    def update(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> None:
        """Accumulate one batch, on the batch's device."""
        raise NotImplementedError

    def compute(self) -> float:
        """The metric over everything since the last ``reset`` (one host sync)."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget all batches."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """The constructor's keyword arguments, JSON-ready."""
        return {"name": self.name}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class _Mean(Metric):
    """A running mean: a total on the device, a count on the host (known without sync)."""

    def reset(self) -> None:
        self._total: torch.Tensor | float = 0.0
        self._count = 0

    def update(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> None:
        total, count = self._batch(y_pred.detach(), y_true.detach())
        self._total += total  # a tensor from the first batch on, added to in place
        self._count += count

    def compute(self) -> float:
        return float(self._total) / self._count if self._count else math.nan

    def _batch(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> tuple[torch.Tensor, int]:
        """This batch's total and count; by default over the elements of ``_values``."""
        values = self._values(y_pred, y_true)
        return _sum(values), values.numel()

    def _values(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Accuracy(_Mean):
    """The fraction of samples classified right, choosing the rule from the shapes.

    * several columns ``(N, C)``: ``argmax`` over axis 1 against integer labels
      ``(N,)`` or against the ``argmax`` of one-hot labels ``(N, C)``;
    * one column ``(N, 1)`` or ``(N,)``: Keras ``binary_accuracy``, predictions
      above 0.5 count as class 1 (so give probabilities, not logits).
    """

    name = "accuracy"

    def _values(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        if y_pred.ndim < 2 or y_pred.shape[1] == 1:
            return _binary_hits(self.name, y_pred, y_true, 0.5)
        predicted = y_pred.argmax(dim=1)
        if y_true.shape == y_pred.shape:
            return predicted == y_true.argmax(dim=1)
        if y_true.ndim == y_pred.ndim and y_true.shape[1] == 1:
            y_true = y_true.squeeze(1)
        if y_true.shape != predicted.shape:
            raise DeepfieldError(
                f"{self.name}: labels of shape {tuple(y_true.shape)} do not match predictions "
                f"of shape {tuple(y_pred.shape)}; expected class indices {tuple(predicted.shape)} "
                f"or one-hot {tuple(y_pred.shape)}"
            )
        return predicted == y_true


class BinaryAccuracy(_Mean):
    """The fraction of outputs on the right side of ``threshold`` (labels read as 0/1)."""

    name = "binary_accuracy"

    def __init__(self, threshold: float = 0.5, name: str | None = None) -> None:
        self.threshold = float(threshold)
        super().__init__(name)

    def _values(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return _binary_hits(self.name, y_pred, y_true, self.threshold)

    def get_config(self) -> dict[str, Any]:
        return {"threshold": self.threshold, **super().get_config()}


def _binary_hits(
    name: str, y_pred: torch.Tensor, y_true: torch.Tensor, threshold: float
) -> torch.Tensor:
    """Per output: is the prediction on the label's side of ``threshold``?"""
    return (y_pred > threshold) == (align_labels(name, y_pred, y_true) > 0.5)


class MeanAbsoluteError(_Mean):
    """``mean(|y_pred - y_true|)`` over all outputs of all batches."""

    name = "mae"

    def _values(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return (y_pred - align_labels(self.name, y_pred, y_true)).abs()


class MeanSquaredError(_Mean):
    """``mean((y_pred - y_true)**2)`` over all outputs of all batches."""

    name = "mse"

    def _values(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return torch.square(y_pred - align_labels(self.name, y_pred, y_true))


class MeanMetricWrapper(_Mean):
    """Any ``fn(y_pred, y_true) -> batch mean`` (e.g. a loss) averaged over samples."""

    def __init__(
        self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], name: str | None = None
    ) -> None:
        self.fn = fn
        super().__init__(name or getattr(fn, "name", None) or getattr(fn, "__name__", "metric"))

    def _batch(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> tuple[torch.Tensor, int]:
        batch = y_pred.shape[0]
        return _sum(self.fn(y_pred, y_true)) * batch, batch


class FunctionMetric(_Mean):
    """Your own metric written the Keras way, ``fn(y_true, y_pred) -> values``: the mean of every
    value it returns over the epoch, as Keras's ``MeanMetricWrapper`` (a function returning one
    number per batch thus weighs every batch alike)."""

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], name: str | None = None) -> None:
        self.fn = KerasFunction(fn)
        super().__init__(name or self.fn.name)

    def _batch(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> tuple[torch.Tensor, int]:
        values = self.fn.values(y_pred, y_true)
        return _sum(values), values.numel()


class AUC(Metric):
    """Area under the ROC curve, streamed as Keras does it.

    Scores (probabilities in [0, 1]) are binned against ``num_thresholds``
    thresholds ``-eps, 1/(n-1), ..., (n-2)/(n-1), 1+eps``; per bin, positives and
    negatives are counted on the device. ``compute`` turns the counts into
    true/false positive rates at each threshold and integrates with the
    trapezoidal rule (Keras' ``summation_method="interpolation"``). Outputs of
    a multi-output model are pooled. Labels above 0.5 count as positive.
    """

    name = "auc"

    def __init__(self, num_thresholds: int = 200, name: str | None = None) -> None:
        self.num_thresholds = num_thresholds = arguments.integer("auc: num_thresholds", num_thresholds, 2,
                                                                 expected="an integer > 1")
        inner = [i / (num_thresholds - 1) for i in range(1, num_thresholds - 1)]
        self._cpu_thresholds = torch.tensor([-1e-7, *inner, 1 + 1e-7])
        super().__init__(name)

    def reset(self) -> None:
        # counts[label, k]: samples of that label (0 negative, 1 positive) that
        # exceed exactly the k lowest thresholds, k = 0 .. num_thresholds.
        self._counts: torch.Tensor | None = None

    def update(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> None:
        scores = y_pred.detach().reshape(-1).float()
        positive = (align_labels(self.name, y_pred, y_true.detach()) > 0.5).reshape(-1)
        width = self.num_thresholds + 1
        if self._counts is None or self._counts.device != scores.device:
            self._thresholds = self._cpu_thresholds.to(scores.device)
            self._counts = torch.zeros(2 * width, dtype=torch.int64, device=scores.device)
        # bucketize(right=False) = the number of thresholds strictly below the score.
        # index_add_ rather than bincount: bincount reads its maximum back to the host.
        exceeded = torch.bucketize(scores, self._thresholds)
        self._counts.index_add_(0, exceeded + positive * width, torch.ones_like(exceeded))

    def compute(self) -> float:
        if self._counts is None:
            return math.nan
        negative, positive = self._counts.double().reshape(2, -1)
        # Samples above threshold i are those exceeding more than i thresholds.
        tp = positive.flip(0).cumsum(0).flip(0)[1:]
        fp = negative.flip(0).cumsum(0).flip(0)[1:]
        tpr, fpr = tp / positive.sum(), fp / negative.sum()
        area = torch.sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2)
        return float(area)

    def get_config(self) -> dict[str, Any]:
        return {"num_thresholds": self.num_thresholds, **super().get_config()}


# Keras 3's other metrics live in their own module; importing it registers them.
from deepfield.training.keras_metrics import (  # noqa: E402
    F1Score,
    FBetaScore,
    MeanIoU,
    Precision,
    R2Score,
    Recall,
    RootMeanSquaredError,
    SummedMetric,
    TopKCategoricalAccuracy,
)

Metric.registry.alias("acc", "accuracy")
Metric.registry.alias("mean_iou", "mean_io_u")
Metric.registry.alias("mean_absolute_error", "mae")
Metric.registry.alias("mean_squared_error", "mse")
NAMES = Metric.registry.names()


def get(spec: str | Metric | dict[str, Any] | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Metric:
    """A metric from a name, an instance (returned as is), a config, or a function.

    A name keeps its spelling as the metric's ``name`` (``"acc"`` is shown as
    ``acc``, as in Keras); a function of yours ``fn(y_true, y_pred)`` (Keras's order) is averaged
    over all it returns (:class:`FunctionMetric`), under its ``__name__``; a deepfield loss or a torch
    ``nn.Module`` ``fn(y_pred, y_true) -> batch mean`` is averaged over samples (:class:`MeanMetricWrapper`).
    """
    if isinstance(spec, Metric):
        return _one_number(spec)
    if isinstance(spec, str):
        try:
            shown = spec.lower() if spec.lower() in Metric.registry.known() else None  # a class name: Keras's name
            return _one_number(Metric.registry.lookup(spec)(name=shown))
        except TypeError as exc:
            raise DeepfieldError(f"metric {spec}: needs arguments ({exc}); give {{'class_name': {spec!r}, "
                                 "'config': {...}}") from None
    if isinstance(spec, dict) and "class_name" in spec:
        return _one_number(Metric.registry.from_config(spec))
    if isinstance(spec, (Loss, nn.Module)):
        return MeanMetricWrapper(spec)
    if callable(spec):
        return FunctionMetric(spec)
    raise DeepfieldError(
        f"metric must be a name, a Metric, a function or {{'class_name': ..., 'config': {{...}}}}, "
        f"got {type(spec).__name__}"
    )



def _one_number(metric: Metric) -> Metric:
    """``metric``, unless it gives one score per class (a vector cannot be a training log)."""
    if getattr(metric, "gives_vector", False):
        raise DeepfieldError(f"metric {metric.name}: gives one score per class; for training logs choose an average "
                             "(F1Score(average='macro'), R2Score(class_aggregation='uniform_average'))")
    return metric


__all__ = [
    "AUC", "NAMES", "Accuracy", "BinaryAccuracy", "F1Score", "FBetaScore", "FunctionMetric", "MeanIoU",
    "Precision", "R2Score", "Recall", "RootMeanSquaredError", "SummedMetric", "TopKCategoricalAccuracy",
    "MeanAbsoluteError", "MeanMetricWrapper",
    "MeanSquaredError", "Metric", "get",
]
