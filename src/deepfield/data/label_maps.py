"""Stamps with a per-pixel label map, for segmentation: ``(N, C, H, W)`` images and ``(N, H, W)`` integer labels.

Read from HDF5 or .npz (the stamps as :func:`~deepfield.data.pairs.read_pairs` reads an input array; the
labels' array named by the caller, ``segmentation`` in the file ``deepfield simulate blends`` writes). A label
map is either an *instance map* (0 background, ``k ≥ 1`` source k, as the blends file's and SExtractor's
segmentation maps) or a *class map* (class indices, 0 background; the class names in the labels' ``classes``
attribute when the HDF5 file gives them). The blends file says it holds instances (its ``simulator``
attribute); for other files the caller says which. A class map may come with the instance map of the same
stamps (``instances``: the blends file's ``morphology`` classes and its ``segmentation`` sources).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from deepfield.data.pairs import read_pairs
from deepfield.errors import DeepfieldError


@dataclass(frozen=True)
class LabelMaps:
    """``images`` (N, C, H, W) float32 in ``unit`` per pixel; ``labels`` (N, H, W) int64 ≥ 0 (``None`` when not
    read); ``bands`` (C,); ``ids`` (N,); ``classes``: the class names the file gives (``None``: none);
    ``instances``: the file says its labels are an instance map (a blends file); ``sources``: (N, H, W) int64 the
    instance map read beside class maps (``None``: not asked for)."""

    images: np.ndarray
    labels: np.ndarray | None
    bands: tuple[str, ...]
    unit: str
    ids: np.ndarray
    classes: tuple[str, ...] | None = None
    instances: bool = False
    sources: np.ndarray | None = None


def read_label_maps(path: str | os.PathLike[str], *, images: str = "images", labels: str = "segmentation",
                    labelled: bool = True, bands: list[str] | None = None, channels: str | None = None,
                    ids: str | None = None, limit: int | None = None, instances: str | None = None) -> LabelMaps:
    """The stamps ``images`` of ``path`` (.h5/.hdf5 or .npz; ``bands``, ``channels``, ``ids``, ``limit`` as
    :func:`~deepfield.data.pairs.read_pairs` takes them) and, when ``labelled``, the label maps ``labels``:
    (N, H, W) integers (or whole numbers stored as floats, or (N, 1, H, W)), one per stamp, of its size; and, when
    labelled and ``instances`` names one, that instance map as well (``LabelMaps.sources``)."""
    path = Path(path)
    stamps = read_pairs(path, inputs=images, labelled=False, bands=bands, channels=channels, ids=ids, limit=limit)
    blends = False
    names = None
    array = sources = None
    if path.suffix.lower() in (".h5", ".hdf5"):
        with h5py.File(path, "r") as h5:
            blends = h5.attrs.get("simulator") == "blends"
            if labelled:
                array, sources = (None if name is None else _member(path, h5, name, limit)
                                  for name in (labels, instances))
                named = h5[labels].attrs.get("classes")
                names = None if named is None else tuple(str(c) for c in np.atleast_1d(named))
    elif labelled:
        with np.load(path, allow_pickle=False) as members:
            array, sources = (None if name is None else _member(path, members, name, limit)
                              for name in (labels, instances))
    maps = None if array is None else _labels(path, labels, array, stamps.inputs.shape)
    found = None if sources is None else _labels(path, str(instances), sources, stamps.inputs.shape)
    return LabelMaps(stamps.inputs, maps, stamps.bands, stamps.unit, stamps.ids, names, blends, found)


def _member(path: Path, members: h5py.File | np.lib.npyio.NpzFile, name: str, limit: int | None) -> np.ndarray:
    """The array ``name`` of an open HDF5 file or .npz (its first ``limit`` rows), or one error naming it."""
    npz = isinstance(members, np.lib.npyio.NpzFile)
    if not (name in members.files if npz else isinstance(members.get(name), h5py.Dataset)):
        held = members.files if npz else [k for k in members if isinstance(members[k], h5py.Dataset)]
        raise DeepfieldError(f"{path}: no label maps {name!r}; it holds {', '.join(map(repr, held))}")
    return members[name][slice(None, limit)]


def _labels(path: Path, name: str, array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``array`` as (N, H, W) int64 checked against stamps of ``shape`` (N, C, H, W), or one error naming it."""
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    elif array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    expected = (shape[0], *shape[2:])
    if array.ndim != 3 or array.shape != expected:
        raise DeepfieldError(f"{path}: label maps {name!r} of shape {array.shape} do not match the stamps: "
                             f"expected {expected}, one (H, W) map per stamp")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array) & (array == np.round(array))):
        raise DeepfieldError(f"{path}: label maps {name!r} hold values that are not whole numbers")
    if array.dtype.kind not in "fiub":
        raise DeepfieldError(f"{path}: label maps {name!r} hold {array.dtype} values, not integer labels")
    if array.size and array.min() < 0:
        raise DeepfieldError(f"{path}: label maps {name!r} hold negative labels (down to {array.min()}); "
                             "0 is the background, 1, 2... the classes or sources")
    return np.ascontiguousarray(array, dtype=np.int64)
