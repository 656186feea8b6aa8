"""Open the right image reader for a path: the one place that maps files to readers.

The CLI and the task configs name a path and a few options; this picks
:class:`FitsFolder`, :class:`FitsCube`, :class:`Hdf5Images` or :class:`NumpyImages`
and passes each the options it takes (every option of every reader is one of these).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepfield.data.catalogues import read_catalogue
from deepfield.data.images import CatalogueLabels, FitsCube, FitsFolder, Hdf5Images, ImageReader, NumpyImages
from deepfield.data.images_fits import HduKey
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
    hdus: HduKey | Sequence[HduKey] | None = None,
    ids: str | None = None,
    on_error: str = "raise",
) -> ImageReader:
    """A reader for ``path``: a folder of FITS cutouts, a FITS cube, an HDF5 or a NumPy file.

    ``bands`` are required for FITS (files do not say which band is which reliably);
    HDF5 files written by deepfield carry their band names. ``labels``: a dataset name
    (HDF5), a key (npz), an array or a :class:`CatalogueLabels` join.
    ``hdus``: FITS only, :class:`FitsFolder`'s ``hdus`` (``0``: each cutout is a cube in
    its primary HDU) or the HDU of a FITS cube (default 0). ``ids``: the HDF5 dataset or
    npz key holding one id per image (default ``0 .. N-1``; a folder's ids are its file names).
    """
    source = Path(path)
    name = source.name.lower()
    if ids is not None and (source.is_dir() or name.endswith(FITS_SUFFIXES)):
        raise DeepfieldError(f"{source}: ids={ids!r} names an HDF5 dataset or npz key; the ids of "
                             + ("a folder are its file names ({id} in the pattern)" if source.is_dir()
                                else "a FITS cube are its stamp numbers 0 .. N-1"))
    if source.is_dir():
        return FitsFolder(source, _need_bands(bands, source), pattern=pattern, hdus=hdus, labels=labels,
                          on_error=on_error)
    if not source.exists():
        raise DeepfieldError(f"{source}: no such file or folder")
    if name.endswith(FITS_SUFFIXES):
        if not (hdus is None or isinstance(hdus, (int, str))):
            raise DeepfieldError(f"{source}: a FITS cube is one HDU; hdus names it (an index or name), got {hdus!r}")
        return FitsCube(source, _need_bands(bands, source), hdu=0 if hdus is None else hdus, labels=labels,
                        on_error=on_error)
    if hdus is not None:
        raise DeepfieldError(f"{source}: hdus={hdus!r} is for FITS files; this is not one")
    if name.endswith(HDF5_SUFFIXES):
        return Hdf5Images(source, bands, channels=channels, images=images, labels=labels, ids=ids,
                          on_error=on_error)
    if name.endswith(NUMPY_SUFFIXES):
        return NumpyImages(source, _need_bands(bands, source), channels=channels, key=images, labels=labels,
                           ids=ids, on_error=on_error)
    raise DeepfieldError(
        f"{source}: cannot tell what kind of image file this is; expected a folder of FITS cutouts, "
        f"{', '.join(FITS_SUFFIXES + HDF5_SUFFIXES + NUMPY_SUFFIXES)}"
    )


def _need_bands(bands: Sequence[str] | None, source: Path) -> Sequence[str]:
    if not bands:
        raise DeepfieldError(f"{source}: name the bands in channel order (e.g. --bands g,r,i); they are never guessed")
    return bands


def catalogue_labels(table: str | os.PathLike[str], id_column: str, label_column: str | Sequence[str] | None,
                     *, group: str | None = None, classes: Sequence[str] | None = None) -> CatalogueLabels:
    """Labels from a table file (FITS, CSV, Parquet, HDF5: :func:`read_catalogue`) joined by ``id_column``.

    ``label_column`` ``None``: the table only lends its columns (:meth:`ImageReader.metadata`).
    ``classes``: the class names a text label column maps to (default: its sorted distinct names).
    """
    return CatalogueLabels(read_catalogue(table, group=group), id_column, label_column, classes=classes,
                           source=str(table))
