"""Opening a user's HDF5 file and finding a dataset in it, each failure one line naming the file."""
from __future__ import annotations

import os

import h5py

from deepfield.errors import DeepfieldError


def open_hdf5(path: str | os.PathLike[str]) -> h5py.File:
    """The HDF5 file ``path`` open for reading (close it, e.g. ``with open_hdf5(path) as h5``)."""
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DeepfieldError(f"{path}: cannot be read as HDF5 ({exc})") from None


def dataset_names(h5: h5py.Group) -> list[str]:
    """The datasets at the top of ``h5``, by name."""
    return [k for k in h5 if isinstance(h5[k], h5py.Dataset)]


def find_dataset(h5: h5py.Group, path: str | os.PathLike[str], name: str, what: str = "") -> h5py.Dataset:
    """Dataset ``name`` of ``h5`` (the file ``path``); if there is none, one line listing those there are.
    ``what``: what the dataset holds, for the message (``"of stamps"``)."""
    data = h5.get(name)
    if not isinstance(data, h5py.Dataset):
        names = ", ".join(repr(k) for k in dataset_names(h5)) or "none"
        held = f" {what}" if what else ""
        raise DeepfieldError(f"{path}: no dataset {name!r}{held} (datasets: {names}); name the dataset")
    return data
