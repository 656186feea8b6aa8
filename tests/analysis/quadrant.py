"""A network with a known answer, for the explanation tests: "is there a source in the top-left quadrant?"

Stamps are sky noise with Gaussian sources. Class 1 has one bright source inside the
top-left quadrant (rows and columns ``< size/2``, in array order: row 0 first); class 0 has
none there. Both classes have one or two distractor sources of the same kind in the other
three quadrants, so the label depends on the top-left quadrant alone and a right
attribution map puts its mass there (25 % of the pixels).

>>> x, y = quadrant_data(200, seed=1)        # (200, 1, 16, 16) float32, (200,) int64
>>> model = quadrant_model()                  # trained once per process, shared: do not modify it
>>> in_quadrant(maps)                         # (N,) share of |map| in the top-left quadrant

Not a test file: the test modules next to it import it.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

import deepfield as df
from deepfield.layers import Activation, Conv2D, Dense, Flatten, MaxPooling2D

SIZE = 16
AMPLITUDE = 3.0
"""Peak of a source, in units of the sky noise σ = 1."""
SOURCE_SIGMA = 1.0
"""Gaussian σ of a source, pixels."""
MARGIN = 2
"""Source centres keep this far (pixels) from their quadrant's edges, so the light stays inside."""


def _source(size: int, row: float, col: float) -> np.ndarray:
    rows, cols = np.mgrid[:size, :size]
    return AMPLITUDE * np.exp(-((rows - row) ** 2 + (cols - col) ** 2) / (2 * SOURCE_SIGMA**2))


def _centre(rng: np.random.Generator, size: int, quadrant: int) -> tuple[float, float]:
    """A random centre inside ``quadrant`` (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right)."""
    half = size // 2
    row, col = rng.uniform(MARGIN, half - 1 - MARGIN, 2)
    return row + half * (quadrant // 2), col + half * (quadrant % 2)


def quadrant_data(n: int, size: int = SIZE, seed: int = 0, bands: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``n`` stamps ``(n, bands, size, size)`` float32 and their labels ``(n,)`` int64 (balanced).

    With two bands, band 1 shows the same sources at 0.6 × the flux (a colour) with its own noise.
    """
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 2)
    x = rng.normal(size=(n, bands, size, size))
    colours = 0.6 ** np.arange(bands)[:, None, None]
    for i in range(n):
        quadrants = list(rng.choice([1, 2, 3], size=rng.integers(1, 3), replace=False)) + [0] * y[i]
        for quadrant in quadrants:
            x[i] += colours * _source(size, *_centre(rng, size, quadrant))
    return x.astype(np.float32), y.astype(np.int64)


def quadrant_model(seed: int = 0, bands: int = 1) -> df.Sequential:
    """A small deepfield CNN trained on :func:`quadrant_data` (softmax over the 2 classes).

    Conv 3×3 'same' → ReLU → MaxPool 2 → Conv 3×3 'same' ReLU → MaxPool 2 → Flatten →
    Dense 2 softmax: both ReLU forms deepfield has (an ``Activation`` layer and a layer's
    ``activation=``). Trained once per process and shared between the test modules (``quadrant_model()``
    and ``quadrant_model(bands=1)`` are the same network).
    """
    return _trained(seed, bands)


@functools.lru_cache(maxsize=None)
def _trained(seed: int, bands: int) -> df.Sequential:
    """The network of :func:`quadrant_model`, cached by its positional arguments alone (``lru_cache`` keys
    ``f()``, ``f(0)`` and ``f(seed=0)`` apart)."""
    torch.manual_seed(seed)
    model = df.Sequential([
        Conv2D(8, 3, padding="same", input_shape=(bands, SIZE, SIZE)), Activation("relu"), MaxPooling2D(2),
        Conv2D(8, 3, padding="same", activation="relu"), MaxPooling2D(2),
        Flatten(), Dense(2, activation="softmax"),
    ])
    model.compile(optimizer=df.optimizers.Adam(learning_rate=1e-2), loss="sparse_categorical_crossentropy",
                  device="cpu")
    x, y = quadrant_data(1200, seed=seed + 1000, bands=bands)
    model.fit(x, y, batch_size=64, epochs=6, verbose=0, seed=seed)
    return model


def in_quadrant(maps: np.ndarray) -> np.ndarray:
    """``(N,)``: the share of each map's absolute mass (all bands) inside the top-left quadrant."""
    mass = np.abs(np.asarray(maps, dtype=np.float64))
    mass = mass.reshape(len(mass), -1, *mass.shape[-2:]).sum(axis=1)
    half = mass.shape[-1] // 2
    return mass[:, :half, :half].sum(axis=(1, 2)) / mass.sum(axis=(1, 2))
