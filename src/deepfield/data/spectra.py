"""Readers for 1-D data: spectra and light curves, ``(N, C, L)`` float32.

The image readers' contract (:mod:`deepfield.data.images_core`: one object read at a
time, checked, ``on_error="skip"``, labels from the file or a :class:`CatalogueLabels`
join) with one axis per channel instead of two: each object is a ``(C, L)`` array,
``C`` channels (one flux; or flux and inverse variance; or the bands of a light curve)
of ``L`` samples. A file holding ``(N, L)`` is one channel, named ``flux``; several
channels are named with ``bands`` (``["flux", "ivar"]``, ``["g", "r"]``) unless the
file's ``bands`` attribute names them. Arrays are channels first ``(N, C, L)`` unless
``channels="last"`` says ``(N, L, C)``.

Files (:func:`open_spectra`):

* ``.npy`` / ``.npz``: the array (in an ``.npz`` the member ``key``, default the first of
  ``SPECTRA_KEYS``), labels and ids as member names;
* HDF5: the dataset ``key`` (same default), labels as dataset names (deepfield's
  simulator: ``labels`` with a ``classes`` attribute, ``truth/redshift``);
* FITS: the first image HDU of two or more axes, ``(N, L)`` or ``(N, C, L)``; or a binary
  table whose array column ``key`` holds the spectra, labels and ids as its columns.

An optional wavelength grid (:func:`read_wavelength`): ``wavelength`` (L,) beside the
spectra (npz member, HDF5 dataset, FITS HDU named ``WAVELENGTH`` or an array column of
the table) becomes ``reader.wavelength``.
"""
from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from astropy.io import fits

from deepfield.data.images_core import ArrayLayout, BadObject, ImageReader, Labels, fatal, few
from deepfield.data.images_fits import FitsCube, open_fits
from deepfield.data.images_hdf5 import Hdf5Images
from deepfield.data.images_numpy import NumpyImages
from deepfield.data.sources import FITS_SUFFIXES, HDF5_SUFFIXES, NUMPY_SUFFIXES
from deepfield.errors import DeepfieldError

SPECTRA_KEYS = ("spectra", "flux", "images")
"""Names tried, in order, for the spectra array when none is given."""

WAVELENGTH = "wavelength"
"""The name of the optional wavelength grid (L,) beside the spectra."""


class NumpySpectra(NumpyImages):
    """Spectra ``(N, L)`` / ``(N, C, L)`` from ``.npy`` or an ``.npz`` member (see :class:`NumpyImages`)."""

    sample_ndim = 1


class Hdf5Spectra(Hdf5Images):
    """Spectra ``(N, L)`` / ``(N, C, L)`` from an HDF5 dataset (see :class:`Hdf5Images`)."""

    sample_ndim = 1


class FitsSpectra(FitsCube):
    """Spectra ``(N, L)`` / ``(N, C, L)`` from a FITS image HDU (see :class:`FitsCube`)."""

    sample_ndim = 1


class FitsTableSpectra(ImageReader):
    """Spectra from the array column ``column`` of a FITS binary table (one row per object).

    The column is read whole (tables of spectra fit in memory); ``labels`` and ``ids``
    are column names of the same table (or arrays, or :class:`CatalogueLabels`).
    """

    sample_ndim = 1

    def __init__(self, path: str | os.PathLike[str], bands: Sequence[str] | None = None, *, hdu: int,
                 column: str, channels: str | None = "first", labels: Labels | str = None,
                 ids: str | Sequence[Any] | None = None, on_error: str = "raise"):
        super().__init__(on_error)
        self.source = os.fspath(path)
        with fatal(), open_fits(self.source) as hdul:
            table = hdul[hdu].data
            names = list(table.columns.names)
            where = f"{self.source} HDU {hdu}"

            def column_values(name: str) -> np.ndarray:
                if name not in names:
                    raise DeepfieldError(f"{where} has no column {name!r}; its columns are {few(names, 8)}")
                return np.array(table[name])

            self._array = column_values(column)
            labels, ids = (column_values(s) if isinstance(s, str) else s for s in (labels, ids))
        self._layout = ArrayLayout(self._array.shape, f"{where} column {column!r}", bands, channels, ndim=1)
        self.bands = self._layout.bands
        self._finish(np.arange(len(self._array)) if ids is None else ids, labels)

    def _where(self, item: int) -> str:
        return f"{self.source}[{item}]"

    def _load(self, item: int) -> np.ndarray:
        return self._layout.stamp(self._array[item])


def open_spectra(path: str | os.PathLike[str], bands: Sequence[str] | None = None, *, labels: Any = None,
                 channels: str | None = None, key: str | None = None, on_error: str = "raise") -> ImageReader:
    """A spectra reader for ``path`` (module docstring), with ``reader.wavelength`` (L,) or ``None``.

    ``key``: the spectra array (npz member, HDF5 dataset, FITS table column); ``None`` tries
    ``SPECTRA_KEYS``. ``channels``: ``"first"`` (default) or ``"last"`` for 2-channel-axis arrays.
    """
    source = Path(path)
    name = source.name.lower()
    channels = channels or "first"
    if source.is_dir():
        raise DeepfieldError(f"{source}: spectra are read from one file (.npy/.npz, HDF5 or FITS), not a folder")
    if not source.exists():
        raise DeepfieldError(f"{source}: no such file")
    if name.endswith(NUMPY_SUFFIXES):
        member = (key or _first_member(source, _npz_names(source))) if name.endswith(".npz") else "spectra"
        reader: ImageReader = NumpySpectra(source, bands, channels=channels, key=member, labels=labels,
                                           on_error=on_error)
    elif name.endswith(HDF5_SUFFIXES):
        member = key or _first_member(source, _hdf5_names(source))
        reader = Hdf5Spectra(source, bands, channels=channels, images=member, labels=labels, on_error=on_error)
    elif name.endswith(FITS_SUFFIXES):
        reader = _open_fits_spectra(source, bands, labels=labels, channels=channels, key=key, on_error=on_error)
    else:
        raise DeepfieldError(f"{source}: cannot tell what kind of spectra file this is; expected "
                             f"{', '.join(FITS_SUFFIXES + HDF5_SUFFIXES + NUMPY_SUFFIXES)}")
    reader.wavelength = read_wavelength(source, reader.shape[-1])
    return reader


def read_wavelength(path: str | os.PathLike[str], length: int) -> np.ndarray | None:
    """The grid ``wavelength`` (L,) float64 stored beside the spectra of ``path``, or ``None``.

    It must be 1-D with one value per sample (``length``); the unit is the file's.
    """
    source = Path(path)
    name = source.name.lower()
    grid = None
    if name.endswith(".npz"):
        with np.load(source, allow_pickle=False) as archive:
            grid = archive[WAVELENGTH] if WAVELENGTH in archive.files else None
    elif name.endswith(HDF5_SUFFIXES):
        with h5py.File(source, "r") as h5:
            found = h5.get(WAVELENGTH)
            grid = found[()] if isinstance(found, h5py.Dataset) else None
    elif name.endswith(FITS_SUFFIXES):
        grid = _fits_wavelength(source)
    if grid is None:
        return None
    grid = np.asarray(grid, dtype=np.float64)
    if grid.shape != (length,):
        raise DeepfieldError(f"{source}: {WAVELENGTH!r} has shape {grid.shape}; expected ({length},), "
                             "one wavelength per sample of the spectra")
    return grid


def normalize_spectra(spectra: np.ndarray) -> np.ndarray:
    """Each channel of each spectrum divided by its median absolute value; NaN/inf samples become 0.

    ``spectra``: (N, C, L) in any flux unit → (N, C, L) float32, dimensionless, ~1 in the continuum.

    Per spectrum, not per band fitted on the training part as for images: spectra of one
    class span orders of magnitude in brightness (distance, luminosity), while what the
    class and the redshift are written in is the shape: where lines and breaks fall and
    how strong they are against the continuum. Dividing by the spectrum's own scale keeps
    exactly that, needs no statistics to fit or record, and applies unchanged to any
    new file. The median of |flux| (not the mean) is robust to strong lines, cosmic rays
    and sky residuals. A channel whose median is 0 (or not finite) is left unscaled.
    (Light curves in several bands lose their colours this way; ``data.normalize: none``
    keeps them.)
    """
    x = np.asarray(spectra, dtype=np.float32)
    finite = np.isfinite(x)
    with np.errstate(invalid="ignore"):
        scale = np.nanmedian(np.where(finite, np.abs(x), np.nan), axis=-1, keepdims=True)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0).astype(np.float32)
    return np.where(finite, x / scale, 0.0).astype(np.float32)


# ------------------------------------------------------------------ internals


def _first_member(source: Path, names: Sequence[str]) -> str:
    """The first of ``SPECTRA_KEYS`` among ``names``, or an error listing what there is."""
    for key in SPECTRA_KEYS:
        if key in names:
            return key
    raise DeepfieldError(f"{source} has no array named {' or '.join(map(repr, SPECTRA_KEYS))}; it has: "
                         f"{', '.join(sorted(names))} (name the spectra with data.images)")


def _npz_names(source: Path) -> list[str]:
    try:
        with np.load(source, allow_pickle=False) as archive:
            return list(archive.files)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DeepfieldError(f"{source}: not a readable NumPy .npz file ({error})") from None


def _hdf5_names(source: Path) -> list[str]:
    try:
        with h5py.File(source, "r") as h5:
            return list(h5.keys())
    except OSError as error:
        raise DeepfieldError(f"{source}: not a readable HDF5 file ({error})") from None


def _open_fits_spectra(source: Path, bands: Sequence[str] | None, *, labels: Any, channels: str,
                       key: str | None, on_error: str) -> ImageReader:
    """The first image HDU of 2+ axes, else the first binary table with the spectra column."""
    with fatal(), open_fits(os.fspath(source)) as hdul:
        image = next((i for i, h in enumerate(hdul) if h.is_image and h.header.get("NAXIS", 0) >= 2), None)
        tables = [(i, list(h.columns.names)) for i, h in enumerate(hdul) if isinstance(h, fits.BinTableHDU)]
        if image is not None and isinstance(labels, str):  # labels from a column of a table beside the image
            holder = next((i for i, names in tables if labels in names), None)
            if holder is None:
                raise DeepfieldError(f"{source}: no table HDU has a column {labels!r} for the labels")
            labels = np.array(hdul[holder].data[labels])
    if image is not None:
        return FitsSpectra(source, bands, hdu=image, labels=labels, on_error=on_error)
    for index, names in tables:
        column = key or next((k for k in SPECTRA_KEYS if k in names), None)
        if column in names:
            return FitsTableSpectra(source, bands, hdu=index, column=column, channels=channels, labels=labels,
                                    on_error=on_error)
    wanted = key or " or ".join(SPECTRA_KEYS)
    raise DeepfieldError(f"{source}: no image HDU of spectra (N, L) or (N, C, L) and no table column {wanted!r}")


def _fits_wavelength(source: Path) -> np.ndarray | None:
    """A 1-D HDU named WAVELENGTH, else the ``wavelength`` array column of a table (the same in every row)."""
    try:
        with open_fits(os.fspath(source)) as hdul:
            for hdu in hdul:
                if hdu.name.upper() == WAVELENGTH.upper() and hdu.is_image and hdu.header.get("NAXIS", 0) == 1:
                    return np.array(hdu.data, dtype=np.float64)
                if isinstance(hdu, fits.BinTableHDU) and WAVELENGTH in hdu.columns.names:
                    values = np.array(hdu.data[WAVELENGTH], dtype=np.float64)
                    if values.ndim == 2:
                        if not np.allclose(values, values[0], equal_nan=True):
                            raise DeepfieldError(f"{source}: column {WAVELENGTH!r} differs between rows; "
                                                 "the spectra must share one wavelength grid")
                        return values[0]
                    return values
    except BadObject as bad:
        raise DeepfieldError(str(bad)) from None
    return None
