"""NumPy reader: images in a ``.npy`` file (memory-mapped) or one array of an ``.npz`` archive.

An ``.npz`` member cannot be memory-mapped, so it is loaded whole, once per process.
Files are never unpickled (``allow_pickle=False``): object arrays are refused.
"""
from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np

from deepfield.data.images_core import (
    ArrayLayout,
    ImageReader,
    Labels,
    ProcessLocal,
    lookup,
    named_columns,
)
from deepfield.errors import DeepfieldError


def _npz_member(path: str, key: str) -> np.ndarray:
    with np.load(path, allow_pickle=False) as archive:
        return lookup(archive, key, path)


class NumpyImages(ImageReader):
    """Images ``(N, H, W)``, ``(N, C, H, W)`` or ``(N, H, W, C)`` from ``.npy`` or ``.npz``.

    ``bands``: the channel names in order (required: NumPy files carry no names).
    ``channels``: ``"first"`` or ``"last"`` (required for 4-D images).
    ``key``: the images' name inside an ``.npz``.
    ``labels``: an array ``(N,)`` / ``(N, k)``, :class:`CatalogueLabels` joined on ``ids``,
    ``None``, or (``.npz`` only) the name(s) of arrays in the archive; ``ids`` likewise
    (default ``0 .. N-1``).
    """

    def __init__(self, path: str | os.PathLike[str], bands: Sequence[str], *, channels: str | None = None,
                 key: str = "images", labels: Labels | str = None,
                 ids: str | Sequence[Any] | np.ndarray | None = None, on_error: str = "raise"):
        super().__init__(on_error)
        self.source = os.fspath(path)
        if not os.path.isfile(self.source):
            raise DeepfieldError(f"{self.source}: no such file")
        archive = self.source.endswith(".npz")
        opener = partial(_npz_member, self.source, key) if archive else partial(
            np.load, self.source, mmap_mode="r", allow_pickle=False)
        self._array = ProcessLocal(opener)
        try:
            shape = self._array.get().shape
            if archive:
                with np.load(self.source, allow_pickle=False) as members:
                    labels, ids = (named_columns(members, spec, self.source) for spec in (labels, ids))
        except DeepfieldError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise DeepfieldError(f"{self.source}: not a readable NumPy {'.npz' if archive else '.npy'} "
                                 f"file ({error})") from None
        for spec in (labels, ids):
            if isinstance(spec, str):
                raise DeepfieldError(f"{self.source}: names such as {spec!r} refer to arrays in an .npz; "
                                     "for an .npy pass the array itself")
        self._layout = ArrayLayout(shape, self.source, bands, channels, ndim=self.sample_ndim)
        self.bands = self._layout.bands
        self._finish(np.arange(shape[0]) if ids is None else ids, labels)

    def _where(self, item: int) -> str:
        return f"{self.source}[{item}]"

    def _load(self, item: int) -> np.ndarray:
        return self._layout.stamp(self._array.get()[item])
