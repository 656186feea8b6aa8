"""A user's bad-pixel mask for in-painting: a FITS image or an HDF5 dataset, nonzero (or NaN) = bad.

The simulated kind (detector defects of the data-quality simulator) is
:func:`deepfield.data.simulate.masks.artefact_masks`.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits

from deepfield.data.hdf5_files import find_dataset, open_hdf5
from deepfield.errors import DeepfieldError

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")
"""File names read as FITS; anything else is read as HDF5."""


def read_mask(path: str | os.PathLike[str], shape: Sequence[int], *, dataset: str = "mask",
              hdu: int | None = None) -> np.ndarray:
    """The mask of images of ``shape`` ((N, C, H, W) or (N, H, W)) in ``path``, as bool of that shape.

    The file holds one (H, W) mask for every image, an (N, H, W) mask per image (every band), or
    one of ``shape`` itself; nonzero and NaN pixels are bad (True). FITS: HDU ``hdu`` (default: the
    first holding an image); HDF5: the dataset ``dataset``.
    """
    path, shape = Path(path), tuple(int(s) for s in shape)
    if len(shape) not in (3, 4):
        raise DeepfieldError(f"images of shape {shape}: a mask needs (N, C, H, W) or (N, H, W) images")
    if not path.is_file():
        raise DeepfieldError(f"{path}: no such file")
    mask = _fits(path, hdu) if path.name.lower().endswith(FITS_SUFFIXES) else _hdf5(path, dataset)
    if mask.dtype.kind not in "biuf":
        raise DeepfieldError(f"{path}: the mask is {mask.dtype}, not numbers")
    bad = np.asarray(mask != 0)  # NaN != 0: bad
    n, (height, width) = shape[0], shape[-2:]
    if bad.shape == (height, width):
        bad = bad[None]
    if bad.shape == (n, height, width) and len(shape) == 4:
        bad = bad[:, None]
    if bad.shape not in ((1, height, width), (1, 1, height, width), (n, height, width), (n, 1, height, width), shape):
        raise DeepfieldError(f"{path}: mask of shape {mask.shape} does not fit images of shape {shape}; expected "
                             f"({height}, {width}), ({n}, {height}, {width}) or {shape}")
    return np.broadcast_to(bad, shape).copy()


def _fits(path: Path, hdu: int | None) -> np.ndarray:
    try:
        with fits.open(path, memmap=False) as hdus:
            if hdu is not None:
                if not 0 <= hdu < len(hdus):
                    raise DeepfieldError(f"{path}: no HDU {hdu} (the file has {len(hdus)})")
                data = hdus[hdu].data
            else:
                data = next((h.data for h in hdus if getattr(h, "is_image", False) and h.data is not None), None)
            if data is None:
                raise DeepfieldError(f"{path}: no image HDU holds a mask" + (f" (HDU {hdu} is empty)" if hdu else ""))
            return np.asarray(data)
    except OSError as exc:
        raise DeepfieldError(f"{path}: cannot be read as FITS ({exc})") from None


def _hdf5(path: Path, dataset: str) -> np.ndarray:
    with open_hdf5(path) as h5:
        return np.asarray(find_dataset(h5, path, dataset)[()])
