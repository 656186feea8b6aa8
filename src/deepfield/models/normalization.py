"""Batch, layer and group normalisation with Keras's arguments and meanings (channels-first)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.models import constraints, initializers, regularizers
from deepfield.models.base import Layer


class BatchNormalization(Layer):
    """Normalises each channel of ``(N, C)``, ``(N, C, L)``, ``(N, C, H, W)`` or ``(N, C, D, H, W)``.

    ``y = gamma * (x - mean) / sqrt(var + epsilon) + beta``, per feature along ``axis``
    (1, the channel axis, by default; Keras's own default -1 is the channels-last one).
    Training uses the batch's mean and (biased) variance and moves the stored ones:
    ``moving = moving * momentum + batch * (1 - momentum)`` (Keras's momentum, i.e.
    PyTorch's ``1 - momentum``). Evaluation, and training while the layer is frozen
    (``trainable = False``, as in Keras 3), use ``moving_mean`` and ``moving_variance``.

    Parameters ``gamma``, ``beta`` ``(C,)`` (absent when ``scale`` / ``center`` is off);
    buffers ``moving_mean``, ``moving_variance`` ``(C,)`` (Keras's non-trainable weights).
    """

    def __init__(
        self,
        axis: int = 1,
        momentum: float = 0.99,
        epsilon: float = 0.001,
        center: bool = True,
        scale: bool = True,
        beta_initializer: str | initializers.Initializer | dict = "zeros",
        gamma_initializer: str | initializers.Initializer | dict = "ones",
        moving_mean_initializer: str | initializers.Initializer | dict = "zeros",
        moving_variance_initializer: str | initializers.Initializer | dict = "ones",
        name: str | None = None,
        input_shape: tuple[int, ...] | None = None,
    ):
        super().__init__(name=name, input_shape=input_shape)
        if not 0.0 <= float(momentum) <= 1.0:
            raise DeepfieldError(f"BatchNormalization momentum must be in [0, 1], got {momentum}")
        if float(epsilon) <= 0.0:
            raise DeepfieldError(f"BatchNormalization epsilon must be positive, got {epsilon}")
        self.axis = int(axis)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = center
        self.scale = scale
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.gamma: nn.Parameter | None = None
        self.beta: nn.Parameter | None = None
        self.register_buffer("moving_mean", None)
        self.register_buffer("moving_variance", None)
        self._channel_axis = 1

    def build(self, input_shape: tuple[int, ...]) -> None:
        ndim = len(input_shape) + 1
        axis = self.axis + ndim if self.axis < 0 else self.axis
        if not 1 <= axis < ndim:
            got = ", ".join(["N", *map(str, input_shape)])
            raise DeepfieldError(f"{self.label}: axis {self.axis} is not a feature axis of shape ({got})")
        self._channel_axis = axis
        channels = input_shape[axis - 1]
        if self.scale:
            self.gamma = nn.Parameter(torch.empty(channels))
            self.gamma_initializer(self.gamma, channels, channels)
        if self.center:
            self.beta = nn.Parameter(torch.empty(channels))
            self.beta_initializer(self.beta, channels, channels)
        self.register_buffer("moving_mean", torch.empty(channels))
        self.moving_mean_initializer(self.moving_mean, channels, channels)
        self.register_buffer("moving_variance", torch.empty(channels))
        self.moving_variance_initializer(self.moving_variance, channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axis = self._channel_axis
        if axis != 1:
            x = x.movedim(axis, 1)
        if self.training and self.trainable:  # frozen: inference mode, in fit too (Keras 3)
            y = self._normalise_batch(x)
        else:
            y = F.batch_norm(x, self.moving_mean, self.moving_variance, self.gamma, self.beta, False, 0.0, self.epsilon)
        return y if axis == 1 else y.movedim(1, axis)

    def _normalise_batch(self, x: torch.Tensor) -> torch.Tensor:
        # Keras 3 moves the variance with the biased batch variance b (ops.moments);
        # torch's fused batch_norm moves it with the unbiased one, u = b * n / (n - 1).
        # We keep the fused kernel, let it move a copy (autograd keeps that copy, so it
        # must not change afterwards) and recover b * (1 - momentum) from the copy:
        # O(C) work, where a second pass for b would read the whole batch again.
        moved = self.moving_variance.clone()
        y = F.batch_norm(x, self.moving_mean, moved, self.gamma, self.beta, True, 1.0 - self.momentum, self.epsilon)
        n = x.numel() // x.shape[1]
        with torch.no_grad():
            # moved = v * m + u * (1 - m), so b * (1 - m) = (moved - v * m) * (n - 1) / n.
            step = (moved - self.moving_variance * self.momentum) * ((n - 1) / n)
            self.moving_variance.mul_(self.momentum).add_(step)
        return y


def _feature_axes(layer: Layer, axis: int | list[int] | tuple[int, ...], input_shape: tuple[int, ...]) -> list[int]:
    """``axis`` (Keras's: counted with the batch axis, negative from the end) as sorted non-negative axes ≥ 1."""
    ndim = len(input_shape) + 1
    axes = sorted({a + ndim if a < 0 else a for a in (axis if isinstance(axis, (list, tuple)) else [axis])})
    if not axes or not all(1 <= a < ndim for a in axes):
        got = ", ".join(["N", *map(str, input_shape)])
        raise DeepfieldError(f"{layer.label}: axis {axis} is not a feature axis of shape ({got})")
    return axes


def _check_axis(owner: str, axis: object) -> int | list[int]:
    values = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    if not values or any(isinstance(a, bool) or not isinstance(a, int) for a in values):
        raise DeepfieldError(f"{owner} axis must be an int or a list of ints, got {axis!r}")
    return values if isinstance(axis, (list, tuple)) else values[0]


class LayerNormalization(Layer):
    """Normalises each sample over the feature axes ``axis``: ``y = gamma * (x - mean) / sqrt(var + epsilon)
    + beta``, mean and (biased) variance over ``axis`` for each position of the other axes.

    ``axis`` counts the batch axis as Keras does (an int or a list; negative from the end). Its default
    here is 1, the channel axis, which is what Keras's default -1 is in Keras's channels-last layout:
    each pixel of ``(N, C, H, W)`` (each step of ``(N, C, L)``) is normalised over its channels, and a
    table ``(N, F)`` over its features. Given explicitly, an axis means what it means in Keras for an
    array of the same shape (``axis=[1, 2, 3]``: over the whole sample).

    ``gamma``, ``beta``: the shape of the normalised axes, in their order (``(C,)`` by default); absent
    when ``scale`` / ``center`` is off. (Keras shapes them by the axes sorted as written, so for
    ``axis=[-1, 1]`` its gamma is ``(W, C)``: the same numbers in the same order, reshaped.)
    Regularisers and constraints of gamma/beta as Keras.
    """

    def __init__(
        self,
        axis: int | list[int] = 1,
        epsilon: float = 0.001,
        center: bool = True,
        scale: bool = True,
        beta_initializer: str | initializers.Initializer | dict = "zeros",
        gamma_initializer: str | initializers.Initializer | dict = "ones",
        beta_regularizer: regularizers.Spec = None,
        gamma_regularizer: regularizers.Spec = None,
        beta_constraint: constraints.Spec = None,
        gamma_constraint: constraints.Spec = None,
        name: str | None = None,
        input_shape: tuple[int, ...] | None = None,
    ):
        super().__init__(name=name, input_shape=input_shape)
        cls = type(self).__name__
        self.axis = _check_axis(cls, axis)
        self.epsilon = _positive(cls, "epsilon", epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        regularizers.attach(self, {"gamma": gamma_regularizer, "beta": beta_regularizer}, None)
        constraints.attach(self, {"gamma": (gamma_constraint, None), "beta": (beta_constraint, None)})
        self.gamma: nn.Parameter | None = None
        self.beta: nn.Parameter | None = None
        self._order: tuple[int, ...] | None = None  # feature axes moved to the end, when they are not there
        self._normalized: tuple[int, ...] = ()

    def build(self, input_shape: tuple[int, ...]) -> None:
        axes = _feature_axes(self, self.axis, input_shape)
        ndim = len(input_shape) + 1
        self._normalized = tuple(input_shape[a - 1] for a in axes)
        if axes != list(range(ndim - len(axes), ndim)):
            self._order = (0, *(a for a in range(1, ndim) if a not in axes), *axes)
        size = math.prod(self._normalized)
        if self.scale:
            self.gamma = nn.Parameter(torch.empty(self._normalized))
            self.gamma_initializer(self.gamma, size, size)
        if self.center:
            self.beta = nn.Parameter(torch.empty(self._normalized))
            self.beta_initializer(self.beta, size, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._order is None:
            return F.layer_norm(x, self._normalized, self.gamma, self.beta, self.epsilon)
        y = F.layer_norm(x.permute(self._order), self._normalized, self.gamma, self.beta, self.epsilon)
        return y.permute(sorted(range(x.dim()), key=self._order.__getitem__))


class GroupNormalization(Layer):
    """Splits the channels (axis ``axis``, 1 by default: Keras's default -1 in its channels-last layout)
    into ``groups`` groups of consecutive channels and normalises each sample over each group and all
    the other feature axes: ``y = gamma * (x - mean) / sqrt(var + epsilon) + beta`` per channel.
    ``groups=-1``: one group per channel (instance normalisation), as Keras.

    ``gamma``, ``beta``: ``(C,)``, absent when ``scale`` / ``center`` is off.
    """

    def __init__(
        self,
        groups: int = 32,
        axis: int = 1,
        epsilon: float = 0.001,
        center: bool = True,
        scale: bool = True,
        beta_initializer: str | initializers.Initializer | dict = "zeros",
        gamma_initializer: str | initializers.Initializer | dict = "ones",
        beta_regularizer: regularizers.Spec = None,
        gamma_regularizer: regularizers.Spec = None,
        beta_constraint: constraints.Spec = None,
        gamma_constraint: constraints.Spec = None,
        name: str | None = None,
        input_shape: tuple[int, ...] | None = None,
    ):
        super().__init__(name=name, input_shape=input_shape)
        cls = type(self).__name__
        self.groups = -1 if groups == -1 else arguments.integer(f"{cls} groups", groups,
                                                                 expected="a positive integer or -1")
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise DeepfieldError(f"{cls} axis must be an int, got {axis!r}")
        self.axis = axis
        self.epsilon = _positive(cls, "epsilon", epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        regularizers.attach(self, {"gamma": gamma_regularizer, "beta": beta_regularizer}, None)
        constraints.attach(self, {"gamma": (gamma_constraint, None), "beta": (beta_constraint, None)})
        self.gamma: nn.Parameter | None = None
        self.beta: nn.Parameter | None = None
        self._axis, self._groups = 1, 1

    def build(self, input_shape: tuple[int, ...]) -> None:
        self._axis, = _feature_axes(self, self.axis, input_shape)
        channels = input_shape[self._axis - 1]
        self._groups = channels if self.groups == -1 else self.groups
        if self._groups > channels or channels % self._groups:
            raise DeepfieldError(f"{self.label}: {channels} channels cannot be split into {self._groups} equal "
                                 f"groups (groups must divide the channels)")
        if self.scale:
            self.gamma = nn.Parameter(torch.empty(channels))
            self.gamma_initializer(self.gamma, channels, channels)
        if self.center:
            self.beta = nn.Parameter(torch.empty(channels))
            self.beta_initializer(self.beta, channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._axis == 1:
            return F.group_norm(x, self._groups, self.gamma, self.beta, self.epsilon)
        y = F.group_norm(x.movedim(self._axis, 1), self._groups, self.gamma, self.beta, self.epsilon)
        return y.movedim(1, self._axis)


def _positive(owner: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise DeepfieldError(f"{owner} {name} must be positive, got {value!r}")
    return float(value)
