"""Test-time augmentation: a network averaged over the symmetries of the square (``model.tta: dihedral``).

:class:`DihedralMean` wraps a trained network taking images ``(N, C, H, W)``: each batch is seen in every
orientation (the eight rotations by 90° and reflections of a square stamp; the four of a rectangle, H ≠ W: the
identity, the two flips and the half turn), the network's output for each view is turned back where it is an image
of the input's height and width (an image-to-image network: a deblended source, a denoised stamp, per-pixel class
scores) and taken as it is otherwise (a classifier's ``(N, K)``), and the views are averaged. On stamps whose
statistics do not depend on orientation (galaxies on the sky) this removes the part of the network's error that
does; it costs 8 (or 4) passes. Nothing is learnt: the wrapped network's weights are the trained ones.

Written here rather than taken from a library: the one PyTorch TTA package (ttach) has not been released since
2020 and is not a dependency; the views are a flip and ``torch.rot90``.
"""
from __future__ import annotations

import torch
from torch import nn

from deepfield.errors import DeepfieldError

TTA_MODES = ("dihedral",)
"""The values ``model.tta`` takes (besides ``None``: no test-time augmentation)."""


def views(height: int, width: int) -> list[tuple[int, bool]]:
    """The symmetries used, as ``(quarter turns, flip)`` pairs (the flip of the last axis comes first, then the
    turns): all eight for a square, the four that keep a rectangle's shape otherwise."""
    turns = (0, 1, 2, 3) if height == width else (0, 2)
    return [(k, flip) for k in turns for flip in (False, True)]


def apply_view(x: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    """``x`` (N, ..., H, W) flipped along W when ``flip``, then turned ``turns`` quarter turns in the (H, W) plane."""
    if flip:
        x = torch.flip(x, (-1,))
    return torch.rot90(x, turns, (-2, -1)) if turns else x


def undo_view(y: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    """The inverse of :func:`apply_view`."""
    if turns:
        y = torch.rot90(y, -turns, (-2, -1))
    return torch.flip(y, (-1,)) if flip else y


class DihedralMean(nn.Module):
    """``network`` averaged over :func:`views` of its input (module docstring). ``forward(x)``: x (N, C, H, W)."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise DeepfieldError("model.tta: dihedral takes images (N, C, H, W); got "
                                 f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        height, width = x.shape[-2:]
        total = None
        chosen = views(height, width)
        for turns, flip in chosen:
            output = self.network(apply_view(x, turns, flip))
            if output.ndim >= 3:
                if tuple(output.shape[-2:]) != (height, width):
                    raise DeepfieldError(f"model.tta: the network's output {tuple(output.shape[1:])} is neither an "
                                         f"image of its input's {height}x{width} nor one row of values per sample")
                output = undo_view(output, turns, flip)
            total = output if total is None else total + output
        return total / len(chosen)


def with_tta(network: nn.Module, mode: str | None) -> nn.Module:
    """``network`` wrapped for ``model.tta`` ``mode`` (``None``: as it is)."""
    if mode is None:
        return network
    if mode not in TTA_MODES:
        raise DeepfieldError(f"model.tta must be one of {', '.join(TTA_MODES)} or null; got {mode!r}")
    return DihedralMean(network)
