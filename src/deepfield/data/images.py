"""Image readers for the files astronomers bring: FITS cutouts and cubes, HDF5, NumPy.

Every reader lists objects and reads one at a time as a ``(C, H, W)`` float32 stamp
whose channels are the bands the user named, in that order; see
:mod:`deepfield.data.images_core` for the shared contract (checks, ``on_error="skip"``,
labels joined from a catalogue) and :mod:`deepfield.data.datasets` for torch datasets::

    reader = FitsFolder("cutouts", ["g", "r", "i"], labels=CatalogueLabels(table, "objid", "class"))
    images, labels = reader.load()      # (N, 3, H, W) float32, (N,) int64
"""
from deepfield.data.images_core import CatalogueLabels, ImageReader, Skipped, write_skip_report
from deepfield.data.images_fits import FitsCube, FitsFolder
from deepfield.data.images_hdf5 import Hdf5Images
from deepfield.data.images_numpy import NumpyImages

__all__ = [
    "CatalogueLabels",
    "FitsCube",
    "FitsFolder",
    "Hdf5Images",
    "ImageReader",
    "NumpyImages",
    "Skipped",
    "write_skip_report",
]
