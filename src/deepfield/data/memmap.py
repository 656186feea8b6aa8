"""Data larger than memory: datasets that read whole batches from memory-mapped files.

Two map-style datasets, never holding more than the batch being read:

* :class:`MemmapImages`: images ``(N, C, H, W)`` (or ``(N, H, W)``, or channels last)
  in a ``.npy`` file (memory-mapped) or an HDF5 dataset, with labels from an array, a
  ``.npy`` file or a dataset of the same HDF5 file;
* :class:`MemmapTable`: catalogue columns as features ``(N, F)`` and a target, from a
  folder of one ``<column>.npy`` per column, an HDF5 file (a group of 1-D column
  datasets, deepfield's layout, or an astropy-written compound table) or a FITS binary
  table. Parquet is compressed and cannot be mapped: :func:`parquet_to_columns` streams
  it once, row group by row group, into a folder of ``.npy`` columns.

How the bytes are reached: ``.npy`` files, FITS tables and contiguous (unchunked,
uncompressed) HDF5 datasets are memory-mapped at their offset in the file, so a batch
is one NumPy fancy index into the page cache; chunked or compressed HDF5 datasets are
read through h5py in increasing row order, by slices (a selection of many scattered rows
costs h5py ~15x more). Files are opened lazily,
once per process: DataLoader workers each open their own handle (h5py handles do not
survive ``fork``) and nothing open is ever pickled.

Batch-level reads: each dataset has ``__getitems__``, so a ``DataLoader`` with a batch
sampler asks for a whole batch in one call (no per-sample ``__getitem__`` and collate,
the per-item Python overhead that makes loaders slow). :func:`loader` builds that
``DataLoader``: batches in deepfield's seeded epoch order
(:func:`deepfield.data.splits.epoch_order`, the order ``fit`` uses for arrays),
persistent workers, prefetching, memory pinned only when CUDA is there. Random
transforms draw from a generator seeded per batch from ``(seed, epoch, batch)``, so
augmentation is the same with 0 or any number of workers.

>>> ds = MemmapTable("catalogue/", features=["mag_g", "mag_r"], target="redshift")  # doctest: +SKIP
>>> model.fit(loader(ds, batch_size=256, seed=0, workers=2), epochs=5)            # doctest: +SKIP
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Union

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from deepfield import arguments
from deepfield.data.images_core import ProcessLocal
from deepfield.errors import DeepfieldError
from deepfield.data.splits import epoch_order

Transform = Callable[[torch.Tensor], torch.Tensor]
PathLike = Union[str, "os.PathLike[str]"]

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
FITS_SUFFIXES = (".fits", ".fit", ".fts")

__all__ = ["BatchLoader", "EpochBatchSampler", "Fetch", "MemmapImages", "MemmapTable", "loader", "parquet_to_columns"]


# -- one array in a file, opened once per process ------------------------------------------

def _open_npy(path: str) -> np.ndarray:
    return np.load(path, mmap_mode="r", allow_pickle=False)


def _open_fits(path: str, dtype: np.dtype, offset: int, rows: int) -> np.ndarray:
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(rows,))


class _Hdf5Rows:
    """A chunked or compressed HDF5 dataset, read in increasing row order.

    h5py's selection of many scattered rows costs per row (~15x a NumPy index for
    images), so: rows of images are read one slice per run of consecutive rows; a 1-D
    column is read by blocks of ``BLOCK`` values, each block as one slice from its
    first to its last wanted row where they are dense (one wanted in ``DENSE`` or more,
    what a shuffled read of many batches is), else as a point selection.
    """

    BLOCK = 1 << 20
    DENSE = 64

    def __init__(self, path: str, key: str):
        self.file = h5py.File(path, "r")
        self.data = self.file[key]

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (sorted, unique)."""
        data = self.data
        out = np.empty((len(rows), *data.shape[1:]), data.dtype)
        if not len(rows):
            return out
        if data.ndim == 1:
            starts = np.flatnonzero(np.diff(rows // self.BLOCK)) + 1
            for lo, hi in zip(np.r_[0, starts], np.r_[starts, len(rows)]):
                first, last = int(rows[lo]), int(rows[hi - 1])
                if (last - first + 1) <= self.DENSE * (hi - lo):
                    out[lo:hi] = data[first:last + 1][rows[lo:hi] - first]
                else:
                    out[lo:hi] = data[rows[lo:hi]]
            return out
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(rows)]):
            first = int(rows[lo])
            out[lo:hi] = data[first:first + (hi - lo)]
        return out


def _open_hdf5(path: str, key: str, offset: int | None, dtype: np.dtype, shape: tuple[int, ...]) -> Any:
    if offset is not None:  # contiguous and unfiltered: map the bytes directly
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    return _Hdf5Rows(path, key)


class _Array:
    """An ``(N, ...)`` array (or a field of a structured one) in a file, opened lazily per process.

    ``take(index)`` returns the rows ``index`` (any order, repeats allowed) as a new
    array; only those rows are read.
    """

    def __init__(self, opener: Callable[[], Any], shape: tuple[int, ...], dtype: np.dtype, where: str,
                 field: str | None = None, scale: tuple[float, float] | None = None):
        self._array = ProcessLocal(opener)
        self.shape, self.dtype, self.where, self.field, self.scale = shape, np.dtype(dtype), where, field, scale

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, index: np.ndarray) -> np.ndarray:
        array = self._array.get()
        if isinstance(array, _Hdf5Rows):
            rows, inverse = np.unique(index, return_inverse=True)
            values = array.take(rows)
            if self.field is not None:
                values = values[self.field]
            values = values[inverse]
        else:
            if self.field is not None:
                array = array[self.field]
            values = np.take(array, index, axis=0)
        if self.scale is not None:
            values = values * self.scale[0] + self.scale[1]
        return values


def _memory(values: Any, where: str) -> _Array:
    array = np.asarray(values)
    return _Array(partial(_identity, array), array.shape, array.dtype, where)


def _identity(value: Any) -> Any:
    return value


def _npy(path: str) -> _Array:
    try:
        array = _open_npy(path)
    except (OSError, ValueError, EOFError) as error:
        raise DeepfieldError(f"{path}: not a readable .npy file ({error})") from None
    shape, dtype = array.shape, array.dtype
    del array
    return _Array(partial(_open_npy, path), shape, dtype, path)


def _hdf5(path: str, handle: h5py.File, key: str, field: str | None = None) -> _Array:
    if key not in handle:
        raise _no_such(path, "dataset", key, _hdf5_names(handle))
    data = handle[key]
    if not isinstance(data, h5py.Dataset):
        raise DeepfieldError(f"{path}: {key!r} is a group, not a dataset")
    if data.dtype.kind not in "biufV" or (field is None and data.dtype.names):
        raise DeepfieldError(f"{path}:{key} holds {data.dtype} values; expected numbers")
    offset = data.id.get_offset() if data.chunks is None and data.external is None else None
    where = f"{path}:{key}" + (f"[{field!r}]" if field else "")
    opener = partial(_open_hdf5, path, key, offset, data.dtype, data.shape)
    return _Array(opener, data.shape, data.dtype[field] if field else data.dtype, where, field)


def _hdf5_names(handle: h5py.File) -> list[str]:
    names: list[str] = []
    handle.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def _open_h5(path: str) -> h5py.File:
    if not os.path.isfile(path):
        raise DeepfieldError(f"{path}: no such file")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise DeepfieldError(f"{path}: not a readable HDF5 file ({error})") from None


def _no_such(where: str, what: str, name: str, present: Sequence[str]) -> DeepfieldError:
    """``where: no column 'x'; it has: a, b, c``."""
    listed = ", ".join(sorted(present)[:20]) + (" ..." if len(present) > 20 else "")
    return DeepfieldError(f"{where}: no {what} {name!r}; it has: {listed or 'nothing'}")


def _is(path: str, suffixes: tuple[str, ...]) -> bool:
    return path.lower().endswith(suffixes)


def _label_tensor(values: np.ndarray) -> torch.Tensor:
    """Labels as ``fit`` makes them from arrays: integers → int64, floats and bools → float32."""
    if values.dtype.kind in "iu":
        return torch.from_numpy(values.astype(np.int64, copy=False))
    return torch.from_numpy(values.astype(np.float32, copy=False))


def _check_numbers(array: _Array, what: str) -> None:
    if array.dtype.kind not in "biuf" or array.dtype.names:
        raise DeepfieldError(f"{array.where}: {what} holds {array.dtype} values; expected numbers")


def _check_finite(x: np.ndarray, index: np.ndarray, where: str) -> None:
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        raise DeepfieldError(f"{where}: row {int(index[np.argmax(bad)])} holds NaN or infinite values; "
                             "remove or fill them before training (or pass check=False)")


# -- batches ---------------------------------------------------------------------------

class Fetch:
    """The indices of one read: ``len(indices) / batch_size`` consecutive batches of an epoch.

    Made by :class:`EpochBatchSampler`; behaves as a sequence of ints for datasets that
    do not know it. ``key = (seed, epoch, first batch)`` seeds each batch's random
    transforms, so augmentation does not depend on which process reads the batch.
    """

    __slots__ = ("indices", "batch_size", "key")

    def __init__(self, indices: np.ndarray, batch_size: int, key: tuple[int, int, int] | None = None):
        self.indices, self.batch_size, self.key = indices, batch_size, key

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices.tolist())

    def __getitem__(self, item: int) -> int:
        return int(self.indices[item])

    def __getstate__(self) -> tuple[Any, ...]:
        return self.indices, self.batch_size, self.key

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.indices, self.batch_size, self.key = state

    def batches(self) -> Iterator[tuple[slice, int | None]]:
        """``(rows of the batch within this read, the seed of its random transforms)`` per batch."""
        for k, lo in enumerate(range(0, len(self.indices), self.batch_size)):
            seed = None if self.key is None else _batch_seed(self.key[0], self.key[1], self.key[2] + k)
            yield slice(lo, lo + self.batch_size), seed


class BatchRows(Sequence):
    """A batch assembled by ``__getitems__``: ``parts`` is ``(x, y)`` or ``(x,)``.

    :func:`collate` returns the parts as they are. As a sequence it is the batch's
    samples, so ``default_collate`` (a plain ``DataLoader``, ``fit(dataset)``) still
    stacks it correctly, one sample at a time.
    """

    def __init__(self, parts: tuple[torch.Tensor, ...]):
        self.parts = parts

    def __len__(self) -> int:
        return len(self.parts[0])

    def __getitem__(self, item: int) -> Any:  # type: ignore[override]
        if not -len(self) <= item < len(self):
            raise IndexError(item)
        sample = tuple(part[item] for part in self.parts)
        return sample if len(sample) > 1 else sample[0]

    def __iter__(self) -> Iterator[Any]:
        return (self[i] for i in range(len(self)))


def collate(data: Any) -> Any:
    """A batch from ``__getitems__`` as it is (``(x, y)`` or ``x``); a list of samples stacked."""
    if isinstance(data, BatchRows):
        return data.parts if len(data.parts) > 1 else data.parts[0]
    return default_collate(data)


def _batch_seed(seed: int, epoch: int, batch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, batch]).generate_state(1, np.uint64)[0])


def _transformed(transform: Transform | None, x: torch.Tensor, indices: Any) -> torch.Tensor:
    """``transform`` applied batch by batch; in a :class:`Fetch` each batch's draws come from the
    global RNG seeded for that batch (the caller's RNG state is restored)."""
    if transform is None:
        return x
    if not isinstance(indices, Fetch) or indices.key is None:
        return transform(x)
    state = torch.get_rng_state()
    try:
        parts = []
        for rows, seed in indices.batches():
            torch.manual_seed(seed)
            parts.append(transform(x[rows]))
    finally:
        torch.set_rng_state(state)
    return parts[0] if len(parts) == 1 else torch.cat(parts)


class BatchDataset(Dataset):
    """Common part: ``len``, one sample, a batch (or several: a :class:`Fetch`)."""

    _n: int

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: int) -> Any:
        if not -self._n <= int(index) < self._n:
            raise IndexError(f"index {index} out of range for {self._n} samples")
        return self.__getitems__([int(index) % self._n])[0]

    def read(self, indices: Sequence[int] | np.ndarray) -> Any:
        """The samples ``indices`` (any order, repeats allowed) as one batch: ``(x, y)``, or ``x``."""
        return collate(self.__getitems__(indices))

    def __getitems__(self, indices: Sequence[int] | Fetch) -> BatchRows:
        index = indices.indices if isinstance(indices, Fetch) else np.asarray(indices, dtype=np.int64)
        if len(index) and (index.min() < -self._n or index.max() >= self._n):
            raise IndexError(f"an index of the batch is out of range for {self._n} samples")
        index = index % self._n if len(index) and index.min() < 0 else index
        return self._read(index, indices)

    @property
    def sample_bytes(self) -> int:
        """Bytes of one sample as batches give it (x float32 and y), to size reads."""
        raise NotImplementedError

    def _read(self, index: np.ndarray, indices: Any) -> BatchRows:
        raise NotImplementedError


class MemmapImages(BatchDataset):
    """Images read batch by batch from a ``.npy`` file (memory-mapped) or an HDF5 dataset.

    ``path``: a ``.npy`` holding ``(N, C, H, W)``, ``(N, H, W)`` (one band) or, with
    ``channels="last"``, ``(N, H, W, C)``; or an HDF5 file (``.h5``, ``.hdf5``, ``.hdf``)
    whose dataset ``images`` holds them. Any numeric dtype; batches are float32.
    ``labels``: ``None`` (batches are ``x`` alone, for prediction), an array ``(N,)`` /
    ``(N, k)`` held in memory, the path of a ``.npy`` (memory-mapped), or for an HDF5
    file the name of a dataset in it. Integer labels become int64, float and bool
    labels float32 (as ``fit`` converts arrays).
    ``transform``: applied to each batch ``(B, C, H, W)`` (deepfield's transforms take
    batches); its random draws are seeded per batch by :func:`loader`.
    ``check``: raise on NaN or infinite pixels in a batch, naming the row.
    """

    def __init__(self, path: PathLike, labels: Any = None, *, images: str = "images",
                 channels: str = "first", transform: Transform | None = None, check: bool = True):
        self.path = os.fspath(path)
        if channels not in ("first", "last"):
            raise DeepfieldError(f"channels must be 'first' or 'last', got {channels!r}")
        if not os.path.isfile(self.path):
            raise DeepfieldError(f"{self.path}: no such file")
        if _is(self.path, HDF5_SUFFIXES):
            with _open_h5(self.path) as handle:
                self._images = _hdf5(self.path, handle, images)
                named = isinstance(labels, str) and not labels.endswith(".npy")
                self._labels = _hdf5(self.path, handle, labels) if named else self._other_labels(labels)
        else:
            self._images = _npy(self.path)
            self._labels = self._other_labels(labels)
        _check_numbers(self._images, "the image array")
        shape = self._images.shape
        if len(shape) not in (3, 4) or (len(shape) == 3 and channels == "last"):
            raise DeepfieldError(f"{self._images.where}: images must be (N, C, H, W), (N, H, W) or, with "
                                 f"channels='last', (N, H, W, C); got shape {shape}")
        self.channels_last = len(shape) == 4 and channels == "last"
        self._n = shape[0]
        if self._labels is not None:
            _check_numbers(self._labels, "labels")
            if len(self._labels) != self._n or len(self._labels.shape) > 2:
                raise DeepfieldError(f"{self._labels.where}: labels have shape {self._labels.shape}; "
                                     f"expected ({self._n},) or ({self._n}, k) for {self._n} images")
        self.transform, self.check = transform, check

    def _other_labels(self, labels: Any) -> _Array | None:
        if labels is None:
            return None
        if isinstance(labels, (str, os.PathLike)):
            if not os.fspath(labels).endswith(".npy"):
                raise DeepfieldError(f"labels {os.fspath(labels)!r}: a path of labels must be a .npy file "
                                     "(or, for an HDF5 image file, the name of a dataset in it)")
            return _npy(os.fspath(labels))
        return _memory(labels, "labels")

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """``(C, H, W)`` of one image as the batches give it."""
        shape = self._images.shape[1:]
        return (1, *shape) if len(shape) == 2 else ((shape[2], shape[0], shape[1]) if self.channels_last else shape)

    @property
    def sample_bytes(self) -> int:
        return 4 * math.prod(self.sample_shape) + (0 if self._labels is None else
                                                   8 * math.prod(self._labels.shape[1:]))

    def _read(self, index: np.ndarray, indices: Any) -> BatchRows:
        pixels = self._images.take(index)
        if self.check:
            _check_finite(pixels, index, self._images.where)
        x = torch.from_numpy(pixels if pixels.dtype == np.float32 else pixels.astype(np.float32))
        if x.dim() == 3:
            x = x.unsqueeze(1)
        elif self.channels_last:
            x = x.permute(0, 3, 1, 2).contiguous()
        x = _transformed(self.transform, x, indices)
        if self._labels is None:
            return BatchRows((x,))
        return BatchRows((x, _label_tensor(self._labels.take(index))))


class MemmapTable(BatchDataset):
    """Catalogue columns read batch by batch: features ``(B, F)`` float32 and the target.

    ``path``: a folder holding one ``<column>.npy`` per column (1-D, memory-mapped);
    an HDF5 file (``group``: the group of 1-D column datasets, or the name of a
    compound table dataset written by astropy; ``None``: the file's root group); or a
    FITS binary table (``hdu``: its index or EXTNAME, default the first extension),
    memory-mapped, with ``TSCAL``/``TZERO`` applied per batch. Parquet: convert once with
    :func:`parquet_to_columns`.
    ``features``: the input columns, in order. ``target``: one column (batches ``(B,)``),
    several (``(B, k)``) or ``None`` (batches are ``x`` alone). Integer targets become
    int64 (class indices), float and bool ones float32.
    ``transform``: applied to each ``x`` batch ``(B, F)``. ``check``: raise on NaN or
    infinite values in a batch's features or target, naming the row.
    """

    def __init__(self, path: PathLike, features: Sequence[str], target: str | Sequence[str] | None = None, *,
                 group: str | None = None, hdu: int | str | None = None, transform: Transform | None = None,
                 check: bool = True):
        self.path = os.fspath(path)
        if isinstance(features, str) or not features:
            raise DeepfieldError("features must be a non-empty list of column names")
        self.features = list(features)
        self.target = target
        targets = [] if target is None else ([target] if isinstance(target, str) else list(target))
        names = self.features + targets
        columns = self._columns(names, group, hdu)
        for name, column in zip(names, columns):
            _check_numbers(column, f"column {name!r}")
            if len(column.shape) != 1:
                raise DeepfieldError(f"{column.where}: column {name!r} has shape {column.shape}; "
                                     "expected one value per row")
        lengths = {len(c) for c in columns}
        if len(lengths) != 1:
            raise DeepfieldError(f"{self.path}: the columns have different lengths {sorted(lengths)}")
        self._n = lengths.pop()
        self._x, self._y = columns[:len(self.features)], columns[len(self.features):]
        self.transform, self.check = transform, check

    def _columns(self, names: list[str], group: str | None, hdu: int | str | None) -> list[_Array]:
        path = self.path
        if os.path.isdir(path):
            present = sorted(p.stem for p in Path(path).glob("*.npy"))
            for name in names:
                if name not in present:
                    raise _no_such(path, "column", name, present)
            return [_npy(os.path.join(path, f"{name}.npy")) for name in names]
        if not os.path.isfile(path):
            raise DeepfieldError(f"{path}: no such file or folder")
        if _is(path, HDF5_SUFFIXES):
            with _open_h5(path) as handle:
                if group and group not in handle:
                    raise _no_such(path, "group or table", group, _hdf5_names(handle))
                node = handle[group] if group else handle
                if isinstance(node, h5py.Dataset):  # an astropy-written compound table
                    present = list(node.dtype.names or ())
                    for name in names:
                        if name not in present:
                            raise _no_such(f"{path}:{group}", "column", name, present)
                    return [_hdf5(path, handle, group, name) for name in names]
                prefix = f"{group.strip('/')}/" if group else ""
                present = [k for k in node if isinstance(node[k], h5py.Dataset)]
                for name in names:
                    if name not in present:
                        raise _no_such(f"{path}:{group or '/'}", "column", name, present)
                return [_hdf5(path, handle, prefix + name) for name in names]
        if _is(path, FITS_SUFFIXES):
            return _fits_columns(path, names, hdu)
        if path.lower().endswith((".parquet", ".parq", ".pq")):
            raise DeepfieldError(f"{path}: Parquet is compressed and cannot be memory-mapped; convert it once "
                                 "with deepfield.data.memmap.parquet_to_columns(path, folder) and read the folder")
        raise DeepfieldError(f"{path}: expected a folder of .npy columns, an HDF5 file or a FITS table")

    @property
    def sample_bytes(self) -> int:
        return 4 * len(self._x) + 8 * len(self._y)

    def _read(self, index: np.ndarray, indices: Any) -> BatchRows:
        x = np.empty((len(index), len(self._x)), np.float32)
        for j, column in enumerate(self._x):
            x[:, j] = column.take(index)
        if self.check:
            _check_finite(x, index, f"{self.path} (features)")
        xt = _transformed(self.transform, torch.from_numpy(x), indices)
        if not self._y:
            return BatchRows((xt,))
        values = [column.take(index) for column in self._y]
        y = values[0] if len(values) == 1 else np.stack(values, axis=1)
        if self.check:
            _check_finite(y, index, f"{self.path} (target)")
        return BatchRows((xt, _label_tensor(y)))


def _fits_columns(path: str, names: list[str], hdu: int | str | None) -> list[_Array]:
    from astropy.io import fits

    try:
        hdul = fits.open(path, memmap=True)
    except (OSError, ValueError) as error:
        raise DeepfieldError(f"{path}: not a readable FITS file ({error})") from None
    with hdul:
        try:
            table = hdul[1 if hdu is None else hdu]
        except (KeyError, IndexError):
            raise DeepfieldError(f"{path}: no HDU {hdu!r}") from None
        if not isinstance(table, fits.BinTableHDU):
            raise DeepfieldError(f"{path}: HDU {hdu if hdu is not None else 1!r} is not a binary table")
        present = list(table.columns.names)
        for name in names:
            if name not in present:
                raise _no_such(path, "column", name, present)
        index = hdul.index_of(1 if hdu is None else hdu)
        logical = [c.name for c in table.columns if c.name in names and c.format.format == "L"]
        if logical:
            raise DeepfieldError(f"{path}: column {logical[0]!r} is logical (T/F); expected numbers")
        offset, rows = hdul.fileinfo(index)["datLoc"], table.header["NAXIS2"]
        # the raw record layout: FITS stores big-endian; TSCAL/TZERO are applied per batch
        raw = np.dtype([(c.name, np.dtype(c.format.recformat).newbyteorder(">")) for c in table.columns])
        if raw.itemsize != table.header["NAXIS1"]:
            raise DeepfieldError(f"{path}: the table has variable-length or unsupported columns; "
                                 "convert it to .npy columns")
        scales = {c.name: (c.bscale, c.bzero) for c in table.columns}
    opener = partial(_open_fits, path, raw, offset, rows)
    columns = []
    for name in names:
        scale, zero = scales[name]
        scaled = None if scale in (None, 1) and zero in (None, 0) else (scale or 1.0, zero or 0.0)
        columns.append(_Array(opener, (rows, *raw[name].shape), raw[name], f"{path}[{name}]", name, scaled))
    return columns


def parquet_to_columns(path: PathLike, folder: PathLike, columns: Sequence[str] | None = None) -> Path:
    """Write the columns of a Parquet file to ``folder/<column>.npy``, one row group at a time.

    Never holds more than one row group; null cells become NaN in float columns (an
    integer column with nulls is refused). Returns ``folder``, ready for :class:`MemmapTable`.
    """
    import pyarrow.parquet as pq

    source, folder = os.fspath(path), Path(folder)
    try:
        parquet = pq.ParquetFile(source)
    except Exception as error:  # pyarrow raises several kinds
        raise DeepfieldError(f"{source}: not a readable Parquet file ({error})") from None
    schema = parquet.schema_arrow
    names = list(columns) if columns is not None else schema.names
    for name in names:
        if name not in schema.names:
            raise _no_such(source, "column", name, schema.names)
    folder.mkdir(parents=True, exist_ok=True)
    rows = parquet.metadata.num_rows
    outputs = {}
    for name in names:
        dtype = np.dtype(schema.field(name).type.to_pandas_dtype())
        if dtype.kind not in "biuf":
            raise DeepfieldError(f"{source}: column {name!r} holds {schema.field(name).type}; expected numbers")
        outputs[name] = np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype=dtype, shape=(rows,))
    start = 0
    for group in range(parquet.num_row_groups):
        table = parquet.read_row_group(group, columns=names)
        for name in names:
            column = table.column(name)
            if column.null_count and outputs[name].dtype.kind != "f":
                raise DeepfieldError(f"{source}: column {name!r} has null cells; fill them first")
            values = column.to_numpy()  # nulls → NaN for floats
            outputs[name][start:start + len(values)] = values
        start += table.num_rows
    for array in outputs.values():
        array.flush()
    del outputs
    return folder


# -- the loader ----------------------------------------------------------------------------

FETCH_BYTES = 4 << 20
"""What :func:`loader` reads in one go by default (``chunk="auto"``): a whole number of batches
of about this many bytes. Each read a worker hands over costs the training process a fixed
~0.7 ms (its tensors travel as shared-memory file descriptors) and wakes a worker that competes
for the CPU; reading many small batches at once amortises both."""


class EpochBatchSampler(Sampler[Fetch]):
    """Reads of ``chunk`` batches each, in deepfield's seeded epoch order.

    Epoch ``e`` is ``epoch_order(n, seed, e)`` cut into batches of ``batch_size`` (the last
    one shorter unless ``drop_last``); each :class:`Fetch` holds ``chunk`` consecutive
    batches (fewer at the end). Each pass is the next epoch (starting at ``epoch``; a pass
    begins when its first read is drawn); :meth:`set_epoch` sets the epoch (and the batch
    to start at, to resume mid-epoch) of the next pass. With ``shuffle=False`` every
    epoch is ``0 .. n-1``. ``len()`` counts batches, not reads.
    """

    def __init__(self, n: int, batch_size: int, *, shuffle: bool = True, seed: int = 0, drop_last: bool = False,
                 epoch: int = 0, chunk: int = 1):
        self.batch_size = arguments.integer("batch_size", batch_size, expected="a positive integer")
        self.chunk = arguments.integer("chunk", chunk, expected="a positive integer")
        self.n, self.shuffle, self.drop_last, self.seed = int(n), shuffle, drop_last, int(seed)
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """The next pass gives epoch ``epoch`` from its batch ``start``."""
        self.epoch, self.start = int(epoch), int(start)

    def order(self, epoch: int) -> torch.Tensor:
        """The sample order of ``epoch``."""
        return epoch_order(self.n, self.seed, epoch) if self.shuffle else torch.arange(self.n)

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else math.ceil(self.n / self.batch_size)

    def __iter__(self) -> Iterator[Fetch]:
        # The epoch advances when the first read is drawn, not at iter(): a multi-worker
        # DataLoader makes (and drops) one more iterator than it draws from.
        epoch, start = self.epoch, self.start
        self.set_epoch(epoch + 1)
        order = self.order(epoch).numpy()
        end = len(self) * self.batch_size if self.drop_last else self.n
        step = self.chunk * self.batch_size
        for b in range(start, len(self), self.chunk):
            lo = b * self.batch_size
            yield Fetch(order[lo:min(lo + step, end)], self.batch_size, (self.seed, epoch, b))


class BatchLoader(DataLoader):
    """A ``DataLoader`` over an :class:`EpochBatchSampler`: each read of several batches is cut
    back into batches (views, no copy); ``len()`` is the number of batches per epoch."""

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        size = self.batch_sampler.batch_size  # type: ignore[union-attr]
        for read in super().__iter__():
            parts = read if isinstance(read, (tuple, list)) else (read,)
            n = len(parts[0])
            if n <= size:
                yield read
                continue
            for lo in range(0, n, size):
                batch = tuple(part[lo:lo + size] for part in parts)
                yield batch if isinstance(read, (tuple, list)) else batch[0]

    def __len__(self) -> int:
        return len(self.batch_sampler)  # type: ignore[arg-type]


def loader(dataset: Dataset, batch_size: int = 32, shuffle: bool = True, seed: int = 0, workers: int = 2, *,
           pin_memory: bool | str = "auto", prefetch: int = 2, chunk: int | str = "auto", drop_last: bool = False,
           epoch: int = 0, **options: Any) -> BatchLoader:
    """A ``DataLoader`` giving batches of ``dataset`` in the seeded epoch order, read several at a time.

    ``dataset``: a :class:`MemmapImages` / :class:`MemmapTable` (whole reads through
    ``__getitems__``: one NumPy index per column, no per-sample calls) or any map-style
    dataset of ``(x, y)`` samples (stacked by ``default_collate``).
    Epoch ``e`` (the ``e``-th pass, from ``epoch``) is ``epoch_order(len(dataset), seed, e)``
    cut into batches: the order ``fit(x, y, seed=seed)`` gives arrays, whatever ``workers``.
    ``workers``: worker processes (0: read in the training process); they persist across
    epochs and each keeps ``prefetch`` reads ready. ``chunk``: batches per read;
    ``"auto"`` reads about :data:`FETCH_BYTES` at a time from deepfield's datasets (one
    batch at a time from others). ``pin_memory``: ``"auto"`` pins when CUDA is available
    (pass ``False`` when training on the CPU of a GPU machine).
    ``options``: passed to ``DataLoader`` (``worker_init_fn``, ``multiprocessing_context``,
    ``timeout``, ...).
    """
    workers = arguments.integer("workers", workers, 0, expected="a non-negative integer")
    if pin_memory == "auto":
        pin_memory = torch.cuda.is_available()
    elif not isinstance(pin_memory, bool):
        raise DeepfieldError(f"pin_memory must be True, False or 'auto', got {pin_memory!r}")
    if chunk == "auto":
        sample_bytes = getattr(dataset, "sample_bytes", None)
        chunk = max(1, FETCH_BYTES // max(1, int(batch_size) * sample_bytes)) if sample_bytes else 1
    sampler = EpochBatchSampler(len(dataset), batch_size, shuffle=shuffle, seed=seed,  # type: ignore[arg-type]
                                drop_last=drop_last, epoch=epoch, chunk=chunk)  # type: ignore[arg-type]
    # the workers' base seed from a private generator: making an iterator leaves the global RNG
    # (dropout's) alone, so fit(loader) draws what fit(arrays) draws
    options.setdefault("generator", torch.Generator().manual_seed(int(seed)))
    return BatchLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                       pin_memory=pin_memory, persistent_workers=workers > 0,
                       prefetch_factor=prefetch if workers else None, **options)
