"""The per-pixel (or per-sample) sparse cross-entropy with a weight per class: Keras's ``class_weight`` in the loss.

For segmentation the weights cannot come from ``fit(class_weight=...)``: that gives each *sample* the weight of its
one class, and a stamp's pixels hold several. :class:`ClassWeightedCrossentropy` weighs each pixel's
``-log p[label]`` by the weight of its label, then takes the mean over the pixels (as Keras's sample weights: the
mean of ``w_label · loss``, so weights of 1 give the plain sparse cross-entropy and a rare class's weight raises
its share of the gradient). Not in the registry by name (it needs its weights); built by a task (``task: segment``,
``training.class_weight``). Imported by :mod:`deepfield.training.losses`.

Shapes: ``y_pred`` ``(N, K, ...)`` probabilities (or logits with ``from_logits``); ``y_true`` ``(N, ...)`` integer
labels in ``[0, K)``; ``weights`` ``(K,)``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from deepfield.errors import DeepfieldError
from deepfield.training.losses import SparseCategoricalCrossentropy


class ClassWeightedCrossentropy(SparseCategoricalCrossentropy):
    """``mean(w[label] · -log p[label])`` over every labelled element (module docstring)."""

    def __init__(self, weights: Sequence[float], from_logits: bool = False) -> None:
        super().__init__(from_logits)
        self.weights = torch.as_tensor(list(weights), dtype=torch.float32)
        if self.weights.ndim != 1 or not torch.all(torch.isfinite(self.weights) & (self.weights >= 0)):
            raise DeepfieldError(f"class weights must be numbers >= 0, one per class; got {list(weights)}")

    def call(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return self.elements(y_pred, y_true).mean()

    def elements(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        if y_pred.shape[1] != len(self.weights):
            raise DeepfieldError(f"class weights: {len(self.weights)} given for {y_pred.shape[1]} predicted classes")
        return super().elements(y_pred, y_true) * self.weights.to(y_pred.device, y_pred.dtype)[y_true]

    def get_config(self) -> dict[str, Any]:
        return {"weights": self.weights.tolist(), "from_logits": self.from_logits}
