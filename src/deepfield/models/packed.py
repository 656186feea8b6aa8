"""Several tensors with one batch axis, handled as one: the inputs, outputs or targets of a model with several.

The training engine slices, moves and concatenates batches as tensors (``x.shape[0]``,
``x.index_select(0, rows)``, ``x.to(device)``, ``torch.cat``); a :class:`Packed` answers the same
calls by applying them to each of its parts, so a model with several inputs and outputs trains
through the same loop, with no test on the path of a one-input model. A functional model called
on a ``Packed`` returns a ``Packed`` of its outputs.

``shape`` is ``(N, shape_1, shape_2, ...)``: the batch size, then each part's sample shape, so that
``x.shape[1:]`` compares with a model's list of input shapes.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


class Packed:
    """``parts``: tensors (or arrays) with the same first axis; ``names``: what each part is, for messages."""

    __slots__ = ("parts", "names")

    def __init__(self, parts: Sequence[Any], names: Sequence[str] | None = None):
        self.parts = tuple(parts)
        self.names = tuple(names) if names is not None else tuple(str(i) for i in range(len(self.parts)))

    def _map(self, fn: Any) -> Packed:
        return Packed([fn(p) for p in self.parts], self.names)

    # -- what the engine asks of a batch ---------------------------------------------------
    @property
    def shape(self) -> tuple[Any, ...]:
        return (len(self.parts[0]), *(tuple(p.shape[1:]) for p in self.parts))

    @property
    def device(self) -> torch.device:
        return self.parts[0].device

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.parts)

    def __len__(self) -> int:
        return len(self.parts[0])

    def __getitem__(self, rows: Any) -> Packed:
        return self._map(lambda p: p[rows])

    def split(self, size: int) -> list[Packed]:
        return [Packed(group, self.names) for group in zip(*(p.split(size) for p in self.parts))]

    def index_select(self, dim: int, index: torch.Tensor) -> Packed:
        return self._map(lambda p: p.index_select(dim, index))

    def to(self, *args: Any, **kwargs: Any) -> Packed:
        return self._map(lambda p: p.to(*args, **kwargs))

    def detach(self) -> Packed:
        return self._map(lambda p: p.detach())

    def float(self) -> Packed:
        return self._map(lambda p: p.float())

    def cpu(self) -> Packed:
        return self._map(lambda p: p.cpu())

    def numpy(self) -> Packed:
        return self._map(lambda p: p.numpy())

    def is_pinned(self) -> bool:
        return all(p.is_pinned() for p in self.parts)

    def pin_memory(self) -> Packed:
        return self._map(lambda p: p.pin_memory())

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        """``torch.cat`` of a list of ``Packed`` batches: each part concatenated (what ``predict`` does)."""
        if func is torch.cat and args and all(isinstance(b, Packed) for b in args[0]):
            batches = args[0]
            return Packed([torch.cat(group, *args[1:], **(kwargs or {})) for group in zip(*(b.parts for b in batches))],
                          batches[0].names)
        return NotImplemented

    def __repr__(self) -> str:
        return f"Packed({', '.join(f'{n}: {tuple(p.shape)}' for n, p in zip(self.names, self.parts))})"
