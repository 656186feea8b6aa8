"""A denoising diffusion model of stamps (Ho et al. 2020), its noise predictor a U-Net, sampled by DDIM.

Training (through ``Engine.fit(x, y=images)`` with the loss ``diffusion_mse``, unchanged): ``forward`` noises the
images to a random timestep and returns the error of the network's noise estimate, ``ε̂ − ε``; the loss is its
mean square (Ho et al.'s simple loss). Sampling and in-painting: :meth:`Diffusion.sample`,
:meth:`Diffusion.inpaint`, :meth:`Diffusion.inpaint_spread` (:mod:`deepfield.models.ddim`).

It meets the generative-model contract of the ``generate`` task: ``condition_size``, ``training_loss``,
``forward(images[, conditions])``, ``sample(conditions, *, generator, **options)``, ``inpaint``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.models.batch_noise import draw
from deepfield.models.conv import Conv2D
from deepfield.models.core import Activation, Dense
from deepfield.models.ddim import Progress, ddim_sample, normal
from deepfield.models.modes import eval_mode
from deepfield.models.functional import Functional, Input
from deepfield.models.noise_schedule import NoiseSchedule
from deepfield.models.packed import Packed
from deepfield.models.presets.base import PresetModel, sample_shape
from deepfield.models.presets.unet import NORMALIZATIONS, UPSAMPLINGS, UNetBuilder, check_stamp_size, one_of

PRESET = "diffusion"
VALIDATION_SEED = 20_211_210  # the private generator of the eval-mode draws (any fixed number)
MAX_PERIOD = 10_000  # of the sinusoidal time embedding (Vaswani et al. 2017; Ho et al. 2020)


def time_features(t: torch.Tensor, size: int) -> torch.Tensor:
    """``(N,)`` timesteps to ``(N, size)`` sinusoids ``[sin(t ω_k), cos(t ω_k)]``, ``ω_k = 10000^(−k/(size/2))``."""
    half = size // 2
    frequencies = torch.exp(-math.log(MAX_PERIOD) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * frequencies[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


SAMPLING_STEPS = 50
"""The DDIM steps of :meth:`Diffusion.sample` and :meth:`Diffusion.inpaint` by default."""


class Diffusion(PresetModel):
    """A conditional denoising diffusion model of ``(C, H, W)`` stamps with classifier-free guidance.

    Network: the ``unet`` preset's encoder-decoder (:class:`~deepfield.models.presets.unet.UNetBuilder`:
    ``depth`` levels, ``filters`` doubled per level) predicting the noise ``ε̂`` of ``x_t``, with an embedding of
    size ``D = 4 · filters`` added into every block: the sinusoidal features of ``t`` through
    ``Dense(D, silu) → Dense(D)``, plus (``condition_size`` K > 0) the condition vector through
    ``Dense(D, silu) → Dense(D)``, then SiLU. Classifier-free guidance (Ho & Salimans 2022): in training the
    condition's embedding is replaced, with probability ``condition_dropout`` per sample, by a learnt null
    embedding (``null_condition``), so the one network also predicts unconditionally.

    ``forward(images[, conditions])`` (``(N, C, H, W)`` in the task's normalised units, ``(N, K)`` standardised;
    also a ``Packed`` or a pair of both): draws ``t`` uniformly in ``0 .. T−1`` and ``ε ~ N(0, I)``, makes
    ``x_t`` (:class:`~deepfield.models.noise_schedule.NoiseSchedule`) and returns ``ε̂ − ε`` ``(N, C, H, W)``.
    In training mode the draws (and the condition drops) come from torch's global generator (seeded by ``fit``;
    through :func:`~deepfield.models.batch_noise.draw`, so a data-parallel fit on the CPU draws what one process
    would). In eval mode (validation, ``evaluate``) they come from a private generator seeded with
    :data:`VALIDATION_SEED` at every call, the timesteps stratified over the batch (``t_i = ⌊(i + u_i) T/N⌋``)
    and no condition dropped: the validation loss is the same number for the same weights (reproducible, and its
    change between epochs is the model's, not the draws'), with the low variance of stratified timesteps.

    Args:
        input_shape: ``(C, H, W)``; H and W must divide by ``2**depth`` and be at least ``2**(depth+1)``.
        condition_size: K, the length of the condition vector; 0: unconditional.
        depth, filters, normalization, groups, residual, upsampling, kernel_initializer: as the ``unet`` preset's
            (``normalization`` 'group' by default: the same in training and sampling, no running statistics
            gathered over all noise levels).
        schedule: ``"cosine"`` (Nichol & Dhariwal 2021) or ``"linear"`` (Ho et al. 2020).
        timesteps: T, the noising steps of training.
        condition_dropout: the probability of training a sample unconditionally (ignored when K = 0).

    Default on ``(3, 32, 32)``: depth 2, filters 16, 136,115 parameters (see ``benchmarks/bench_diffusion.py``
    for the sampling speed).
    """

    preset = PRESET
    training_loss = "diffusion_mse"

    def __init__(self, input_shape: Sequence[int] = (3, 32, 32), condition_size: int = 0, depth: int = 2,
                 filters: int = 16, normalization: str | None = "group", groups: int = 8, residual: bool = False,
                 upsampling: str = "transpose", schedule: str = "cosine", timesteps: int = 1000,
                 condition_dropout: float = 0.1, kernel_initializer: str | dict = "he_normal"):
        super().__init__()
        self.input_shape = sample_shape(PRESET, input_shape, 2)
        self.name = PRESET
        self.condition_size = arguments.integer(f"preset {PRESET!r} condition_size", condition_size, minimum=0)
        self.depth = arguments.integer(f"preset {PRESET!r} depth", depth)
        self.filters = arguments.integer(f"preset {PRESET!r} filters", filters)
        self.groups = arguments.integer(f"preset {PRESET!r} groups", groups)
        self.normalization = one_of("normalization", normalization, NORMALIZATIONS, PRESET)
        self.upsampling = one_of("upsampling", upsampling, UPSAMPLINGS, PRESET)
        self.residual = one_of("residual", residual, (False, True), PRESET)
        if normalization == "group" and self.filters % self.groups:
            raise DeepfieldError(f"preset {PRESET!r} normalization 'group' with {groups} groups needs filters that "
                                 f"divide by {groups}; got filters {filters}")
        check_stamp_size(self.input_shape[1], self.input_shape[2], self.depth, PRESET)
        self.noise_schedule = NoiseSchedule(schedule, timesteps)
        self.schedule, self.timesteps = schedule, self.noise_schedule.timesteps
        self.condition_dropout = arguments.fraction(f"preset {PRESET!r} condition_dropout", condition_dropout)
        self.kernel_initializer = kernel_initializer

        size = self.embedding_size = 4 * self.filters
        self.time_hidden = Dense(size, activation="silu", name="time_hidden")
        self.time_embedding = Dense(size, name="time_embedding")
        if self.condition_size:
            self.condition_hidden = Dense(size, activation="silu", name="condition_hidden")
            self.condition_embedding = Dense(size, name="condition_embedding")
            self.null_condition = nn.Parameter(torch.zeros(size))
        image, embedding = Input(self.input_shape, name="noisy_image"), Input((size,), name="embedding")
        make = UNetBuilder(self.normalization, self.groups, self.residual, kernel_initializer)
        x = make.features(image, self.depth, self.filters, self.upsampling, 0.0,
                          Activation("silu", name="embedding_silu")(embedding))
        noise = Conv2D(self.input_shape[0], 1, kernel_initializer="zeros", name="noise")(x)  # ε̂ = 0 at the start
        self.network = Functional([image, embedding], noise, name="noise_predictor")
        self.build()

    # -- the network ------------------------------------------------------------------------------
    def example_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (x, x.new_zeros((x.shape[0], self.condition_size))) if self.condition_size else (x,)

    def predict_noise(self, x: torch.Tensor, t: torch.Tensor, conditions: torch.Tensor | None = None,
                      dropped: torch.Tensor | None = None) -> torch.Tensor:
        """``ε̂`` ``(N, C, H, W)`` for ``x_t`` ``(N, C, H, W)`` at timesteps ``t`` ``(N,)``; ``conditions`` ``(N, K)``
        (K > 0); ``dropped`` ``(N,)`` bool: those samples get the null embedding (unconditional).

        The network's output ``F`` is the velocity ``v = √ᾱ ε − √(1 − ᾱ) x_0`` (Salimans & Ho 2022) and
        ``ε̂ = √(1 − ᾱ) x_t + √ᾱ F``: at high noise, where ``ε ≈ x_t``, the network need not copy its input
        through its normalisations to predict ε (which an ε-predicting network does only roughly, and the sampler
        divides that error by ``√ᾱ`` ~ 0.05 in its first steps), and a network whose output starts at zero
        samples ``x̂_0 = √ᾱ x_t``, near the data's scale, not ``x_t / √ᾱ``. The loss stays the ε error."""
        embedding = self.time_embedding(self.time_hidden(time_features(t, self.embedding_size).to(x.dtype)))
        if self.condition_size:
            condition = self.condition_embedding(self.condition_hidden(conditions))
            if dropped is not None:  # torch.where always: the null embedding is in every graph (DDP needs that)
                condition = torch.where(dropped[:, None], self.null_condition.to(condition.dtype), condition)
            embedding = embedding + condition
        alpha_bar = self.noise_schedule.levels(t, x)
        return (1 - alpha_bar).sqrt() * x + alpha_bar.sqrt() * self.network([x, embedding])

    def forward(self, images: Any, conditions: torch.Tensor | None = None) -> torch.Tensor:
        """``ε̂ − ε`` ``(N, C, H, W)`` for random ``t`` and ``ε`` (class doc: where the draws come from)."""
        images, conditions = self._inputs(images, conditions)
        n, device = images.shape[0], images.device
        if self.training:
            t = draw((n,), lambda s, g: torch.randint(0, self.timesteps, s, generator=g, device=device), device)
            noise = draw(images.shape, lambda s, g: torch.randn(s, generator=g, device=device, dtype=images.dtype),
                         device)
            dropped = None
            if self.condition_size:
                dropped = draw((n,), lambda s, g: torch.rand(s, generator=g, device=device), device) \
                    < self.condition_dropout
        else:
            generator = torch.Generator(device=device).manual_seed(VALIDATION_SEED)
            u = torch.rand((n,), generator=generator, device=device)
            t = ((torch.arange(n, device=device) + u) * (self.timesteps / n)).long().clamp(max=self.timesteps - 1)
            noise = torch.randn(images.shape, generator=generator, device=device, dtype=images.dtype)
            dropped = torch.zeros(n, dtype=torch.bool, device=device) if self.condition_size else None
        x_t = self.noise_schedule.add_noise(images, t, noise)
        return self.predict_noise(x_t, t, conditions, dropped) - noise

    def _inputs(self, images: Any, conditions: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The images and conditions, from ``(images, conditions)``, a ``Packed`` or a pair, checked."""
        if isinstance(images, Packed):
            images = images.parts
        if isinstance(images, (list, tuple)):
            if len(images) != 2 or conditions is not None:
                raise DeepfieldError(f"preset {PRESET!r} takes images, or images and conditions; got "
                                     f"{len(images)} tensors")
            images, conditions = images
        return images, self._conditions(conditions, images.shape[0])

    def _conditions(self, conditions: torch.Tensor | None, n: int) -> torch.Tensor | None:
        """``(n, K)`` conditions checked (None when K = 0; an ``(n, 0)`` tensor is accepted then)."""
        k = self.condition_size
        if conditions is None:
            if k:
                raise DeepfieldError(f"preset {PRESET!r} was built with condition_size {k}: it needs conditions "
                                     f"of shape ({n}, {k})")
            return None
        if not isinstance(conditions, torch.Tensor) or tuple(conditions.shape) != (n, k):
            shape = tuple(conditions.shape) if isinstance(conditions, torch.Tensor) else type(conditions).__name__
            raise DeepfieldError(f"preset {PRESET!r} conditions must be a tensor of shape ({n}, {k}); got {shape}")
        return conditions.float() if k else None

    # -- sampling ---------------------------------------------------------------------------------
    def guided_noise(self, x: torch.Tensor, t: int, conditions: torch.Tensor | None,
                     guidance: float) -> torch.Tensor:
        """``ε̂`` of ``x`` ``(N, C, H, W)`` at timestep ``t`` with classifier-free guidance of scale ``w``:
        ``ε̂_u + w (ε̂_c − ε̂_u)`` (``ε̂_c`` conditional, ``ε̂_u`` with the null embedding), both from ONE batched
        pass of ``2N``; ``w = 1`` is the conditional pass alone, ``w = 0`` the unconditional (one pass of N)."""
        n = x.shape[0]
        steps = torch.full((n,), t, dtype=torch.long, device=x.device)
        if not self.condition_size or guidance == 1.0:
            return self.predict_noise(x, steps, conditions, None)
        if guidance == 0.0:
            return self.predict_noise(x, steps, conditions, torch.ones(n, dtype=torch.bool, device=x.device))
        dropped = torch.arange(2 * n, device=x.device) >= n
        both = self.predict_noise(torch.cat([x, x]), steps.repeat(2), conditions.repeat(2, 1), dropped)
        conditional, unconditional = both[:n], both[n:]
        return unconditional + guidance * (conditional - unconditional)

    def sample(self, conditions: torch.Tensor, *, generator: torch.Generator, steps: int | None = None,
               guidance: float = 1.0, eta: float = 0.0, progress: Progress | None = None) -> torch.Tensor:
        """``N`` new stamps ``(N, C, H, W)`` in the training images' units by DDIM (:mod:`~deepfield.models.ddim`).

        Args:
            conditions: ``(N, K)`` standardised as in training (``(N, 0)`` for an unconditional model).
            generator: every random draw (the starting noise, and for ``eta > 0`` each step's) comes from it:
                the same seed gives the same samples, bit for bit on the CPU.
            steps: DDIM steps, evenly spaced over the ``timesteps`` of training (1 to T; default
                :data:`SAMPLING_STEPS`, at most T).
            guidance: classifier-free guidance scale ``w >= 0`` (1: conditional, 0: unconditional, > 1 sharper
                conditioning); ignored when K = 0.
            eta: 0 deterministic DDIM, 1 ancestral (DDPM-like) sampling, between: a mix.
            progress: called ``(done, steps)`` after every step (for a progress bar).
        """
        n = self._sample_count(conditions)
        conditions = self._conditions(conditions, n)
        steps = self._sampler_steps(steps, guidance, eta, generator)
        with eval_mode(self):
            device = next(self.parameters()).device
            noise = normal(torch.empty((n, *self.input_shape), device=device), generator)
            if conditions is not None:
                conditions = conditions.to(device)
            return ddim_sample(lambda x, t: self.guided_noise(x, t, conditions, guidance), noise,
                               self.noise_schedule, steps, eta=eta, generator=generator,
                               progress=progress)

    def inpaint(self, images: torch.Tensor, mask: torch.Tensor, conditions: torch.Tensor, *,
                generator: torch.Generator, steps: int | None = None, guidance: float = 1.0, eta: float = 0.0,
                resample: int = 1, progress: Progress | None = None) -> torch.Tensor:
        """``images`` ``(N, C, H, W)`` with the pixels where ``mask`` is True drawn by the model, given the others.

        ``mask``: bool, broadcastable to the images (``(N, 1, H, W)`` masks every band; ``(H, W)`` every image);
        the pixels outside it are returned exactly as given (bit for bit). ``resample``: RePaint's passes per
        step (1: plain replacement; 5 to 10 blend the border better, at that many times the cost). The other
        arguments as :meth:`sample`'s; the network runs ``steps · resample`` times.
        """
        n = self._sample_count(conditions)
        conditions = self._conditions(conditions, n)
        images, mask = self._inpainting_inputs(images, mask, n)
        steps = self._sampler_steps(steps, guidance, eta, generator)
        resample = arguments.integer(f"preset {PRESET!r} resample", resample)
        with eval_mode(self):
            device = next(self.parameters()).device
            known = images.to(device=device, dtype=torch.float32)
            if conditions is not None:
                conditions = conditions.to(device)
            noise = normal(known, generator)
            filled = ddim_sample(lambda x, t: self.guided_noise(x, t, conditions, guidance), noise,
                                 self.noise_schedule, steps, eta=eta, generator=generator, known=known,
                                 mask=mask.to(device), resample=resample, progress=progress)
            return torch.where(mask.to(device), filled, known).to(images)

    def inpaint_spread(self, images: torch.Tensor, mask: torch.Tensor, conditions: torch.Tensor, *,
                       generator: torch.Generator, samples: int = 8,
                       **options: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and the standard deviation over ``samples`` in-paintings of each image, ``(N, C, H, W)``
        each: the filled pixels' estimate and its uncertainty (0 outside ``mask``, where the mean is the input).

        All ``samples × N`` in-paintings run as one batch; ``options`` are :meth:`inpaint`'s.
        """
        samples = arguments.integer(f"preset {PRESET!r} samples", samples, minimum=2)
        n = self._sample_count(conditions)
        images, mask = self._inpainting_inputs(images, mask, n)
        mask = mask.expand_as(images)
        draws = self.inpaint(images.repeat(samples, 1, 1, 1), mask.repeat(samples, 1, 1, 1),
                             conditions.repeat(samples, 1), generator=generator, **options)
        draws = draws.reshape(samples, *images.shape)
        mean, spread = draws.mean(0), draws.std(0)
        return torch.where(mask, mean, images), torch.where(mask, spread, torch.zeros_like(spread))

    def _sample_count(self, conditions: Any) -> int:
        if not isinstance(conditions, torch.Tensor) or conditions.dim() != 2 or conditions.shape[1] != \
                self.condition_size:
            shape = tuple(conditions.shape) if isinstance(conditions, torch.Tensor) else type(conditions).__name__
            raise DeepfieldError(f"preset {PRESET!r} conditions must be a tensor of shape (N, "
                                 f"{self.condition_size}) (N: the number of samples); got {shape}")
        return int(conditions.shape[0])

    def _inpainting_inputs(self, images: Any, mask: Any, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``images`` ``(n, C, H, W)`` and ``mask`` as a bool tensor broadcast to them, checked."""
        expected = (n, *self.input_shape)
        if not isinstance(images, torch.Tensor) or tuple(images.shape) != expected:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise DeepfieldError(f"preset {PRESET!r} inpaint images must have shape {expected} (one per "
                                 f"condition); got {shape}")
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise DeepfieldError(f"preset {PRESET!r} inpaint mask must be a bool tensor (True: fill); got "
                                 f"{getattr(mask, 'dtype', type(mask).__name__)}")
        try:
            mask = torch.broadcast_to(mask, images.shape)
        except RuntimeError:
            raise DeepfieldError(f"preset {PRESET!r} inpaint mask of shape {tuple(mask.shape)} does not broadcast "
                                 f"to the images' {tuple(images.shape)}") from None
        return images, mask.to(images.device)

    def _sampler_steps(self, steps: Any, guidance: Any, eta: Any, generator: Any) -> int:
        """The sampler's options checked (each error one line naming it); the steps as an int (``None``:
        :data:`SAMPLING_STEPS`, or every timestep of a model trained on fewer)."""
        steps = min(SAMPLING_STEPS, self.timesteps) if steps is None else steps
        steps = arguments.integer(f"preset {PRESET!r} steps", steps, maximum=self.timesteps,
                                  expected=f"an integer from 1 to timesteps ({self.timesteps})")
        if not arguments.is_number(guidance) or not guidance >= 0 or not math.isfinite(guidance):
            raise DeepfieldError(f"preset {PRESET!r} guidance must be a number >= 0 (1: conditional, 0: "
                                 f"unconditional); got {guidance!r}")
        arguments.fraction(f"preset {PRESET!r} eta", eta)
        if not isinstance(generator, torch.Generator):
            raise DeepfieldError(f"preset {PRESET!r} needs a torch.Generator as generator (every draw comes from "
                                 f"it); got {type(generator).__name__}")
        return steps

