"""Keras 3's classification and regression metrics: ``Precision``, ``Recall``, ``F1Score``, ``FBetaScore``,
``RootMeanSquaredError``, ``R2Score``, ``TopKCategoricalAccuracy`` and ``MeanIoU``.

Names, arguments, defaults and numbers are Keras's; the class axis is axis 1 (channels first). Each keeps
its state as one tensor of sums on the device (:class:`SummedMetric`): ``update`` queues device ops only,
``compute`` is the one host sync, and a data-parallel fit sums the state over the processes
(:func:`deepfield.training.distributed.reduced_metric`). Registered by :mod:`deepfield.training.metrics`,
which imports this module.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from deepfield import arguments
from deepfield.arguments import is_number
from deepfield.errors import DeepfieldError, flag
from deepfield.training.losses import align_labels
from deepfield.training.metrics import Metric, _Mean

# Keras's backend.epsilon() and its NEG_INF for predictions outside the top k.
_EPSILON = 1e-7
_NEG_INF = -1e10


def _float(device: torch.device) -> torch.dtype:
    """float64 sums, float32 on Apple's MPS, which lacks float64."""
    return torch.float32 if device.type == "mps" else torch.float64


class SummedMetric(Metric):
    """A metric whose state is one tensor of sums, added to every batch; ``result`` reads it.

    ``state_size`` is the state's length when known before the first batch (a process that saw no
    batch then joins the data-parallel sum with zeros).
    """

    state_size: int | None = None

    def reset(self) -> None:
        self._state: torch.Tensor | None = None

    def update(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> None:
        sums = self._sums(y_pred.detach(), y_true.detach())
        if self._state is None:
            self._state = sums.to(_float(sums.device))
            self.state_size = len(sums)
        else:
            self._state += sums

    def empty_state(self, device: torch.device) -> torch.Tensor:
        """Zeros in the state's shape: what a process that saw no batch adds to the data-parallel sum."""
        if self.state_size is None:
            raise DeepfieldError(f"metric {self.name}: a process saw no samples before this metric knew its "
                                 "number of classes; give every process data")
        return torch.zeros(self.state_size, dtype=_float(device), device=device)

    def compute(self) -> Any:
        return math.nan if self._state is None else self.result(self._state)

    def _sums(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """This batch's contribution to the state (a 1-d tensor)."""
        raise NotImplementedError

    def result(self, state: torch.Tensor) -> Any:
        """The metric from a state of sums (this process's, or every process's)."""
        raise NotImplementedError


def _threshold(owner: str, value: Any) -> float | None:
    if value is None:
        return None
    if not is_number(value):
        raise DeepfieldError(f"{owner}: thresholds must be one number in [0, 1] (deepfield logs one value), "
                             f"got {value!r}")
    return float(value)


class _Confusion(SummedMetric):
    """True and false positives and negatives of thresholded predictions, Keras's ``update_confusion_matrix``.

    Predictions above ``thresholds`` (0.5) count as positive, labels that are non-zero as true. With
    ``top_k`` only the ``k`` largest predictions of a sample (over axis 1) can be positive (and, with no
    threshold given, they all are); ``class_id`` looks at that one class (column) alone.
    """

    state_size = 4  # tp, fp, fn, tn

    def __init__(self, thresholds: float | None = None, top_k: int | None = None, class_id: int | None = None,
                 name: str | None = None) -> None:
        self.init_thresholds = _threshold(self.name, thresholds)
        self.top_k = None if top_k is None else arguments.integer(f"{self.name} top_k", top_k)
        self.class_id = None if class_id is None else arguments.integer(f"{self.name} class_id", class_id, 0)
        default = 0.5 if top_k is None else _NEG_INF
        self.threshold = default if self.init_thresholds is None else self.init_thresholds
        super().__init__(name)

    def _sums(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        y_true = align_labels(self.name, y_pred, y_true)
        if self.top_k is not None:
            k = min(self.top_k, y_pred.shape[1])
            kept = torch.zeros_like(y_pred, dtype=torch.bool).scatter_(1, y_pred.topk(k, dim=1).indices, True)
            y_pred = torch.where(kept, y_pred, torch.full_like(y_pred, _NEG_INF))
        if self.class_id is not None:
            y_pred, y_true = y_pred[:, self.class_id], y_true[:, self.class_id]
        predicted, true = y_pred > self.threshold, y_true != 0
        return torch.stack([(predicted & true).sum(), (predicted & ~true).sum(), (~predicted & true).sum(),
                            (~predicted & ~true).sum()])

    def get_config(self) -> dict[str, Any]:
        return {"thresholds": self.init_thresholds, "top_k": self.top_k, "class_id": self.class_id,
                **super().get_config()}


def _ratio(a: torch.Tensor, b: torch.Tensor) -> float:
    """``a / b``, 0 when ``b`` is 0 (Keras's ``divide_no_nan``)."""
    return float(a / b) if float(b) else 0.0


class Precision(_Confusion):
    """``tp / (tp + fp)`` over every batch of the epoch (0 when nothing was predicted positive)."""

    name = "precision"

    def result(self, state: torch.Tensor) -> float:
        return _ratio(state[0], state[0] + state[1])


class Recall(_Confusion):
    """``tp / (tp + fn)`` over every batch of the epoch (0 when there was no positive)."""

    name = "recall"

    def result(self, state: torch.Tensor) -> float:
        return _ratio(state[0], state[0] + state[2])


_AVERAGES = (None, "micro", "macro", "weighted")


class FBetaScore(SummedMetric):
    """Keras's F-beta score of one-hot (or multi-label) labels ``(N, C)``, per class then averaged.

    ``threshold=None`` takes each sample's largest prediction as its class; a number counts predictions
    above it. ``average``: ``None`` (Keras's default: one score per class, an array), ``"micro"``
    (over all classes' counts), ``"macro"`` (the mean of the classes' scores) or ``"weighted"`` (weighted
    by each class's number of true labels). A training metric must give one number: not ``None``.
    """

    name = "fbeta_score"

    def __init__(self, average: str | None = None, beta: float = 1.0, threshold: float | None = None,
                 name: str | None = None) -> None:
        if average not in _AVERAGES:
            raise DeepfieldError(f"{self.name}: average must be one of None, 'micro', 'macro', 'weighted'; "
                                 f"got {average!r}")
        if not is_number(beta) or beta <= 0:
            raise DeepfieldError(f"{self.name}: beta must be a number > 0, got {beta!r}")
        self.average, self.beta, self.threshold = average, float(beta), _threshold(self.name, threshold)
        super().__init__(name)

    @property
    def gives_vector(self) -> bool:
        return self.average is None

    def _sums(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        if y_pred.ndim != 2 or y_true.shape != y_pred.shape:
            raise DeepfieldError(f"{self.name}: expects labels and predictions (N, classes) of one shape; got "
                                 f"{tuple(y_true.shape)} and {tuple(y_pred.shape)}")
        if self.threshold is None:
            predicted = (y_pred >= y_pred.max(dim=1, keepdim=True).values) & (y_pred.abs() > 1e-9)
        else:
            predicted = y_pred > self.threshold
        p, t = predicted.to(y_pred.dtype), y_true.to(y_pred.dtype)
        return torch.cat([(p * t).sum(0), (p * (1 - t)).sum(0), ((1 - p) * t).sum(0), t.sum(0)])

    def result(self, state: torch.Tensor) -> Any:
        tp, fp, fn, support = state.reshape(4, -1)
        if self.average == "micro":
            tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
        precision = tp / (tp + fp + _EPSILON)
        recall = tp / (tp + fn + _EPSILON)
        b2 = self.beta ** 2
        score = precision * recall / (b2 * precision + recall + _EPSILON) * (1 + b2)
        if self.average == "weighted":
            return float(torch.sum(score * support / (support.sum() + _EPSILON)))
        if self.average is not None:
            return float(score.mean())
        return score.float().cpu().numpy()

    def get_config(self) -> dict[str, Any]:
        return {"average": self.average, "beta": self.beta, "threshold": self.threshold, **super().get_config()}


class F1Score(FBetaScore):
    """The F1 score (F-beta with ``beta=1``); arguments as :class:`FBetaScore`'s."""

    name = "f1_score"

    def __init__(self, average: str | None = None, threshold: float | None = None, name: str | None = None) -> None:
        super().__init__(average=average, beta=1.0, threshold=threshold, name=name)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("beta")
        return config


class RootMeanSquaredError(SummedMetric):
    """``sqrt(mean((y_pred - y_true)**2))`` over all outputs of all batches of the epoch."""

    name = "root_mean_squared_error"
    state_size = 2

    def _sums(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        squares = torch.square(y_pred - align_labels(self.name, y_pred, y_true))
        return torch.stack([squares.sum(dtype=_float(squares.device)),
                            torch.tensor(float(squares.numel()), device=squares.device)])

    def result(self, state: torch.Tensor) -> float:
        return math.sqrt(float(state[0] / state[1])) if float(state[1]) else math.nan


_AGGREGATIONS = (None, "uniform_average", "variance_weighted_average")


class R2Score(SummedMetric):
    """The coefficient of determination ``1 - SS_res / SS_tot`` per output of ``(N, outputs)``, over the epoch.

    ``class_aggregation``: ``"uniform_average"`` (the mean over outputs, Keras's default),
    ``"variance_weighted_average"`` (weighted by each output's variance) or ``None`` (one score per
    output, an array: not for a training log). ``num_regressors`` ``p > 0`` gives the adjusted score
    ``1 - (1 - R2) (n - 1) / (n - p - 1)`` with ``n`` the number of values seen.
    """

    name = "r2_score"

    def __init__(self, class_aggregation: str | None = "uniform_average", num_regressors: int = 0,
                 name: str | None = None) -> None:
        if class_aggregation not in _AGGREGATIONS:
            raise DeepfieldError(f"{self.name}: class_aggregation must be one of None, 'uniform_average', "
                                 f"'variance_weighted_average'; got {class_aggregation!r}")
        self.class_aggregation = class_aggregation
        self.num_regressors = arguments.integer(f"{self.name} num_regressors", num_regressors, 0)
        super().__init__(name)

    @property
    def gives_vector(self) -> bool:
        return self.class_aggregation is None

    def _sums(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        y_true = align_labels(self.name, y_pred, y_true)
        if y_pred.ndim == 1:
            y_pred, y_true = y_pred[:, None], y_true[:, None]
        if y_pred.ndim != 2:
            raise DeepfieldError(f"{self.name}: expects (N, outputs), got predictions of shape {tuple(y_pred.shape)}")
        wide = _float(y_pred.device)
        t, p = y_true.to(wide), y_pred.to(wide)
        count = torch.full((t.shape[1],), float(t.shape[0]), dtype=wide, device=t.device)
        return torch.cat([t.sum(0), (t * t).sum(0), ((t - p) ** 2).sum(0), count])

    def result(self, state: torch.Tensor) -> Any:
        total, squares, residual, count = state.reshape(4, -1)
        spread = squares - total * (total / count)
        raw = 1 - residual / spread
        raw = torch.where(torch.isinf(raw), torch.zeros_like(raw), raw)
        if self.class_aggregation == "uniform_average":
            score = raw.mean()
        elif self.class_aggregation == "variance_weighted_average":
            score = torch.sum(spread * raw) / spread.sum()
        else:
            score = raw
        n, p = float(count.sum()), self.num_regressors
        if p:
            if p >= n - 1:
                warnings.warn(f"{self.name}: {p} regressors for {n:.0f} values; the unadjusted score is given",
                              stacklevel=2)
            else:
                score = 1 - (1 - score) * (n - 1) / (n - p - 1)
        return float(score) if score.ndim == 0 else score.float().cpu().numpy()

    def get_config(self) -> dict[str, Any]:
        return {"class_aggregation": self.class_aggregation, "num_regressors": self.num_regressors,
                **super().get_config()}


class TopKCategoricalAccuracy(_Mean):
    """The fraction of samples whose true class (the argmax of one-hot labels ``(N, C)``) is among the ``k``
    highest predictions (ties with the k-th count, as Keras; ``k`` above ``C``: every sample)."""

    name = "top_k_categorical_accuracy"

    def __init__(self, k: int = 5, name: str | None = None) -> None:
        self.k = arguments.integer(f"{self.name} k", k)
        super().__init__(name)

    def _values(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        if y_pred.ndim != 2 or y_true.shape != y_pred.shape:
            raise DeepfieldError(f"{self.name}: expects one-hot labels of the predictions' shape (N, classes); got "
                                 f"{tuple(y_true.shape)} and {tuple(y_pred.shape)}")
        k = min(self.k, y_pred.shape[1])
        target = y_pred.gather(1, y_true.argmax(dim=1, keepdim=True))
        return target[:, 0] >= y_pred.topk(k, dim=1).values[:, -1]

    def get_config(self) -> dict[str, Any]:
        return {"k": self.k, **super().get_config()}


class MeanIoU(SummedMetric):
    """The intersection over union ``tp / (tp + fp + fn)`` per class, averaged over the classes present,
    from the confusion matrix of the epoch (segmentation maps or plain classes).

    ``sparse_y_true`` / ``sparse_y_pred`` (Keras's defaults: both ``True``) say labels / predictions are
    class indices; otherwise they are scores or one-hot along ``axis`` (1, the class axis of deepfield's
    channels-first ``(N, C, H, W)``; Keras's default -1 is the channels-last one) and their argmax is
    taken. Pixels whose label is ``ignore_class``, or outside ``[0, num_classes)``, are left out.
    """

    name = "mean_io_u"

    def __init__(self, num_classes: int, name: str | None = None, ignore_class: int | None = None,
                 sparse_y_true: bool = True, sparse_y_pred: bool = True, axis: int = 1) -> None:
        self.num_classes = arguments.integer(f"{self.name} num_classes", num_classes)
        self.ignore_class = None if ignore_class is None else int(ignore_class)
        self.sparse_y_true = flag(self.name, "sparse_y_true", sparse_y_true)
        self.sparse_y_pred = flag(self.name, "sparse_y_pred", sparse_y_pred)
        self.axis = int(axis)
        self.state_size = self.num_classes ** 2
        super().__init__(name)

    def _sums(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        true = (y_true if self.sparse_y_true else y_true.argmax(dim=self.axis)).reshape(-1).long()
        predicted = (y_pred if self.sparse_y_pred else y_pred.argmax(dim=self.axis)).reshape(-1).long()
        if true.shape != predicted.shape:
            raise DeepfieldError(f"{self.name}: {true.numel()} labels for {predicted.numel()} predictions")
        c = self.num_classes
        keep = (true >= 0) & (true < c) & (predicted >= 0) & (predicted < c)
        if self.ignore_class is not None:
            keep &= true != self.ignore_class
        cells = torch.where(keep, true * c + predicted, torch.zeros_like(true))
        counts = torch.zeros(c * c, dtype=_float(cells.device), device=cells.device)
        return counts.index_add_(0, cells, keep.to(counts.dtype))

    def result(self, state: torch.Tensor) -> float:
        matrix = state.reshape(self.num_classes, self.num_classes)  # rows: true class, columns: predicted
        tp = matrix.diagonal()
        denominator = matrix.sum(0) + matrix.sum(1) - tp
        valid = denominator > 1e-9
        iou = torch.where(valid, tp / (denominator + _EPSILON), torch.zeros_like(tp))
        return float(iou.sum() / (valid.sum() + _EPSILON))

    def get_config(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "ignore_class": self.ignore_class,
                "sparse_y_true": self.sparse_y_true, "sparse_y_pred": self.sparse_y_pred, "axis": self.axis,
                **super().get_config()}
