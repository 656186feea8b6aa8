"""Small made-up inputs that test modules share: noise stamps, a small ResNet, the LSST column names.

Import them as ``from helpers import stamps`` (``tests/`` is on the path through its conftest.py).
Files and trained runs that take time to make are session fixtures in ``tests/conftest.py``.
"""
from __future__ import annotations

import numpy as np
import torch

from deepfield.models import zoo
from deepfield.models.sequential import Sequential

LSST = {"mag": "mag_{band}_lsst", "err": "mag_err_{band}_lsst"}
"""The ``data`` keys naming a simulated catalogue's LSST magnitude and error columns."""


def stamps(n: int, bands: int = 1, size: int = 8, rng: int | np.random.Generator = 1) -> np.ndarray:
    """``(n, bands, size, size)`` float32 standard-normal noise stamps drawn from ``rng``: a seed (the same
    stamps each call) or a generator (the next stamps of its stream)."""
    return np.random.default_rng(rng).normal(size=(n, bands, size, size)).astype(np.float32)


def small_resnet(bands: int = 3, size: int = 32, blocks: int = 1) -> Sequential:
    """The resnet preset on ``(bands, size, size)``, built with torch's seed 0: a stem, then two stages of
    ``blocks`` blocks each (4 then 8 filters, the second stage at stride 2)."""
    torch.manual_seed(0)
    return zoo.get("resnet", input_shape=(bands, size, size), filters=(4, 8), blocks=blocks)
