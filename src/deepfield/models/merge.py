"""Merging layers, Keras 3's: ``Concatenate``, ``Add``, ``Subtract``, ``Multiply``, ``Average``,
``Maximum``, ``Minimum``. Each is called on a list of tensors (``Add()([a, b])``), in a functional
model or eagerly.

Channels first, as everywhere in deepfield: ``Concatenate``'s default axis is 1, the channel axis of
``(N, C, ...)`` feature maps and the feature axis of ``(N, features)`` rows. Keras's default is -1,
its channel axis in channels-last; on channels-first feature maps -1 would join them along the
last spatial axis (width), which is never what a ported ``Concatenate()`` meant.

The element-wise layers take inputs of one shape; an axis of size 1 broadcasts against the others
(as in Keras). Shapes here are per sample (no batch axis); axes count the batch axis, as Keras's do.
"""
from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from deepfield.errors import DeepfieldError
from deepfield.models.base import Layer

Shapes = list[tuple[int, ...]]


def _shape_text(shape: tuple[int, ...]) -> str:
    return str((None, *shape))


class _Merge(Layer):
    """Base of the merging layers: checks the list of input shapes when built."""

    minimum_inputs = 1
    exact_inputs: int | None = None

    def __init__(self, name: str | None = None):
        super().__init__(name=name)

    def build(self, input_shape: Shapes | tuple[int, ...]) -> None:
        if not isinstance(input_shape, list):
            raise DeepfieldError(f"{self.label} is called on a list of tensors, e.g. {type(self).__name__}()([a, b]); "
                                 f"got one tensor of shape {_shape_text(input_shape)}")
        count = len(input_shape)
        if (self.exact_inputs is not None and count != self.exact_inputs) or count < self.minimum_inputs:
            wanted = self.exact_inputs if self.exact_inputs is not None else f"at least {self.minimum_inputs}"
            raise DeepfieldError(f"{self.label} takes {wanted} input tensors, got {count}")
        self.check_shapes(input_shape)

    def check_shapes(self, shapes: Shapes) -> None:
        """Element-wise merging: equal ranks, each axis equal or 1 (broadcast)."""
        rank = len(shapes[0])
        for shape in shapes[1:]:
            if len(shape) != rank or any(a != b and 1 not in (a, b) for a, b in zip(shape, shapes[0])):
                raise DeepfieldError(f"{self.label} needs inputs of one shape (or 1 where they differ), got "
                                     + ", ".join(map(_shape_text, shapes)))


class _Fold(_Merge):
    """An element-wise merge folding the inputs with ``combine`` (a binary torch function)."""

    combine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return functools.reduce(type(self).combine, inputs)


class Add(_Fold):
    """The sum of the inputs, element-wise (a residual connection: ``Add()([x, shortcut])``)."""

    combine = torch.add


class Multiply(_Fold):
    """The product of the inputs, element-wise (gating, attention masks)."""

    combine = torch.mul


class Maximum(_Fold):
    """The largest of the inputs, element-wise."""

    combine = torch.maximum


class Minimum(_Fold):
    """The smallest of the inputs, element-wise."""

    combine = torch.minimum


class Average(Add):
    """The mean of the inputs, element-wise."""

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return super().forward(inputs) / len(inputs)


class Subtract(_Merge):
    """``inputs[0] - inputs[1]``: exactly two inputs."""

    exact_inputs = 2

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return inputs[0] - inputs[1]


class Concatenate(_Merge):
    """The inputs joined along ``axis`` (counting the batch axis as 0, as Keras does).

    ``axis=1`` (default): the channels of ``(N, C, H, W)`` maps, the features of ``(N, features)``
    rows. Keras's default is -1 because Keras is channels-last: a ported ``Concatenate()`` joins
    channels, and so does deepfield's default; ``axis=-1`` here would join feature maps along
    their width. Every other axis must agree between the inputs.
    """

    def __init__(self, axis: int = 1, name: str | None = None):
        super().__init__(name=name)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise DeepfieldError(f"Concatenate axis must be an integer, got {axis!r}")
        self.axis = axis

    def check_shapes(self, shapes: Shapes) -> None:
        rank = len(shapes[0]) + 1  # with the batch axis
        axis = self.axis + rank if self.axis < 0 else self.axis
        if not 1 <= axis < rank:
            raise DeepfieldError(f"{self.label}: axis {self.axis} is not a sample axis of inputs of shape "
                                 f"{_shape_text(shapes[0])} (axis 0 is the batch)")
        for shape in shapes[1:]:
            if len(shape) + 1 != rank or any(a != b for i, (a, b) in enumerate(zip(shape, shapes[0]), 1)
                                             if i != axis):
                raise DeepfieldError(f"{self.label} along axis {self.axis} needs inputs equal on every other axis, "
                                     "got " + ", ".join(map(_shape_text, shapes)))

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(inputs, dim=self.axis)
