"""HDF5 reader: one image dataset plus label (and id) datasets in the same file.

Two layouts are common:

* Galaxy10 (DECaLS, SDSS): ``images`` ``(N, 256, 256, 3)`` uint8, channels last, and
  integer classes in ``ans``: ``Hdf5Images(path, ["g", "r", "z"], channels="last", labels="ans")``;
* deepfield's simulator files: ``images`` ``(N, C, H, W)`` float32 whose attribute
  ``bands`` names the channels, ``labels`` ``(N,)`` int64 whose attribute ``classes``
  names the classes, and truth columns under ``truth/``:
  ``Hdf5Images(path, labels="labels")`` (or ``labels="truth/redshift"``;
  ``bands=["r"]`` picks bands by name).

The file is opened lazily, once per process, on the first read (never pickled with the
reader), so DataLoader workers each get their own handle. Pixels are converted to
float32 without rescaling (uint8 stays 0–255).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from typing import Any

import h5py
import numpy as np

from deepfield.data.images_core import (
    ArrayLayout,
    BadObject,
    ImageReader,
    Labels,
    ProcessLocal,
    lookup,
    named_columns,
)
from deepfield.errors import DeepfieldError


def _texts(values: Any) -> tuple[str, ...] | None:
    """An HDF5 attribute holding names (str or bytes) as a tuple of str; ``None`` if absent."""
    if values is None:
        return None
    return tuple(v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(values))


def object_columns(handle: h5py.File, n: int) -> dict[str, np.ndarray]:
    """The top-level datasets of ``handle`` holding one number or text per object: ``(n,)`` each."""
    columns = {}
    for name, node in handle.items():
        if isinstance(node, h5py.Dataset) and node.shape == (n,) and node.dtype.kind in "biufSO":
            values = node[()]
            if values.dtype.kind in "SO":
                values = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=str)
            columns[name] = values
    return columns


class Hdf5Images(ImageReader):
    """Images from the dataset ``images`` of an HDF5 file: ``(N, H, W)``, ``(N, C, H, W)`` or ``(N, H, W, C)``.

    ``bands``: the channel names in order; required unless the dataset's ``bands``
    attribute names them (then ``bands`` picks and orders some of them).
    ``channels``: ``"first"`` or ``"last"``, required for 4-D images unless the file
    records ``bands`` (deepfield's layout, channels first).
    ``labels``: a dataset name (``"ans"``), several (``["truth/z", "truth/mass"]`` →
    ``(N, 2)``), an array, :class:`CatalogueLabels` joined on ``ids``, or ``None``.
    ``ids``: a dataset name or an array, one per image (default ``0 .. N-1``).
    ``classes``: the ``classes`` attribute of the images or of the one labels dataset, if any.
    :meth:`metadata`: every top-level 1-D dataset with one value per image (Galaxy10's
    ``ra``, ``dec``, ``redshift``...), then the columns of a joined label table.
    """

    def __init__(self, path: str | os.PathLike[str], bands: Sequence[str] | None = None, *,
                 channels: str | None = None, images: str = "images", labels: Labels | str = None,
                 ids: str | Sequence[Any] | np.ndarray | None = None, on_error: str = "raise"):
        super().__init__(on_error)
        self.source, self._images = os.fspath(path), images
        if not os.path.isfile(self.source):
            raise DeepfieldError(f"{self.source}: no such file")
        try:
            handle = h5py.File(self.source, "r")
        except OSError as error:
            raise DeepfieldError(f"{self.source}: not a readable HDF5 file ({error})") from None
        with handle:
            data = lookup(handle, images, self.source)
            if not isinstance(data, h5py.Dataset):
                raise DeepfieldError(f"{self.source}: {images!r} is a group, not an image dataset")
            file_bands = _texts(data.attrs.get("bands"))
            named = handle.get(labels) if isinstance(labels, str) else None
            self.classes = _texts(data.attrs.get("classes", None if named is None else named.attrs.get("classes")))
            self._layout = ArrayLayout(data.shape, f"{self.source}:{images}", bands,
                                       channels or ("first" if file_bands else None), file_bands,
                                       ndim=self.sample_ndim)
            n = data.shape[0]
            self._meta = object_columns(handle, n)
            labels = named_columns(handle, labels, self.source)
            ids = named_columns(handle, ids, self.source)
        self.bands = self._layout.bands
        self._file = ProcessLocal(partial(h5py.File, self.source, "r"))
        self._finish(np.arange(n) if ids is None else ids, labels)

    def _where(self, item: int) -> str:
        return f"{self.source}:{self._images}[{item}]"

    def _load(self, item: int) -> np.ndarray:
        try:
            row = self._file.get()[self._images][item]
        except OSError as error:
            raise BadObject(self._where(item), f"cannot be read ({error})") from None
        return self._layout.stamp(row)
