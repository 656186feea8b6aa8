"""Occlusion sensitivity (Zeiler & Fergus 2014), fast: only the part of each layer a square changes is recomputed.

>>> result = occlusion(model, stamp, target=1, size=8, stride=4, fill=0.0)
>>> result.scores        # (rows, cols): the target output with the square at each position
>>> result.pixel_map()   # (H, W): mean drop of the output over the squares covering each pixel

An occluding square changes only a window of each layer's output, and the window grows
with the receptive field. So (Nakandala et al., SIGMOD 2019, "incremental inference"):

1. the clean stamp runs through the network once, and every layer's input is kept;
2. for every square position at once (a batch of positions), each convolution or pooling
   layer recomputes only the output box its changed input can reach, from the clean input
   with the previous layer's box pasted in; element-wise layers (activation, batch norm in
   inference, dropout off) act on the box alone;
3. at the first layer whose output depends on everything (flatten, dense, global pooling,
   a block that is not a plain convolution), the boxes are pasted into full copies of the
   clean activation and the rest of the network runs on them as usual.

The boxes have one size per layer for all positions (the largest changed extent, shifted
inward at the edges), so each layer is one batched call. The result equals running the
network on every occluded copy (``method="batched"`` or ``"loop"``, kept for checking and
for networks that are not a chain of layers) to float tolerance.

No library does this: captum's ``Occlusion`` runs the whole network on every occluded copy.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.models.base import ensure_built
from deepfield.models.conv import Conv2D
from deepfield.models.core import Activation, Dropout, SpatialDropout
from deepfield.models.normalization import BatchNormalization
from deepfield.models.pooling import _Pooling
from deepfield.training.engine import eval_mode

METHODS = ("incremental", "batched", "loop")


@dataclass
class Occlusion:
    """Occlusion sensitivity of one stamp.

    Attributes:
        scores: ``(rows, cols)`` the target output with the square's top-left corner at
            ``(rows_at[i], cols_at[j])``.
        clean: the target output of the stamp itself.
        rows_at, cols_at: the square's top-left pixel along each axis.
        size: the square's side (pixels); ``shape``: the stamp's ``(H, W)``.
    """

    scores: np.ndarray
    clean: float
    rows_at: np.ndarray
    cols_at: np.ndarray
    size: int
    shape: tuple[int, int]

    def pixel_map(self) -> np.ndarray:
        """``(H, W)``: for each pixel, the mean of ``clean − score`` over the squares covering it
        (0 where none does): positive where hiding the pixel lowers the output."""
        drop = self.clean - self.scores
        total = np.zeros(self.shape)
        count = np.zeros(self.shape)
        for i, r in enumerate(self.rows_at):
            for j, c in enumerate(self.cols_at):
                total[r:r + self.size, c:c + self.size] += drop[i, j]
                count[r:r + self.size, c:c + self.size] += 1
        return np.divide(total, count, out=np.zeros(self.shape), where=count > 0)


def positions(length: int, size: int, stride: int) -> np.ndarray:
    """Top-left offsets of a square of ``size`` sliding by ``stride`` inside ``length`` pixels."""
    if not 1 <= size <= length:
        raise DeepfieldError(f"occlusion size must be between 1 and the stamp's side ({length}), got {size}")
    stride = arguments.integer("occlusion stride", stride, expected="positive")
    return np.arange(0, length - size + 1, stride)


def occlusion(model: nn.Module, image: Any, target: int | None = None, *, size: int = 8, stride: int = 4,
              fill: float | Sequence[float] = 0.0, method: str = "incremental", batch_size: int = 256,
              device: str | torch.device | None = None) -> Occlusion:
    """The target output of ``model`` with a square of ``fill`` hiding each position of ``image``.

    Args:
        model: a network taking ``(N, C, H, W)``; the incremental method needs a chain of
            layers (a deepfield or torch ``Sequential``), anything else runs ``"batched"``.
        image: one stamp ``(C, H, W)`` (or ``(1, C, H, W)``).
        target: the output to watch (a class index); ``None`` for a single-output model.
        size, stride: the square's side and step, in pixels.
        fill: the value under the square, one for all bands or one per band (e.g. the sky level).
        method: ``"incremental"`` (module doc), ``"batched"`` (every occluded copy through the
            whole network, ``batch_size`` at a time) or ``"loop"`` (one forward per position).
        batch_size: positions per batched pass.
        device: where to run (default: the model's).
    """
    if method not in METHODS:
        raise DeepfieldError(f"occlusion method must be one of {', '.join(METHODS)}, got {method!r}")
    device = torch.device(device) if device is not None else next(
        (p.device for p in model.parameters()), torch.device("cpu"))
    x = _stamp(image).to(device)
    channels, height, width = x.shape
    patch = _fill(fill, channels, size, device)
    rows_at, cols_at = positions(height, size, stride), positions(width, size, stride)
    corners = torch.tensor([(r, c) for r in rows_at for c in cols_at], device=device)
    model.to(device)
    ensure_built(model, x[None])
    with eval_mode(model):
        chain = _chain(model) if method == "incremental" else None
        if chain is not None:
            inputs = _layer_inputs(chain, x[None])  # the clean stamp through the network, once
            clean_out = inputs[-1]
            pick = _target(clean_out, target)
            scores = torch.cat([_incremental_scores(chain, inputs, patch, chunk, pick)
                                for chunk in corners.split(batch_size)])
        else:
            clean_out = model(x[None])
            pick = _target(clean_out, target)
            run = _loop_scores if method == "loop" else _batched_scores
            scores = torch.cat([run(model, x, patch, chunk, pick) for chunk in corners.split(batch_size)])
    return Occlusion(scores.reshape(len(rows_at), len(cols_at)).cpu().numpy().astype(np.float64),
                     float(pick(clean_out)[0]), rows_at, cols_at, size, (height, width))


def _stamp(image: Any) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(image, dtype=np.float32) if not isinstance(image, torch.Tensor) else image)
    if x.dim() == 4 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 3:
        raise DeepfieldError(f"occlusion takes one stamp (C, H, W), got shape {tuple(x.shape)}")
    return x.float()


def _fill(fill: float | Sequence[float], channels: int, size: int, device: torch.device) -> torch.Tensor:
    """The square's content ``(C, size, size)``."""
    values = torch.as_tensor(np.atleast_1d(np.asarray(fill, dtype=np.float32)), device=device)
    if values.numel() not in (1, channels):
        raise DeepfieldError(f"occlusion fill must be one value or one per band ({channels}), got {values.numel()}")
    return values.reshape(-1, 1, 1).expand(channels, size, size).clone()


def _target(output: torch.Tensor, target: int | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function picking the watched output ``(N,)`` from the model's ``(N, K)`` outputs."""
    width = output.reshape(output.shape[0], -1).shape[1]
    if target is None:
        if width != 1:
            raise DeepfieldError(f"the model has {width} outputs: choose one with target=")
        return lambda out: out.reshape(out.shape[0])
    if not 0 <= int(target) < width:
        raise DeepfieldError(f"target {target} is not an output of the model (it has {width})")
    return lambda out: out.reshape(out.shape[0], -1)[:, int(target)]


def _occluded(x: torch.Tensor, patch: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
    """``(P, C, H, W)`` copies of ``x`` with ``patch`` at each corner."""
    copies = x.expand(len(corners), *x.shape).clone()
    size = patch.shape[-1]
    for k, (r, c) in enumerate(corners.tolist()):
        copies[k, :, r:r + size, c:c + size] = patch
    return copies


def _batched_scores(model: nn.Module, x: torch.Tensor, patch: torch.Tensor, corners: torch.Tensor,
                    pick: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    return pick(model(_occluded(x, patch, corners)))


def _loop_scores(model: nn.Module, x: torch.Tensor, patch: torch.Tensor, corners: torch.Tensor,
                 pick: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    return torch.cat([pick(model(_occluded(x, patch, corners[k:k + 1]))) for k in range(len(corners))])


# -- incremental inference ---------------------------------------------------------------------

_ELEMENTWISE = (Activation, BatchNormalization, Dropout, SpatialDropout, nn.ReLU, nn.Sigmoid, nn.Tanh, nn.LeakyReLU,
                nn.ELU, nn.GELU, nn.Identity, nn.Dropout, nn.Dropout2d, nn.BatchNorm2d)


def _chain(model: nn.Module) -> list[nn.Module] | None:
    """The layers of a model that is one chain of them (its forward applies them in order), else None."""
    return list(model.children()) if isinstance(model, nn.Sequential) else None


@dataclass
class _Boxes:
    """Per position, the recomputed window of one activation: ``values (P, Lr, Lc, C)`` (channels
    last, so a pixel's channels move as one row) for rows ``[top, top + Lr)`` and columns
    ``[left, left + Lc)``; ``changed_rows/cols`` the ``[first, end)`` really changed."""

    values: torch.Tensor
    top: torch.Tensor
    left: torch.Tensor
    changed_rows: tuple[torch.Tensor, torch.Tensor]
    changed_cols: tuple[torch.Tensor, torch.Tensor]

    def apply(self, layer: nn.Module) -> _Boxes:
        """The boxes after an element-wise layer (it sees them as an ``(P, C, Lr, Lc)`` batch)."""
        out = layer(self.values.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).contiguous()
        return _Boxes(out, self.top, self.left, self.changed_rows, self.changed_cols)


def _windowed(layer: nn.Module) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], Callable] | None:
    """For a 2-D convolution or pooling layer: (kernel, strides, dilation, op on an unpadded crop) and its
    padding, or None. The op computes the layer's 'valid' output of a crop that already holds the padding."""
    if isinstance(layer, Conv2D) and type(layer) is Conv2D:
        return (layer.kernel_size, layer.strides, layer.dilation_rate,
                lambda crop: layer.activation(F.conv2d(crop, layer.weight, layer.bias, layer.strides, 0,
                                                       layer.dilation_rate)))
    if isinstance(layer, nn.Conv2d) and layer.padding_mode == "zeros" and isinstance(layer.padding, tuple):
        return (layer.kernel_size, layer.stride, layer.dilation,
                lambda crop: F.conv2d(crop, layer.weight, layer.bias, layer.stride, 0, layer.dilation, layer.groups))
    if isinstance(layer, _Pooling) and layer.rank == 2 and layer.kind in ("max", "sum"):
        kernel, strides = layer.pool_size, layer.strides
        if layer.kind == "max":
            return kernel, strides, (1, 1), lambda crop: F.max_pool2d(crop, kernel, strides)
        cells = math.prod(kernel)
        return kernel, strides, (1, 1), lambda crop: F.avg_pool2d(crop, kernel, strides) * cells
    return None


def _padding(layer: nn.Module, spatial: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) zero/−inf padding the layer adds to an input of size ``spatial``."""
    if isinstance(layer, nn.Conv2d):
        return layer.padding[0], layer.padding[0], layer.padding[1], layer.padding[1]
    symmetric, extra = layer._window.pads(spatial)
    if extra is None:
        return symmetric[0], symmetric[0], symmetric[1], symmetric[1]
    left, right, top, bottom = extra  # F.pad order: last axis first
    return top, bottom, left, right


def _affected(lo: torch.Tensor, hi: torch.Tensor, pad: int, kernel: int, stride: int, dilation: int,
              size_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Output indices ``[o0, o1)`` whose window (in padded input coordinates) meets input ``[lo, hi)``."""
    extent = (kernel - 1) * dilation + 1
    first = torch.div(lo + pad - extent, stride, rounding_mode="floor") + 1
    last = torch.div(hi + pad - 1, stride, rounding_mode="floor")
    return first.clamp(0, size_out), (last + 1).clamp(0, size_out)


def _box_start(first: torch.Tensor, length: int, size: int) -> torch.Tensor:
    """Each box's start: its changed part's first index, moved inward so a box of ``length`` fits."""
    return first.clamp(0, size - length)


def _gather(canvas: torch.Tensor, boxes: _Boxes, top: torch.Tensor, left: torch.Tensor, rows: int, cols: int,
            offset: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """``(P, rows, cols, C)``: each position's window of the activation, at ``[top, top + rows)`` x
    ``[left, left + cols)`` of ``canvas`` ``(H', W', C)`` (the clean activation, padded by ``offset``
    before its origin), with the position's box pasted over it where they overlap."""
    device = canvas.device
    count, box_rows, box_cols, channels = boxes.values.shape
    windows = canvas[(top[:, None] + torch.arange(rows, device=device))[:, :, None],
                     (left[:, None] + torch.arange(cols, device=device))[:, None, :]]  # (P, rows, cols, C)
    r_in = boxes.top[:, None] + offset[0] + torch.arange(box_rows, device=device) - top[:, None]  # (P, box_rows)
    c_in = boxes.left[:, None] + offset[1] + torch.arange(box_cols, device=device) - left[:, None]
    inside = ((r_in >= 0) & (r_in < rows))[:, :, None] & ((c_in >= 0) & (c_in < cols))[:, None, :]
    base = torch.arange(count, device=device)[:, None, None] * rows
    target = ((base + r_in[:, :, None]) * cols + c_in[:, None, :]).reshape(-1)
    source = boxes.values.reshape(-1, channels)
    if not bool(inside.all()):  # a box may stick out of the window: paste its overlap only
        keep = inside.reshape(-1)
        target, source = target[keep], source[keep]
    windows.view(-1, channels).index_copy_(0, target, source)
    return windows


def _through_window(layer: nn.Module, spec: tuple, clean_input: torch.Tensor, boxes: _Boxes) -> _Boxes:
    """The boxes of a convolution or pooling layer's output, computed from its input boxes."""
    kernel, strides, dilation, op = spec
    height, width = clean_input.shape[-2:]
    top, bottom, left, right = _padding(layer, (height, width))
    value = -math.inf if isinstance(layer, _Pooling) and layer.kind == "max" else 0.0
    canvas = F.pad(clean_input, (left, right, top, bottom), value=value)[0].permute(1, 2, 0).contiguous()
    out_rows = (height + top + bottom - (kernel[0] - 1) * dilation[0] - 1) // strides[0] + 1
    out_cols = (width + left + right - (kernel[1] - 1) * dilation[1] - 1) // strides[1] + 1
    r0, r1 = _affected(*boxes.changed_rows, top, kernel[0], strides[0], dilation[0], out_rows)
    c0, c1 = _affected(*boxes.changed_cols, left, kernel[1], strides[1], dilation[1], out_cols)
    box_rows, box_cols = max(int((r1 - r0).max()), 1), max(int((c1 - c0).max()), 1)
    new_top, new_left = _box_start(r0, box_rows, out_rows), _box_start(c0, box_cols, out_cols)
    span_rows = (box_rows - 1) * strides[0] + (kernel[0] - 1) * dilation[0] + 1
    span_cols = (box_cols - 1) * strides[1] + (kernel[1] - 1) * dilation[1] + 1
    crops = _gather(canvas, boxes, new_top * strides[0], new_left * strides[1], span_rows, span_cols,
                    offset=(top, left))
    values = op(crops.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).contiguous()
    return _Boxes(values, new_top, new_left, (r0, r1), (c0, c1))


def _paste(clean: torch.Tensor, boxes: _Boxes) -> torch.Tensor:
    """``(P, C, H, W)``: the clean activation with each position's box in place."""
    height, width = clean.shape[-2:]
    zero = torch.zeros(len(boxes.values), dtype=torch.long, device=clean.device)
    canvas = clean[0].permute(1, 2, 0).contiguous()
    return _gather(canvas, boxes, zero, zero, height, width).permute(0, 3, 1, 2)


def _layer_inputs(chain: list[nn.Module], x: torch.Tensor) -> list[torch.Tensor]:
    """The input of every layer of ``chain`` for ``x``, then the chain's output."""
    inputs = [x]
    for layer in chain:
        inputs.append(layer(inputs[-1]))
    return inputs


def _incremental_scores(chain: list[nn.Module], inputs: list[torch.Tensor], patch: torch.Tensor,
                        corners: torch.Tensor, pick: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The scores of the occluded copies, each layer recomputed only in its changed box (module doc);
    ``inputs``: the clean stamp's input to each layer (:func:`_layer_inputs`)."""
    size = patch.shape[-1]
    top, left = corners[:, 0], corners[:, 1]
    values = patch.permute(1, 2, 0).expand(len(corners), size, size, patch.shape[0]).contiguous()
    boxes = _Boxes(values, top, left, (top, top + size), (left, left + size))
    for k, (layer, clean) in enumerate(zip(chain, inputs)):
        spec = _windowed(layer) if clean.dim() == 4 else None
        if spec is not None:
            boxes = _through_window(layer, spec, clean, boxes)
        elif isinstance(layer, _ELEMENTWISE) and clean.dim() == 4:
            boxes = boxes.apply(layer)
        else:  # the change spreads over everything from here: finish on full copies
            out = _paste(clean, boxes)
            for rest in chain[k:]:
                out = rest(out)
            return pick(out)
    return pick(_paste(inputs[-1], boxes))
