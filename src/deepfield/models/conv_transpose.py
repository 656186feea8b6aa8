"""Transposed convolutions Conv1DTranspose, Conv2DTranspose, Conv3DTranspose (channels-first), with
Keras 3's arguments, output sizes and numbers.

A transposed convolution is the adjoint (the input gradient) of a convolution: each input cell adds
the kernel, scaled by its value, into the output at stride ``s``. Keras (TensorFlow, JAX) fixes which
part of that "full" result of length ``(n - 1) * s + k'`` it keeps (``k' = (k - 1) * d + 1``):

* ``padding='valid'``: ``out = (n - 1) * s + max(k', s)`` when ``output_padding`` is None, else
  ``(n - 1) * s + k' + output_padding``: the full result, zeros (then the bias) added at the end;
* ``padding='same'``: ``out = n * s`` when ``output_padding`` is None, else
  ``(n - 1) * s + k' - 2 * (k' // 2) + output_padding``: the full result cropped, the larger half of
  the crop at the end (the adjoint of Keras's 'same' convolution).

PyTorch's ``conv_transpose`` crops the same number of cells at both ends, so the asymmetric part
is one ``F.pad`` after it (Keras 3.15's torch backend does the same).
"""
from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.models import activations, constraints, initializers, regularizers
from deepfield.models.base import Layer, as_tuple
from deepfield.models.conv import check_rank
from deepfield.models.core import fans

_CONV_TRANSPOSE = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)


def keras_padding(kernel: int, stride: int, dilation: int, padding: str, output_padding: int | None,
                  ) -> tuple[int, int]:
    """Cells cropped ``(before, after)`` from the full transposed result for one axis, Keras's rule
    (its ``_convert_conv_transpose_padding_args_from_keras_to_jax``); negative ``after``: zeros added."""
    span = (kernel - 1) * dilation + 1
    if padding == "valid":
        extra = max(span, stride) - span if output_padding is None else output_padding
        left, right = span - 1, span - 1 + extra
    else:
        total = stride + span - 2 if output_padding is None else span + span % 2 - 2 + output_padding
        left = min(total // 2 + total % 2, span - 1)
        right = total - left
    return span - 1 - left, span - 1 - right


class _ConvTranspose(Layer):
    """Transposed convolution over ``rank`` spatial axes; the subclasses fix ``rank``.

    Input ``(N, C, *spatial)``, output ``(N, filters, *spatial')`` (module doc for ``spatial'``).
    ``weight`` ``(C, filters, *kernel_size)`` (PyTorch's ``conv_transpose`` order; Keras's kernel is
    ``(*kernel_size, filters, C)``, the same numbers permuted, no flip), ``bias`` ``(filters,)``.
    """

    rank: ClassVar[int]

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, ...],
        strides: int | tuple[int, ...] = 1,
        padding: str = "valid",
        output_padding: int | tuple[int, ...] | None = None,
        dilation_rate: int | tuple[int, ...] = 1,
        activation: str | None = None,
        use_bias: bool = True,
        kernel_initializer: str | initializers.Initializer | dict = "glorot_uniform",
        bias_initializer: str | initializers.Initializer | dict = "zeros",
        kernel_regularizer: regularizers.Spec = None,
        bias_regularizer: regularizers.Spec = None,
        activity_regularizer: regularizers.Spec = None,
        kernel_constraint: constraints.Spec = None,
        bias_constraint: constraints.Spec = None,
        name: str | None = None,
        input_shape: tuple[int, ...] | None = None,
    ):
        super().__init__(name=name, input_shape=input_shape)
        cls = type(self).__name__
        self.filters = arguments.integer(f"{cls} filters", filters)
        self.kernel_size = as_tuple(kernel_size, self.rank, f"{cls} kernel_size")
        self.strides = as_tuple(strides, self.rank, f"{cls} strides")
        self.dilation_rate = as_tuple(dilation_rate, self.rank, f"{cls} dilation_rate")
        for what, values in (("kernel_size", self.kernel_size), ("strides", self.strides),
                             ("dilation_rate", self.dilation_rate)):
            if min(values) < 1:
                raise DeepfieldError(f"{cls} {what} must be positive, got {values}")
        self.padding = padding.lower() if isinstance(padding, str) else padding
        if self.padding not in ("valid", "same"):
            raise DeepfieldError(f"{cls} padding must be 'valid' or 'same', got {padding!r}")
        self.output_padding = None if output_padding is None else \
            as_tuple(output_padding, self.rank, f"{cls} output_padding")
        if self.output_padding is not None and any(
                not 0 <= p < s for p, s in zip(self.output_padding, self.strides)):
            raise DeepfieldError(f"{cls} output_padding must be non-negative and smaller than strides "
                                 f"{self.strides}, got {self.output_padding}")
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        regularizers.attach(self, {"weight": kernel_regularizer, "bias": bias_regularizer}, activity_regularizer)
        constraints.attach(self, {"weight": (kernel_constraint, constraints.conv_layout(self.rank)),
                                  "bias": (bias_constraint, None)})
        crops = [keras_padding(k, s, d, self.padding, None if self.output_padding is None else p)
                 for k, s, d, p in zip(self.kernel_size, self.strides, self.dilation_rate,
                                       self.output_padding or (0,) * self.rank)]
        # torch crops the same number of cells from both ends; the rest is one F.pad (negative: a crop)
        self._symmetric = tuple(max(min(before, after), 0) for before, after in crops)
        rest = [(before - p, after - p) for (before, after), p in zip(crops, self._symmetric)]
        self._bias_after = any(after < 0 for _, after in rest)  # zeros added at the end get the bias too
        self._rest: list[int] | tuple[slice, ...] | None = None  # F.pad's list when zeros are added, else a view
        if self._bias_after:
            self._rest = [-c for pair in reversed(rest) for c in pair]
        elif any(c for pair in rest for c in pair):
            self._rest = (slice(None), slice(None), *(slice(before, -after or None) for before, after in rest))
        self._op = _CONV_TRANSPOSE[self.rank - 1]
        self.weight: nn.Parameter | None = None
        self.bias: nn.Parameter | None = None

    def build(self, input_shape: tuple[int, ...]) -> None:
        check_rank(self, input_shape, self.rank)
        self.weight = nn.Parameter(torch.empty(input_shape[0], self.filters, *self.kernel_size))
        fan_in, fan_out = fans(tuple(self.weight.shape))  # as Keras's kernel (*k, filters, C): fan_in counts filters
        self.kernel_initializer(self.weight, fan_in, fan_out)
        if self.use_bias:
            self.bias = nn.Parameter(torch.empty(self.filters))
            self.bias_initializer(self.bias, fan_in, fan_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self._bias_after else self.bias
        y = self._op(x, self.weight, bias, self.strides, self._symmetric, 0, 1, self.dilation_rate)
        if isinstance(self._rest, list):
            y = F.pad(y, self._rest)
        elif self._rest is not None:
            y = y[self._rest]
        if self._bias_after and self.bias is not None:
            y = y + self.bias.view(-1, *(1,) * self.rank)
        return self.activation(y)


class Conv1DTranspose(_ConvTranspose):
    """``(N, C, L) -> (N, filters, L')``; ``weight`` ``(C, filters, k)``, Keras's kernel ``(k, filters, C)``."""

    rank = 1


class Conv2DTranspose(_ConvTranspose):
    """``(N, C, H, W) -> (N, filters, H', W')``; ``weight`` ``(C, filters, kh, kw)``, Keras's kernel
    ``(kh, kw, filters, C)``."""

    rank = 2


class Conv3DTranspose(_ConvTranspose):
    """``(N, C, D, H, W) -> (N, filters, D', H', W')``; ``weight`` ``(C, filters, kd, kh, kw)``, Keras's
    kernel ``(kd, kh, kw, filters, C)``."""

    rank = 3
