"""Core layers: Dense, Flatten, Activation, Dropout, SpatialDropout."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.models import activations, batch_noise, constraints, initializers, regularizers
from deepfield.models.base import Layer
from deepfield.models.masking import passed_on


class Dense(Layer):
    """Fully connected layer: ``y = activation(x @ W.T + b)``.

    Input ``(N, features)``; a higher-rank input ``(N, ..., features)`` acts on the last axis.
    ``weight`` has shape ``(units, features)`` (PyTorch order; Keras's kernel is its transpose
    ``(features, units)``), ``bias`` ``(units,)``. Regularisers and constraints as Keras
    (:mod:`~deepfield.models.regularizers`, :mod:`~deepfield.models.constraints`).
    """

    def __init__(
        self,
        units: int,
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
        self.units = arguments.integer("Dense units", units)
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        regularizers.attach(self, {"weight": kernel_regularizer, "bias": bias_regularizer}, activity_regularizer)
        constraints.attach(self, {"weight": (kernel_constraint, constraints.DENSE), "bias": (bias_constraint, None)})
        self.weight: nn.Parameter | None = None
        self.bias: nn.Parameter | None = None

    def build(self, input_shape: tuple[int, ...]) -> None:
        fan_in = input_shape[-1]
        self.weight = nn.Parameter(torch.empty(self.units, fan_in))
        self.kernel_initializer(self.weight, fan_in, self.units)
        if self.use_bias:
            self.bias = nn.Parameter(torch.empty(self.units))
            self.bias_initializer(self.bias, fan_in, self.units)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(F.linear(x, self.weight, self.bias))


class Flatten(Layer):
    """``(N, d1, d2, ...) -> (N, d1*d2*...)``, in channels-first order."""

    def __init__(self, name: str | None = None, input_shape: tuple[int, ...] | None = None):
        super().__init__(name=name, input_shape=input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


class Activation(Layer):
    """An activation by name (see :mod:`deepfield.models.activations`)."""

    def __init__(self, activation: str, name: str | None = None, input_shape: tuple[int, ...] | None = None):
        super().__init__(name=name, input_shape=input_shape)
        self.activation = activations.get(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(x)


class Dropout(Layer):
    """Zeroes each input with probability ``rate`` while training (scaled by 1/(1-rate)).

    Switched on at prediction time by MC dropout (``training=True`` in the analysis layer).
    """

    def __init__(self, rate: float, name: str | None = None, input_shape: tuple[int, ...] | None = None):
        super().__init__(name=name, input_shape=input_shape)
        if not 0.0 <= float(rate) < 1.0:
            raise DeepfieldError(f"Dropout rate must be in [0, 1), got {rate}")
        self.rate = float(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        if x.device.type != "cpu":
            return passed_on(x, F.dropout(x, self.rate, True))  # a sequence's mask, as in inference (Keras)
        mask = batch_noise.draw(x.shape, lambda shape, gen: keep_mask(shape, self.rate, gen), x.device)
        return passed_on(x, x * mask.to(x.dtype).mul_(1.0 / (1.0 - self.rate)))


def keep_mask(shape: torch.Size | tuple[int, ...], rate: float, generator: torch.Generator | None = None,
              ) -> torch.Tensor:
    """A bool tensor of ``shape``, each element True with probability ``1 - rate`` (to 1/65536),
    drawn from ``generator``, by default torch's global CPU generator (so ``torch.manual_seed`` fixes it).

    Written by hand because on the CPU torch's dropout draws one random number per element
    (``bernoulli_``), which took 44 % of a training step of the course CNN (profile, 2 cores);
    here each 64-bit draw gives four 16-bit lanes compared with a threshold: the mask costs
    a tenth, a dropout forward and backward half.
    """
    n = math.prod(shape)
    words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, generator=generator)
    lanes = words.view(torch.int16)[:n].view(shape)
    return lanes >= round(rate * 65536) - 32768


class SpatialDropout(Layer):
    """Drops whole channels (feature maps) of ``(N, C, ...)`` inputs with probability ``rate``.

    Keras has SpatialDropout1D/2D/3D; one layer serves every rank here.
    """

    def __init__(self, rate: float, name: str | None = None, input_shape: tuple[int, ...] | None = None):
        super().__init__(name=name, input_shape=input_shape)
        if not 0.0 <= float(rate) < 1.0:
            raise DeepfieldError(f"SpatialDropout rate must be in [0, 1), got {rate}")
        self.rate = float(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = batch_noise.draw(x.shape[:2] + (1,) * (x.dim() - 2),
                                lambda shape, gen: x.new_empty(shape).bernoulli_(1.0 - self.rate, generator=gen),
                                x.device)
        return x * keep / (1.0 - self.rate)


def fans(weight_shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a PyTorch-ordered kernel ``(out, in, *kernel)``."""
    receptive = math.prod(weight_shape[2:]) if len(weight_shape) > 2 else 1
    return weight_shape[1] * receptive, weight_shape[0] * receptive
