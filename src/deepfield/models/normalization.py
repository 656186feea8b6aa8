"""Batch normalisation with Keras's arguments and meanings."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deepfield.errors import DeepfieldError
from deepfield.models import initializers
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
