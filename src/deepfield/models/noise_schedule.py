"""The noise schedule of a denoising diffusion model: how much of an image is left after ``t`` noising steps.

DDPM (Ho et al. 2020) noises an image ``x_0`` over ``T`` steps; after step ``t`` (``t = 0 .. T-1`` here, the
paper's step ``t + 1``) ``x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε`` with ``ε ~ N(0, I)``: mean ``√ᾱ_t · x_0``,
variance ``1 − ᾱ_t`` per pixel. Two schedules of ``ᾱ``:

* ``cosine`` (Nichol & Dhariwal 2021, eq. 17): ``ᾱ_t = f(t + 1) / f(0)``, ``f(u) = cos²((u/T + s)/(1 + s) · π/2)``,
  ``s = 0.008``, except that each step's ``β_t = 1 − ᾱ_t/ᾱ_{t−1}`` is clipped at 0.999 as theirs is (``f(T) = 0``
  would make the last step singular): only the last steps of ``ᾱ`` differ from the formula;
* ``linear`` (Ho et al. 2020): ``β_t`` evenly from 1e-4 to 0.02, both scaled by ``1000/T`` (Nichol & Dhariwal's
  scaling, so any ``T`` spans the same noise levels), ``ᾱ_t = Π_{k≤t} (1 − β_k)``.

``ᾱ`` is computed once in float64 (the sampler reads its coefficients as Python floats).
"""
from __future__ import annotations

import math

import torch

from deepfield import arguments
from deepfield.errors import DeepfieldError

SCHEDULES = ("cosine", "linear")
COSINE_OFFSET = 0.008  # Nichol & Dhariwal's s: keeps β small near t = 0
MAX_BETA = 0.999


def cosine_alpha_bar(timesteps: int) -> torch.Tensor:
    """``(T,)`` float64: ``ᾱ_t`` of the cosine schedule, β clipped at :data:`MAX_BETA` (module doc)."""
    u = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((u + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=MAX_BETA)
    return torch.cumprod(1 - betas, 0)


def linear_alpha_bar(timesteps: int) -> torch.Tensor:
    """``(T,)`` float64: ``ᾱ_t`` of Ho et al.'s linear β schedule, scaled by ``1000/T`` (module doc)."""
    scale = 1000 / timesteps
    betas = torch.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0)


class NoiseSchedule:
    """``ᾱ_t`` for ``t = 0 .. timesteps − 1`` and what is computed from it (module doc).

    Args:
        kind: ``"cosine"`` or ``"linear"``.
        timesteps: ``T``, the number of noising steps of training.
    """

    def __init__(self, kind: str = "cosine", timesteps: int = 1000, owner: str = "preset 'diffusion'"):
        if kind not in SCHEDULES:
            raise DeepfieldError(f"{owner} schedule must be one of {', '.join(map(repr, SCHEDULES))}; got {kind!r}")
        self.kind = kind
        self.timesteps = arguments.integer(f"{owner} timesteps", timesteps, minimum=2)
        if self.kind == "linear" and self.timesteps < 20:  # β_T = 20/T: above 1 the schedule is void
            raise DeepfieldError(f"{owner} schedule 'linear' needs timesteps >= 20; got {self.timesteps}")
        self.alpha_bar = (cosine_alpha_bar if kind == "cosine" else linear_alpha_bar)(self.timesteps)
        self._copies: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}  # ᾱ where training batches are

    def level(self, t: int) -> float:
        """``ᾱ_t`` as a float; ``t = −1`` is the clean image, ``ᾱ = 1``."""
        return 1.0 if t < 0 else float(self.alpha_bar[t])

    def levels(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``ᾱ_t`` for timesteps ``t`` ``(N,)`` as ``(N, 1, ...)``, broadcasting against ``like`` ``(N, ...)``
        (on its device, in its dtype)."""
        key = (like.device, like.dtype)
        if key not in self._copies:
            self._copies[key] = self.alpha_bar.to(device=like.device, dtype=like.dtype)
        return self._copies[key][t].reshape(-1, *([1] * (like.dim() - 1)))

    def add_noise(self, images: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε``: ``images`` and ``noise`` ``(N, ...)``, ``t`` ``(N,)`` integers."""
        alpha_bar = self.levels(t, images)
        return alpha_bar.sqrt() * images + (1 - alpha_bar).sqrt() * noise

    def sampling_steps(self, steps: int) -> list[int]:
        """``steps`` timesteps evenly spaced by ``T/steps`` from ``T − T/steps`` down to 0 (DDIM's spacing, Song et
        al. 2021; ``steps = T``: every one), strictly decreasing. Not from ``T − 1``: there ``ᾱ`` is about 1e-9
        under the cosine schedule and an error δ of the noise estimate becomes an error δ/√ᾱ of the first
        estimate of the image; from ``T − T/steps`` (``ᾱ`` 0.024 for 10 steps of 1000) it is at most 7δ."""
        spacing = self.timesteps / steps
        return [int(spacing * k) for k in range(steps - 1, -1, -1)]
