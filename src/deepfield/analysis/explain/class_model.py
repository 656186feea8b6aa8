"""What a class looks like to the network: an input optimised to maximise the class score.

>>> cm = class_model(model, target=1, input_shape=(3, 64, 64))
>>> cm.image                       # (3, 64, 64): the network's "ideal" member of class 1
>>> cm.start_score, cm.final_score # the class score before and after
>>> class_model(model, 1, start=stamp)   # from a real (C, H, W) stamp instead of noise

The image ``I`` climbs ``S(I) − λ‖I‖²`` by gradient ascent (Simonyan et al. 2014), ``S``
the target score. Left alone, the ascent finds high-frequency patterns no sky produces;
two regularisers of Yosinski et al. (2015) keep the image natural: each step the image is
rolled by a random shift of up to ``jitter`` pixels before it is scored (the pattern must
work wherever it lands), and every ``blur_every`` steps it is smoothed by a Gaussian of
``blur_sigma`` pixels. The steps are Adam's (the step size ``lr`` is in input units per
step, whatever the scale of the score). Gradients are taken on the input alone; the
model's weights and train/eval flags are left as they were.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from deepfield import arguments
from deepfield.analysis.explain.attribution import Scorer, as_tensor, explaining, gaussian_blur
from deepfield.errors import DeepfieldError
from deepfield.training.engine import declared_input_shape

__all__ = ["NOISE_SIGMA", "ClassModel", "class_model"]

NOISE_SIGMA = 0.1
"""``start="noise"``: the start is Gaussian noise of this standard deviation (input units;
deepfield's normalised stamps have sky noise of order 1)."""


@dataclass(frozen=True)
class ClassModel:
    """The optimised input for one class.

    Attributes:
        image: ``(C, H, W)`` float32, in the model's input units.
        scores: ``(steps,)`` the target score at each step (of the jittered image scored then).
        start_score: the target score of the start image.
        final_score: the target score of ``image``.
        target: the class index.
    """

    image: np.ndarray
    scores: np.ndarray
    start_score: float
    final_score: float
    target: int


def class_model(model: nn.Module, target: int | None, input_shape: tuple[int, ...] | None = None, *,
                steps: int = 200, lr: float = 0.1, l2: float = 1e-3, jitter: int = 2, blur_sigma: float = 0.5,
                blur_every: int = 4, start: str | np.ndarray = "noise", seed: int = 0,
                logits: bool = False) -> ClassModel:
    """The input that maximises ``model``'s score of class ``target`` (see the module doc).

    Args:
        model: any ``nn.Module`` giving ``(N, K)`` class scores, or one score per sample
            (then ``target=None``).
        target: the class index (``None`` for a model with one output).
        input_shape: one sample's ``(C, H, W)``; default: ``start``'s shape, else the shape
            the model declares.
        steps: ascent steps.
        lr: Adam step size, input units per step.
        l2: λ, the weight of the penalty ``λ‖I‖²`` (sum over pixels) that keeps the image bounded.
        jitter: the largest random shift, pixels, of each step (0: none).
        blur_sigma: σ, pixels, of the periodic smoothing (0: none).
        blur_every: smooth every this many steps (0: never).
        start: ``"noise"`` (Gaussian, :data:`NOISE_SIGMA`) or a real stamp ``(C, H, W)``:
            then the result shows what the network would add to it.
        seed: the noise and the shifts; the result is the same for the same seed (on the
            CPU; GPU kernels may differ in the last bits).
        logits: ``True`` scores the input of the model's final softmax rather than its
            probability (Simonyan et al. use this unnormalised score: the probability can
            also rise by lowering the other classes). An error if the model has no final
            softmax.
    """
    steps, jitter, blur_every, seed = _check_settings(lr=lr, l2=l2, blur_sigma=blur_sigma, steps=steps, jitter=jitter,
                                                      blur_every=blur_every, seed=seed)
    generator = torch.Generator().manual_seed(int(seed))
    with explaining(model, "class_model", logits) as scores:
        image, t = scores.prepare(_start(start, input_shape, model, generator), target,
                                  what="the start image (input_shape or start)")
        image.requires_grad_()
        optimiser = torch.optim.Adam([image], lr=lr, maximize=True)
        start_score = _score(scores, image, t)
        history = []
        for step in range(1, steps + 1):
            shift = torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist()
            score = scores(torch.roll(image, shift, dims=(-2, -1)))[0, t[0]]
            (image.grad,) = torch.autograd.grad(score - l2 * image.square().sum(), image)
            optimiser.step()
            history.append(score.detach())
            if blur_every and step % blur_every == 0:
                with torch.no_grad():
                    image.copy_(gaussian_blur(image, blur_sigma))
        final_score = _score(scores, image, t)
    return ClassModel(image=image.detach()[0].float().cpu().numpy(),
                      scores=torch.stack(history).double().cpu().numpy() if history else np.zeros(0),
                      start_score=start_score, final_score=final_score, target=int(t[0]))


def _score(scores: Scorer, image: torch.Tensor, t: torch.Tensor) -> float:
    with torch.no_grad():
        return float(scores(image)[0, t[0]])


def _start(start: str | np.ndarray, input_shape: tuple[int, ...] | None, model: nn.Module,
           generator: torch.Generator) -> torch.Tensor:
    """The start image as a ``(1, C, H, W)`` CPU tensor."""
    if isinstance(start, str):
        if start != "noise":
            raise DeepfieldError(f"class_model: start {start!r} is unknown; expected 'noise' or a (C, H, W) stamp")
        shape = input_shape or declared_input_shape(model)
        if shape is None:
            raise DeepfieldError("class_model: input_shape is needed: the model does not say what one sample "
                                 "looks like; pass input_shape=(C, H, W)")
        return NOISE_SIGMA * torch.randn((1, *shape), generator=generator)
    stamp = as_tensor(start)
    if stamp.ndim != 3 or (input_shape is not None and tuple(stamp.shape) != tuple(input_shape)):
        raise DeepfieldError(f"class_model: start of shape {tuple(stamp.shape)} is not one stamp of shape "
                             f"{tuple(input_shape) if input_shape else '(C, H, W)'}")
    return stamp.float().clone()[None]


def _check_settings(lr: float, l2: float, blur_sigma: float, **counts: Any) -> list[int]:
    """The counts as ints, in order; else an error naming the first bad setting: ``lr`` > 0, ``l2``,
    ``blur_sigma`` ≥ 0, the counts integers ≥ 0."""
    if not isinstance(lr, (int, float)) or not lr > 0:
        raise DeepfieldError(f"class_model: lr must be a positive number, got {lr!r}")
    for name, value in {"l2": l2, "blur_sigma": blur_sigma}.items():
        if not isinstance(value, (int, float)) or not value >= 0:
            raise DeepfieldError(f"class_model: {name} must be a non-negative number, got {value!r}")
    return [arguments.integer(f"class_model: {name}", value, 0, math.inf, expected="a non-negative integer")
            for name, value in counts.items()]
