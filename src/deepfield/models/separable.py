"""Depthwise and depthwise-separable convolutions (channels-first) with Keras 3's arguments and numbers:
DepthwiseConv1D/2D, SeparableConv1D/2D.

A depthwise convolution filters each input channel on its own with ``depth_multiplier`` kernels
(output channel ``c * depth_multiplier + j`` is kernel ``j`` of channel ``c``, Keras's order); a
separable one follows it with a 1×1 ("pointwise") convolution that mixes the channels. Strides,
dilation and 'valid'/'same' padding as :mod:`deepfield.models.conv` (TensorFlow's 'same').
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from deepfield import arguments
from deepfield.models import activations, constraints, initializers, regularizers
from deepfield.models.base import Layer
from deepfield.models.conv import _Conv, check_window_input
from deepfield.models.core import fans

_Init = str | initializers.Initializer | dict


class _DepthwiseConv(_Conv):
    """Input ``(N, C, *spatial)``, output ``(N, C * depth_multiplier, *spatial')``.

    ``weight`` ``(C * depth_multiplier, 1, *kernel_size)`` (PyTorch's grouped convolution); Keras's
    kernel is ``(*kernel_size, C, depth_multiplier)``: ``weight.reshape(C, m, *k)`` permuted.
    ``bias`` ``(C * depth_multiplier,)``.
    """

    def __init__(self, kernel_size: int | tuple[int, ...], strides: int | tuple[int, ...] = 1,
                 padding: str = "valid", depth_multiplier: int = 1, dilation_rate: int | tuple[int, ...] = 1,
                 activation: str | None = None, use_bias: bool = True, depthwise_initializer: _Init = "glorot_uniform",
                 bias_initializer: _Init = "zeros", depthwise_regularizer: regularizers.Spec = None,
                 bias_regularizer: regularizers.Spec = None, activity_regularizer: regularizers.Spec = None,
                 depthwise_constraint: constraints.Spec = None, bias_constraint: constraints.Spec = None,
                 name: str | None = None, input_shape: tuple[int, ...] | None = None):
        super().__init__(1, kernel_size, strides=strides, padding=padding, dilation_rate=dilation_rate,
                         activation=activation, use_bias=use_bias, kernel_initializer=depthwise_initializer,
                         bias_initializer=bias_initializer, kernel_regularizer=depthwise_regularizer,
                         bias_regularizer=bias_regularizer, activity_regularizer=activity_regularizer,
                         name=name, input_shape=input_shape)
        self.depth_multiplier = arguments.integer(f"{type(self).__name__} depth_multiplier", depth_multiplier)
        constraints.attach(self, {
            "weight": (depthwise_constraint, constraints.depthwise_layout(self.rank, self.depth_multiplier)),
            "bias": (bias_constraint, None)})

    def build(self, input_shape: tuple[int, ...]) -> None:
        check_window_input(self, input_shape, self._window)
        channels, m = input_shape[0], self.depth_multiplier
        self.filters = channels * m
        self.weight = nn.Parameter(torch.empty(channels * m, 1, *self.kernel_size))
        receptive = self.weight[0, 0].numel()
        fan_in, fan_out = channels * receptive, m * receptive  # Keras's kernel (*k, C, m)
        self.kernel_initializer(self.weight, fan_in, fan_out)
        if self.use_bias:
            self.bias = nn.Parameter(torch.empty(channels * m))
            self.bias_initializer(self.bias, fan_in, fan_out)
        self._conv = functools.partial(self._conv, groups=channels)


class DepthwiseConv1D(_DepthwiseConv):
    """``(N, C, L) -> (N, C * depth_multiplier, L')``; ``weight`` ``(C * m, 1, k)``, Keras's ``(k, C, m)``."""

    rank = 1


class DepthwiseConv2D(_DepthwiseConv):
    """``(N, C, H, W) -> (N, C * depth_multiplier, H', W')``; ``weight`` ``(C * m, 1, kh, kw)``, Keras's
    ``(kh, kw, C, m)``."""

    rank = 2


class _SeparableConv(Layer):
    """A depthwise convolution (no bias, no activation) then a pointwise one: ``(N, C, *spatial) ->
    (N, filters, *spatial')``.

    Weights: ``depthwise.weight`` ``(C * m, 1, *kernel_size)`` (Keras's depthwise kernel
    ``(*kernel_size, C, m)``, see :class:`DepthwiseConv2D`), ``pointwise_weight``
    ``(filters, C * m, 1, ...)`` (Keras's pointwise kernel ``(1, ..., C * m, filters)``),
    ``bias`` ``(filters,)``.
    """

    rank: int

    def __init__(self, filters: int, kernel_size: int | tuple[int, ...], strides: int | tuple[int, ...] = 1,
                 padding: str = "valid", dilation_rate: int | tuple[int, ...] = 1, depth_multiplier: int = 1,
                 activation: str | None = None, use_bias: bool = True, depthwise_initializer: _Init = "glorot_uniform",
                 pointwise_initializer: _Init = "glorot_uniform", bias_initializer: _Init = "zeros",
                 depthwise_regularizer: regularizers.Spec = None, pointwise_regularizer: regularizers.Spec = None,
                 bias_regularizer: regularizers.Spec = None, activity_regularizer: regularizers.Spec = None,
                 depthwise_constraint: constraints.Spec = None, pointwise_constraint: constraints.Spec = None,
                 bias_constraint: constraints.Spec = None, name: str | None = None,
                 input_shape: tuple[int, ...] | None = None):
        super().__init__(name=name, input_shape=input_shape)
        cls = type(self).__name__
        self.filters = arguments.integer(f"{cls} filters", filters)
        depthwise = (DepthwiseConv1D, DepthwiseConv2D)[self.rank - 1]
        self.depthwise = depthwise(kernel_size, strides=strides, padding=padding, depth_multiplier=depth_multiplier,
                                   dilation_rate=dilation_rate, use_bias=False,
                                   depthwise_initializer=depthwise_initializer,
                                   depthwise_regularizer=depthwise_regularizer,
                                   depthwise_constraint=depthwise_constraint, name=f"{cls} depthwise")
        self.kernel_size, self.strides = self.depthwise.kernel_size, self.depthwise.strides
        self.padding, self.dilation_rate = padding, self.depthwise.dilation_rate
        self.depth_multiplier = self.depthwise.depth_multiplier
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self.pointwise_initializer = initializers.get(pointwise_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        regularizers.attach(self, {"pointwise_weight": pointwise_regularizer, "bias": bias_regularizer},
                            activity_regularizer)
        constraints.attach(self, {"pointwise_weight": (pointwise_constraint, constraints.conv_layout(self.rank)),
                                  "bias": (bias_constraint, None)})
        self._pointwise = (F.conv1d, F.conv2d)[self.rank - 1]
        self.pointwise_weight: nn.Parameter | None = None
        self.bias: nn.Parameter | None = None

    def build(self, input_shape: tuple[int, ...]) -> None:
        self.depthwise.build_for(input_shape)
        middle = input_shape[0] * self.depth_multiplier
        self.pointwise_weight = nn.Parameter(torch.empty(self.filters, middle, *(1,) * self.rank))
        fan_in, fan_out = fans(tuple(self.pointwise_weight.shape))
        self.pointwise_initializer(self.pointwise_weight, fan_in, fan_out)
        if self.use_bias:
            self.bias = nn.Parameter(torch.empty(self.filters))
            self.bias_initializer(self.bias, fan_in, fan_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self._pointwise(self.depthwise(x), self.pointwise_weight, self.bias))


class SeparableConv1D(_SeparableConv):
    """``(N, C, L) -> (N, filters, L')``: depthwise then pointwise (class doc of the weights)."""

    rank = 1


class SeparableConv2D(_SeparableConv):
    """``(N, C, H, W) -> (N, filters, H', W')``: depthwise then pointwise (class doc of the weights)."""

    rank = 2
