"""``diffusion_mse``: the training loss of a noise-predicting diffusion model (Ho et al. 2020's simple loss).

The model's training output is already the error of its noise estimate, ``ε̂ − ε`` (the noise is drawn inside
its ``forward``; see :mod:`deepfield.models.presets.diffusion`), so the loss is its mean square; ``y_true`` (the
clean images the engine hands over) is not read. Registered by :mod:`deepfield.training.losses`.
"""
from __future__ import annotations

import torch

from deepfield.training.losses import Loss


class DiffusionMSE(Loss):
    """``mean(y_pred²)``: ``y_pred`` ``(N, C, H, W)`` is ``ε̂ − ε``; ``y_true`` is ignored."""

    name = "diffusion_mse"

    def prepare(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return y_true  # not read

    def elements(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return y_pred.square()
