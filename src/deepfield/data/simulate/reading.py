"""Reading back the simulators' HDF5 files: the checks and the column groups the readers share."""
from __future__ import annotations

import os

import h5py
import numpy as np

from deepfield.data.hdf5_files import open_hdf5
from deepfield.errors import DeepfieldError


def open_simulated(path: str | os.PathLike[str], simulator: str) -> h5py.File:
    """The HDF5 file ``path`` open for reading, checked to come from ``simulator``."""
    h5 = open_hdf5(path)
    if h5.attrs.get("simulator") != simulator:
        h5.close()
        raise DeepfieldError(f"{path}: not a file of `deepfield simulate {simulator}`")
    return h5


def read_columns(group: h5py.Group, rows: slice) -> dict[str, np.ndarray]:
    """Every dataset of ``group`` by name (rows ``rows``); byte strings become str."""
    columns = {name: data[rows] for name, data in group.items()}
    return {name: v.astype(str) if v.dtype.kind == "S" else v for name, v in columns.items()}
