"""Open the right image reader for a path: the one place that maps files to readers.

The CLI and the task configs name a path and a few options; this picks
:class:`FitsFolder`, :class:`FitsCube`, :class:`Hdf5Images` or :class:`NumpyImages`.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepfield.data.images import FitsCube, FitsFolder, Hdf5Images, ImageReader, NumpyImages
from deepfield.errors import DeepfieldError

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
NUMPY_SUFFIXES = (".npy", ".npz")


def open_images(
    path: str | os.PathLike[str],
    bands: Sequence[str] | None = None,
    *,
    labels: Any = None,
    channels: str | None = None,
    pattern: str = "{id}.fits",
    images: str = "images",
    on_error: str = "raise",
) -> ImageReader:
    """A reader for ``path``: a folder of FITS cutouts, a FITS cube, an HDF5 or a NumPy file.

    ``bands`` are required for FITS (files do not say which band is which reliably);
    HDF5 files written by deepfield carry their band names. ``labels``: a dataset name
    (HDF5), a key (npz), an array or a :class:`CatalogueLabels` join.
    """
    source = Path(path)
    name = source.name.lower()
    if source.is_dir():
        return FitsFolder(source, _need_bands(bands, source), pattern=pattern, labels=labels, on_error=on_error)
    if not source.exists():
        raise DeepfieldError(f"{source}: no such file or folder")
    if name.endswith(FITS_SUFFIXES):
        return FitsCube(source, _need_bands(bands, source), labels=labels, on_error=on_error)
    if name.endswith(HDF5_SUFFIXES):
        return Hdf5Images(source, bands, channels=channels, images=images, labels=labels, on_error=on_error)
    if name.endswith(NUMPY_SUFFIXES):
        return NumpyImages(source, _need_bands(bands, source), channels=channels, key=images, labels=labels,
                           on_error=on_error)
    raise DeepfieldError(
        f"{source}: cannot tell what kind of image file this is; expected a folder of FITS cutouts, "
        f"{', '.join(FITS_SUFFIXES + HDF5_SUFFIXES + NUMPY_SUFFIXES)}"
    )


def _need_bands(bands: Sequence[str] | None, source: Path) -> Sequence[str]:
    if not bands:
        raise DeepfieldError(f"{source}: name the bands in channel order (e.g. --bands g,r,i); they are never guessed")
    return bands
