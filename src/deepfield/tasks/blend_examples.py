"""The examples of a deblending run: a blends file's sources, one target per example or all of a blend in slots.

The one-target form (``data.deblend: each``) makes one example per source of each blend; all at once
(``data.deblend: all``) one per blend, its sources in K slots in the file's order (empty slots: NaN centres,
zero stamps). Either is held as rows of K slots (K = 1 for the one-target form), and a run scores the filled
slots row by row (:func:`placed`, :func:`source_stamps`): the same sources in the same order in both forms.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepfield.data.blend_stamps import BlendStamps
from deepfield.errors import DeepfieldError


@dataclass(frozen=True)
class Examples:
    """One example per row with K target slots: ``blends`` (N, C, H, W) and ``sources`` (N, K, C, H, W) raw
    (``sources`` ``None`` when unlabelled; zero in an empty slot), ``x``, ``y`` (N, K) each slot's centre (NaN:
    empty), ``blend`` (N,) the blend's index, ``source`` (N, K) each slot's source index (−1: empty). The
    one-target form: K = 1 and one row per source; all at once: one row per blend and K slots (``all_at_once``)."""

    blends: np.ndarray
    sources: np.ndarray | None
    x: np.ndarray
    y: np.ndarray
    blend: np.ndarray
    source: np.ndarray
    all_at_once: bool

    @property
    def ids(self) -> np.ndarray:
        if self.all_at_once:
            return self.blend.astype(str)
        return np.array([f"{b}:{s}" for b, s in zip(self.blend, self.source[:, 0])])

    @property
    def columns(self) -> dict[str, np.ndarray]:
        """What a prediction file may keep of each row (``--keep``): ``blend``, ``source`` (one-target form) or
        ``n_sources`` (all at once), and ``x``, ``y`` (N,) or (N, K)."""
        if self.all_at_once:
            return {"blend": self.blend, "n_sources": (self.source >= 0).sum(axis=1), "x": self.x, "y": self.y}
        return {"blend": self.blend, "source": self.source[:, 0], "x": self.x[:, 0], "y": self.y[:, 0]}


def examples(stamps: BlendStamps, blends: np.ndarray | None = None, slots: int | None = None) -> Examples:
    """The examples of the blends ``blends`` (indices; default all) of ``stamps``: source by source, or with
    ``slots`` one per blend holding its sources in that many slots (the file's order; more is an error)."""
    blends = np.arange(len(stamps.images)) if blends is None else np.asarray(blends, dtype=np.int64)
    if slots is None:
        pairs = [(b, s) for b in blends for s in range(int(stamps.n_sources[b]))]
        blend, source = (np.array([p[j] for p in pairs], dtype=np.int64) for j in (0, 1))
        return Examples(stamps.images[blend], None if stamps.sources is None else stamps.sources[blend, source, None],
                        stamps.x[blend, source, None], stamps.y[blend, source, None], blend, source[:, None], False)
    if np.any(stamps.n_sources[blends] > slots):
        raise DeepfieldError(f"blends of up to {int(stamps.n_sources[blends].max())} sources for a run of {slots} "
                             "source slots (data.deblend: all): give blends of at most that many sources")
    held = min(slots, stamps.x.shape[1])
    source = np.where(np.arange(slots)[None, :] < stamps.n_sources[blends, None], np.arange(slots)[None, :], -1)
    x, y = (np.full((len(blends), slots), np.nan) for _ in range(2))
    x[:, :held], y[:, :held] = stamps.x[blends, :held], stamps.y[blends, :held]
    x[source < 0], y[source < 0] = np.nan, np.nan
    isolated = None
    if stamps.sources is not None:
        isolated = np.zeros((len(blends), slots, *stamps.images.shape[1:]), dtype=np.float32)
        isolated[:, :held] = stamps.sources[blends, :held]
    return Examples(stamps.images[blends], isolated, x, y, blends, source, True)


def placed(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The target sources of rows of slot centres ``x``, ``y`` ((N,) one per row, or (N, K), NaN: empty), row by row:
    ``(centres (M, 2) column, row; slots (M, 2) row, slot)``."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    x, y = x.reshape(len(x), -1), y.reshape(len(y), -1)
    filled = np.isfinite(x)
    return np.column_stack([x[filled], y[filled]]), np.argwhere(filled)


def source_stamps(values: np.ndarray, slots: np.ndarray, channels: int) -> np.ndarray:
    """(M, C, H, W): the stamps of the sources at ``slots`` (M, 2) (row, slot) of outputs ``values`` (N, K · C, H, W)
    (slot ``s``'s ``channels`` bands at ``s · C`` on)."""
    values = np.asarray(values)
    rows = values.reshape(len(values), -1, channels, *values.shape[2:])
    return rows[slots[:, 0], slots[:, 1]]
