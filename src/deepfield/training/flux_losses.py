"""A per-pixel loss with a term on each image's total flux: ``flux_mae``, for deblending and restoring sources.

An MAE on (possibly stretched and normalised) pixels weighs every pixel alike, so a small bias spread over a
source's faint wings costs little while it moves the source's total flux; the photometry a deblender is judged
on is that total. :class:`FluxConservingMAE` adds ``flux_weight`` times the relative error of each image's flux,
``asinh(|F_pred − F_true| / (|F_true| + floor))`` (the relative error below 30 %, to 1.5 %; the asinh keeps the
gradient bounded when an untrained network's sinh-stretched outputs give fluxes thousands of times the truth's),
with ``F`` summed over pixels and channels after the network's units
are undone to the file's flux unit: ``v = softening · sinh(o)`` when the values were asinh-stretched
(``softening`` set), ``v = o`` otherwise, then ``v · scale_c + offset_c`` per channel (the normalisation's σ and
median). Registered by :mod:`deepfield.training.losses` (which imports this module).

Shapes: ``y_pred``, ``y_true`` ``(N, C, H, W)`` (any ``(N, C, ...)``); ``scale``, ``offset`` one value per channel
``C`` (or one for all).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from deepfield.errors import DeepfieldError
from deepfield.training.losses import Loss


class FluxConservingMAE(Loss):
    """``mean |y_pred − y_true|`` plus ``flux_weight · mean_n asinh(|F_pred − F_true| / (|F_true| + floor))``
    (module docstring); ``values`` gives ``(N, C, ...)``: the pixel errors plus each image's flux term."""

    name = "flux_mae"

    def __init__(self, flux_weight: float = 1.0, softening: float | None = None,
                 scale: float | Sequence[float] = 1.0, offset: float | Sequence[float] = 0.0,
                 floor: float = 0.0) -> None:
        if not flux_weight >= 0:
            raise DeepfieldError(f"flux_mae: flux_weight must be >= 0, got {flux_weight!r}")
        if softening is not None and not softening > 0:
            raise DeepfieldError(f"flux_mae: softening must be > 0 or null (no stretch), got {softening!r}")
        if not floor >= 0:
            raise DeepfieldError(f"flux_mae: floor must be >= 0, got {floor!r}")
        self.flux_weight, self.floor = float(flux_weight), float(floor)
        self.softening = None if softening is None else float(softening)
        self.scale = [float(v) for v in scale] if isinstance(scale, Sequence) else float(scale)
        self.offset = [float(v) for v in offset] if isinstance(offset, Sequence) else float(offset)

    def flux(self, values: torch.Tensor) -> torch.Tensor:
        """(N,) each image's total flux in the file's unit, from network units ``(N, C, ...)``."""
        linear = self.softening * torch.sinh(values) if self.softening is not None else values
        shape = (1, -1) + (1,) * (values.dim() - 2)
        scale, offset = (torch.as_tensor(v, dtype=values.dtype, device=values.device) for v in (self.scale,
                                                                                                 self.offset))
        if scale.dim():
            if scale.numel() != values.shape[1] or (offset.dim() and offset.numel() != values.shape[1]):
                raise DeepfieldError(f"flux_mae: scale and offset need one value per channel ({values.shape[1]}), "
                                     f"got {scale.numel()} and {offset.numel()}")
            scale = scale.reshape(shape)
        offset = offset.reshape(shape) if offset.dim() else offset
        return (linear * scale + offset).reshape(values.shape[0], -1).sum(dim=1)

    def elements(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        pixels = torch.abs(y_pred - y_true)
        if not self.flux_weight:
            return pixels
        truth = self.flux(y_true)
        relative = torch.asinh(torch.abs(self.flux(y_pred) - truth) / (torch.abs(truth) + self.floor).clamp_min(1e-12))
        return pixels + self.flux_weight * relative.reshape((-1,) + (1,) * (y_pred.dim() - 1))

    def get_config(self) -> dict[str, Any]:
        return {"flux_weight": self.flux_weight, "softening": self.softening, "scale": self.scale,
                "offset": self.offset, "floor": self.floor}
