"""Noise layers with Keras 3's names, arguments and numbers: GaussianNoise, GaussianDropout, AlphaDropout.

Active only while training (identity in evaluation and prediction), as Keras; Monte-Carlo dropout
sampling (:mod:`deepfield.training.mc_dropout`) switches them on at prediction time as it does
Dropout: a noise layer says how to draw its noise for one sample (:meth:`_NoiseLayer.sample`) and
how to apply it (:meth:`_NoiseLayer.apply`; :func:`is_noise_layer`), and the sampler draws one noise per network draw.

==================  ============================  =========================================
layer               noise ``n``                   output
==================  ============================  =========================================
GaussianNoise       ``normal(0, stddev)``         ``x + n``
GaussianDropout     ``normal(1, sqrt(r/(1-r)))``  ``x * n``
AlphaDropout        keep ``k = uniform >= r``     ``a * (x*k + α'(1-k)) + b``, α' = −λα of SELU,
                                                  ``a, b`` keep SELU's mean 0 and variance 1
==================  ============================  =========================================

``seed`` is accepted for Keras's signature; deepfield draws from torch's generator, which
``fit(seed=...)`` and ``torch.manual_seed`` fix. CPU draws go through :mod:`~deepfield.models.batch_noise`
(the same noise per sample on one process or many).
"""
from __future__ import annotations

import math
import torch

from deepfield.errors import DeepfieldError
from deepfield.models import batch_noise
from deepfield.models.base import Layer

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _rate(owner: str, rate: object) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
        raise DeepfieldError(f"{owner} rate must be a number in [0, 1), got {rate!r}")
    return float(rate)


class _NoiseLayer(Layer):
    """Base of the noise layers: ``forward`` applies :meth:`sample`'s noise while training."""

    @property
    def active(self) -> bool:
        """Whether the layer changes anything when on (a rate or stddev of 0 does not)."""
        raise NotImplementedError

    def noise_shape(self, shape: torch.Size | tuple[int, ...]) -> tuple[int, ...]:
        """The noise's shape for an input of ``shape`` ``(N, ...)`` (1 where it is broadcast)."""
        return tuple(shape)

    def sample(self, shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
        """Noise of ``shape`` on ``like``'s device and dtype, drawn from ``generator`` (None: torch's)."""
        raise NotImplementedError

    def apply(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x`` with ``noise`` applied (``noise`` broadcasts against ``x``)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not self.active:
            return x
        noise = batch_noise.draw(self.noise_shape(x.shape), lambda shape, gen: self.sample(shape, gen, x), x.device)
        return self.apply(x, noise)


def is_noise_layer(module: object) -> bool:
    """Whether ``module`` is a noise layer that changes its input when on (MC sampling switches those on)."""
    return isinstance(module, _NoiseLayer) and module.active


class GaussianNoise(_NoiseLayer):
    """Adds zero-mean Gaussian noise of standard deviation ``stddev`` (in the input's units) while training."""

    def __init__(self, stddev: float, seed: int | None = None, name: str | None = None,
                 input_shape: tuple[int, ...] | None = None):
        super().__init__(name=name, input_shape=input_shape)
        if isinstance(stddev, bool) or not isinstance(stddev, (int, float)) or not stddev >= 0:
            raise DeepfieldError(f"GaussianNoise stddev must be a non-negative number, got {stddev!r}")
        self.stddev = float(stddev)
        self.seed = seed

    @property
    def active(self) -> bool:
        return self.stddev > 0

    def sample(self, shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
        return like.new_empty(shape).normal_(0.0, self.stddev, generator=generator)

    def apply(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + noise


class GaussianDropout(_NoiseLayer):
    """Multiplies by Gaussian noise of mean 1 and variance ``rate / (1 - rate)`` while training."""

    def __init__(self, rate: float, seed: int | None = None, name: str | None = None,
                 input_shape: tuple[int, ...] | None = None):
        super().__init__(name=name, input_shape=input_shape)
        self.rate = _rate("GaussianDropout", rate)
        self.seed = seed

    @property
    def active(self) -> bool:
        return self.rate > 0

    def sample(self, shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
        return like.new_empty(shape).normal_(1.0, math.sqrt(self.rate / (1.0 - self.rate)), generator=generator)

    def apply(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x * noise


class AlphaDropout(_NoiseLayer):
    """Dropout for SELU networks: dropped inputs are set to SELU's negative saturation and the result is
    scaled and shifted so that inputs of mean 0 and variance 1 keep them (Klambauer et al. 2017).

    ``noise_shape``: Keras's, the shape of the keep mask with the batch axis (``None``: the input's size
    there), e.g. ``(None, C, 1, 1)`` drops whole channels of ``(N, C, H, W)``.
    """

    def __init__(self, rate: float, noise_shape: tuple[int | None, ...] | list[int | None] | None = None,
                 seed: int | None = None, name: str | None = None, input_shape: tuple[int, ...] | None = None):
        super().__init__(name=name, input_shape=input_shape)
        self.rate = _rate("AlphaDropout", rate)
        if noise_shape is not None and (isinstance(noise_shape, (str, bytes)) or not isinstance(noise_shape, (
                tuple, list)) or not all(s is None or (isinstance(s, int) and s >= 1) for s in noise_shape)):
            raise DeepfieldError(f"AlphaDropout noise_shape must be a list of positive sizes or None, "
                                 f"got {noise_shape!r}")
        self.noise_shape_arg = None if noise_shape is None else tuple(noise_shape)
        self.seed = seed
        alpha_p = -SELU_ALPHA * SELU_SCALE
        self._alpha_p = alpha_p
        self._a = ((1 - self.rate) * (1 + self.rate * alpha_p**2)) ** -0.5
        self._b = -self._a * alpha_p * self.rate

    def build(self, input_shape: tuple[int, ...]) -> None:
        given = self.noise_shape_arg
        if given is not None and (len(given) != len(input_shape) + 1 or any(
                s is not None and s not in (1, n) for s, n in zip(given[1:], input_shape))):
            got = ", ".join(["N", *map(str, input_shape)])
            raise DeepfieldError(f"{self.label}: noise_shape {list(given)} does not broadcast to the input ({got})")

    @property
    def active(self) -> bool:
        return self.rate > 0

    def noise_shape(self, shape: torch.Size | tuple[int, ...]) -> tuple[int, ...]:
        given = self.noise_shape_arg
        if given is None:
            return tuple(shape)
        return (shape[0], *(n if s is None else s for s, n in zip(given[1:], shape[1:])))

    def sample(self, shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
        return (like.new_empty(shape).uniform_(generator=generator) >= self.rate).to(like.dtype)

    def apply(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return self._a * (x * keep + self._alpha_p * (1 - keep)) + self._b
