"""The options that say how to read an image file, shared by every command that reads one.

``inspect images``, ``predict``, ``evaluate``, ``explain`` and ``features`` take the same
``--bands --channels --pattern --hdus --images --ids --labels --id-column --label-column``
(the keys of the config's ``data`` section, :data:`~deepfield.tasks.reading.READING_KEYS`).
:func:`reading_options` adds them to a command, which receives the ones given as one
mapping ``reading`` (laid over a run's data config by :func:`~deepfield.tasks.reading.with_reading`).
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from deepfield.cli.common import split_list
from deepfield.errors import DeepfieldError

PANEL = "Reading the file (as the config's data section)"

OPTIONS: dict[str, Any] = {
    "bands": Annotated[Optional[str], typer.Option(
        help="the file's band names in channel order: g,r,i (a run picks and orders the bands it needs)",
        rich_help_panel=PANEL)],
    "channels": Annotated[Optional[str], typer.Option(
        help="axis order of arrays: first (N,C,H,W) or last (N,H,W,C)", rich_help_panel=PANEL)],
    "pattern": Annotated[Optional[str], typer.Option(
        help="file names in a folder: {id}.fits or {id}_{band}.fits", rich_help_panel=PANEL)],
    "hdus": Annotated[Optional[str], typer.Option(
        help="FITS: 0 (each cutout a cube in the primary HDU), 1,2,3 or G,R,I (one HDU per band); "
             "a FITS cube's HDU", rich_help_panel=PANEL)],
    "images": Annotated[Optional[str], typer.Option(
        help="HDF5 dataset / npz key of the images", rich_help_panel=PANEL)],
    "ids": Annotated[Optional[str], typer.Option(
        help="HDF5 dataset / npz key of the object ids (catalogues: the id column)", rich_help_panel=PANEL)],
    "labels": Annotated[Optional[str], typer.Option(
        help="label dataset (HDF5) or key (npz), e.g. ans; or a table file (CSV, FITS, Parquet, HDF5) "
             "joined by --id-column", rich_help_panel=PANEL)],
    "id_column": Annotated[Optional[str], typer.Option(
        help="the --labels table's column of object ids", rich_help_panel=PANEL)],
    "label_column": Annotated[Optional[str], typer.Option(
        help="the --labels table's label column (class names or numbers)", rich_help_panel=PANEL)],
}

KEEP = Annotated[Optional[str], typer.Option(
    help="columns to carry into the table after id (and ra, dec when known), comma-separated: a catalogue's, "
         "a --labels table's or an HDF5 file's per-object datasets")]
"""``--keep`` of the commands that write a table per object (predict, features)."""


def reading_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` with the reading options added; it gets the given ones as ``reading=`` (a dict)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name) for name in OPTIONS}
        return command(*args, reading=reading_document(**given), **kwargs)

    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "reading"]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
             for name, annotation in OPTIONS.items()]
    wrapper.__signature__ = signature.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
    return wrapper


def reading_document(bands: str | None = None, channels: str | None = None, pattern: str | None = None,
                     hdus: str | None = None, images: str | None = None, ids: str | None = None,
                     labels: str | None = None, id_column: str | None = None,
                     label_column: str | None = None) -> dict[str, Any]:
    """The given options as data-config keys: ``--hdus 0`` → ``{"hdus": 0}``, ``--labels t.csv
    --id-column objid`` → ``{"labels": {"table": "t.csv", "id": "objid"}}``.

    ``--labels`` names a table when ``--id-column``/``--label-column`` come with it or it is
    an existing file; otherwise a dataset or key.
    """
    document: dict[str, Any] = {key: value for key, value in
                                (("bands", split_list(bands)), ("channels", channels), ("pattern", pattern),
                                 ("images", images), ("ids", ids)) if value is not None}
    if hdus is not None:
        keys = [int(k) if k.lstrip("-").isdigit() else k for k in split_list(hdus) or []]
        if not keys:
            raise DeepfieldError(f"--hdus {hdus!r}: give an HDU index or name, or one per band (1,2,3)")
        document["hdus"] = keys[0] if len(keys) == 1 and "," not in hdus else keys
    columns = split_list(label_column) if label_column and "," in label_column else label_column
    table = {key: value for key, value in (("id", id_column), ("column", columns)) if value is not None}
    if labels is not None and (table or Path(labels).is_file()):
        document["labels"] = {"table": labels, **table}
    elif labels is not None:
        document["labels"] = labels
    elif table:  # the run's own table, another column
        document["labels"] = table
    return document
