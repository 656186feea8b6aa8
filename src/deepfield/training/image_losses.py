"""Losses for image outputs (``(N, C, H, W)``): errors measured at several scales at once.

:class:`MultiScaleMAE` (``multiscale_mae``) is the mean absolute error of the residual image and of the
residual summed over ``s × s`` blocks for ``s`` in ``scales``, each block sum divided by ``s`` so that
white noise keeps its per-pixel σ at every scale (the terms weigh alike). A per-pixel loss sees a
residual that is small in every pixel but of one sign over a galaxy (a flux error) as small; the block
sums see it grow with the block: photometry (an aperture sum) is what such errors spoil.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from deepfield.errors import DeepfieldError
from deepfield.training.losses import Loss

DEFAULT_SCALES = (1, 2, 4, 8)
"""Block sides in pixels of :class:`MultiScaleMAE`."""


class MultiScaleMAE(Loss):
    """``mean over s of mean |pool_s(y_pred − y_true)| · s``, ``pool_s`` the mean over ``s × s`` blocks
    (a stamp side not divisible by ``s`` drops its last rows and columns at that scale); needs
    ``(N, C, H, W)`` with ``H, W ≥ max(scales)``."""

    name = "multiscale_mae"

    def __init__(self, scales: Sequence[int] = DEFAULT_SCALES):
        self.scales = tuple(int(s) for s in scales)
        if not self.scales or min(self.scales) < 1:
            raise DeepfieldError(f"multiscale_mae: scales must be block sides >= 1 pixel, got {list(scales)}")

    def elements(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """(N,) the loss of each stamp."""
        if y_pred.ndim != 4 or min(y_pred.shape[2:]) < max(self.scales):
            raise DeepfieldError(f"multiscale_mae: needs images (N, C, H, W) of at least {max(self.scales)} "
                                 f"pixels a side, got shape {tuple(y_pred.shape)}")
        residual = y_pred - y_true
        terms = [(F.avg_pool2d(residual, s) * s if s > 1 else residual).abs().mean(dim=(1, 2, 3))
                 for s in self.scales]
        return torch.stack(terms).mean(dim=0)

    def get_config(self) -> dict[str, Any]:
        return {"scales": list(self.scales)}
