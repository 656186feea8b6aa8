"""One writer per run folder: a lock file naming the process that holds it.

``with hold(folder, "deepfield train"):`` takes ``folder/.deepfield.lock`` or raises a
``DeepfieldError`` naming the holder (pid, host, command, since when). The lock is the
kernel's ``flock`` on that file, so a killed holder releases it by dying: a lock file left
behind by a dead process is stale and the next writer simply takes it (nothing to clean by
hand). The file's text (JSON: pid, host, command, started) is only there to name the holder.

Written here rather than with the ``filelock`` package (which torch brings): its native locks
open the file with ``O_TRUNC``, so a refused second writer would erase the holder's name the
refusal must show. POSIX only (``fcntl``), as the rest of the run folder's guarantees are.
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from deepfield.atomic import write_error
from deepfield.errors import DeepfieldError

LOCK_FILE = ".deepfield.lock"


@contextlib.contextmanager
def hold(folder: str | os.PathLike[str], command: str) -> Iterator[Path]:
    """Hold ``folder``'s lock while the block runs (the folder is created if needed; when it was
    created here and the block leaves it empty, it is removed again). Yields the lock file's path."""
    folder = Path(folder)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(exc, folder, refused=True) or DeepfieldError(f"{folder}: cannot create the run "
                                                                       f"folder ({exc.strerror})") from None
    path = folder / LOCK_FILE
    fd = _acquire(path, command)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)  # before closing: a waiter that opened this file sees it replaced
        os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty: a run that failed before writing anything


def _acquire(path: Path, command: str) -> int:
    """The open, locked descriptor of ``path``, with this process named in it."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise write_error(exc, path, refused=True) or exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise DeepfieldError(busy_message(path)) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # else the holder removed the file between our open and flock: take the new one
            break
        os.close(fd)
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
              "started": datetime.datetime.now().isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.write(fd, (json.dumps(holder) + "\n").encode("utf-8"))
    return fd


def holder(path: Path) -> dict[str, str] | None:
    """What the lock file at ``path`` says of its holder (``None``: unreadable or empty)."""
    try:
        text = path.read_text(encoding="utf-8")[:1000]
        found = json.loads(text)
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def busy_message(path: Path) -> str:
    """The line refusing a second writer: who holds the run and how to go on."""
    found = holder(path) or {}
    who = (f"process {found.get('pid', '?')} on {found.get('host', '?')} ({found.get('command', 'deepfield')}, "
           f"since {found.get('started', '?')})")
    return (f"{path.parent}: another deepfield is writing this run folder: {who}; wait for it to end or stop it "
            f"(the lock {path} frees itself when that process ends)")
