"""Per-sample training noise that does not depend on how many processes share a batch.

Layers that draw random numbers per sample while training (``Dropout``,
``SpatialDropout``, the Bayesian layers) draw through :func:`draw`. Alone, that is an
ordinary draw from torch's global generator. In a data-parallel fit each process runs
its rows of every global batch (:mod:`deepfield.training.distributed`); its strategy
(``DataParallel.step``) then runs every step inside :func:`global_batch`, and :func:`draw` draws the noise of the
whole global batch from a generator that every process holds in the same state, then
keeps this process's rows. Each sample gets the noise one process would have given it,
so a fit on arrays with dropout gives the same losses and weights on 1 or N processes.

Only CPU draws take part: on GPUs the layers draw from each process's own CUDA
generator (torch's fused dropout takes no generator), so there N processes equal one
statistically, not draw for draw.

>>> with global_batch(offset=4, rows=4, total=8, generator=shared):   # rank 1 of 2, batch of 8
...     mask = draw((4, 16), lambda shape, gen: torch.rand(shape, generator=gen), torch.device("cpu"))
>>> # mask == rows 4..7 of torch.rand((8, 16), generator=shared)
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

Sampler = Callable[[tuple[int, ...], "torch.Generator | None"], torch.Tensor]


@dataclass(frozen=True)
class GlobalBatch:
    """This process's ``rows`` samples, from ``offset`` in a global batch of ``total`` (a process
    without samples runs one stand-in row of weight 0: ``rows`` 1, ``offset`` clipped to the last row)."""

    offset: int
    rows: int
    total: int
    generator: torch.Generator


_current: GlobalBatch | None = None


@contextlib.contextmanager
def global_batch(offset: int, rows: int, total: int, generator: torch.Generator) -> Iterator[None]:
    """Within: CPU draws of ``rows`` samples are this process's rows of the global batch's draw."""
    global _current
    before, _current = _current, GlobalBatch(offset, rows, total, generator)
    try:
        yield
    finally:
        _current = before


def draw(shape: tuple[int, ...] | torch.Size, sample: Sampler, device: torch.device) -> torch.Tensor:
    """``sample(shape, generator)``: noise for a batch whose first axis is the samples.

    Inside :func:`global_batch` on the CPU, when ``shape[0]`` is this process's row count:
    ``sample((total, *shape[1:]), shared generator)``, this process's rows of it.
    Otherwise (alone, on a GPU, or a tensor whose first axis is not the batch): ``sample(shape, None)``,
    torch's global generator of this process.
    """
    shape = tuple(shape)
    batch = _current
    if batch is None or device.type != "cpu" or not shape or shape[0] != batch.rows:
        return sample(shape, None)
    full = sample((batch.total, *shape[1:]), batch.generator)
    start = min(batch.offset, batch.total - shape[0])
    return full[start:start + shape[0]]
