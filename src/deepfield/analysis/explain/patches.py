"""Which part of the input a unit sees, and the inputs that excite each filter most (Zeiler & Fergus 2014).

>>> field = receptive_field(model, "conv2d_3")     # course CNN: 23×23 pixels, every 4th pixel
>>> field.window((0, 0))                           # ((-8, 15), (-8, 15)): input rows and columns
>>> top = strongest_patches(model, x, "conv2d_3", k=9)
>>> top.patches.shape                              # (128, 9, C, 23, 23)

The receptive field of a layer in a chain of convolutions and poolings follows the
classic recurrences (Araujo, Norris & Sim, Distill 2019), per spatial axis, layer by
layer with span ``e = (k - 1)·d + 1`` (kernel ``k``, dilation ``d``), stride ``s`` and
padding ``p`` before the first pixel::

    size  ← size + (e - 1)·jump        (input pixels one output sees)
    start ← start - p·jump             (input index of the first of them, for output 0)
    jump  ← jump·s                     (input pixels between neighbouring outputs)

starting from ``size = jump = 1``, ``start = 0``. Output index ``i`` sees the input pixels
``start + i·jump ≤ u < start + i·jump + size``; with padding, some of them lie outside
the input. Element-wise layers (activations, batch norm, dropout) change nothing. The
padding is the layer's own ('same' as TensorFlow splits it, which for strides > 1
depends on the input size, so the input shape is needed).

A block of parallel branches sees what its branches see together: each branch runs
the recurrences from the block's input, and the block's output field spans from the
first to the last pixel any of them sees (the branches must step alike). A
:class:`~deepfield.models.blocks.ResidualBlock`'s main path is ``conv1 → bn1 → conv2 → bn2``
and its skip the identity or the 1×1 ``projection``, whose field lies inside the main
path's, so the skip does not grow it (the addition and the last ReLU are element-wise);
an :class:`~deepfield.models.blocks.Inception` block's branches are its four chains.

Which layer :mod:`deepfield.tasks.explain` shows maps and patches of by default
(:func:`default_map_layer`): the deepest convolution or block whose field is a sizeable
part of the stamp, at least :data:`SIZEABLE` of its side and at most all of it.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from deepfield import arguments
from deepfield.analysis.explain.filters import _convolution
from deepfield.analysis.layer_features import _label, layer_names, layer_output, unknown_layer
from deepfield.errors import DeepfieldError
from deepfield.models.base import as_tuple, ensure_built
from deepfield.models.blocks import Inception, PReLU, ResidualBlock, TimeDistributed
from deepfield.models.conv import Window
from deepfield.models.core import Activation, Dense, Dropout, Flatten, SpatialDropout
from deepfield.models.normalization import BatchNormalization
from deepfield.models.pooling import (
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
)
from deepfield.models.presets.base import _window_output

__all__ = ["SIZEABLE", "ReceptiveField", "StrongestPatches", "default_map_layer", "receptive_field",
           "strongest_patches"]

_ELEMENTWISE = (
    Activation, Dropout, SpatialDropout, BatchNormalization, PReLU,
    nn.Identity, nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
    nn.Softplus, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
)
_WHOLE_INPUT = (
    Flatten, Dense, GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalMaxPooling1D, GlobalMaxPooling2D,
    nn.Flatten, nn.Linear, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)
_TORCH_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TORCH_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)


@dataclass(frozen=True)
class ReceptiveField:
    """The input pixels one output position of a layer sees, per spatial axis (``(H, W)`` for images).

    Attributes:
        size: input pixels along each axis that one output depends on.
        jump: input pixels between neighbouring outputs (the product of the strides).
        start: input index of the first pixel seen by output index 0 (negative where the
            field begins in the padding).
    """

    size: tuple[int, ...]
    jump: tuple[int, ...]
    start: tuple[int, ...]

    def window(self, position: Sequence[int]) -> tuple[tuple[int, int], ...]:
        """The input range ``(first, last + 1)`` per axis seen by the output at ``position``."""
        return tuple((s + int(i) * j, s + int(i) * j + n)
                     for s, i, j, n in zip(self.start, position, self.jump, self.size))


def receptive_field(model: nn.Module, layer: str,
                    input_shape: Sequence[int] | None = None) -> ReceptiveField:
    """The receptive field of ``layer``'s outputs in the input (see the module doc for the arithmetic).

    Args:
        model: a chain of layers (a deepfield ``Sequential`` or an ``nn.Sequential``, nested
            ones flattened): convolutions, window poolings, element-wise layers, and blocks
            of parallel chains (residual, inception).
        layer: a name from :func:`~deepfield.analysis.layer_features.layer_names`, a block
            or a layer inside one (``stage2_block1``, ``stage2_block1.conv2``).
        input_shape: one sample's ``(C, H, W)`` (or ``(C, L)``, ``(C, D, H, W)``);
            default the model's ``input_shape``.

    Raises DeepfieldError when the model is not a chain, when a layer up to ``layer`` has
    a geometry other than a sliding window (viewpoints, a module with its own forward),
    or when it sees the whole input (flatten, dense, global pooling).
    """
    if not isinstance(model, nn.Sequential):
        raise DeepfieldError(f"receptive_field needs a chain of layers (a Sequential); model {_label(model)} "
                             f"is a {type(model).__name__} with its own forward")
    names = layer_names(model)
    if layer not in names:
        raise unknown_layer(model, layer, names)
    shape = getattr(model, "input_shape", None) if input_shape is None else input_shape
    if shape is None:
        raise DeepfieldError(f"model {_label(model)} does not know its input shape; pass input_shape=(C, H, W)")
    rank = len(shape) - 1
    start = _Field((1,) * rank, (1,) * rank, (0,) * rank, tuple(int(n) for n in shape[1:]))
    try:
        _Walk(model, layer, tuple(shape)).through("", model, start)
    except _Reached as reached:
        field = reached.field
        return ReceptiveField(field.size, field.jump, field.start)
    raise DeepfieldError(f"layer {layer!r} of model {_label(model)} is not on its path from input to output")


SIZEABLE = 0.25
"""The least fraction of the stamp's side the default layer's receptive field spans (:func:`default_map_layer`)."""


def default_map_layer(model: nn.Module, input_shape: Sequence[int]) -> str:
    """The layer whose feature maps and strongest patches explain shows when none is named.

    The candidates are the convolutions and the blocks that hold some (a residual or
    inception block, a TimeDistributed convolution) whose output still has the input's
    axes (before the flatten or global pooling), in the order the forward pass finishes
    them (a block after the layers inside it). The choice, ``side`` being the stamp's
    size along each axis of ``input_shape`` ``(C, H, W)``:

    1. the last whose receptive field is a sizeable part of the stamp:
       ``SIZEABLE · side ≤ size ≤ side`` on every axis (its patches show a quarter of the
       stamp or more, not 3×3 tiles, and are not mostly padding); ResNet-20 on 32×32
       stamps: ``stage2_block2`` (29 pixels; the next convolution sees 33), on 64×64
       ``stage3_block2.conv1`` (57; the next sees 65); the course CNN: ``conv2d_3`` (23);
    2. failing that, the last whose field fits in the stamp (all fields are small);
    3. failing that, the first (every field is wider than the stamp).

    Only candidates whose field can be computed (:func:`receptive_field`) count; when none
    can (viewpoints, a model with its own forward), the last candidate: Dieleman's ``conv4``.
    """
    shape = tuple(int(n) for n in input_shape)
    candidates = _maps_in_order(model, shape)
    if not candidates:
        raise DeepfieldError(f"model {_label(model)} has no convolution with feature maps; name a layer")
    fields = {}
    for name in candidates:
        try:
            fields[name] = receptive_field(model, name, shape)
        except DeepfieldError:
            continue
    if not fields:
        return candidates[-1]
    side = shape[1:]
    fits = [name for name, field in fields.items() if all(n <= s for n, s in zip(field.size, side))]
    sizeable = [name for name in fits if all(n >= SIZEABLE * s for n, s in zip(fields[name].size, side))]
    return sizeable[-1] if sizeable else fits[-1] if fits else next(iter(fields))


def _maps_in_order(model: nn.Module, shape: tuple[int, ...]) -> list[str]:
    """The convolutions and blocks holding convolutions whose output keeps the input's axes, in the order the
    forward pass of one zero sample of ``shape`` finishes them."""
    candidates = [name for name in layer_names(model) if _holds_maps(model.get_submodule(name))]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    example = torch.zeros((1, *shape), device=device)
    modes = {module: module.training for module in model.modules()}
    ensure_built(model, example)
    finished: dict[str, int] = {}  # name: the number of axes of its (first) output

    def note(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            finished.setdefault(name, output.dim() if isinstance(output, torch.Tensor) else 0)
        return hook

    hooks = [model.get_submodule(name).register_forward_hook(note(name)) for name in candidates]
    try:
        model.eval()
        with torch.no_grad():
            model(*(model.example_inputs(example) if hasattr(model, "example_inputs") else (example,)))
    finally:
        for hook in hooks:
            hook.remove()
        for module, training in modes.items():
            module.training = training
    return [name for name, dims in finished.items() if dims >= len(shape) + 1]


def _holds_maps(module: nn.Module) -> bool:
    """A convolution, or a block (not a plain chain) with a convolution inside."""
    if _convolution(module) is not None:
        return True
    return not isinstance(module, (nn.Sequential, TimeDistributed)) and any(
        _convolution(inner) is not None for inner in module.modules())


@dataclass(frozen=True)
class _Field(ReceptiveField):
    """A receptive field while walking the chain, with the ``spatial`` size of the maps there."""

    spatial: tuple[int, ...] = ()


class _Reached(Exception):
    """Carries the field of the layer asked for out of the walk, which it ends."""

    def __init__(self, field: _Field):
        super().__init__()
        self.field = field


def _branches(module: nn.Module) -> list[list[tuple[str, nn.Module]]] | None:
    """The parallel chains ``[(name, layer), ...]`` a block runs on its input; None: a window or element-wise."""
    if isinstance(module, nn.Sequential):
        return [list(module.named_children())]
    if isinstance(module, ResidualBlock):
        main = [(name, getattr(module, name)) for name in ("conv1", "bn1", "conv2", "bn2")]
        return [main, [] if module.projection is None else [("projection", module.projection)]]
    if isinstance(module, Inception):
        return [[(f"branches.{key}", branch)] for key, branch in module.branches.items()]
    return None


class _Walk:
    """The recurrences layer by layer, through blocks, until the layer ``layer`` of ``model`` gives its output."""

    def __init__(self, model: nn.Module, layer: str, shape: tuple[int, ...]):
        self.model, self.layer, self.shape = model, layer, shape

    def through(self, name: str, module: nn.Module, field: _Field) -> _Field:
        """The field after ``module`` (named ``name``) given the one before; raises :class:`_Reached` at the layer."""
        branches = _branches(module)
        if branches is None:
            field = self.step(name, module, field)
        else:
            ends = []
            for branch in branches:
                end = field
                for child, part in branch:
                    end = self.through(f"{name}.{child}" if name else child, part, end)
                ends.append(end)
            field = self.union(name, ends)
        if name == self.layer:
            raise _Reached(field)
        return field

    def step(self, name: str, module: nn.Module, field: _Field) -> _Field:
        """One layer's recurrences (unchanged for an element-wise layer)."""
        rank = len(field.size)
        window = _window(self.model, self.layer, name, module, rank)
        if window is None:
            return field
        before = _pads_before(window, field.spatial)
        spans = [(window.kernel[axis] - 1) * window.dilation[axis] + 1 for axis in range(rank)]
        spatial = tuple(_window_output(window, axis, field.spatial[axis]) for axis in range(rank))
        if min(spatial) < 1:
            raise DeepfieldError(f"layer {name!r} of model {_label(self.model)}: its window does not fit an input of "
                                 f"shape {self.shape}")
        return _Field(tuple(n + (e - 1) * j for n, e, j in zip(field.size, spans, field.jump)),
                      tuple(j * s for j, s in zip(field.jump, window.strides)),
                      tuple(s - p * j for s, p, j in zip(field.start, before, field.jump)), spatial)

    def union(self, name: str, ends: list[_Field]) -> _Field:
        """What a block's branches see together: from the first pixel any sees to the last."""
        first = ends[0]
        if any(end.jump != first.jump or end.spatial != first.spatial for end in ends):
            raise DeepfieldError(f"block {name!r} of model {_label(self.model)}: its branches step differently "
                                 f"({', '.join(str(end.jump) for end in ends)}), so it has no one receptive field")
        start = tuple(min(axis) for axis in zip(*(end.start for end in ends)))
        stop = tuple(max(axis) for axis in zip(*(tuple(s + n for s, n in zip(end.start, end.size)) for end in ends)))
        return _Field(tuple(b - a for a, b in zip(start, stop)), first.jump, start, first.spatial)


def _window(model: nn.Module, layer: str, name: str, module: nn.Module, rank: int) -> Window | None:
    """The sliding window of the chain's layer ``module`` (None: element-wise), or the error saying why not."""
    if isinstance(module, _ELEMENTWISE):
        return None
    window = getattr(module, "_window", None)  # deepfield convolutions and poolings
    if window is not None:
        return window
    if isinstance(module, (*_TORCH_CONVS, *_TORCH_POOLS)) and not getattr(module, "ceil_mode", False):
        padding = module.padding if isinstance(module.padding, str) else as_tuple(module.padding, rank, "padding")
        return Window(as_tuple(module.kernel_size, rank, "kernel_size"), as_tuple(module.stride, rank, "stride"),
                      as_tuple(getattr(module, "dilation", 1), rank, "dilation"), padding, True, type(module).__name__)
    kind = type(module).__name__
    which = f"is a {kind}" if name == layer else f"comes after {name!r}, a {kind}"
    if isinstance(module, _WHOLE_INPUT):
        raise DeepfieldError(f"layer {layer!r} of model {_label(model)} {which}, which sees the whole input: "
                             f"its receptive field is all of it; choose a layer before {name!r}")
    raise DeepfieldError(f"layer {layer!r} of model {_label(model)} {which}, not a convolution, pooling or "
                         f"element-wise layer, so the model is not a chain of sliding windows up to {layer!r}")


def _pads_before(window: Window, spatial: Sequence[int]) -> list[int]:
    """Zero padding before the first pixel on each axis, as the layer pads an input of ``spatial`` size."""
    symmetric, extra = window.pads(tuple(spatial))
    rank = len(spatial)
    return [pad + (extra[2 * (rank - 1 - axis)] if extra else 0) for axis, pad in enumerate(symmetric)]


@dataclass(frozen=True)
class StrongestPatches:
    """The ``k`` strongest activations of each filter of ``layer`` over a dataset, and the input they see.

    Attributes (``F`` filters, ``k`` per filter, strongest first; ties go to the lower
    image index, then the lower output position):
        layer: the layer's name.
        values: ``(F, k)`` float32 activations (the layer's output, after its activation).
        images: ``(F, k)`` int64 index of the input each comes from.
        positions: ``(F, k, rank)`` int64 output position, ``(row, column)`` for images.
        patches: ``(F, k, C, *field.size)`` float32 input pixels of the receptive field,
            zero where the field runs over the edge of the input.
        field: the layer's :class:`ReceptiveField`; ``field.window(position)`` gives where
            a patch lies in its input.
    """

    layer: str
    values: np.ndarray
    images: np.ndarray
    positions: np.ndarray
    patches: np.ndarray
    field: ReceptiveField


class _Top(NamedTuple):
    """Candidates per filter, ``(F, m)`` each, in (image, cell) order: value, image index, flat output cell."""

    values: np.ndarray
    images: np.ndarray
    cells: np.ndarray


def strongest_patches(model: nn.Module, x: Any, layer: str, k: int = 9, batch_size: int = 256,
                      one_per_image: bool = True, device: str | torch.device | None = None) -> StrongestPatches:
    """For each filter of ``layer``, its ``k`` largest activations over ``x`` and the input patches behind them.

    Args:
        model: a chain of layers, as :func:`receptive_field` takes.
        x: ``(N, C, H, W)`` inputs (an array, memory-mapped or not, or a tensor).
        layer: a convolution, pooling or element-wise layer of the chain.
        k: activations kept per filter (fewer when ``x`` has fewer candidates).
        batch_size: inputs per forward pass; only one batch of activations is held at a
            time, with a running top ``k`` per filter.
        one_per_image: count only each input's strongest position per filter, so the
            ``k`` patches come from ``k`` different inputs (as Zeiler & Fergus show them);
            False lets one input give several.
        device: as for :func:`~deepfield.analysis.layer_features.layer_output`.
    """
    k = arguments.integer("strongest_patches: k", k, expected="a positive integer")
    batch_size = arguments.integer("strongest_patches: batch_size", batch_size, expected="a positive integer")
    images = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if images.ndim < 3 or len(images) == 0:
        raise DeepfieldError(f"strongest_patches: expected x of shape (N, C, H, W), got {images.shape}")
    field = receptive_field(model, layer, images.shape[1:])
    top: _Top | None = None
    for first in range(0, len(images), batch_size):
        activations = layer_output(model, images[first:first + batch_size], layer, int(batch_size), device)
        found = _candidates(activations, first, one_per_image)
        merged = found if top is None else _Top(*(np.concatenate(pair, axis=1) for pair in zip(top, found)))
        top = _best(merged, k)
        grid = activations.shape[2:]
    positions = np.stack(np.unravel_index(top.cells, grid), axis=-1).astype(np.int64)
    patches = np.stack([np.stack([_cut(images[i], field.window(p)) for i, p in zip(row_images, row_positions)])
                        for row_images, row_positions in zip(top.images, positions)])
    return StrongestPatches(layer, top.values.astype(np.float32), top.images.astype(np.int64), positions,
                            patches, field)


def _candidates(activations: np.ndarray, first: int, one_per_image: bool) -> _Top:
    """One batch's candidates per filter: its inputs' maxima, or every (input, position); ``first``: its offset."""
    batch, filters = activations.shape[:2]
    flat = activations.reshape(batch, filters, -1)
    cells_per_image = flat.shape[2]
    if one_per_image:
        cells = flat.argmax(axis=2)  # the first of equal maxima
        values = np.take_along_axis(flat, cells[..., None], axis=2)[..., 0]
        return _Top(values.T, np.broadcast_to(first + np.arange(batch), (filters, batch)), cells.T)
    every = np.arange(batch * cells_per_image)
    shape = (filters, len(every))
    return _Top(flat.transpose(1, 0, 2).reshape(shape), np.broadcast_to(first + every // cells_per_image, shape),
                np.broadcast_to(every % cells_per_image, shape))


def _best(candidates: _Top, k: int) -> _Top:
    """The ``k`` largest candidates per filter, largest first, ties in candidate order (earlier input first)."""
    values = candidates.values
    if values.shape[1] > k:  # a cheap cut to the values ≥ the k-th largest before sorting
        kth = np.partition(values, values.shape[1] - k, axis=1)[:, values.shape[1] - k]
    else:
        kth = values.min(axis=1)
    rows = []
    for row, threshold in zip(values, kth):
        kept = np.flatnonzero(row >= threshold)
        rows.append(kept[np.argsort(-row[kept], kind="stable")[:k]])
    picked = np.stack(rows)
    return _Top(*(np.take_along_axis(array, picked, axis=1) for array in candidates))


def _cut(image: np.ndarray, window: Sequence[tuple[int, int]]) -> np.ndarray:
    """The ``(C, *sizes)`` part of ``image`` ``(C, *spatial)`` in ``window``, zero outside the image."""
    patch = np.zeros((image.shape[0], *(stop - start for start, stop in window)), dtype=np.float32)
    source, target = [slice(None)], [slice(None)]
    for (start, stop), n in zip(window, image.shape[1:]):
        low = min(max(start, 0), n)
        high = max(min(stop, n), low)
        source.append(slice(low, high))
        target.append(slice(low - start, high - start))
    patch[tuple(target)] = image[tuple(source)]
    return patch
