"""Blended stamps with their isolated sources, read for deblending (``task: deblend``), and the target marker.

A blends file is an HDF5 file holding (S: the most sources a stamp holds)

* the blends ``images`` (N, C, H, W) (another name: ``images=``), with attributes ``bands`` and ``unit``;
* each source alone, without noise, ``sources`` (N, S, C, H, W) (another name: ``sources=``; only
  for labelled reading), zeros past a stamp's count;
* ``truth/x``, ``truth/y`` (N, S): the sources' centres in pixels (column and row, 0: the centre of the
  first pixel), NaN past the count; a stamp's count is ``n_sources`` (N,) when the file has it, else
  its finite centres.

``deepfield simulate blends`` writes this layout (:func:`~deepfield.data.simulate.blends.simulate_blends`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from deepfield.data.hdf5_files import open_hdf5
from deepfield.errors import DeepfieldError

MARKER_SIGMA = 1.5
"""Pixels: the Gaussian σ of the target marker channel (:func:`target_marker`)."""


@dataclass(frozen=True)
class BlendStamps:
    """``images`` (N, C, H, W) float32 in ``unit`` per pixel; ``sources`` (N, S, C, H, W) float32 or ``None``
    (unlabelled); ``x``, ``y`` (N, S) pixels, NaN past ``n_sources`` (N,)."""

    images: np.ndarray
    sources: np.ndarray | None
    x: np.ndarray
    y: np.ndarray
    n_sources: np.ndarray
    bands: tuple[str, ...]
    unit: str


def read_blend_stamps(path: str | os.PathLike[str], *, images: str = "images", sources: str = "sources",
                      labelled: bool = True, bands: Sequence[str] | None = None,
                      limit: int | None = None) -> BlendStamps:
    """The blends file ``path`` (module docstring), its first ``limit`` stamps; ``bands`` when the file
    does not name them; ``labelled=False`` reads no isolated sources."""
    path = Path(path)
    if not path.is_file():
        raise DeepfieldError(f"{path}: no such file")
    h5 = open_hdf5(path)
    rows = slice(None, limit)
    with h5:
        blends = _dataset(h5, path, images, "the blends, (N, C, H, W); data.images names it")
        stamps = np.asarray(blends[rows], dtype=np.float32)
        if stamps.ndim != 4 or len(stamps) == 0:
            raise DeepfieldError(f"{path}: {images!r} has shape {stamps.shape}; expected blends (N, C, H, W)")
        names = tuple(bands) if bands is not None else tuple(str(b) for b in blends.attrs.get("bands", ()))
        if not names:
            raise DeepfieldError(f"{path}: the file does not name its bands; give them (data.bands: [g, r, i])")
        if len(names) != stamps.shape[1]:
            raise DeepfieldError(f"{path}: {len(names)} bands {list(names)} for {stamps.shape[1]} channels "
                                 f"of {images!r}")
        x, y = (np.asarray(_dataset(h5, path, f"truth/{k}", "the sources' centres in pixels, (N, S)")[rows],
                           dtype=np.float64) for k in ("x", "y"))
        if x.ndim != 2 or x.shape != y.shape or len(x) != len(stamps):
            raise DeepfieldError(f"{path}: truth/x and truth/y must be (N, S) for the {len(stamps)} blends, got "
                                 f"{x.shape} and {y.shape}")
        count = (np.asarray(h5["n_sources"][rows], dtype=np.int64) if isinstance(h5.get("n_sources"), h5py.Dataset)
                 else np.isfinite(x).sum(axis=1))
        isolated = None
        if labelled:
            isolated = np.asarray(_dataset(h5, path, sources, "each source alone, (N, S, C, H, W); data.target "
                                                              "names it")[rows], dtype=np.float32)
            if isolated.shape != (len(stamps), x.shape[1], *stamps.shape[1:]):
                raise DeepfieldError(f"{path}: {sources!r} has shape {isolated.shape}; expected (N, S, C, H, W) = "
                                     f"{(len(stamps), x.shape[1], *stamps.shape[1:])} for {images!r} and truth/x")
        unit = str(blends.attrs.get("unit", ""))
    if np.any(count < 1) or np.any(count > x.shape[1]):
        raise DeepfieldError(f"{path}: every blend needs 1 to {x.shape[1]} sources (n_sources)")
    inside = np.arange(x.shape[1])[None, :] < count[:, None]
    if not np.all(np.isfinite(x[inside]) & np.isfinite(y[inside])):
        raise DeepfieldError(f"{path}: truth/x and truth/y must be finite for every source of a blend")
    return BlendStamps(stamps, isolated, x, y, count, names, unit)


def _dataset(h5: h5py.File, path: Path, name: str, what: str) -> h5py.Dataset:
    data = h5.get(name)
    if not isinstance(data, h5py.Dataset):
        held = sorted(k for k in h5 if isinstance(h5[k], h5py.Dataset))
        raise DeepfieldError(f"{path}: no array {name!r} ({what}); it holds {', '.join(map(repr, held)) or 'none'}")
    return data


def target_marker(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, shape: tuple[int, int],
                  sigma: float = MARKER_SIGMA) -> np.ndarray:
    """(N, K, H, W) float32: a unit-peak Gaussian of ``sigma`` pixels centred on each target's ``x[i]``
    (column), ``y[i]`` (row), the channel that tells a deblending network which source to return.

    ``x``, ``y``: (N,) one target per stamp (K = 1), or (N, K) one per source slot, NaN for an empty slot
    (its channel all zero)."""
    x, y = (np.asarray(v, dtype=np.float64) for v in (x, y))
    x, y = x.reshape(len(x), -1), y.reshape(len(y), -1)
    rows, columns = np.arange(shape[0], dtype=np.float64), np.arange(shape[1], dtype=np.float64)
    dy = (rows[None, None, :] - np.nan_to_num(y)[:, :, None]) ** 2
    dx = (columns[None, None, :] - np.nan_to_num(x)[:, :, None]) ** 2
    marker = np.exp(-(dy[..., :, None] + dx[..., None, :]) / (2.0 * sigma**2))
    marker[~(np.isfinite(x) & np.isfinite(y))] = 0.0
    return marker.astype(np.float32)
