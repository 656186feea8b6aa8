"""CSVLogger: one row per epoch (``epoch`` then the log keys, sorted), flushed as written."""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import IO, Any

from deepfield.errors import flag
from deepfield.training.callbacks.base import Callback, Logs


class CSVLogger(Callback):
    """Stream epoch results to a CSV file, as Keras's ``CSVLogger``.

    Args:
        filename: the CSV file; its folder is created.
        separator: the field separator.
        append: add to an existing file instead of overwriting it.

    When training resumes from a backup the file is cut back to the rows written
    before the backup and continued, so no epoch appears twice.
    """

    writes_files = True  # rank 0 only in distributed training

    def __init__(self, filename: str | os.PathLike[str], separator: str = ",", append: bool = False):
        super().__init__()
        self.filename, self.separator = Path(filename), separator
        self.append = flag("CSVLogger", "append", append)
        self.keys: list[str] | None = None
        self.rows = 0
        self._resumed = False
        self._file: IO[str] | None = None
        self._writer: Any = None

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.keys, self.rows, self._resumed = None, 0, False

    def _open(self, keys: list[str]) -> None:
        self.filename.parent.mkdir(parents=True, exist_ok=True)
        if self._resumed:
            self._truncate_to(self.rows)
        keep = (self.append or self._resumed) and self.filename.exists() and self.filename.stat().st_size > 0
        self.keys = keys
        self._file = open(self.filename, "a" if keep else "w", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._file, fieldnames=["epoch", *keys], delimiter=self.separator)
        if not keep:
            self._writer.writeheader()

    def _truncate_to(self, rows: int) -> None:
        if not self.filename.exists():
            return
        with open(self.filename, newline="", encoding="utf-8") as fh:
            lines = fh.readlines()[: rows + 1]
        with open(self.filename, "w", newline="", encoding="utf-8") as fh:
            fh.writelines(lines)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        logs = logs or {}
        if self._file is None:
            self._open(self.keys or sorted(logs))
        assert self.keys is not None and self._file is not None
        self._writer.writerow({"epoch": epoch, **{k: logs.get(k, "NA") for k in self.keys}})
        self._file.flush()
        self.rows += 1

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self._file is not None:
            self._file.close()
            self._file = self._writer = None

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "keys": self.keys}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows, self.keys, self._resumed = state["rows"], state["keys"], True
