"""Moving tensors and weights between Keras's channels-last order and deepfield's channels-first one.

A sample of ``k`` spatial axes is ``(*spatial, C)`` in a channels-last Keras model and ``(C, *spatial)``
in deepfield. Three things follow:

* convolution kernels are ``(*kernel, in, out)`` in Keras (whatever the data format) and
  ``(out, in, *kernel)`` in PyTorch: a transpose (:func:`kernel_to_torch`, :func:`kernel_to_keras`);
* ``Flatten`` lists the numbers of a sample in another order, so the ``Dense`` after it sees its
  inputs permuted: its kernel's rows must be permuted too (:func:`flatten_order`). A plain
  transpose of the kernel is not enough: the outputs are off by O(1) (tests/test_keras_files.py);
* a layer's ``axis`` (BatchNormalization) names another axis (:func:`axis_to_deepfield`).
"""
from __future__ import annotations

import numpy as np

from deepfield.errors import DeepfieldError


def shape_to_deepfield(shape: tuple[int, ...], channels_last: bool) -> tuple[int, ...]:
    """One sample's Keras shape -> deepfield's: ``(H, W, C) -> (C, H, W)`` when channels last."""
    return (shape[-1], *shape[:-1]) if channels_last and len(shape) >= 2 else tuple(shape)


def shape_to_keras(shape: tuple[int, ...], channels_last: bool) -> tuple[int, ...]:
    """One sample's deepfield shape -> Keras's: ``(C, H, W) -> (H, W, C)`` when channels last."""
    return (*shape[1:], shape[0]) if channels_last and len(shape) >= 2 else tuple(shape)


def kernel_to_torch(kernel: np.ndarray) -> np.ndarray:
    """A Keras convolution kernel ``(*k, in, out)`` as PyTorch's ``(out, in, *k)``."""
    rank = kernel.ndim - 2
    return np.ascontiguousarray(kernel.transpose(rank + 1, rank, *range(rank)))


def kernel_to_keras(weight: np.ndarray) -> np.ndarray:
    """A PyTorch convolution kernel ``(out, in, *k)`` as Keras's ``(*k, in, out)``."""
    rank = weight.ndim - 2
    return np.ascontiguousarray(weight.transpose(*range(2, rank + 2), 1, 0))


def flatten_order(shape: tuple[int, ...], channels_last: bool, flatten_channels_first: bool) -> np.ndarray | None:
    """Where Keras's ``Flatten`` puts each number of a sample that deepfield holds as ``shape`` (channels first).

    ``order[k]`` is the index, in deepfield's flattened sample, of the ``k``-th number of Keras's;
    ``None`` when both orders agree. ``channels_last``: the tensor's layout in the Keras model;
    ``flatten_channels_first``: the Flatten layer's own ``data_format`` is ``"channels_first"``
    (Keras then moves axis 1 last before flattening).
    """
    if len(shape) < 2:
        return None
    index = np.arange(int(np.prod(shape))).reshape(shape)
    if channels_last:
        index = np.moveaxis(index, 0, -1)  # the Keras tensor's axes
    if flatten_channels_first:
        index = np.moveaxis(index, 0, -1)
    order = index.reshape(-1)
    return None if np.array_equal(order, np.arange(order.size)) else order


def rows_to_deepfield(kernel: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    """A Keras Dense kernel ``(in, units)`` as deepfield's weight ``(units, in)``, its inputs in deepfield's order."""
    weight = np.empty((kernel.shape[1], kernel.shape[0]), dtype=kernel.dtype)
    weight[:, order if order is not None else slice(None)] = kernel.T
    return weight


def rows_to_keras(weight: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    """deepfield's Dense weight ``(units, in)`` as a Keras kernel ``(in, units)``, its rows in Keras's order."""
    return np.ascontiguousarray((weight[:, order] if order is not None else weight).T)


def features_to_deepfield(vector: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    """A per-feature vector (BatchNormalization's) from Keras's order of flat features to deepfield's."""
    if order is None:
        return vector
    moved = np.empty_like(vector)
    moved[order] = vector
    return moved


def features_to_keras(vector: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    """A per-feature vector from deepfield's order of flat features to Keras's."""
    return vector if order is None else vector[order]


def axis_to_deepfield(axis: int, rank: int, channels_last: bool, owner: str) -> int:
    """A Keras ``axis`` of a tensor of ``rank`` axes (the batch axis included) as deepfield's axis.

    Channels last: the last axis is deepfield's 1 (channels), spatial axis ``i`` becomes ``i + 1``.
    """
    if not -rank <= axis < rank or axis % rank == 0:
        raise DeepfieldError(f"{owner}: axis {axis} is not a feature axis of a {rank}-axis tensor")
    axis %= rank
    if not channels_last or rank <= 2:
        return axis
    return 1 if axis == rank - 1 else axis + 1


def axis_to_keras(axis: int, rank: int, channels_last: bool) -> int:
    """deepfield's ``axis`` of a tensor of ``rank`` axes as the Keras model's (channels: -1, as Keras writes it)."""
    axis %= rank
    if not channels_last or rank <= 2:
        return -1 if axis == rank - 1 else axis
    return -1 if axis == 1 else axis - 1
