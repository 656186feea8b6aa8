"""Deterministic parallel simulation: per-object random streams, chunks over processes, progress.

Every object draws from its own generator seeded by ``(seed, stream, index)``, so the
output does not depend on the number of processes, the chunk size or the order in which
chunks finish. ``run_chunks`` farms ranges of objects out to a ``multiprocessing.Pool``
(or runs them inline for one worker) and hands each finished chunk to the caller in the
parent process, which writes it out while the other chunks are still being drawn.
"""
from __future__ import annotations

import contextlib
import math
import multiprocessing
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")
R = TypeVar("R")

CLASSES_STREAM, GALAXY_STREAM, ARTEFACT_STREAM, SPOIL_STREAM, CATALOGUE_STREAM, STAMP_STREAM = range(6)
PLACEMENT_STREAM, NOISE_STREAM, POPULATION_STREAM, MASK_STREAM = range(6, 10)
"""Independent random streams: a simulator never reuses one for two purposes."""

MAX_CHUNK = 64
"""Objects per chunk at most: small enough for smooth progress, large enough to amortise pickling."""


def stream_rng(seed: int, stream: int, index: int | None = None) -> np.random.Generator:
    """The generator of ``stream`` for the whole run (``index=None``) or for object ``index``."""
    return np.random.default_rng([seed, stream] if index is None else [seed, stream, index])


def chunk_ranges(n: int, workers: int) -> list[range]:
    """Split ``range(n)`` into consecutive chunks, about four per worker, at most ``MAX_CHUNK`` long."""
    size = min(MAX_CHUNK, max(1, math.ceil(n / (4 * workers))))
    return [range(start, min(start + size, n)) for start in range(0, n, size)]


def run_chunks(work: Callable[[T], R], make_task: Callable[[range], T], n: int,
               consume: Callable[[range, R], None], *, workers: int, progress: bool, description: str) -> None:
    """Compute ``work(make_task(rows))`` for chunks of ``range(n)`` and ``consume(rows, result)`` each.

    ``work`` must be a module-level function (it is pickled by name) and the tasks picklable.
    ``consume`` runs in this process, in completion order. ``workers=1`` runs inline. A rich
    progress bar (on stderr, refreshed 4 times a second) counts objects when ``progress``.
    """
    ranges = chunk_ranges(n, workers)
    workers = min(workers, len(ranges))
    with contextlib.ExitStack() as stack:
        if workers > 1:  # fork the workers before the progress bar starts its refresh thread
            pool = stack.enter_context(multiprocessing.Pool(workers))
            results = pool.imap_unordered(_run, [(work, rows, make_task(rows)) for rows in ranges])
        else:
            results = ((rows, work(make_task(rows))) for rows in ranges)
        bar = stack.enter_context(Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), console=Console(stderr=True), refresh_per_second=4, disable=not progress))
        task = bar.add_task(description, total=n)
        for rows, result in results:
            consume(rows, result)
            bar.advance(task, len(rows))


def _run(job: tuple[Callable[[Any], Any], range, Any]) -> tuple[range, Any]:
    work, rows, task = job
    return rows, work(task)
