"""Catalogue features with their magnitudes redrawn within the photometric errors, batch by batch.

Training a photo-z network on the measured magnitudes alone teaches it that they are exact;
drawing each galaxy's magnitudes afresh from ``N(m, σ_m²)`` every epoch shows it the spread
the test galaxies have (an augmentation for catalogues). Features that are linear in the
magnitudes (the magnitudes, colours, standardised or not) move together: a draw ``δ`` (B,)
of the band magnitudes changes the features by ``δ @ mixing`` with ``mixing`` (B, F).

Draws come from a NumPy generator seeded per batch from ``(seed, epoch, batch)`` (the
:class:`~deepfield.data.memmap.Fetch` key of :func:`~deepfield.data.memmap.loader` and
``fit``), so an epoch's batches are the same with 0 or any number of loader workers.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from deepfield.data.memmap import Fetch, BatchDataset, BatchRows
from deepfield.errors import DeepfieldError


class ResampledFeatures(BatchDataset):
    """Training pairs ``(x, y)`` whose magnitude-dependent features are redrawn in every batch.

    ``x``: (N, F) float32 features as measured; ``y``: (N, ...) targets, given back as they
    are; ``sigma``: (N, B) magnitude errors in mag, 0 where a value must stay (a
    non-detection's fill); ``mixing``: (B, F) change of each feature per magnitude of each band.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, sigma: np.ndarray, mixing: np.ndarray):
        if len(x) != len(y) or sigma.shape != (len(x), mixing.shape[0]) or mixing.shape[1] != x.shape[1]:
            raise DeepfieldError(f"resampling: x {x.shape}, y {y.shape}, sigma {sigma.shape} and mixing "
                                 f"{mixing.shape} do not fit (x (N, F), y (N, ...), sigma (N, B), mixing (B, F))")
        self._x, self._y = np.ascontiguousarray(x, np.float32), np.ascontiguousarray(y)
        self._sigma, self._mixing = np.asarray(sigma, np.float32), np.asarray(mixing, np.float32)
        self._n = len(x)

    @property
    def sample_bytes(self) -> int:
        return self._x[:1].nbytes + self._y[:1].nbytes

    def _read(self, index: np.ndarray, indices: Sequence[int] | Fetch) -> BatchRows:
        x, sigma = self._x[index], self._sigma[index]
        keyed = isinstance(indices, Fetch) and indices.key is not None
        for rows, seed in indices.batches() if keyed else [(slice(None), None)]:  # type: ignore[union-attr]
            draws = np.random.default_rng(seed).standard_normal(sigma[rows].shape, dtype=np.float32)
            x[rows] += (draws * sigma[rows]) @ self._mixing
        return BatchRows((torch.from_numpy(x), torch.from_numpy(self._y[index])))
