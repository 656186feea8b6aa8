"""Image pairs for image-to-image learning: an input stamp and its target, aligned pixel for pixel.

Read from HDF5 (``deepfield simulate denoise`` writes ``images``, ``targets`` and a ``truth/`` group;
a user's file names its own datasets) or from NumPy ``.npz`` (two members). Bands come from the input
dataset's ``bands`` attribute, else they must be given: they are never guessed. The ``truth/`` group's
``x``, ``y`` and ``aperture_radius`` columns (pixels) are kept when present: the photometry metrics
centre their apertures there.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from deepfield.data.hdf5_files import open_hdf5
from deepfield.errors import DeepfieldError

GEOMETRY = ("x", "y", "aperture_radius")
"""The ``truth/`` columns kept: source centre (column, row; 0 = centre of the first pixel) and aperture radius."""


@dataclass(frozen=True)
class ImagePairs:
    """``inputs`` (N, C, H, W) float32 and ``targets`` (same shape, or ``None`` when not read), both in
    ``unit`` per pixel; ``bands`` (C,); ``ids`` (N,); ``geometry``: name -> (N,) of :data:`GEOMETRY` found."""

    inputs: np.ndarray
    targets: np.ndarray | None
    bands: tuple[str, ...]
    unit: str
    ids: np.ndarray
    geometry: dict[str, np.ndarray] = field(default_factory=dict)


def read_pairs(path: str | os.PathLike[str], *, inputs: str = "images", targets: str = "targets",
               labelled: bool = True, bands: Sequence[str] | None = None, channels: str | None = None,
               ids: str | None = None, limit: int | None = None) -> ImagePairs:
    """The pairs of ``path`` (.h5/.hdf5 or .npz): arrays ``inputs`` and (``labelled``) ``targets``, (N, C, H, W),
    or (N, H, W, C) with ``channels="last"``, or (N, H, W) for one band; ``ids``: a dataset of object ids
    (default 0..N-1); ``limit``: the first objects only. ``bands`` is needed when the file does not say."""
    path = Path(path)
    if not path.is_file():
        raise DeepfieldError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        arrays, attrs, geometry = _read_hdf5(path, [inputs, targets if labelled else None, ids], limit)
    elif suffix == ".npz":
        arrays, attrs, geometry = _read_npz(path, [inputs, targets if labelled else None, ids], limit), {}, {}
    else:
        raise DeepfieldError(f"{path}: image pairs are read from HDF5 (.h5) or NumPy (.npz) files")
    x = _stamps(path, inputs, arrays[0], channels)
    y = None if arrays[1] is None else _stamps(path, targets, arrays[1], channels)
    if y is not None and y.shape != x.shape:
        raise DeepfieldError(f"{path}: {targets!r} of shape {y.shape} does not match {inputs!r} of shape {x.shape}")
    named = attrs.get("bands")
    names = tuple(str(b) for b in (bands if bands is not None else named if named is not None else ()))
    if not names:
        raise DeepfieldError(f"{path}: the file does not name its bands; give them (data.bands: [g, r, i])")
    if len(names) != x.shape[1]:
        raise DeepfieldError(f"{path}: {len(names)} bands {list(names)} for {x.shape[1]} channels of {inputs!r}")
    object_ids = np.arange(len(x)) if arrays[2] is None else np.asarray(arrays[2])[: len(x)]
    return ImagePairs(x, y, names, str(attrs.get("unit", "")), object_ids, geometry)


def _missing(path: Path, name: str, available: Sequence[str]) -> DeepfieldError:
    return DeepfieldError(f"{path}: no array {name!r}; it holds {', '.join(map(repr, available)) or 'none'}")


def _read_hdf5(path: Path, names: list[str | None], limit: int | None) -> tuple[list, dict, dict[str, np.ndarray]]:
    rows = slice(None, limit)
    h5 = open_hdf5(path)
    with h5:
        arrays = []
        for name in names:
            if name is not None and not isinstance(h5.get(name), h5py.Dataset):
                raise _missing(path, name, [k for k in h5 if isinstance(h5[k], h5py.Dataset)])
            arrays.append(None if name is None else h5[name][rows])
        attrs = dict(h5[names[0]].attrs)
        truth = h5.get("truth")
        geometry = {k: truth[k][rows].astype(np.float64) for k in GEOMETRY
                    if isinstance(truth, h5py.Group) and k in truth}
    return arrays, attrs, geometry


def _read_npz(path: Path, names: list[str | None], limit: int | None) -> list:
    try:
        members = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DeepfieldError(f"{path}: cannot be read as .npz ({exc})") from None
    with members:
        for name in names:
            if name is not None and name not in members.files:
                raise _missing(path, name, members.files)
        return [None if name is None else members[name][slice(None, limit)] for name in names]


def _stamps(path: Path, name: str, array: np.ndarray, channels: str | None) -> np.ndarray:
    """``array`` as (N, C, H, W) float32, or one clear error naming ``path`` and ``name``."""
    if array.dtype.kind not in "fiu":
        raise DeepfieldError(f"{path}: {name!r} holds {array.dtype} values, not numbers")
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and channels == "last":
        array = array.transpose(0, 3, 1, 2)
    if array.ndim != 4:
        raise DeepfieldError(f"{path}: {name!r} has shape {array.shape}; expected stamps (N, C, H, W) or (N, H, W)")
    if len(array) == 0:
        raise DeepfieldError(f"{path}: {name!r} holds no stamps")
    return np.ascontiguousarray(array, dtype=np.float32)
