"""Sample and class weights, Keras's way: ``fit(sample_weight=w)``, ``fit(class_weight={0: 1, 1: 5})``,
``evaluate(sample_weight=w)`` and ``validation_data=(x, y, w)``.

A weighted batch loss is ``sum(w * values) / values.size`` (Keras's ``sum_over_batch_size``; ``values``
is the loss of each sample, :meth:`deepfield.training.losses.Loss.values`), so a weight of 1 everywhere
is the unweighted loss. ``class_weight`` gives each sample the weight of its class (integer labels
``(N,)`` or ``(N, 1)``, binary labels ``(N, 1)`` rounded, one-hot labels ``(N, C)`` by their argmax;
a class not in the dict weighs 1), as Keras's ``class_weight_to_sample_weights``. Metrics are not
weighted (what Keras's ``metrics`` do; its ``weighted_metrics`` are not in deepfield).

How the weights travel: packed with the labels into one float32 tensor ``(N, K + 1)`` (labels
flattened, then the weight), so that shuffling, batching, ``validation_split`` and the data-parallel
sharding carry them unchanged; the engine unpacks each batch (:class:`Packing`). Without weights
nothing of this runs. Float32 targets and integer labels below 2**24 (class indices) survive exactly.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from deepfield.errors import DeepfieldError
from deepfield.models.packed import Packed
from deepfield.training.batches import as_tensor


class Packing:
    """How labels of one shape and dtype sit in a packed ``(N, K + 1)`` float32 tensor."""

    def __init__(self, shape: tuple[int, ...], dtype: torch.dtype) -> None:
        self.shape, self.dtype = shape, dtype

    def labels(self, packed: torch.Tensor) -> torch.Tensor:
        """The labels of a packed batch, in their shape ``(B, ...)`` and dtype."""
        return packed[:, :-1].reshape(packed.shape[0], *self.shape).to(self.dtype)

    def unpack(self, packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(labels, weights ``(B,)``) of a packed batch."""
        return self.labels(packed), packed[:, -1]


def pack(y: Any, weights: np.ndarray | None, name: str = "y") -> tuple[torch.Tensor, Packing]:
    """``y`` and its weights (ones when ``None``) as one float32 tensor ``(N, K + 1)``, and its packing."""
    labels = as_tensor(y, name, labels=True)
    n = len(labels)
    if not labels.dtype.is_floating_point and labels.numel() and int(labels.abs().max()) >= 2**24:
        raise DeepfieldError(f"{name}: integer labels of 2**24 or more cannot take sample weights")
    w = torch.ones(n) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
    packed = torch.cat([labels.reshape(n, -1).to(torch.float32), w.reshape(n, 1).to(labels.device)], dim=1)
    return packed, Packing(tuple(labels.shape[1:]), labels.dtype)


def check_sample_weight(sample_weight: Any, samples: int, name: str = "sample_weight") -> np.ndarray:
    """``sample_weight`` as float64 ``(N,)`` (``(N, 1)`` accepted): one finite weight >= 0 per sample."""
    if isinstance(sample_weight, torch.Tensor):
        sample_weight = sample_weight.detach().cpu().numpy()
    try:
        w = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise DeepfieldError(f"{name} must be numbers, one per sample") from None
    if w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if w.ndim != 1:
        raise DeepfieldError(f"{name} must have shape (N,), one weight per sample; got {w.shape}")
    if len(w) != samples:
        raise DeepfieldError(f"{name} has {len(w)} values for {samples} samples")
    if not (np.isfinite(w).all() and (w >= 0).all()):
        raise DeepfieldError(f"{name} must be finite and >= 0")
    return w


def class_weights(y: Any, class_weight: Any) -> np.ndarray:
    """Each sample's weight from its class, as Keras's ``class_weight_to_sample_weights``."""
    if not isinstance(class_weight, Mapping):
        raise DeepfieldError(f"class_weight must map class indices to weights, e.g. {{0: 1.0, 1: 5.0}}; "
                             f"got {type(class_weight).__name__}")
    labels = as_tensor(y, "y", labels=True).cpu().numpy()
    if labels.ndim > 1:
        labels = labels.argmax(axis=1) if labels.shape[1] != 1 else labels[:, 0]
    if labels.ndim != 1:
        raise DeepfieldError("class_weight needs one class per sample: labels (N,), (N, 1) or one-hot (N, C)")
    table = {int(k): float(v) for k, v in class_weight.items()}
    return np.array([table.get(int(c), 1.0) for c in np.round(labels)], dtype=np.float64)


def weighted(loss: Any, y_pred: torch.Tensor, y_true: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum(w * values) / values.size``: Keras's weighted ``sum_over_batch_size``."""
    values_of = getattr(loss, "values", None)
    if values_of is None:
        raise DeepfieldError(f"the loss {loss!r} gives no per-sample values, so it cannot take sample weights; "
                             "use a deepfield loss or a function f(y_true, y_pred) returning one value per sample")
    values = values_of(y_pred, y_true)
    if values.ndim == 0:
        raise DeepfieldError(f"the loss {loss!r} returns one number per batch; for sample weights it must "
                             "return one value per sample")
    w = weights.to(values.dtype).reshape(-1, *([1] * (values.ndim - 1)))
    return (values * w).sum() / values.numel()


class WeightedLoss:
    """``loss`` of packed batches ``(labels | weight)``: what the engine calls in a weighted fit."""

    def __init__(self, loss: Any, packing: Packing) -> None:
        self.loss, self.packing = loss, packing

    def __call__(self, y_pred: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
        y_true, w = self.packing.unpack(packed)
        return weighted(self.loss, y_pred, y_true, w)


def is_weighted_validation(data: Any) -> bool:
    """Whether ``validation_data`` is ``(x_val, y_val, sample_weight_val)``."""
    return isinstance(data, (tuple, list)) and len(data) == 3


def for_fit(x: Any, y: Any, sample_weight: Any, class_weight: Any,
            validation_data: Any) -> tuple[torch.Tensor, Any, Packing]:
    """Packed ``y`` and ``validation_data`` of a fit with weights (validation weighs 1 unless given)."""
    if isinstance(x, (Dataset, DataLoader)):
        raise DeepfieldError("sample_weight and class_weight need arrays x, y; a Dataset or DataLoader "
                             "cannot take them (yield a loss-weighted target instead)")
    if sample_weight is not None and class_weight is not None:
        raise DeepfieldError("give class_weight or sample_weight, not both (as Keras)")
    if isinstance(y, Packed):
        raise DeepfieldError("sample_weight and class_weight weigh a model with one output; per-output weights "
                             "(Keras's list or dict of them) are not supported yet")
    if y is None:
        raise DeepfieldError("y is missing: pass the targets with the arrays x")
    samples = len(as_tensor(y, "y", labels=True))
    if class_weight is not None:
        w = class_weights(y, class_weight)
    else:
        w = None if sample_weight is None else check_sample_weight(sample_weight, samples)
    packed, packing = pack(y, w)
    if validation_data is not None:
        if isinstance(validation_data, (Dataset, DataLoader)):
            raise DeepfieldError("with sample or class weights, validation_data must be arrays (x_val, y_val[, w])")
        x_val, y_val, *rest = validation_data
        n_val = len(as_tensor(y_val, "validation y", labels=True))
        w_val = check_sample_weight(rest[0], n_val, "validation sample_weight") if rest else None
        packed_val, packing_val = pack(y_val, w_val, "validation y")
        if (packing_val.shape, packing_val.dtype) != (packing.shape, packing.dtype):
            raise DeepfieldError(f"validation y has samples of shape {packing_val.shape} ({packing_val.dtype}), "
                                 f"y of {packing.shape} ({packing.dtype}); they must match")
        validation_data = (x_val, packed_val)
    return packed, validation_data, packing
