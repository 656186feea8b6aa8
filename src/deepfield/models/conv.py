"""Convolution layers Conv1D, Conv2D, Conv3D (channels-first), and the padding rules
they share with the pooling layers.

Padding follows Keras/TensorFlow:

* ``'valid'``: no padding, ``out = floor((in - (k-1)*d - 1) / s) + 1``;
* ``'same'``: ``out = ceil(in / s)``; the total padding
  ``max((out-1)*s + (k-1)*d + 1 - in, 0)`` is split with the smaller half before
  and the extra pixel after (TensorFlow's choice, which PyTorch does not share);
* an int or one int per axis (convolutions only): explicit zero padding on each side.
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
from deepfield.models.core import fans

_AXES = {1: "L", 2: "H, W", 3: "D, H, W"}

# (symmetric padding per axis for the torch op, F.pad list or None)
PadPlan = tuple[tuple[int, ...], list[int] | None]


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's 'same' padding of one axis: ``(before, after)``, the extra pixel after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class Window:
    """The sliding window of a convolution or pooling layer: sizes, strides, dilation, padding.

    ``pads(spatial)`` gives ``(symmetric, extra)``: ``symmetric`` is the per-axis padding
    to hand to the torch op, ``extra`` is ``None`` or, when the padding is asymmetric, a
    list for ``F.pad`` (last axis first). Whenever that does not depend on the input
    size it is worked out once, here.
    """

    def __init__(
        self,
        kernel: tuple[int, ...],
        strides: tuple[int, ...],
        dilation: tuple[int, ...],
        padding: str | int | tuple[int, ...] | list[int],
        allow_explicit: bool,
        owner: str,
    ):
        for what, values in (("kernel/pool size", kernel), ("strides", strides), ("dilation_rate", dilation)):
            if min(values) < 1:
                raise DeepfieldError(f"{owner} {what} must be positive, got {values}")
        rank = len(kernel)
        self.kernel, self.strides, self.dilation = kernel, strides, dilation
        self.mode = padding.lower() if isinstance(padding, str) else "explicit"
        if self.mode not in ("valid", "same", "explicit") or (self.mode == "explicit" and not allow_explicit):
            choices = "'valid', 'same' or ints" if allow_explicit else "'valid' or 'same'"
            raise DeepfieldError(f"{owner} padding must be {choices}, got {padding!r}")
        self.explicit = (0,) * rank
        if self.mode == "explicit":
            self.explicit = as_tuple(padding, rank, f"{owner} padding")  # type: ignore[arg-type]
            if min(self.explicit) < 0:
                raise DeepfieldError(f"{owner} padding must be non-negative, got {padding!r}")
        self._fixed: PadPlan | None = None
        if self.mode != "same":
            self._fixed = (self.explicit, None)
        elif all(s == 1 for s in strides):
            # With stride 1 the 'same' total is (k-1)*d whatever the input size.
            self._fixed = self._same((1,) * rank)

    def pads(self, spatial: tuple[int, ...] | torch.Size) -> PadPlan:
        """``(symmetric, extra)`` for an input with these spatial sizes."""
        return self._fixed if self._fixed is not None else self._same(spatial)

    def _same(self, spatial: tuple[int, ...] | torch.Size) -> PadPlan:
        pads = [same_padding(n, k, s, d) for n, k, s, d in zip(spatial, self.kernel, self.strides, self.dilation)]
        if all(before == after for before, after in pads):
            return tuple(before for before, _ in pads), None
        extra: list[int] = []
        for before, after in reversed(pads):
            extra += [before, after]
        return (0,) * len(pads), extra


def check_rank(layer: Layer, input_shape: tuple[int, ...], rank: int) -> None:
    """Build-time check that a sample ``(C, *spatial)`` has ``rank`` spatial axes."""
    if len(input_shape) != rank + 1:
        got = ", ".join(["N", *map(str, input_shape)])
        raise DeepfieldError(f"{layer.label} expects (N, C, {_AXES[rank]}) input, got shape ({got})")


def check_window_input(layer: Layer, input_shape: tuple[int, ...], window: Window) -> None:
    """Build-time checks of a ``(C, *spatial)`` sample: its rank, and that the window fits."""
    check_rank(layer, input_shape, len(window.kernel))
    if window.mode == "same":
        return
    spatial = input_shape[1:]
    span = [(k - 1) * d + 1 for k, d in zip(window.kernel, window.dilation)]
    if any(w > n + 2 * p for w, n, p in zip(span, spatial, window.explicit)):
        how = "'valid'" if window.mode == "valid" else str(window.explicit)
        raise DeepfieldError(
            f"{layer.label}: window {'x'.join(map(str, span))} is larger than the "
            f"{'x'.join(map(str, spatial))} input with padding {how}"
        )


class _Conv(Layer):
    """Convolution over ``rank`` spatial axes; the subclasses only fix ``rank``.

    Input ``(N, C, *spatial)``, output ``(N, filters, *spatial')``. ``weight`` has
    shape ``(filters, C, *kernel_size)`` (PyTorch order; Keras's kernel is ``(*kernel_size, C, filters)``),
    ``bias`` ``(filters,)``. Regularisers and constraints as Keras
    (:mod:`~deepfield.models.regularizers`, :mod:`~deepfield.models.constraints`).
    """

    rank: ClassVar[int]

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, ...],
        strides: int | tuple[int, ...] = 1,
        padding: str | int | tuple[int, ...] = "valid",
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
        regularizers.attach(self, {"weight": kernel_regularizer, "bias": bias_regularizer}, activity_regularizer)
        constraints.attach(self, {"weight": (kernel_constraint, constraints.conv_layout(self.rank)),
                                  "bias": (bias_constraint, None)})
        self.filters = arguments.integer(f"{cls} filters", filters)
        self.kernel_size = as_tuple(kernel_size, self.rank, f"{cls} kernel_size")
        self.strides = as_tuple(strides, self.rank, f"{cls} strides")
        self.dilation_rate = as_tuple(dilation_rate, self.rank, f"{cls} dilation_rate")
        self.padding = padding
        self._window = Window(self.kernel_size, self.strides, self.dilation_rate, padding, True, cls)
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self._conv = (F.conv1d, F.conv2d, F.conv3d)[self.rank - 1]
        # A strided 1x1 kernel reads every s-th pixel: subsample first, convolve with stride 1
        # (the same numbers). On the CPU this is not an optimisation but a workaround: torch 2.13's
        # oneDNN computes the weight gradient of a strided 1x1 convolution on channels-last input
        # past the end of a workspace when the batch is odd (heap corruption, then a crash far
        # away; oneDNN issue #6035), and ResNets' projection shortcuts are such convolutions.
        self._subsample = (slice(None), slice(None), *(slice(None, None, s) for s in self.strides)) \
            if all(k == 1 for k in self.kernel_size) and any(s > 1 for s in self.strides) else None
        self.weight: nn.Parameter | None = None
        self.bias: nn.Parameter | None = None

    def build(self, input_shape: tuple[int, ...]) -> None:
        check_window_input(self, input_shape, self._window)
        self.weight = nn.Parameter(torch.empty(self.filters, input_shape[0], *self.kernel_size))
        fan_in, fan_out = fans(tuple(self.weight.shape))
        self.kernel_initializer(self.weight, fan_in, fan_out)
        if self.use_bias:
            self.bias = nn.Parameter(torch.empty(self.filters))
            self.bias_initializer(self.bias, fan_in, fan_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self._convolve(x, self.weight, self.bias))

    def _convolve(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The padded convolution of ``x`` by ``weight`` (+ ``bias``), before the activation."""
        symmetric, extra = self._window.pads(x.shape[2:])
        if extra is not None:
            x = F.pad(x, extra)
        if self._subsample is None or x.device.type != "cpu":
            return self._conv(x, weight, bias, self.strides, symmetric, self.dilation_rate)
        if any(symmetric):
            x = F.pad(x, [p for p in reversed(symmetric) for _ in (0, 1)])
        return self._conv(x[self._subsample], weight, bias)


class Conv1D(_Conv):
    """1-D convolution (spectra, light curves): ``(N, C, L) -> (N, filters, L')``."""

    rank = 1


class Conv2D(_Conv):
    """2-D convolution (images): ``(N, C, H, W) -> (N, filters, H', W')``."""

    rank = 2


class Conv3D(_Conv):
    """3-D convolution (cubes): ``(N, C, D, H, W) -> (N, filters, D', H', W')``."""

    rank = 3
