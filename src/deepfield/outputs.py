"""The one check before a command writes a file or folder the user named: outputs never replace inputs.

``deepfield predict``, ``features``, ``explain`` and ``simulate`` call :func:`check_output` before
they compute anything. Paths are compared as the file system sees them (``os.path.samefile``:
symlinks, relative paths, ``..`` and case-insensitive file systems all count as the same file).
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from deepfield.errors import DeepfieldError

StrPath = str | os.PathLike[str]


def check_output(out: StrPath, *, inputs: Iterable[StrPath | None] = (), runs: Iterable[StrPath] = (),
                 overwrite: bool = False, folder: str | None = None) -> Path:
    """Refuse an output path that would spoil an input, a run folder, or (without ``overwrite``) a file.

    Args:
        out: the file (or, with ``folder``, the folder) the command is about to write.
        inputs: the files and folders the command reads (``None`` entries are skipped): ``out`` may
            not be one of them.
        runs: run folders the command reads: ``out`` may not be one of them nor lie inside one (nor
            inside any folder :func:`run_around` recognises as a run).
        overwrite: replace an existing output file (or write into any non-empty folder).
        folder: ``out`` is a folder of outputs rather than one file, and this is the name of the file the
            command leaves in it (e.g. ``explain.json``): a folder holding it is the command's earlier
            output and is rewritten; any other non-empty folder needs ``overwrite``.

    Returns:
        ``out`` as a ``Path``.

    Raises:
        DeepfieldError: one line naming ``out`` and what it would have replaced.
    """
    out = Path(out)
    for given in inputs:
        if given is not None and _same(out, Path(given)):
            raise DeepfieldError(f"{out}: this is an input of the command ({given}); write the output to "
                                 "another path, the input is left as it is")
    for run in (*runs, run_around(out)):
        inside = run is not None and any(_same(part, Path(run)) for part in (out, *out.absolute().parents))
        if inside:
            raise DeepfieldError(f"{out}: inside the run folder {run}; write outputs outside it (a run folder "
                                 "holds only what `deepfield train` writes)")
    if overwrite or not out.exists():
        return out
    if folder and out.is_dir():
        if any(out.iterdir()) and not (out / folder).is_file():
            raise DeepfieldError(f"{out}: this folder exists, is not empty and holds no {folder}; pass --overwrite "
                                 "to write into it, or choose a new --out")
        return out
    if out.is_dir():
        raise DeepfieldError(f"{out}: is a folder; --out must name a file")
    if folder:
        raise DeepfieldError(f"{out}: is a file; --out must name a folder")
    raise DeepfieldError(f"{out}: this file exists; pass --overwrite to replace it, or choose a new --out")


def run_around(path: StrPath) -> Path | None:
    """The run folder ``path`` is or lies in, if any: the nearest existing folder holding ``config.yaml``
    beside ``metrics.json`` or ``model.json`` (what ``deepfield train`` writes)."""
    for folder in (Path(path), *Path(path).absolute().parents):
        if (folder / "config.yaml").is_file() and ((folder / "metrics.json").is_file()
                                                   or (folder / "model.json").is_file()):
            return folder
    return None


def _same(a: Path, b: Path) -> bool:
    """``a`` and ``b`` are the same existing file or folder."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # either does not exist (or cannot be reached): nothing there to spoil
        return False


def output_file(out: StrPath) -> Path:
    """A simulator's output file: it may exist (it is replaced) but must not be a folder."""
    path = Path(out)
    if path.is_dir():
        raise DeepfieldError(f"{path}: is a folder; out must name an HDF5 file to write")
    return path
