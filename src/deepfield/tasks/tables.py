"""Prediction and feature tables as ``deepfield predict`` and ``features`` write them: CSV, FITS or HDF5,
with ``id``, ``ra``/``dec`` and the ``--keep`` columns carried from the input."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from deepfield import atomic
from deepfield.errors import DeepfieldError
from deepfield.tasks.base import NewData

PREDICTION_FORMATS = {".csv": "ascii.csv", ".fits": "fits", ".fit": "fits", ".h5": "hdf5", ".hdf5": "hdf5"}


def table_format(out: Path, what: str) -> str:
    """The astropy format that ``out``'s suffix names; ``what`` (e.g. ``"predictions"``) for the error."""
    fmt = PREDICTION_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise DeepfieldError(f"{out}: write {what} as .csv, .fits or .h5")
    return fmt


def write_table(table: Table, out: Path, what: str) -> Path:
    """Write ``table`` to ``out`` atomically as CSV, FITS or HDF5 (by suffix; HDF5 path ``what``, with meta).

    Text columns are plain ``str``; FITS gets ASCII text and ``HIERARCH`` keys for meta
    longer than 8 characters, so astropy writes it without a warning.
    """
    fmt = table_format(out, what)
    arrays = [name for name in table.colnames if table[name].ndim > 1]
    if fmt == "ascii.csv" and arrays:  # an image per object (denoise): CSV holds one value per cell
        raise DeepfieldError(f"{out}: the {what} hold an array per object ({', '.join(arrays)}); write them as "
                             ".h5 or .fits")
    options = {"path": what, "serialize_meta": True} if fmt == "hdf5" else {}
    table = fits_ready(table) if fmt == "fits" else plain_text(table)
    atomic.write_with(out, lambda tmp: table.write(tmp, format=fmt, overwrite=True, **options))
    return out


def plain_text(table: Table) -> Table:
    """``table`` with object (and bytes) columns as ``str``, which every format writes."""
    table = table.copy(copy_data=False)
    for name in table.colnames:
        if table[name].dtype.kind in "OS":
            table[name] = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in table[name]], dtype=str)
    return table


def fits_ready(table: Table) -> Table:
    """``table`` as FITS takes it without warnings: ASCII text (others escaped, ``\\u00e9``), meta
    keys longer than 8 characters as ``HIERARCH`` cards, meta values that are not numbers as text."""
    table = plain_text(table)
    for name in table.colnames:
        if table[name].dtype.kind == "U":
            table[name] = np.array([ascii_text(v) for v in table[name]], dtype=str)
    meta = {}
    for key, value in table.meta.items():
        key = ascii_text(str(key))
        if len(key) > 8 or not key.replace("_", "A").replace("-", "A").isalnum():
            key = f"HIERARCH {key}"
        meta[key] = value if isinstance(value, (bool, int, float)) else ascii_text(str(value))
    table.meta = meta
    return table


def ascii_text(text: str) -> str:
    """``text`` with every non-ASCII character escaped (``é`` → ``\\xe9``)."""
    return text.encode("ascii", "backslashreplace").decode("ascii")


def source_name(data: Any) -> str:
    """How errors name ``data``: a file's path, else "the values given"."""
    return str(data) if isinstance(data, (str, os.PathLike)) else "the values given"


def carried_columns(new: NewData, data: str, keep: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """The columns every prediction file starts with: ``id``, ``ra`` and ``dec`` (degrees) when
    the file says (WCS of FITS cutouts, or such columns of a catalogue, any case), then ``keep``."""
    columns = {"id": np.asarray(new.ids).astype(str)}
    by_lower = {name.lower(): name for name in new.columns}
    for name in ("ra", "dec"):
        if name in by_lower:
            columns[name] = np.asarray(new.columns[by_lower[name]])
    unknown = [name for name in keep if name not in new.columns and name != "id"]
    if unknown:
        available = ", ".join(new.columns) or "none (give a table with --labels TABLE --id-column COLUMN)"
        raise DeepfieldError(f"--keep: {data} has no column {', '.join(map(repr, unknown))}; its columns are "
                             f"{available}")
    columns.update({name: np.asarray(new.columns[name]) for name in keep if name != "id"})
    return columns
