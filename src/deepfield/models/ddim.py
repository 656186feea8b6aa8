"""The DDIM sampler (Song, Meng & Ermon 2021) of a noise-predicting diffusion model, and in-painting with it.

From ``x`` at timestep ``t`` to the previous sampling timestep ``p`` (``ᾱ_{−1} = 1``: the clean image), with
``ε̂`` the network's noise estimate (Song et al. eq. 12)::

    x̂_0 = (x − √(1 − ᾱ_t) ε̂) / √ᾱ_t
    σ   = η · √((1 − ᾱ_p)/(1 − ᾱ_t)) · √(1 − ᾱ_t/ᾱ_p)
    x_p = √ᾱ_p x̂_0 + √(1 − ᾱ_p − σ²) ε̂ + σ z,   z ~ N(0, I)

``η = 0`` is deterministic given the starting noise; ``η = 1`` is DDPM's ancestral sampler on the same steps.
Every sample of a batch is at the same timestep, so each step is one batched call of the network.

In-painting (the replacement method of Song et al. 2021b / Lugmayr et al. 2022, RePaint): after each step the
known pixels are replaced by the known image noised to the new level, ``√ᾱ_p x_known + √(1 − ᾱ_p) z``, so the
generated pixels are drawn conditioned on them; at the last step (``ᾱ = 1``) they ARE the known image.
``resample`` ``r > 1`` is RePaint's resampling: each step is taken ``r`` times, the result noised back to ``t``
(``x_t = √(ᾱ_t/ᾱ_p) x_p + √(1 − ᾱ_t/ᾱ_p) z``) between, which harmonises the filled region with its border.

Every random draw comes from the ``generator`` given, on its device, then moves to the images' (a CPU generator
gives the same samples on any device).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from deepfield.models.noise_schedule import NoiseSchedule

NoisePredictor = Callable[[torch.Tensor, int], torch.Tensor]  # (x_t (N, C, H, W), t) -> ε̂ (N, C, H, W)
Progress = Callable[[int, int], None]  # (steps done, steps in all), after every step


def normal(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``N(0, 1)`` draws shaped like ``like``, from ``generator`` (on its device), moved to ``like``'s device."""
    draws = torch.randn(like.shape, generator=generator, device=generator.device, dtype=like.dtype)
    return draws.to(like.device)


def ddim_step(x: torch.Tensor, noise: torch.Tensor, alpha_t: float, alpha_p: float, eta: float,
              generator: torch.Generator) -> torch.Tensor:
    """One DDIM step from level ``ᾱ_t`` to ``ᾱ_p`` (module doc); ``noise`` is ``ε̂``."""
    clean = (x - math.sqrt(1 - alpha_t) * noise) / math.sqrt(alpha_t)
    sigma = eta * math.sqrt((1 - alpha_p) / (1 - alpha_t) * (1 - alpha_t / alpha_p))
    x = math.sqrt(alpha_p) * clean + math.sqrt(max(1 - alpha_p - sigma**2, 0.0)) * noise
    return x + sigma * normal(x, generator) if sigma > 0 else x


def _noised(known: torch.Tensor, alpha: float, generator: torch.Generator) -> torch.Tensor:
    """The known image at level ``ᾱ`` (itself, exactly, at ``ᾱ = 1``)."""
    return known if alpha == 1.0 else math.sqrt(alpha) * known + math.sqrt(1 - alpha) * normal(known, generator)


def ddim_sample(predict_noise: NoisePredictor, noise: torch.Tensor, schedule: NoiseSchedule, steps: int, *,
                eta: float, generator: torch.Generator, known: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, resample: int = 1,
                progress: Progress | None = None) -> torch.Tensor:
    """Images ``(N, C, H, W)`` from the starting noise ``x_{T−1}`` = ``noise`` in ``steps`` DDIM steps.

    ``known`` ``(N, C, H, W)`` and ``mask`` (bool, broadcastable to it, True where pixels are to be filled):
    in-paint (module doc); the pixels outside ``mask`` are returned exactly as in ``known``.
    Call under ``torch.no_grad()``; the network is called ``steps · resample`` times.
    """
    timesteps = schedule.sampling_steps(steps)
    x = noise
    if known is not None:
        x = torch.where(mask, x, _noised(known, schedule.level(timesteps[0]), generator))
    for i, t in enumerate(timesteps):
        alpha_t = schedule.level(t)
        alpha_p = schedule.level(timesteps[i + 1] if i + 1 < len(timesteps) else -1)
        for r in range(resample if known is not None else 1):
            if r:  # RePaint: back to level t from the last try
                x = math.sqrt(alpha_t / alpha_p) * x + math.sqrt(1 - alpha_t / alpha_p) * normal(x, generator)
            x_p = ddim_step(x, predict_noise(x, t), alpha_t, alpha_p, eta, generator)
            if known is not None:
                x_p = torch.where(mask, x_p, _noised(known, alpha_p, generator))
            x = x_p
        if progress is not None:
            progress(i + 1, len(timesteps))
    return x
