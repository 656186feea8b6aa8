"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Write to a temporary file in the same folder, flush and fsync it, then
``os.replace`` it over the target (atomic on POSIX and Windows).

A full disk, a file-size limit (``ulimit -f``) or a read-only folder is a
``DeepfieldError`` naming the file (and the free space, or the limit).
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from deepfield.errors import DeepfieldError

_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_REFUSED = {errno.EACCES, errno.EPERM, errno.EROFS}


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target``.

    Use for writers that want a file name (``safetensors.torch.save_file``,
    ``matplotlib.savefig``). On an exception the temporary file is removed and
    ``target`` is left untouched.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise write_error(exc, target, refused=True) or exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        # mkstemp makes the file 0600; give it the mode an ordinary open() would (or the old file's).
        os.chmod(tmp_path, target.stat().st_mode & 0o777 if target.exists() else 0o666 & ~_umask())
        os.replace(tmp_path, target)
    except Exception as exc:  # the writer's too: a full disk shows while writing the temporary file
        error = write_error(exc, target, refused=False, written=_size(tmp_path))
        if error is None:
            raise
        raise error from None
    finally:
        tmp_path.unlink(missing_ok=True)


def write_error(exc: Exception, target: Path, refused: bool, written: int = 0) -> DeepfieldError | None:
    """The one-line error for a write of ``target`` stopped by a full disk or a file-size limit
    (or, ``refused``: while creating the file, a read-only folder); ``None`` for other errors.
    ``written``: bytes of the file written before it stopped (the least space it needs)."""
    code = _errno(exc)
    if code in _FULL:
        free = shutil.disk_usage(_existing(target.parent)).free
        needed = f"; it needs at least {_mb(written)} more" if written else ""
        return DeepfieldError(f"{target}: the disk is full ({_mb(free)} free there{needed}); "
                              "free some space or write elsewhere (out=)")
    if code == errno.EFBIG:
        import resource  # POSIX only, as the limit is

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        shown = "" if limit == resource.RLIM_INFINITY else f" ({_mb(limit)})"
        after = f" after {_mb(written)}" if written else ""
        return DeepfieldError(f"{target}: the file-size limit{shown} stopped the write{after}; "
                              "raise it (ulimit -f) or write elsewhere (out=)")
    if refused and code in _REFUSED:
        return DeepfieldError(f"{target}: cannot write here ({os.strerror(code).lower()}); "
                              "the folder is read-only to you: write elsewhere (out=)")
    return None


def _errno(exc: Exception) -> int | None:
    """The OS error number of ``exc``: an ``OSError``'s, or the ``(os error 28)`` that libraries
    written in Rust (safetensors) put in their messages."""
    if isinstance(exc, OSError):
        return exc.errno
    found = re.search(r"\(os error (\d+)\)", str(exc))
    return int(found.group(1)) if found else None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _existing(folder: Path) -> Path:
    """``folder`` or its nearest existing parent (for the free space of its filesystem)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _mb(size: int) -> str:
    return f"{size / 1e6:.3g} MB" if size >= 1e5 else f"{size} bytes"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


LEFTOVER = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
"""The name of a temporary file :func:`atomic_path` makes (``.NAME.XXXXXXXX.tmp``), left behind when
the process was killed between writing it and renaming it."""


def remove_leftovers(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files killed writers left anywhere under ``folder``; returns them.

    Call it only while no other process writes there (a run folder: under its lock,
    :mod:`deepfield.folder_lock`), or it removes a file another writer is about to rename.
    """
    found = [path for path in Path(folder).rglob(".*.tmp") if LEFTOVER.match(path.name) and path.is_file()]
    for path in found:
        path.unlink(missing_ok=True)
    return found


def write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    """Atomically write ``data`` to ``target``."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | os.PathLike[str], text: str) -> None:
    """Atomically write UTF-8 ``text`` to ``target``."""
    write_bytes(target, text.encode("utf-8"))


def write_with(target: str | os.PathLike[str], writer: Callable[[Path], None]) -> None:
    """Atomically write ``target`` with ``writer(tmp_path)``."""
    with atomic_path(target) as tmp:
        writer(tmp)
