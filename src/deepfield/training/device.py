"""Where and in what precision training runs: device choice, mixed precision, memory format.

``resolve_device(None)`` picks the best accelerator present (cuda, then mps, then cpu).
``Precision("bf16")`` runs forward and loss under ``torch.autocast`` in bfloat16 (CPU
included); ``"fp16"`` uses float16 and, on CUDA, a ``GradScaler`` so small gradients
do not underflow. Parameters and optimiser state stay float32 in every mode.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import ContextManager

import torch
from torch import nn

from deepfield.errors import DeepfieldError, unknown_name

_PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to train on: ``device`` if given (checked to exist), else cuda → mps → cpu."""
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeepfieldError(f"device {device!r} is not a torch device ({exc})") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise DeepfieldError(f"device {device!r} was asked for but CUDA is not available here")
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        raise DeepfieldError(f"device {device!r} was asked for but MPS is not available here")
    return chosen


class Precision:
    """Mixed-precision policy for one device.

    ``autocast`` is ``None`` in full precision (the training step then skips the
    context manager entirely); ``scaler`` is a ``torch.amp.GradScaler`` for fp16 on
    CUDA and ``None`` otherwise.
    """

    def __init__(self, name: str | None, device: torch.device):
        key = "fp32" if name is None else str(name).lower()
        if key not in _PRECISIONS:
            raise unknown_name("precision", name, _PRECISIONS)
        self.name = key
        self.dtype = _PRECISIONS[key]
        self.autocast: Callable[[], ContextManager] | None = None
        self.scaler: torch.amp.GradScaler | None = None
        if self.dtype is not None:
            device_type, dtype = device.type, self.dtype
            self.autocast = lambda: torch.autocast(device_type, dtype=dtype)
            if dtype is torch.float16 and device_type == "cuda":
                self.scaler = torch.amp.GradScaler("cuda")

    def context(self) -> ContextManager:
        """The autocast context (a no-op context in full precision), for code off the hot path."""
        return self.autocast() if self.autocast is not None else contextlib.nullcontext()


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store 4-d parameters as NHWC (``torch.channels_last``): faster convolutions on most hardware."""
    return model.to(memory_format=torch.channels_last)
