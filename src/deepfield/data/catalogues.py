"""Catalogue tables from FITS, CSV/ECSV, Parquet and HDF5 files, as ``astropy.table.Table``.

``read_catalogue`` picks the reader from the file name (or ``format=``) and keeps
column units, descriptions and table metadata. HDF5 comes in two layouts, both read:

- an astropy-written table: one compound dataset (``Table.write(..., format="hdf5")``);
- one 1-D dataset per column inside a group (``photometry/mag_g_lsst``,
  ``photometry/redshift``, ...); ``unit`` and ``description`` attributes of a
  dataset become the column's.

Without ``group=`` the file must hold exactly one of these. Every problem with the
file or a column (missing, unreadable, unknown format, absent column, a value that
is not a number) raises ``DeepfieldError`` in one line naming the file.

The file a table came from is kept in ``table.meta[SOURCE_KEY]`` so later errors
(e.g. from ``deepfield.data.photometry``) can name it.
"""
from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from astropy.table import Column, MaskedColumn, Table
from astropy.table.meta import get_header_from_yaml

from deepfield.data.images_core import table_column
from deepfield.errors import DeepfieldError, unknown_name

SOURCE_KEY = "SRCFILE"
"""``table.meta`` key holding the file a catalogue was read from (a legal FITS keyword)."""

FORMATS = ("csv", "ecsv", "fits", "hdf5", "parquet")
"""The values ``format=`` takes."""

SUFFIXES = {
    ".csv": "csv",
    ".ecsv": "ecsv",
    ".fits": "fits",
    ".fit": "fits",
    ".fts": "fits",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
    ".parquet": "parquet",
    ".parq": "parquet",
    ".pq": "parquet",
}
"""File name endings and the format each means (``.gz`` after a text or FITS ending is read too)."""

_ASTROPY_FORMATS = {"csv": "ascii.csv", "ecsv": "ascii.ecsv", "fits": "fits"}
_COMPRESSED = (".gz", ".bz2", ".xz")
_META_SUFFIX = ".__table_column_meta__"  # astropy's serialized-metadata dataset beside an HDF5 table
_READ_ERRORS = (OSError, ValueError, TypeError, KeyError, IndexError, pa.ArrowException)


def read_catalogue(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    columns: Sequence[str] | None = None,
    group: str | None = None,
    hdu: int | str | None = None,
) -> Table:
    """Read a catalogue table.

    ``format``: one of ``FORMATS``; ``None`` picks it from the file ending (``SUFFIXES``).
    ``columns``: keep only these, in this order (each must exist).
    ``group``: HDF5 only, the group of column datasets or the astropy table dataset;
    ``None`` finds the single one in the file. ``hdu``: FITS only, the table HDU (index
    or EXTNAME); ``None`` is astropy's choice (the first table).

    Returns a ``Table`` with ``N`` rows; float NaN stays NaN, blank or null cells are
    masked (``MaskedColumn``), units and descriptions are kept where the format stores them.
    """
    path = Path(path)
    fmt = _format_of(path, format)
    if group is not None and fmt != "hdf5":
        raise DeepfieldError(f"{path}: group= applies to HDF5 files, not {fmt}")
    if hdu is not None and fmt != "fits":
        raise DeepfieldError(f"{path}: hdu= applies to FITS files, not {fmt}")
    if not path.exists():
        raise DeepfieldError(f"{path}: no such file")
    if path.is_dir():
        raise DeepfieldError(f"{path}: is a folder, not a catalogue file")
    try:
        if fmt == "hdf5":
            table = _read_hdf5(path, group)
        elif fmt == "parquet":
            table = _read_parquet(path)
        else:
            options = {"mask_invalid": False, "character_as_bytes": False} if fmt == "fits" else {}
            if hdu is not None:
                options["hdu"] = hdu
            table = Table.read(path, format=_ASTROPY_FORMATS[fmt], **options)
    except DeepfieldError:
        raise
    except _READ_ERRORS as exc:
        raise DeepfieldError(f"{path}: cannot read as {fmt}: {_one_line(exc)}") from exc
    table.meta[SOURCE_KEY] = str(path)
    if columns is not None:
        require_columns(table, columns)
        table = table[list(columns)]
    return table


def row_columns(table: Table) -> dict[str, np.ndarray]:
    """Every 1-D column of ``table`` as a plain array ``(N,)`` (masked floats NaN, masked text
    blank): what a prediction file can carry along (``predict --keep``)."""
    return {name: table_column(table[name]) for name in table.colnames if table[name].ndim == 1}


ROWS_KEY = "deepfield_file_rows"
"""``table.meta`` key holding, for a table of some rows of a file, each row's position in the file."""


def some_rows(table: Table, rows: np.ndarray) -> Table:
    """``table[rows]`` remembering where each row is in the file, for errors (:func:`row_name`).

    ``rows``: (N,) int positions in ``table``."""
    part = table[rows]
    before = table.meta.get(ROWS_KEY)
    positions = np.asarray(rows) if before is None or len(before) != len(table) else np.asarray(before)[rows]
    part.meta[ROWS_KEY] = positions
    return part


def row_name(table: Table, row: int) -> str:
    """Row ``row`` of ``table`` as a person finds it in the file: ``line 18 (data row 17)`` of a CSV
    file (one header line), else ``row 16`` (0-based, as ``table[16]``)."""
    positions = table.meta.get(ROWS_KEY)
    if positions is not None and len(positions) == len(table):
        row = int(positions[row])
    if source_of(table).lower().endswith(".csv"):
        return f"line {row + 2} (data row {row + 1})"
    return f"row {row}"


def source_of(table: Table) -> str:
    """The file ``table`` was read from, or ``"<table>"`` for a table made in memory."""
    return str(table.meta.get(SOURCE_KEY, "<table>"))


def require_columns(table: Table, names: Sequence[str], *, source: str | None = None) -> None:
    """Raise ``DeepfieldError`` naming ``source`` if any of ``names`` is not a column.

    The message lists each missing name with its near matches, then the columns present.
    """
    missing = [name for name in names if name not in table.colnames]
    if not missing:
        return
    parts = []
    for name in missing:
        near = difflib.get_close_matches(name, table.colnames, n=3, cutoff=0.6)
        parts.append(f"{name!r}" + (f" (near: {', '.join(near)})" if near else ""))
    raise DeepfieldError(
        f"{source or source_of(table)}: no column {', '.join(parts)}; columns are: {preview(table.colnames)}"
    )


def numeric_column(table: Table, name: str, *, source: str | None = None) -> np.ndarray:
    """Column ``name`` as float64 ``(N,)``; blank (masked) cells become NaN.

    Text columns are parsed (``"21.3"``, ``"nan"``, ``"99"`` are numbers). A cell that is
    not a number raises ``DeepfieldError`` naming the file, the column, the first
    offending row (:func:`row_name`: the line of a CSV file) and its value.
    """
    source = source or source_of(table)
    require_columns(table, [name], source=source)
    column = table[name]
    if column.ndim != 1:
        raise DeepfieldError(
            f"{source}: column {name!r} has shape {column.shape}; expected one number per row"
        )
    blank = np.ma.getmaskarray(column)
    data = np.asarray(np.ma.getdata(column))
    if data.dtype.kind in "fiu":
        values = data.astype(np.float64)
    elif data.dtype.kind in "USO":
        values = _parse_numbers(table, data, blank, source, name)
    else:
        row = int(np.argmin(blank)) if len(data) else 0
        shown = data[row].item() if len(data) else "(no rows)"
        raise DeepfieldError(
            f"{source}: column {name!r} holds {data.dtype} values ({row_name(table, row)}: {shown!r}), not numbers"
        )
    values[blank] = np.nan
    return values


def preview(names: Sequence[str], limit: int = 20) -> str:
    """``names`` joined by commas, cut after ``limit`` with a count of the rest."""
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _parse_numbers(table: Table, data: np.ndarray, blank: np.ndarray, source: str, name: str) -> np.ndarray:
    """Text cells ``(N,)`` as float64; blank cells become NaN; the first non-number raises."""
    values = np.full(len(data), np.nan)
    for row in np.flatnonzero(~blank):
        cell = data[row].item() if isinstance(data[row], np.generic) else data[row]
        try:
            values[row] = float(cell.decode() if isinstance(cell, bytes) else cell)
        except (TypeError, ValueError, UnicodeDecodeError):
            raise DeepfieldError(
                f"{source}: column {name!r} {row_name(table, row)} is {cell!r}, not a number"
            ) from None
    return values


def _format_of(path: Path, format: str | None) -> str:
    """The catalogue format of ``path``: ``format`` checked, or read from the file ending."""
    if format is not None:
        if format not in FORMATS:
            raise DeepfieldError(f"{path}: {unknown_name('catalogue format', format, FORMATS)}")
        return format
    suffixes = [s.lower() for s in path.suffixes]
    if len(suffixes) >= 2 and suffixes[-1] in _COMPRESSED and SUFFIXES.get(suffixes[-2]) in _ASTROPY_FORMATS:
        return SUFFIXES[suffixes[-2]]
    if suffixes and suffixes[-1] in SUFFIXES:
        return SUFFIXES[suffixes[-1]]
    ending = "".join(path.suffixes) or "(none)"
    raise DeepfieldError(
        f"{path}: unknown catalogue file ending {ending!r}; expected one of: "
        f"{', '.join(sorted(SUFFIXES))}, or pass format= one of: {', '.join(FORMATS)}"
    )


def _one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ---------------------------------------------------------------- Parquet


def _read_parquet(path: Path) -> Table:
    """A Parquet file as a Table, with units/descriptions/meta when astropy wrote it.

    Read with pyarrow directly: astropy's own Parquet reader also needs pandas.
    """
    arrow = pq.read_table(path)
    header = _astropy_header(arrow.schema.metadata)
    table = Table(meta=header.get("meta", {}))
    for name, chunks in zip(arrow.column_names, arrow.columns):
        table[name] = _arrow_column(name, chunks)
    for info in header.get("datatype", []):
        if info.get("name") in table.colnames:
            column = table[info["name"]]
            column.unit = info.get("unit")
            column.description = info.get("description")
    return table


def _astropy_header(metadata: dict[bytes, bytes] | None) -> dict:
    """The column/table metadata astropy stores as YAML in a Parquet schema, or ``{}``."""
    if not metadata or b"table_meta_yaml" not in metadata:
        return {}
    return get_header_from_yaml(metadata[b"table_meta_yaml"].decode("utf-8").split("\n"))


def _arrow_column(name: str, chunks: pa.ChunkedArray) -> Column:
    """One Arrow column as a Column; nulls become masked cells."""
    kind = chunks.type
    is_text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
    if chunks.null_count == 0:
        values = chunks.to_numpy(zero_copy_only=False)
        return Column(values.astype(str) if is_text else values, name=name)
    null = chunks.is_null().to_numpy(zero_copy_only=False)
    if is_text:
        stand_in = pa.scalar("", kind)
    elif pa.types.is_boolean(kind):
        stand_in = pa.scalar(False)
    else:
        stand_in = pa.scalar(0, kind)
    values = chunks.fill_null(stand_in).to_numpy(zero_copy_only=False)
    return MaskedColumn(values.astype(str) if is_text else values, mask=null, name=name)


# ---------------------------------------------------------------- HDF5


def _read_hdf5(path: Path, group: str | None) -> Table:
    """An HDF5 catalogue: an astropy table dataset or a group of 1-D column datasets."""
    with h5py.File(path, "r") as f:
        if group is None:
            group = _only_table(f, path)
        if group not in f:
            raise DeepfieldError(
                f"{path}: no group or dataset {group!r}; tables found: {preview(list(_tables(f))) or '(none)'}"
            )
        node = f[group]
        if isinstance(node, h5py.Dataset):
            if node.dtype.names is None:
                raise DeepfieldError(
                    f"{path}: {group!r} is a plain dataset of shape {node.shape}; give the group holding "
                    "the column datasets, or an astropy table"
                )
        else:
            problem = _column_group_problem(node)
            if problem:
                raise DeepfieldError(f"{path}: group {group!r} is not a table: {problem}")
            return _read_column_group(node)
    return Table.read(path, format="hdf5", path=group, character_as_bytes=False)


def _tables(f: h5py.File) -> dict[str, str]:
    """Everything in ``f`` readable as a table: path -> ``"astropy table"`` or ``"column group"``."""
    found: dict[str, str] = {}

    def visit(name: str, node: h5py.Group | h5py.Dataset) -> None:
        if isinstance(node, h5py.Dataset):
            if node.dtype.names is not None:
                found[name] = "astropy table"
        elif _column_group_problem(node) is None:
            found[name] = "column group"

    visit("/", f)
    f.visititems(visit)
    return found


def _only_table(f: h5py.File, path: Path) -> str:
    """The path of the one table in ``f``; several or none raise ``DeepfieldError``."""
    found = _tables(f)
    if len(found) == 1:
        return next(iter(found))
    if not found:
        raise DeepfieldError(
            f"{path}: no table found (an astropy table dataset, or a group of equal-length 1-D datasets)"
        )
    listed = ", ".join(f"{name} ({kind})" for name, kind in found.items())
    raise DeepfieldError(f"{path}: several tables ({listed}); pass group= one of them")


def _column_datasets(group: h5py.Group) -> list[h5py.Dataset]:
    """The datasets directly in ``group`` that can be columns (not astropy tables or their metadata)."""
    return [
        node
        for key, node in group.items()
        if isinstance(node, h5py.Dataset) and node.dtype.names is None and not key.endswith(_META_SUFFIX)
    ]


def _column_group_problem(group: h5py.Group) -> str | None:
    """Why ``group`` is not a table of 1-D equal-length datasets, or ``None`` if it is one."""
    datasets = _column_datasets(group)
    if not datasets:
        return "it holds no column datasets"
    first = datasets[0]
    for dataset in datasets:
        if dataset.ndim != 1:
            return f"dataset {dataset.name!r} has shape {dataset.shape}; columns are 1-D"
        if dataset.shape != first.shape:
            return f"dataset {dataset.name!r} has {len(dataset)} rows but {first.name!r} has {len(first)}"
    return None


def _read_column_group(group: h5py.Group) -> Table:
    """The 1-D datasets of ``group`` as columns named by their dataset names (group order)."""
    table = Table()
    for dataset in _column_datasets(group):
        if h5py.check_string_dtype(dataset.dtype) is not None:
            values = np.asarray(dataset.asstr()[()], dtype=str)
        else:
            values = dataset[()]
        table[dataset.name.rsplit("/", 1)[-1]] = Column(
            values, unit=_text_attr(dataset, "unit"), description=_text_attr(dataset, "description")
        )
    return table


def _text_attr(dataset: h5py.Dataset, key: str) -> str | None:
    """A text attribute of ``dataset`` (bytes decoded), or ``None``."""
    value = dataset.attrs.get(key)
    return value.decode("utf-8") if isinstance(value, bytes) else value
