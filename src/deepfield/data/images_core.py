"""What every image reader shares: the object list, labels, validation, skipping.

A reader is a list of objects on disk. ``reader.read(i)`` opens what object ``i``
needs, reads it and returns its stamp ``(C, H, W)`` float32 in the order of
``reader.bands``; nothing is kept in memory between calls, so a reader streams data
larger than memory and can be pickled to DataLoader workers (file handles are opened
per process on first use, never pickled).

Every stamp is checked as it is read: it must have the shape of the others and every
band must hold at least one finite pixel. A bad object raises :class:`DeepfieldError`
naming the file (or ``file[index]``) and the rule broken. With ``on_error="skip"`` the
reader instead reads every object once when it is built, drops the bad ones and lists
them in ``reader.skipped`` (see :func:`write_skip_report`).
"""
from __future__ import annotations

import contextlib
import csv
import io
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, Union

import numpy as np

from deepfield.atomic import write_text
from deepfield.errors import DeepfieldError

OnError = Literal["raise", "skip"]
T = TypeVar("T")


@dataclass(frozen=True)
class Skipped:
    """One object left out: ``where`` is a file, ``file[index]`` or ``catalogue row r``."""

    where: str
    reason: str


class BadObject(Exception):
    """Raised inside a reader for one bad object; becomes a skip or a :class:`DeepfieldError`."""

    def __init__(self, where: str, reason: str):
        super().__init__(f"{where}: {reason}")
        self.where, self.reason = where, reason


@contextlib.contextmanager
def fatal() -> Iterator[None]:
    """Turn a :class:`BadObject` raised inside into the user's :class:`DeepfieldError`."""
    try:
        yield
    except BadObject as bad:
        raise DeepfieldError(str(bad)) from None


@dataclass(frozen=True)
class CatalogueLabels:
    """Labels joined from a catalogue by an id column.

    ``table``: an astropy ``Table`` or a mapping of column name → array (one row per
    object); ``id_column``: the column holding the object ids (compared as text, so the
    integer 42 matches the file ``42.fits``); ``label_column``: one column name, giving
    labels ``(N,)``, or several, giving ``(N, k)``; ``None`` joins the table for its
    columns only (:meth:`ImageReader.metadata`), with no labels. Masked or NaN labels
    count as missing. A column of class names (text) becomes class indices into
    ``classes`` (default: the sorted distinct names), recorded as the reader's ``classes``;
    a name outside ``classes`` is a bad object. ``source`` names the table in messages.
    Every 1-D column of the table is joined into the reader's :meth:`~ImageReader.metadata`.
    """

    table: Any
    id_column: str
    label_column: str | Sequence[str] | None
    classes: Sequence[str] | None = None
    source: str = "catalogue"


Labels = Union[CatalogueLabels, np.ndarray, Sequence[Any], None]


def check_on_error(on_error: str) -> OnError:
    if on_error not in ("raise", "skip"):
        raise DeepfieldError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    return on_error  # type: ignore[return-value]


def as_ids(values: Any, what: str) -> np.ndarray:
    """Ids ``(N,)`` as an object array of stripped ``str``: ``42``, ``b"42"``, ``"42 "`` all become ``"42"``."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise DeepfieldError(f"{what} must be one id per object (1-D), got shape {array.shape}")
    texts = [(v.decode() if isinstance(v, bytes) else str(v)).strip() for v in array.tolist()]
    return np.array(texts, dtype=object)


def label_array(values: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels as int64 (integers, bools) or float32, and a ``(N,)`` mask of missing rows.

    Missing means masked, or NaN/inf in any column of a float label.
    """
    missing = np.ma.getmaskarray(values)
    array = np.asarray(np.ma.getdata(values))
    if array.dtype.kind in "biu":
        array = array.astype(np.int64)
    elif array.dtype.kind == "f":
        array = array.astype(np.float32)
        missing = missing | ~np.isfinite(array)
    else:
        raise DeepfieldError(f"{what} holds {array.dtype} values; labels must be numbers "
                             "(map class names to integers first)")
    if missing.ndim > 1:
        missing = missing.reshape(len(array), -1).any(axis=1)
    return array, missing


def few(items: Sequence[str], limit: int = 3) -> str:
    """``'a', 'b', 'c' and 4 more`` for error messages."""
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


class ProcessLocal(Generic[T]):
    """A value (an open file) made by ``opener()`` on first use in each process, never pickled.

    DataLoader workers get a pickled or forked copy of the reader; each one opens its
    own handle, because h5py and memory-mapped handles must not cross processes.
    """

    def __init__(self, opener: Callable[[], T]):
        self.opener = opener
        self._value: T | None = None
        self._pid: int | None = None

    def get(self) -> T:
        if self._pid != os.getpid():
            self._value, self._pid = self.opener(), os.getpid()
        return self._value  # type: ignore[return-value]

    def __getstate__(self) -> dict[str, Any]:
        return {"opener": self.opener, "_value": None, "_pid": None}


SPECTRUM_CHANNEL = "flux"
"""The name of the one channel of a 1-D array that does not name it (``(N, L)`` spectra)."""


class ArrayLayout:
    """How a row of an image array (one object) becomes a ``(C, H, W)`` stamp of named bands.

    ``shape``: the array's shape, ``(N, H, W)`` (one band) or ``(N, C, H, W)`` /
    ``(N, H, W, C)`` as ``channels`` says ("first" or "last"; required for 4-D arrays).
    ``file_bands``: the band names the file itself records, if any; then ``bands`` picks
    and orders some of them (``None``: all). Otherwise ``bands`` must name every channel.
    ``ndim``: the axes of one channel: 2 for images, 1 for spectra and light curves
    (``(N, L)`` or ``(N, C, L)`` / ``(N, L, C)`` arrays, rows ``(C, L)``; one unnamed
    channel is called ``SPECTRUM_CHANNEL``).
    """

    def __init__(self, shape: tuple[int, ...], where: str, bands: Sequence[str] | None,
                 channels: str | None, file_bands: Sequence[str] | None = None, ndim: int = 2):
        self.ndim = ndim
        if len(shape) == ndim + 1:
            self.last, count = False, 1
        elif len(shape) == ndim + 2:
            if channels not in ("first", "last"):
                raise DeepfieldError(f"{where} has shape {shape}: say channels='first' {sample_axes(ndim, 'N, C')} "
                                     f"or channels='last' {sample_axes(ndim, 'N', 'C')}, got {channels!r}")
            self.last = channels == "last"
            count = shape[-1] if self.last else shape[1]
        else:
            kind = "images" if ndim == 2 else "spectra"
            raise DeepfieldError(f"{where} has shape {shape}; expected {sample_axes(ndim, 'N')} or "
                                 f"{sample_axes(ndim, 'N, C')} {kind}")
        if ndim == 1 and count == 1 and bands is None and file_bands is None:
            bands = (SPECTRUM_CHANNEL,)
        self.bands, self.select = _pick_bands(where, count, bands, file_bands)

    def stamp(self, row: np.ndarray) -> np.ndarray:
        """``row``: ``(H, W)``, ``(C, H, W)`` or ``(H, W, C)`` → ``(C_selected, H, W)`` (likewise ``(L,)``...)."""
        if row.ndim == self.ndim:
            return row[None]
        if self.last:
            row = np.moveaxis(row, -1, 0)
        return row if self.select is None else row[list(self.select)]


def sample_axes(ndim: int, before: str = "", after: str = "") -> str:
    """``(N, C, H, W)``-style text for error messages: ``ndim`` 2 gives ``H, W``, 1 gives ``L``."""
    axes = ["H, W" if ndim == 2 else "L"]
    return "(" + ", ".join([*([before] if before else []), *axes, *([after] if after else [])]) + ")"


def _pick_bands(where: str, count: int, bands: Sequence[str] | None,
                file_bands: Sequence[str] | None) -> tuple[tuple[str, ...], tuple[int, ...] | None]:
    if file_bands is None:
        if bands is None:
            raise DeepfieldError(f"{where} does not record its band names: name its {count} band(s) with bands=[...]")
        bands = check_bands(bands, where)
        if len(bands) != count:
            raise DeepfieldError(f"{where} holds {count} band(s) per object but {len(bands)} were named: "
                                 f"{', '.join(bands)}")
        return bands, None
    file_bands = tuple(str(b) for b in file_bands)
    if len(file_bands) != count:
        raise DeepfieldError(f"{where} records {len(file_bands)} band names ({', '.join(file_bands)}) "
                             f"but holds {count} channels")
    if bands is None:
        return file_bands, None
    bands = check_bands(bands, where)
    for band in bands:
        if band not in file_bands:
            raise DeepfieldError(f"{where} has no band {band!r}; its bands are {', '.join(file_bands)}")
    return bands, tuple(file_bands.index(b) for b in bands)


def check_bands(bands: Sequence[str], where: str) -> tuple[str, ...]:
    """``bands`` as a tuple of distinct, non-empty names; a bare string is an error, not letters."""
    if isinstance(bands, str):
        raise DeepfieldError(f"{where}: bands must be a list of names such as ['g', 'r'], got the string {bands!r}")
    bands = tuple(str(b) for b in bands)
    if not bands or len(set(bands)) != len(bands) or not all(bands):
        raise DeepfieldError(f"{where}: bands must be distinct, non-empty names, got {list(bands)}")
    return bands


class ImageReader:
    """Objects on disk, read one at a time as ``(C, H, W)`` float32 stamps.

    Attributes: ``bands`` (channel names, in order), ``shape`` ``(C, H, W)`` of every
    stamp, ``ids`` ``(N,)`` text, ``labels`` ``(N,)`` or ``(N, k)`` int64/float32 or
    ``None``, ``classes`` (class names the file records, or ``None``), ``skipped``.

    A subclass sets ``bands`` and ``source`` (its file or folder), implements
    ``_load(item)`` (the raw stamp ``(C, H, W)``, raising :class:`BadObject`) and
    ``_where(item)``, then calls ``_finish(ids, labels)``.
    """

    bands: tuple[str, ...]
    source: str
    classes: tuple[str, ...] | None = None
    sample_ndim = 2
    """The axes of one channel: 2 for images ``(C, H, W)``, 1 for spectra ``(C, L)``."""
    wavelength: np.ndarray | None = None
    """Spectra: the ``(L,)`` grid stored beside them, if any (:func:`deepfield.data.spectra.open_spectra`)."""

    def __init__(self, on_error: str):
        self.on_error = check_on_error(on_error)
        self.skipped: list[Skipped] = []
        self._meta: dict[str, np.ndarray] = {}  # per object of ``_ids``: columns joined from a table

    # -- for subclasses ---------------------------------------------------------------------

    def _load(self, item: int) -> np.ndarray:
        raise NotImplementedError

    def _where(self, item: int) -> str:
        raise NotImplementedError

    def _reject(self, where: str, reason: str) -> None:
        """Raise for a bad object, or record it as skipped."""
        if self.on_error == "raise":
            raise DeepfieldError(f"{where}: {reason}")
        self.skipped.append(Skipped(where, reason))

    def _finish(self, ids: Any, labels: Labels) -> None:
        """Attach ids and labels, then fix the stamp shape (reading everything when skipping)."""
        self._ids = as_ids(ids, f"ids for {self.source}")
        if len(set(self._ids)) != len(self._ids):
            repeated = [i for i, c in Counter(self._ids).items() if c > 1]
            raise DeepfieldError(f"{self.source}: ids must be unique; repeated: {few(repeated)}")
        keep = np.ones(len(self._ids), bool)
        self._labels, missing = self._attach_labels(labels, keep)
        for item in np.flatnonzero(keep & missing):
            self._reject(self._where(item), "its label is missing (NaN or masked)")
            keep[item] = False
        self._items = np.flatnonzero(keep)
        if self.on_error == "skip":
            self.shape = self._scan()
        elif len(self._items):
            with fatal():
                self.shape = self._checked(self._items[0]).shape
        if not len(self._items):
            first = f"; first: {self.skipped[0].where}: {self.skipped[0].reason}" if self.skipped else ""
            raise DeepfieldError(f"{self.source}: no objects left to read{first}")

    # -- public -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._items)

    @property
    def ids(self) -> np.ndarray:
        return self._ids[self._items]

    @property
    def labels(self) -> np.ndarray | None:
        return None if self._labels is None else self._labels[self._items]

    def read(self, index: int) -> np.ndarray:
        """The stamp of object ``index``: ``(C, H, W)`` float32, in the order of ``bands``."""
        item = int(self._items[index])
        with fatal():
            stamp = self._checked(item)
            if stamp.shape != self.shape:
                raise BadObject(self._where(item), f"stamp has shape {stamp.shape} but the others have "
                                f"{self.shape}; all stamps must share one shape")
        return stamp

    def metadata(self) -> dict[str, np.ndarray]:
        """Per-object columns ``(N,)`` in the order of ``ids``: those of a joined label table
        (:class:`CatalogueLabels`) and what the files say (FITS cutouts: ``ra``, ``dec``)."""
        return {name: values[self._items] for name, values in self._meta.items()}

    def label(self, index: int) -> np.ndarray | None:
        """The label of object ``index``: a 0-d or ``(k,)`` int64/float32 array, or ``None``."""
        return None if self._labels is None else self._labels[self._items[index]]

    def label_counts(self) -> list[tuple[str, int]]:
        """How many objects carry each label value, in sorted order: ``[("spiral", 3), ...]``.

        Integer labels are named by ``classes`` where the reader has them, other values are
        written as they are (the elements of ``(k,)`` labels counted one by one); ``[]`` unlabelled.
        """
        if self.labels is None:
            return []
        values, counts = np.unique(np.asarray(self.labels), return_counts=True)
        named = bool(self.classes) and values.dtype.kind in "iu"
        return [(str(self.classes[int(v)]) if named else str(v), int(c)) for v, c in zip(values, counts)]

    def load(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Everything in memory: images ``(N, C, H, W)`` float32 and labels (or ``None``)."""
        images = np.empty((len(self), *self.shape), np.float32)
        for index in range(len(self)):
            images[index] = self.read(index)
        return images, self.labels

    # -- internals ------------------------------------------------------------------------------

    def _checked(self, item: int) -> np.ndarray:
        stamp = np.array(self._load(item), dtype=np.float32)  # a copy: never a view into a memory map
        if stamp.ndim != 1 + self.sample_ndim or len(stamp) != len(self.bands):
            raise BadObject(self._where(item), f"stamp has shape {stamp.shape}; expected "
                            f"{sample_axes(self.sample_ndim, str(len(self.bands)))} for bands {', '.join(self.bands)}")
        empty = ~np.isfinite(stamp).reshape(len(stamp), -1).any(axis=1)
        if empty.any():
            band = self.bands[int(np.argmax(empty))]
            raise BadObject(self._where(item), f"band {band!r} has no finite pixel (all NaN or inf)")
        return stamp

    def _scan(self) -> tuple[int, ...]:
        """Read every object once; skip the unreadable and those not of the commonest shape."""
        shapes: dict[int, tuple[int, ...]] = {}
        for item in self._items:
            try:
                shapes[int(item)] = self._checked(item).shape
            except BadObject as bad:
                self.skipped.append(Skipped(bad.where, bad.reason))
        if not shapes:
            self._items = np.array([], np.int64)
            return ()
        common = Counter(shapes.values()).most_common(1)[0][0]
        for item, shape in shapes.items():
            if shape != common:
                self.skipped.append(Skipped(self._where(item), f"stamp has shape {shape} but most have {common}"))
        self._items = np.array([i for i, s in shapes.items() if s == common], np.int64)
        return common

    def _attach_labels(self, labels: Labels, keep: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """Labels per item (``None`` if unlabelled) and the ``(N,)`` missing mask; may clear ``keep``."""
        n = len(self._ids)
        if labels is None:
            return None, np.zeros(n, bool)
        if isinstance(labels, CatalogueLabels):
            return self._join(labels, keep)
        values, missing = label_array(labels, f"labels for {self.source}")
        if len(values) != n:
            raise DeepfieldError(f"labels have {len(values)} rows but {self.source} has {n} objects")
        return values, missing

    def _join(self, catalogue: CatalogueLabels, keep: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        table, id_column, source = catalogue.table, catalogue.id_column, catalogue.source
        names = list(getattr(table, "colnames", None) or table.keys())
        label = catalogue.label_column
        columns = [] if label is None else [label] if isinstance(label, str) else list(label)
        for column in [id_column, *columns]:
            if column not in names:
                raise DeepfieldError(f"{source} has no column {column!r}; its columns are {', '.join(names)}")
        cat_ids = as_ids(table[id_column], f"{source} column {id_column!r}")
        rows = {cid: row for row, cid in enumerate(cat_ids)}
        if len(rows) != len(cat_ids):
            repeated = [i for i, c in Counter(cat_ids).items() if c > 1]
            raise DeepfieldError(f"{source} column {id_column!r} repeats ids: {few(repeated)}")
        values, missing_rows, unknown = self._label_values(catalogue, columns, len(cat_ids))

        unmatched = [item for item, oid in enumerate(self._ids) if oid not in rows]
        image_ids = set(self._ids)
        orphans = [] if label is None else [row for row, cid in enumerate(cat_ids) if cid not in image_ids]
        if self.on_error == "raise" and (unmatched or orphans):
            problems = []
            if unmatched:
                problems.append(f"{len(unmatched)} object(s) have no row in {source} with that {id_column!r}: "
                                + few([f"{self._where(i)} (id {self._ids[i]!r})" for i in unmatched]))
            if orphans:
                problems.append(f"{len(orphans)} row(s) of {source} have no image: "
                                + few([f"row {r} (id {cat_ids[r]!r})" for r in orphans]))
            raise DeepfieldError("; ".join(problems) + " (on_error='skip' leaves them out)")
        for item in unmatched:
            self.skipped.append(Skipped(self._where(item), f"id {self._ids[item]!r} is not in {source} column "
                                                           f"{id_column!r}"))
            keep[item] = False
        for row in orphans:
            self.skipped.append(Skipped(f"{source} row {row}", f"id {cat_ids[row]!r} has no image"))
        index = np.array([rows.get(oid, 0) for oid in self._ids], np.int64)
        self._meta.update({name: table_column(table[name])[index] for name in names
                           if np.ndim(table[name]) == 1})
        for item in np.flatnonzero(keep & unknown[index]):
            self._reject(self._where(item), f"label {str(self._meta[columns[0]][item])!r} in {source} column "
                                            f"{columns[0]!r} is not one of the classes {few(list(self.classes))}")
            keep[item] = False
        if values is None:
            return None, np.zeros(len(self._ids), bool)
        return values[index], missing_rows[index]

    def _label_values(self, catalogue: CatalogueLabels, columns: list[str], n_rows: int,
                      ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """Labels per table row, the ``(rows,)`` missing mask and the mask of unknown class names."""
        table, source = catalogue.table, catalogue.source
        unknown = np.zeros(n_rows, bool)
        if not columns:
            return None, np.zeros(n_rows, bool), unknown
        texts = [c for c in columns if np.asarray(table[c]).dtype.kind in "USO"]
        if texts:
            if len(columns) > 1:
                raise DeepfieldError(f"{source} column {texts[0]!r} holds class names; class names come "
                                     "from one label column, not several")
            values, missing, self.classes = class_indices(table[texts[0]], catalogue.classes)
            return values, missing, ~missing & (values < 0)
        parts = [label_array(table[c], f"{source} column {c!r}") for c in columns]
        values = parts[0][0] if len(parts) == 1 else np.stack([p[0] for p in parts], axis=1)
        if len(parts) > 1 and any(p[0].dtype.kind == "f" for p in parts):
            values = values.astype(np.float32)
        return values, np.any([p[1] for p in parts], axis=0), unknown


def class_indices(column: Any, classes: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Class names ``(N,)`` as int64 indices into ``classes`` (default: the sorted distinct names).

    Returns the indices (-1 for a name not in ``classes``), the mask of missing names
    (masked or blank) and the classes.
    """
    names = as_ids(np.ma.getdata(column), "class names")
    missing = np.ma.getmaskarray(column) | (names == "")
    classes = tuple(classes) if classes else tuple(sorted(set(names[~missing])))
    lookup_index = {name: k for k, name in enumerate(classes)}
    values = np.array([lookup_index.get(name, -1) for name in names], np.int64)
    return values, missing, classes


def table_column(column: Any) -> np.ndarray:
    """A table column ``(N,)`` as a plain array: masked floats become NaN, masked text blank."""
    data = np.asarray(np.ma.getdata(column))
    mask = np.ma.getmaskarray(column)
    if mask.any() and data.dtype.kind == "f":
        data = np.where(mask, np.nan, data)
    elif mask.any() and data.dtype.kind in "USO":
        data = np.where(mask, "", data)
    return data


def write_skip_report(skipped: Sequence[Skipped], output_path: str | os.PathLike[str]) -> Path:
    """Write the list beside the output, atomically, and return its path.

    ``out/predictions.csv -> out/predictions.skipped.csv`` (the output's extension is
    dropped; ``out/run -> out/run.skipped.csv``).
    The first line is a comment with the count (``# 3 objects skipped``), then a CSV
    table with columns ``where,reason``, one row per skipped object.
    """
    output = Path(output_path)
    target = output.with_name(f"{output.stem if output.suffix else output.name}.skipped.csv")
    buffer = io.StringIO()
    buffer.write(f"# {len(skipped)} object{'s' * (len(skipped) != 1)} skipped\n")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["where", "reason"])
    writer.writerows([s.where, s.reason] for s in skipped)
    write_text(target, buffer.getvalue())
    return target


def lookup(container: Mapping[str, Any], name: str, where: str) -> Any:
    """``container[name]`` (an HDF5 dataset, an npz member), or an error listing what there is."""
    if name not in container:
        raise DeepfieldError(f"{where} has no array {name!r}; it has: {', '.join(sorted(container))}")
    return container[name]


def named_columns(container: Mapping[str, Any], spec: Any, where: str) -> Any:
    """Ids or labels given by name: ``"ans"`` → that array ``(N,)``, ``["z", "mass"]`` → ``(N, 2)``.

    Anything else (an array, :class:`CatalogueLabels`, ``None``) is returned as given.
    """
    if isinstance(spec, str):
        return np.asarray(lookup(container, spec, where)[()])
    if isinstance(spec, (list, tuple)) and spec and all(isinstance(s, str) for s in spec):
        return np.column_stack([np.asarray(lookup(container, s, where)[()]) for s in spec])
    return spec
