"""A conditional variational autoencoder for galaxy stamps (Kingma & Welling 2014; Sohn et al. 2015): ``cvae``.

It meets the generative-model contract (:mod:`deepfield.models.generative`): ``task: generate`` trains it,
``deepfield sample`` draws from it.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.models.conv import Conv2D
from deepfield.models.conv_transpose import Conv2DTranspose
from deepfield.models.core import Dense, Flatten
from deepfield.models.generative import check_conditions, model_inputs
from deepfield.models.modes import eval_mode
from deepfield.models.presets.base import PresetModel, sample_shape
from deepfield.models.reshaping import Reshape

LOG_VARIANCE_RANGE = (-30.0, 20.0)
"""The encoder's log-variance is clipped to this range: exp() of it stays finite in float16 and bfloat16."""


def kl_to_unit_gaussian(mean: torch.Tensor, log_variance: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_variance)) || N(0, I)) per sample ``(N,)`` in nats, for ``(N, L)`` moments:
    ``-½ Σ_j (1 + log σ_j² − μ_j² − σ_j²)``."""
    return -0.5 * torch.sum(1.0 + log_variance - mean.square() - log_variance.exp(), dim=1)


class ConditionalVAE(PresetModel):
    """Stamps ``(C, H, W)`` and conditions ``(K,)`` to a latent Gaussian ``(L,)`` and back.

    * encoder: per entry of ``filters`` a 3×3 convolution of stride 2 with ReLU (``conv1``, ``conv2``...),
      ``flatten``, the K conditions concatenated, then ``z_mean`` and ``z_log_var``: Dense layers of
      ``latent_dim`` units;
    * decoder: ``[z, conditions]`` through ``decoder_dense`` (ReLU) to the deepest feature map, ``reshape``,
      then 3×3 transposed convolutions of stride 2 mirroring the encoder (``deconv2``, ``deconv1``), the last one
      linear with C channels: the reconstruction, in the task's normalised units.

    Training (``forward``, train mode): ``z = μ + σ ε`` with ε from the global RNG (the engine seeds it);
    eval mode decodes ``z = μ``. The loss is ``training_loss`` (``mse``, the mean over pixels) plus
    :meth:`auxiliary_loss` ``= beta · kl_scale · KL / (C·H·W)``, the KL of the last batch per pixel: their sum
    times C·H·W is ``Σ (x − x̂)² + beta · KL``, the negative ELBO of a Gaussian likelihood of variance ½
    (in normalised units: ``beta = 2`` is the ELBO for pixel noise σ = 1, the sky noise of robust-normalised
    stamps). ``kl_scale`` (1; not saved) is what :class:`~deepfield.training.callbacks.KLAnnealing` ramps.

    ``condition_size`` K = 0 is unconditional. H and W must divide by ``2 ** len(filters)``.
    """

    preset = "cvae"
    samples_noise_free = True  # sample() decodes the mean: the Gaussian likelihood's pixel noise is not drawn
    training_loss = "mse"
    kl_scale: float = 1.0

    def __init__(self, input_shape: Sequence[int] = (3, 32, 32), latent_dim: int = 16,
                 filters: Sequence[int] = (16, 32), condition_size: int = 0, beta: float = 1.0):
        super().__init__()
        self.input_shape = sample_shape(self.preset, input_shape, 2)
        self.latent_dim = arguments.integer("cvae latent_dim", latent_dim, minimum=1)
        self.condition_size = arguments.integer("cvae condition_size", condition_size, minimum=0)
        if isinstance(filters, (str, bytes)) or not isinstance(filters, Sequence) or not filters:
            raise DeepfieldError(f"preset {self.preset!r} filters must be a list of positive integers, one per "
                                 f"downsampling (e.g. [16, 32]); got {filters!r}")
        self.filters = tuple(arguments.integer("cvae filters entry", f, minimum=1) for f in filters)
        if not float(beta) >= 0:
            raise DeepfieldError(f"preset {self.preset!r} beta must be a number >= 0; got {beta!r}")
        self.beta = float(beta)
        channels, height, width = self.input_shape
        factor = 2 ** len(self.filters)
        if height % factor or width % factor:
            raise DeepfieldError(f"preset {self.preset!r} needs stamps whose sides divide by {factor} "
                                 f"({len(self.filters)} stride-2 convolutions, one per filters entry); got "
                                 f"{height}×{width}: crop the stamps or change filters")
        self.name = self.preset
        encoder = [Conv2D(f, 3, strides=2, padding="same", activation="relu", name=f"conv{i + 1}")
                   for i, f in enumerate(self.filters)]
        deepest = (self.filters[-1], height // factor, width // factor)
        outputs = (channels, *self.filters[:-1])  # deconv k undoes conv k: back to conv k's input channels
        decoder = [Conv2DTranspose(outputs[k], 3, strides=2, padding="same", activation="relu" if k else None,
                                   name=f"deconv{k + 1}") for k in reversed(range(len(self.filters)))]
        layers = [*encoder, Flatten(name="flatten"), Dense(self.latent_dim, name="z_mean"),
                  Dense(self.latent_dim, name="z_log_var"),
                  Dense(deepest[0] * deepest[1] * deepest[2], activation="relu", name="decoder_dense"),
                  Reshape(deepest, name="reshape"), *decoder]
        for layer in layers:
            self.add_module(layer.name, layer)
        self._encoder, self._decoder = encoder, decoder
        self._kl: torch.Tensor | None = None
        self.build()

    # -- the two halves ------------------------------------------------------------------------
    def _with(self, features: torch.Tensor, conditions: torch.Tensor | None) -> torch.Tensor:
        return features if conditions is None else torch.cat([features, conditions.to(features.dtype)], dim=1)

    def moments(self, images: torch.Tensor, conditions: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The latent Gaussian's mean and log-variance ``(N, L)`` of ``images`` ``(N, C, H, W)``."""
        conditions = check_conditions(conditions, len(images), self.condition_size, self.preset)
        x = images
        for layer in self._encoder:
            x = layer(x)
        x = self._with(self.flatten(x), conditions)
        return self.z_mean(x), self.z_log_var(x).clamp(*LOG_VARIANCE_RANGE)

    def encode(self, images: torch.Tensor, conditions: torch.Tensor | None = None) -> torch.Tensor:
        """The latent means ``(N, L)`` of ``images`` (for interpolation), on the model's device; no gradient, eval
        mode."""
        with eval_mode(self):
            return self.moments(*self._placed(images, conditions))[0]

    def _decode(self, z: torch.Tensor, conditions: torch.Tensor | None) -> torch.Tensor:
        conditions = check_conditions(conditions, len(z), self.condition_size, self.preset)
        x = self.reshape(self.decoder_dense(self._with(z, conditions)))
        for layer in self._decoder:
            x = layer(x)
        return x

    def decode(self, z: torch.Tensor, conditions: torch.Tensor | None = None) -> torch.Tensor:
        """Stamps ``(N, C, H, W)`` (normalised units, on the model's device) of latents ``z`` ``(N, L)``; no gradient,
        eval mode."""
        with eval_mode(self):
            return self._decode(*self._placed(z, conditions))

    # -- training -----------------------------------------------------------------------------
    def example_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (x, x.new_zeros((x.shape[0], self.condition_size))) if self.condition_size else (x,)

    def forward(self, images: Any, conditions: torch.Tensor | None = None) -> torch.Tensor:
        """The reconstruction ``(N, C, H, W)`` of ``images`` (or the engine's packed images and conditions)."""
        images, conditions = model_inputs(images, conditions)
        mean, log_variance = self.moments(images, conditions)
        self._kl = kl_to_unit_gaussian(mean.float(), log_variance.float()).mean()
        z = mean + (0.5 * log_variance).exp() * torch.randn_like(mean) if self.training else mean
        return self._decode(z, conditions)

    def kl_divergence(self) -> torch.Tensor:
        """The last batch's mean KL(q(z|x) || N(0, I)) per sample, in nats (0 before any batch)."""
        return self._kl if self._kl is not None else torch.zeros(())

    def auxiliary_loss(self) -> torch.Tensor:
        """``beta · kl_scale · KL / (C·H·W)``: what the training engine adds to the per-pixel ``mse``."""
        return (self.beta * self.kl_scale / math.prod(self.input_shape)) * self.kl_divergence()

    # -- sampling -----------------------------------------------------------------------------
    def sample(self, conditions: torch.Tensor, *, generator: torch.Generator, temperature: float = 1.0,
               **options: Any) -> torch.Tensor:
        """``conditions.shape[0]`` stamps ``(N, C, H, W)`` (normalised units) decoded from
        ``z ~ N(0, temperature² I)`` drawn from ``generator``; eval mode, no gradient."""
        if options:
            raise DeepfieldError(f"preset {self.preset!r} sample takes temperature only; got "
                                 f"{', '.join(sorted(options))}")
        if not float(temperature) >= 0:
            raise DeepfieldError(f"temperature must be a number >= 0; got {temperature!r}")
        z = torch.randn((conditions.shape[0], self.latent_dim), generator=generator, device=generator.device)
        return self.decode(z * float(temperature), conditions if self.condition_size else None)

    def _placed(self, x: torch.Tensor, conditions: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x`` and ``conditions`` on the model's device."""
        device = next(self.parameters()).device
        return x.to(device), None if conditions is None else conditions.to(device)


