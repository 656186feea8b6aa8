"""Masks of padded sequences, Keras style: ``Masking`` and ``Embedding(mask_zero=True)`` mark the padded steps,
the recurrent layers skip them.

A mask is a bool tensor ``(N, T)``, True where a time step holds data. It travels as an attribute of the
tensor that the masking layer returns (``x._keras_mask``, the attribute Keras 3 uses on its torch backend),
so the next layer that reads masks (``LSTM``, ``GRU``, ``SimpleRNN``, ``Bidirectional``) finds it in a
``Sequential`` or a functional graph alike; those pass it on with their sequences (``return_sequences``),
as Keras does, for the next recurrent layer, and so does ``Dropout`` (in training as in inference). Unlike
Keras, other layers in between do not pass it on (``Dense``, ``Activation``, ``SpatialDropout``...): put the
masking layer before the recurrent one with at most ``Dropout`` between, or hand the mask over explicitly:
``lstm(x, mask=mask)``.
"""
from __future__ import annotations

import torch

from deepfield.models.base import Layer

ATTRIBUTE = "_keras_mask"


def attach(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` carrying ``mask`` (N, T) bool; returns ``x``."""
    setattr(x, ATTRIBUTE, mask)
    return x


def mask_of(x: torch.Tensor) -> torch.Tensor | None:
    """The mask ``x`` carries, or ``None``."""
    return getattr(x, ATTRIBUTE, None)


def passed_on(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out`` carrying the mask of ``x`` when it has one (a layer that keeps the time axis, e.g. ``Dropout``)."""
    mask = getattr(x, ATTRIBUTE, None)
    return out if mask is None else attach(out, mask)


class Masking(Layer):
    """Marks the time steps of ``(N, T, F)`` sequences whose features all equal ``mask_value`` as padding.

    Output: ``x`` with its padded steps set to 0 (as Keras), carrying the mask ``(N, T)``: True where a
    step holds at least one feature different from ``mask_value``. The recurrent layer after it skips
    the padded steps (its state is carried over them). Sequences are ``(N, T, F)`` as the recurrent
    layers take them (see :mod:`deepfield.models.recurrent`): a spectrum ``(N, C, L)`` is transposed
    first with ``Permute((2, 1))``.
    """

    def __init__(self, mask_value: float = 0.0, name: str | None = None,
                 input_shape: tuple[int, ...] | None = None):
        super().__init__(name=name, input_shape=input_shape)
        self.mask_value = float(mask_value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = (x != self.mask_value).any(dim=-1)
        return attach(x * keep.unsqueeze(-1).to(x.dtype), keep)
