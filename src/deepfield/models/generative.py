"""The generative-model contract (issue 19): what a preset must offer for ``task: generate`` and ``deepfield sample``.

A generative model is a :class:`~deepfield.models.presets.base.PresetModel` (input_shape ``(C, H, W)``) with:

* ``condition_size``: K, the length of the condition vector (0: unconditional);
* ``training_loss``: the registered loss with which ``Engine.fit(x, y=images)`` trains it, where ``x`` is the
  images ``(N, C, H, W)`` when K = 0, else images and conditions ``(N, K)`` (the engine hands the model a
  :class:`~deepfield.models.packed.Packed` of both: :func:`model_inputs` unpacks it);
* ``forward(images[, conditions])``: the training output that loss compares with ``y = images`` (a VAE: the
  reconstruction, its KL term in ``auxiliary_loss()`` scaled by ``kl_scale``; a diffusion model: ε̂ − ε);
* ``sample(conditions, *, generator, **options)``: ``(N, C, H, W)`` in the task's normalised units for the
  standardised conditions ``(N, K)`` (``(N, 0)`` when unconditional), every random draw from ``generator``;
* optionally ``encode(images[, conditions]) -> (N, L)`` and ``decode(z[, conditions]) -> (N, C, H, W)``
  (latent interpolation), ``inpaint(images, mask, conditions, *, generator, **options)``, and
  ``samples_noise_free = True`` where ``sample`` returns the mean of the likelihood rather than a draw from it (a
  VAE's decoder output: the pixel noise the likelihood describes is not drawn; :func:`samples_noise_free`).

The task owns the normalisation of images and the standardisation of conditions; it calls only this contract.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from deepfield.errors import DeepfieldError
from deepfield.models.packed import Packed

REQUIRED = ("input_shape", "condition_size", "training_loss", "sample")
"""The attributes every generative model has (:func:`check_generative`)."""


@runtime_checkable
class GenerativeModel(Protocol):
    """The contract of the module docstring, as a type."""

    input_shape: tuple[int, ...]
    condition_size: int
    training_loss: str

    def sample(self, conditions: torch.Tensor, *, generator: torch.Generator, **options: Any) -> torch.Tensor:
        ...


def check_generative(model: nn.Module, name: str | None = None, what: str = "model.preset") -> GenerativeModel:
    """``model`` if it meets the contract, else one line naming ``what`` (the key), ``name`` (default: the model's
    preset or class) and the missing attributes."""
    missing = [name for name in REQUIRED if not hasattr(model, name)]
    if not missing and not callable(getattr(model, "sample")):
        missing = ["sample (a method)"]
    if missing:
        name = name or getattr(model, "preset", type(model).__name__)
        raise DeepfieldError(f"{what} {name!r} is not a generative model: it has no {', '.join(missing)} "
                             "(task generate trains presets such as cvae)")
    return model  # type: ignore[return-value]


def samples_noise_free(model: nn.Module) -> bool:
    """Whether ``model.sample`` returns noise-free stamps (the mean of its pixel likelihood) rather than stamps
    with the noise of the training data: the task then adds that noise where samples stand beside real stamps."""
    return bool(getattr(model, "samples_noise_free", False))


def model_inputs(images: Any, conditions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(images, conditions)`` from ``forward``'s arguments: the two tensors, or the engine's :class:`Packed`."""
    if isinstance(images, Packed):
        if conditions is not None or len(images.parts) != 2:
            raise DeepfieldError("a generative model takes (images, conditions): two inputs")
        images, conditions = images.parts
    return images, conditions


def check_conditions(conditions: torch.Tensor | None, n: int | None, size: int, preset: str) -> torch.Tensor | None:
    """``conditions`` ``(n, size)`` (``None`` or ``(n, 0)`` when ``size`` is 0), or one line saying what was given."""
    if size == 0:
        if conditions is not None and conditions.numel():
            raise DeepfieldError(f"preset {preset!r} is unconditional (condition_size 0); got conditions of shape "
                                 f"{tuple(conditions.shape)}")
        return None
    if conditions is None or conditions.ndim != 2 or conditions.shape[1] != size or (
            n is not None and conditions.shape[0] != n):
        got = "none" if conditions is None else f"shape {tuple(conditions.shape)}"
        raise DeepfieldError(f"preset {preset!r} takes conditions of shape ({'N' if n is None else n}, {size}); "
                             f"got {got}")
    return conditions


def sample_in_batches(model: GenerativeModel, conditions: torch.Tensor, *, generator: torch.Generator,
                      batch_size: int = 256, advance: Callable[[int], None] | None = None,
                      **options: Any) -> torch.Tensor:
    """``model.sample`` over ``conditions`` ``(N, K)`` in batches, drawn from one ``generator`` in order (so the
    same seed and batch size give the same samples); ``advance(n)`` after each batch (a progress bar)."""
    parts = []
    for batch in _batches(conditions, batch_size):
        parts.append(model.sample(batch, generator=generator, **options))
        if advance is not None:
            advance(len(batch))
    return torch.cat(parts) if parts else torch.empty((0, *model.input_shape))


def _batches(conditions: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    for start in range(0, len(conditions), size):
        yield conditions[start:start + size]
