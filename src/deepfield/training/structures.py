"""Several inputs and outputs on the Keras face: data by input/output name, a loss per output, metrics per output.

A functional model with several inputs or outputs trains through the same :class:`~deepfield.training.engine.Engine`
as any model: its inputs and targets are :class:`~deepfield.models.packed.Packed` (arrays in the order of the
model's input and output names), its outputs come back packed, the total loss is :func:`output_loss`'s and
each output's loss and metrics are metrics of the engine named as Keras 3 names them: ``loss`` (the weighted
sum), ``<output>_loss`` (each output's own, unweighted), ``<output>_<metric>``, and ``val_`` before each.

What ``compile`` takes, as Keras 3 (checked against keras 3.15):

* ``loss``: one loss (for every output), a list (one per output, ``None`` for an output without one) or a
  dict by output name (an output left out has none);
* ``loss_weights``: a list or a dict by output name (default 1 each): ``loss = sum(w_i * loss_i)``;
* ``metrics``: a list with one entry per output (a metric or a list of metrics, or ``None``) or a dict by
  output name. A flat list of a different length is an error, as in Keras 3: it does not apply to every output.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from deepfield.errors import DeepfieldError
from deepfield.models.packed import Packed
from deepfield.training import losses
from deepfield.training import metrics as metric_registry


def _per_output(value: Any, names: Sequence[str], what: str, default: Any, one_for_all: bool) -> list[Any]:
    """``value`` spread over the outputs: a dict by name, a list by position, or (``one_for_all``) one for all."""
    if isinstance(value, dict):
        unknown = [k for k in value if k not in names]
        if unknown:
            raise DeepfieldError(f"{what}: no output named {', '.join(map(repr, unknown))}; the model's outputs are "
                                 f"{', '.join(names)}")
        return [value.get(n, default) for n in names]
    if isinstance(value, (list, tuple)):
        if len(value) != len(names):
            raise DeepfieldError(f"{what}: a list needs one entry per output ({', '.join(names)}), got {len(value)} "
                                 f"entries; or pass a dict by output name")
        return list(value)
    if value is None:
        return [default] * len(names)
    if one_for_all:
        return [value] * len(names)
    raise DeepfieldError(f"{what} of a model with several outputs must be a list (one entry per output) or a dict "
                         f"by output name ({', '.join(names)}), got {type(value).__name__}")


class _OutputLosses(losses.Loss):
    """The training loss of a model with several outputs: ``sum(w_i * loss_i(pred_i, y_i))`` over the
    outputs that have a loss; ``pred`` and ``y`` are :class:`Packed` in the order of the outputs.
    A :class:`~deepfield.training.losses.Loss`: called in PyTorch's order, as the engine calls losses."""

    def __init__(self, names: Sequence[str], loss: Any, loss_weights: Any = None):
        specs = _per_output(loss, names, "loss", None, one_for_all=True)
        weights = _per_output(loss_weights, names, "loss_weights", 1.0, one_for_all=False)
        self.terms = [(i, name, losses.get(spec), float(w))
                      for i, (name, spec, w) in enumerate(zip(names, specs, weights)) if spec is not None]
        if not self.terms:
            raise DeepfieldError("loss: no output has a loss; give a loss for at least one output")

    def __call__(self, y_pred: Packed, y_true: Packed) -> torch.Tensor:
        total = None
        for i, _, fn, weight in self.terms:
            term = fn(y_pred.parts[i], y_true.parts[i]) * weight
            total = term if total is None else total + term
        return total  # type: ignore[return-value]

    def output_metrics(self) -> list[metric_registry.Metric]:
        """Each output's own loss, unweighted, as a metric ``<output>_loss`` (what Keras reports)."""
        def part(i: int, fn: Any) -> Any:
            return lambda y_pred, y_true: fn(y_pred.parts[i], y_true.parts[i])
        return [metric_registry.MeanMetricWrapper(part(i, fn), name=f"{name}_loss") for i, name, fn, _ in self.terms]


def output_loss(names: Sequence[str], loss: Any, loss_weights: Any = None) -> _OutputLosses:
    """The total loss of a model whose outputs are ``names``: ``loss`` one for all, a list or a dict by name,
    weighted by ``loss_weights``; its ``output_metrics()`` report each output's own loss."""
    return _OutputLosses(names, loss, loss_weights)


class _OutputMetric(metric_registry.Metric):
    """``metric`` on output ``index`` of packed predictions and targets, shown as ``name``."""

    def __init__(self, metric: metric_registry.Metric, index: int, name: str):
        self.metric, self.index = metric, index
        super().__init__(name)

    def update(self, y_pred: Packed, y_true: Packed) -> None:
        self.metric.update(y_pred.parts[self.index], y_true.parts[self.index])

    def compute(self) -> float:
        return self.metric.compute()

    def reset(self) -> None:
        if hasattr(self, "metric"):
            self.metric.reset()


def output_metrics(names: Sequence[str], metrics: Any) -> list[metric_registry.Metric]:
    """The metrics per output (see the module doc), each named ``<output>_<metric>``."""
    result: list[metric_registry.Metric] = []
    for i, (name, entry) in enumerate(zip(names, _per_output(metrics, names, "metrics", None, one_for_all=False))):
        for spec in entry if isinstance(entry, (list, tuple)) else ([] if entry is None else [entry]):
            metric = metric_registry.get(copy.deepcopy(spec) if isinstance(spec, metric_registry.Metric) else spec)
            result.append(_OutputMetric(metric, i, f"{name}_{metric.name}"))
    return result


def one_output(value: Any, names: Sequence[str], what: str, many: bool = False) -> Any:
    """For a model with one output: ``{name: v}`` or ``[v]`` (``many``: lists are the metrics themselves) as ``v``."""
    if isinstance(value, dict):
        return _per_output(value, names, what, None, one_for_all=False)[0]
    if not many and isinstance(value, (list, tuple)):
        return _per_output(value, names, what, None, one_for_all=False)[0]
    return value


class _Weighted(losses.Loss):
    """``loss(y_pred, y_true) * weight``, in PyTorch's order as the engine calls losses."""

    def __init__(self, loss: Any, weight: float):
        self.loss, self.weight = losses.get(loss), weight
        self.name = getattr(self.loss, "name", "loss")  # type: ignore[misc]  # shown in messages

    def __call__(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return self.loss(y_pred, y_true) * self.weight


def weighted(loss: Any, weight: Any) -> Any:
    """``loss`` times ``weight`` (``None``: the loss as it is), for ``loss_weights`` on a model with one output."""
    if weight is None or loss is None:
        return loss
    return _Weighted(loss, float(weight))


def pack(value: Any, names: Sequence[str], what: str, always: bool) -> Any:
    """Arrays for the model's ``names`` (one array, a list in order, or a dict by name) as a :class:`Packed`
    (``always``, or when there are several), else the one array as it is; ``what``: ``x`` or ``y``, for messages."""
    if isinstance(value, dict):
        missing = [n for n in names if n not in value]
        unknown = [k for k in value if k not in names]
        if missing or unknown:
            raise DeepfieldError(f"{what} is a dict with keys {list(value)}; the model's {_kind(what)} are "
                                 f"{', '.join(names)}")
        parts = [value[n] for n in names]
    elif len(names) > 1:
        if not isinstance(value, (list, tuple)) or len(value) != len(names):
            got = f"{len(value)} arrays" if isinstance(value, (list, tuple)) else type(value).__name__
            raise DeepfieldError(f"{what}: the model has {len(names)} {_kind(what)} ({', '.join(names)}); pass a "
                                 f"list of {len(names)} arrays or a dict by name, got {got}")
        parts = list(value)
    elif isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], (np.ndarray, torch.Tensor)):
        parts = [value[0]]
    else:
        parts = [value]
    if not (always or len(parts) > 1):
        return parts[0]
    return Packed(parts, [f"{what}[{n!r}]" for n in names])


def check_shapes(x: Packed, names: Sequence[str], shapes: Sequence[tuple[int, ...]]) -> None:
    """Each input's samples against the shape the model's input of that name takes, one line naming it."""
    for part, label, name, shape in zip(x.parts, x.names, names, shapes):
        got = tuple(np.shape(part)[1:])
        if got != tuple(shape):
            raise DeepfieldError(f"{label} has samples of shape {got}; the model's input {name!r} takes {tuple(shape)}")


def _kind(what: str) -> str:
    return "outputs" if what.removeprefix("validation ").startswith("y") else "inputs"


def unpack(result: Any, names: Sequence[str], as_dict: bool) -> Any:
    """Packed outputs as Keras returns them: a dict by output name or a list; one output: the array."""
    if not isinstance(result, Packed):
        return result
    return dict(zip(names, result.parts)) if as_dict else list(result.parts)
