"""HDF5 output of the simulators, written atomically.

The file is built under a temporary name beside the target and moved over it only when
complete (``deepfield.atomic.atomic_path``): a reader sees the old file or the new one,
and a failure part-way leaves an existing file untouched. Images stream into the file
chunk by chunk; per-object columns (labels, truth) are small and gathered in memory.

Layout pieces: ``images`` (N, C, H, W) float32 with attrs ``bands``, ``pixel_scale``
(arcsec) and ``unit`` (other per-object arrays likewise, one HDF5 chunk per object:
``create_array``); ``labels`` (N,) int64 with attr ``classes``; groups of 1-D column
datasets, each with ``unit`` and ``description`` attrs (as catalogue readers expect);
file attrs ``simulator``, ``seed`` and ``config`` (JSON of the arguments).
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from deepfield.atomic import atomic_path

ColumnInfo = Mapping[str, tuple[str, str]]
"""Column name -> ``(unit, description)``; ``""`` for a dimensionless column."""


@contextlib.contextmanager
def sim_file(out: Path, simulator: str, seed: int, config: Mapping[str, Any]) -> Iterator[h5py.File]:
    """An HDF5 file open for writing that replaces ``out`` only if the block completes."""
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs["simulator"] = simulator
        h5.attrs["seed"] = seed
        h5.attrs["config"] = json.dumps(config, sort_keys=True)
        yield h5


def create_array(h5: h5py.File, name: str, shape: tuple[int, ...], dtype: type, **attrs: Any) -> h5py.Dataset:
    """The empty dataset ``name`` of ``shape`` (objects first), one HDF5 chunk per object, with ``attrs``."""
    data = h5.create_dataset(name, shape=shape, dtype=dtype, chunks=(1, *shape[1:]))
    for key, value in attrs.items():
        data.attrs[key] = value
    return data


def create_images(h5: h5py.File, n: int, bands: Sequence[str], size: int, pixel_scale: float,
                  unit: str, name: str = "images", **attrs: Any) -> h5py.Dataset:
    """The empty (n, C, size, size) float32 stamps ``name`` (attrs ``bands``, ``pixel_scale``, ``unit``, ``attrs``)."""
    return create_array(h5, name, (n, len(bands), size, size), np.float32, bands=list(bands),
                        pixel_scale=pixel_scale, unit=unit, **attrs)


def write_labels(h5: h5py.File, labels: np.ndarray, classes: Sequence[str]) -> None:
    """``labels`` (N,) int64, indices into ``classes`` (stored as the dataset's ``classes`` attr)."""
    h5.create_dataset("labels", data=np.asarray(labels, dtype=np.int64)).attrs["classes"] = list(classes)


def write_columns(group: h5py.Group, columns: Mapping[str, np.ndarray], info: ColumnInfo) -> None:
    """One 1-D dataset per column; text becomes fixed-length ASCII, ``info`` gives units and descriptions."""
    for name, values in columns.items():
        values = np.asarray(values)
        data = group.create_dataset(name, data=values.astype(np.bytes_) if values.dtype.kind == "U" else values)
        unit, description = info[name]
        data.attrs["unit"] = unit
        data.attrs["description"] = description


def stack_rows(rows: Sequence[Mapping[str, float]]) -> dict[str, np.ndarray]:
    """Rows (dicts with the same keys) as columns, (k,) float64 each."""
    return {key: np.array([row[key] for row in rows], dtype=np.float64) for key in rows[0]}


class ChunkSink:
    """Takes chunk results ``{name: (k, ...) array}``: ``images`` and the ``streamed`` datasets go to the file
    as they come, the rest into (n, ...) arrays."""

    def __init__(self, n: int, images: h5py.Dataset, **streamed: h5py.Dataset):
        self.n = n
        self.datasets = {"images": images, **streamed}
        self.columns: dict[str, np.ndarray] = {}

    def __call__(self, rows: range, result: Mapping[str, np.ndarray]) -> None:
        for name, values in result.items():
            if name in self.datasets:
                self.datasets[name][rows.start:rows.stop] = values
                continue
            if name not in self.columns:
                self.columns[name] = np.empty((self.n, *values.shape[1:]), dtype=values.dtype)
            self.columns[name][rows.start:rows.stop] = values
