"""The progress display of fit/evaluate: a rich bar per epoch, refreshed a few times a second.

The training loop calls :meth:`EpochProgress.advance` after every step; it only compares
``time.perf_counter()`` with the next refresh time and returns. Values shown (running
loss, metrics) are read through a callable at refresh time, so the host waits for the
device at most ``refresh_per_second`` times a second, never once per step.

``verbose=1`` shows the bars, ``verbose=2`` one line per epoch, ``verbose=0`` nothing
(the loop then holds no progress object at all).
"""
from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.table import Column
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

Reader = Callable[[], dict[str, float]]


def format_logs(logs: dict[str, float]) -> str:
    """``loss: 0.4121 - accuracy: 0.8125`` (Keras's order: as given)."""
    return " - ".join(f"{k}: {v:.4g}" for k, v in logs.items())


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


class EpochProgress:
    """One bar per epoch: step count, samples/s, ETA (elapsed when done), loss and metrics."""

    def __init__(self, verbose: int = 1, refresh_per_second: float = 4.0, console: Console | None = None):
        self.verbose = verbose
        self.interval = 1.0 / refresh_per_second
        self.console = console or Console()
        self._bar = Progress(
            TextColumn("{task.description}", table_column=Column(no_wrap=True)),
            BarColumn(bar_width=20), MofNCompleteColumn(table_column=Column(no_wrap=True)),
            TextColumn("{task.fields[timing]} - {task.fields[logs]}", table_column=Column(overflow="fold")),
            console=self.console, auto_refresh=False, transient=False,
        ) if verbose == 1 else None
        self._task: TaskID | None = None
        self._read: Reader = dict
        self._started = self._next = 0.0
        self._start_step = self._step = self._samples = 0
        self._steps: int | None = None
        self._title = ""

    def __enter__(self) -> EpochProgress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def start(self, title: str, steps: int | None, start_step: int, read: Reader) -> None:
        """Begin a bar for ``steps`` batches (``None``: unknown), resuming at ``start_step``."""
        self._read, self._steps, self._title = read, steps, title
        self._started = time.perf_counter()
        self._next = self._started + self.interval
        self._start_step = self._step = start_step
        self._samples = 0
        if self._bar is not None:
            self._task = self._bar.add_task(title, total=steps, completed=start_step, timing="", logs="")
            self._bar.refresh()

    def advance(self, step: int, samples: int) -> None:
        """After step ``step`` (1-based within the epoch), ``samples`` seen since ``start``."""
        self._step, self._samples = step, samples
        now = time.perf_counter()
        if now >= self._next and self._bar is not None:
            self._next = now + self.interval
            self._show(now, done=False)

    def finish(self, logs: dict[str, float]) -> None:
        """Close the epoch's bar (or print its line) with the final ``logs``."""
        now = time.perf_counter()
        self._read = lambda: logs
        if self._bar is not None:
            self._show(now, done=True)
        elif self.verbose == 2:
            elapsed = now - self._started
            self.console.print(f"{self._title} - {_duration(elapsed)} - {self._rate(elapsed)} - "
                               f"{format_logs(logs)}", highlight=False)

    def _rate(self, elapsed: float) -> str:
        return f"{self._samples / elapsed:,.0f} samples/s" if elapsed > 0 else ""

    def _show(self, now: float, done: bool) -> None:
        step, elapsed = self._step, now - self._started
        timing = self._rate(elapsed)
        if done:
            timing += f" {_duration(elapsed)}"
        elif self._steps and step > self._start_step:
            remaining = elapsed / (step - self._start_step) * (self._steps - step)
            timing += f" ETA {_duration(remaining)}"
        assert self._bar is not None and self._task is not None
        self._bar.update(self._task, completed=step, timing=timing, logs=format_logs(self._read()))
        self._bar.refresh()
