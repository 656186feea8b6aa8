"""The rest of Keras 3's standard losses, with its names, arguments, defaults and numbers.

``kl_divergence``, ``poisson``, ``log_cosh``, ``hinge``, ``binary_focal_crossentropy`` and
``categorical_focal_crossentropy``, registered by :mod:`deepfield.training.losses` (which imports
this module) and called as every deepfield loss, ``loss(y_pred, y_true)``. Where Keras reduces over
its last axis, the class axis, deepfield reduces over axis 1 (channels first); each loss is averaged
over the batch as Keras's ``sum_over_batch_size`` does.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from deepfield.arguments import is_number
from deepfield.errors import DeepfieldError, flag
from deepfield.training.losses import (EPSILON, BinaryCrossentropy, Loss, _FromLogits, check_label_smoothing,
                                       one_hot_labels)


class KLDivergence(Loss):
    """``sum_c y_c log(y_c / p_c)`` per sample, both clipped to ``[1e-7, 1]`` (Keras's), for
    distributions ``(N, C, ...)`` over axis 1 (of ``(N,)`` inputs, each element is one term)."""

    name = "kl_divergence"

    def elements(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        y, p = y_true.clamp(EPSILON, 1.0), y_pred.clamp(EPSILON, 1.0)
        terms = y * torch.log(y / p)
        return terms.sum(dim=1) if terms.ndim > 1 else terms


class Poisson(Loss):
    """``p - y log(p + 1e-7)`` per output, averaged: the Poisson negative log-likelihood of counts ``y``
    with predicted rates ``p`` (up to ``log y!``)."""

    name = "poisson"

    def elements(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return y_pred - y_true * torch.log(y_pred + EPSILON)


class LogCosh(Loss):
    """``log(cosh(p - y))`` per output, averaged: about ``e**2 / 2`` for small errors, ``|e| - log 2`` for
    large ones (computed as ``e + softplus(-2e) - log 2``, as Keras does, without overflow)."""

    name = "log_cosh"

    def elements(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        error = y_pred - y_true
        return error + F.softplus(-2.0 * error) - math.log(2.0)


class Hinge(Loss):
    """``max(1 - y p, 0)`` per output, averaged, for labels -1 / 1; labels that are all 0 / 1 are
    read as -1 / 1 (Keras's rule, decided per batch on the device)."""

    name = "hinge"

    def elements(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        binary = ((y_true == 0) | (y_true == 1)).all()
        y = torch.where(binary, 2.0 * y_true - 1.0, y_true)
        return torch.clamp(1.0 - y * y_pred, min=0.0)


def _focusing(owner: str, alpha: float, gamma: float) -> tuple[float, float]:
    """Keras's ``alpha`` (a weight) and ``gamma`` (the focusing exponent), numbers >= 0."""
    for key, value in (("alpha", alpha), ("gamma", gamma)):
        if not is_number(value) or value < 0:
            raise DeepfieldError(f"{owner}: {key} must be a number >= 0, got {value!r}")
    return float(alpha), float(gamma)


class BinaryFocalCrossentropy(BinaryCrossentropy):
    """The binary cross-entropy times ``(1 - p_t)**gamma`` (Lin et al. 2017), per output, averaged.

    ``p_t`` is the probability given to the true label; with ``apply_class_balancing`` the positives are
    weighted by ``alpha`` and the negatives by ``1 - alpha``. Probabilities are clipped to
    ``[1e-7, 1 - 1e-7]`` in the logarithms; logits (``from_logits``) go through a sigmoid first.
    """

    name = "binary_focal_crossentropy"

    def __init__(self, apply_class_balancing: bool = False, alpha: float = 0.25, gamma: float = 2.0,
                 from_logits: bool = False, label_smoothing: float = 0.0) -> None:
        super().__init__(from_logits, label_smoothing)
        self.apply_class_balancing = flag(self.name, "apply_class_balancing", apply_class_balancing)
        self.alpha, self.gamma = _focusing(self.name, alpha, gamma)

    def elements(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(y_pred) if self.from_logits else y_pred
        clipped = p.clamp(EPSILON, 1.0 - EPSILON)
        bce = -(y_true * torch.log(clipped) + (1.0 - y_true) * torch.log1p(-clipped))
        p_t = y_true * p + (1.0 - y_true) * (1.0 - p)
        focal = torch.pow(1.0 - p_t, self.gamma) * bce
        if self.apply_class_balancing:
            focal = (y_true * self.alpha + (1.0 - y_true) * (1.0 - self.alpha)) * focal
        return focal

    def get_config(self) -> dict[str, Any]:
        return {"apply_class_balancing": self.apply_class_balancing, "alpha": self.alpha, "gamma": self.gamma,
                "from_logits": self.from_logits, "label_smoothing": self.label_smoothing}


class CategoricalFocalCrossentropy(_FromLogits):
    """``-sum_c alpha (1 - p_c)**gamma y_c log p_c`` per sample, for one-hot (or soft) labels ``(N, C)``.

    Probabilities are renormalised over axis 1 and clipped to ``[1e-7, 1 - 1e-7]``; logits
    (``from_logits``) go through a softmax first; ``label_smoothing`` as the categorical cross-entropy's.
    """

    name = "categorical_focal_crossentropy"

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, from_logits: bool = False,
                 label_smoothing: float = 0.0) -> None:
        super().__init__(from_logits)
        self.alpha, self.gamma = _focusing(self.name, alpha, gamma)
        self.label_smoothing = check_label_smoothing(self.name, label_smoothing)

    def prepare(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return one_hot_labels(self.name, y_pred, y_true, self.label_smoothing)

    def elements(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(y_pred, dim=1) if self.from_logits else y_pred
        p = (p / p.sum(dim=1, keepdim=True)).clamp(EPSILON, 1.0 - EPSILON)
        return torch.sum(self.alpha * torch.pow(1.0 - p, self.gamma) * -y_true * torch.log(p), dim=1)

    def get_config(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "gamma": self.gamma, "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing}
