"""Pooling layers (channels-first): max, average, sum and square-sum (L2) over sliding
windows, and global average / max over all spatial axes.

Window pooling takes Keras's ``pool_size=2, strides=None (= pool_size),
padding='valid'|'same'`` (see :mod:`deepfield.models.conv` for the 'same' rule).
With 'same' padding the padded cells are not data, as in TensorFlow: max ignores
them, sum and L2 count them as zero, and average divides by the number of real
cells in each window (not by the window size).

=====================  ==============================
kind                   y over one window
=====================  ==============================
MaxPooling             ``max(x)``
AveragePooling         ``mean(x)``
SumPooling             ``sum(x)``
L2Pooling              ``sqrt(sum(x**2))``
=====================  ==============================
"""
from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F

from deepfield.models.base import Layer, as_tuple
from deepfield.models.conv import Window, check_rank, check_window_input

_MAX_POOL = (F.max_pool1d, F.max_pool2d, F.max_pool3d)
_AVG_POOL = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)


class _Pooling(Layer):
    """Window pooling over ``rank`` spatial axes; subclasses fix ``rank`` and ``kind``.

    ``(N, C, *spatial) -> (N, C, *spatial')`` with ``spatial' = ceil(n / s)`` for 'same'
    and ``floor((n - k) / s) + 1`` for 'valid'. No parameters.
    """

    rank: ClassVar[int]
    kind: ClassVar[str]  # "max", "average", "sum" or "l2"

    def __init__(
        self,
        pool_size: int | tuple[int, ...] = 2,
        strides: int | tuple[int, ...] | None = None,
        padding: str = "valid",
        name: str | None = None,
        input_shape: tuple[int, ...] | None = None,
    ):
        super().__init__(name=name, input_shape=input_shape)
        cls = type(self).__name__
        self.pool_size = as_tuple(pool_size, self.rank, f"{cls} pool_size")
        self.strides = self.pool_size if strides is None else as_tuple(strides, self.rank, f"{cls} strides")
        self.padding = padding
        self._window = Window(self.pool_size, self.strides, (1,) * self.rank, padding, False, cls)
        self._cells = math.prod(self.pool_size)
        self._max_pool = _MAX_POOL[self.rank - 1]
        self._avg_pool = _AVG_POOL[self.rank - 1]

    def build(self, input_shape: tuple[int, ...]) -> None:
        check_window_input(self, input_shape, self._window)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        symmetric, extra = self._window.pads(x.shape[2:])
        if self.kind == "max":
            if extra is not None:
                x = F.pad(x, extra, value=-math.inf)
            return self._max_pool(x, self.pool_size, self.strides, symmetric)
        if self.kind == "average":
            if extra is None:
                return self._avg_pool(x, self.pool_size, self.strides, symmetric, count_include_pad=False)
            real_cells = self._sum(x.new_ones((1, 1, *x.shape[2:])), symmetric, extra)
            return self._sum(x, symmetric, extra) / real_cells
        if self.kind == "sum":
            return self._sum(x, symmetric, extra)
        squares = self._sum(x * x, symmetric, extra)
        # sqrt has an infinite slope at 0 (an all-zero window, common after ReLU):
        # take the root of 1 there and select 0, so the gradient is 0, not NaN.
        positive = squares > 0
        return torch.where(positive, torch.where(positive, squares, 1.0).sqrt(), 0.0)

    def _sum(self, x: torch.Tensor, symmetric: tuple[int, ...], extra: list[int] | None) -> torch.Tensor:
        """Window sums, padded cells counting as zero."""
        if extra is not None:
            x = F.pad(x, extra)
        return self._avg_pool(x, self.pool_size, self.strides, symmetric, count_include_pad=True) * self._cells


class MaxPooling1D(_Pooling):
    """Max over windows of ``(N, C, L)``."""

    rank, kind = 1, "max"


class MaxPooling2D(_Pooling):
    """Max over windows of ``(N, C, H, W)``."""

    rank, kind = 2, "max"


class MaxPooling3D(_Pooling):
    """Max over windows of ``(N, C, D, H, W)``."""

    rank, kind = 3, "max"


class AveragePooling1D(_Pooling):
    """Mean over windows of ``(N, C, L)``."""

    rank, kind = 1, "average"


class AveragePooling2D(_Pooling):
    """Mean over windows of ``(N, C, H, W)``."""

    rank, kind = 2, "average"


class AveragePooling3D(_Pooling):
    """Mean over windows of ``(N, C, D, H, W)``."""

    rank, kind = 3, "average"


class SumPooling1D(_Pooling):
    """Sum over windows of ``(N, C, L)`` (the course's sum pooling)."""

    rank, kind = 1, "sum"


class SumPooling2D(_Pooling):
    """Sum over windows of ``(N, C, H, W)`` (the course's sum pooling)."""

    rank, kind = 2, "sum"


class L2Pooling1D(_Pooling):
    """``sqrt(sum(x**2))`` over windows of ``(N, C, L)`` (the course's square-sum pooling)."""

    rank, kind = 1, "l2"


class L2Pooling2D(_Pooling):
    """``sqrt(sum(x**2))`` over windows of ``(N, C, H, W)`` (the course's square-sum pooling)."""

    rank, kind = 2, "l2"


class _GlobalPooling(Layer):
    """Mean or max over all spatial axes: ``(N, C, *spatial) -> (N, C)``.

    With ``keepdims=True`` the spatial axes stay, with size 1 (Keras's option).
    """

    rank: ClassVar[int]
    kind: ClassVar[str]  # "average" or "max"

    def __init__(self, keepdims: bool = False, name: str | None = None, input_shape: tuple[int, ...] | None = None):
        super().__init__(name=name, input_shape=input_shape)
        self.keepdims = bool(keepdims)
        self._axes = tuple(range(2, 2 + self.rank))

    def build(self, input_shape: tuple[int, ...]) -> None:
        check_rank(self, input_shape, self.rank)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "max":
            return x.amax(self._axes, keepdim=self.keepdims)
        return x.mean(self._axes, keepdim=self.keepdims)


class GlobalAveragePooling1D(_GlobalPooling):
    """Mean over ``L``: ``(N, C, L) -> (N, C)``."""

    rank, kind = 1, "average"


class GlobalAveragePooling2D(_GlobalPooling):
    """Mean over ``H, W``: ``(N, C, H, W) -> (N, C)``."""

    rank, kind = 2, "average"


class GlobalMaxPooling1D(_GlobalPooling):
    """Max over ``L``: ``(N, C, L) -> (N, C)``."""

    rank, kind = 1, "max"


class GlobalMaxPooling2D(_GlobalPooling):
    """Max over ``H, W``: ``(N, C, H, W) -> (N, C)``."""

    rank, kind = 2, "max"
