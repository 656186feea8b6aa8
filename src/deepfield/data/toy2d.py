"""Two-dimensional toy classification sets: the playground's data, seeded and balanced.

>>> x, y = make_toy("moons", n=300, seed=0)   # x (300, 2) float32, y (300,) int64 in {0, 1}
>>> x, y = read_toy_csv("colours.csv")        # columns x1, x2, label (or two numeric columns + label)

The sets (two classes each, class sizes differing by at most one):

``moons``
    two interleaving half circles (:func:`sklearn.datasets.make_moons`); ``noise`` is the
    standard deviation of the Gaussian noise added to each coordinate.
``circles``
    a small circle inside a large one, radii 0.5 and 1 (:func:`sklearn.datasets.make_circles`);
    ``noise`` as for moons. No straight line separates them.
``spirals``
    two interleaved spirals of 1.75 turns, radius 0 to 1, class 1 the half-turn rotation of
    class 0; ``noise`` is the coordinate noise. Hard for shallow networks.
``xor``
    four Gaussian blobs of standard deviation ``noise`` centred at (±1, ±1); the label is 1
    where the two coordinates have opposite signs. The blobs are folded at the axes
    (``|1 + noise * z|``), so every point stays in its blob's quadrant and the labels follow
    the quadrant rule exactly: no straight line gets more than about 3/4 right.
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

from deepfield import arguments
from deepfield.errors import DeepfieldError, unknown_name

DEFAULT_NOISE = {"moons": 0.15, "circles": 0.08, "spirals": 0.05, "xor": 0.35}
"""The noise each set gets when ``noise=None``: enough to blur the boundary, not to hide it."""

NAMES = tuple(DEFAULT_NOISE)

FEATURE_COLUMNS = ("x1", "x2")
LABEL_COLUMN = "label"


def make_toy(name: str, n: int = 400, noise: float | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: ``n`` points ``(n, 2)`` float32 and their labels ``(n,)`` int64 in {0, 1}, shuffled.

    ``noise=None`` takes the set's :data:`DEFAULT_NOISE`; the same ``seed`` gives the same set.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in DEFAULT_NOISE:
        raise unknown_name("toy data set", name, NAMES)
    n = arguments.integer("make_toy: n", n, 4, expected="an integer >= 4")
    noise = DEFAULT_NOISE[key] if noise is None else float(noise)
    if not math.isfinite(noise) or noise < 0:
        raise DeepfieldError(f"make_toy: noise must be a non-negative number, got {noise!r}")
    n = int(n)
    if key == "moons":
        from sklearn.datasets import make_moons

        x, y = make_moons(n_samples=n, noise=noise, random_state=seed)
    elif key == "circles":
        from sklearn.datasets import make_circles

        x, y = make_circles(n_samples=n, noise=noise, factor=0.5, random_state=seed)
    else:
        rng = np.random.default_rng(seed)
        x, y = (_spirals if key == "spirals" else _xor)(n, noise, rng)
        order = rng.permutation(n)
        x, y = x[order], y[order]
    return np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y, dtype=np.int64)


def _spirals(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = np.arange(n) % 2
    t = np.sqrt(rng.uniform(0.02, 1.0, n))  # sqrt: points evenly spread along the arm's length
    angle = 3.5 * np.pi * t + np.pi * y
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
    return x + noise * rng.standard_normal((n, 2)), y


def _xor(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    signs = np.array([(1, 1), (1, -1), (-1, -1), (-1, 1)])  # labels 0, 1, 0, 1
    blob = np.arange(n) % 4
    x = signs[blob] * np.abs(1.0 + noise * rng.standard_normal((n, 2)))
    return x, blob % 2


def read_toy_csv(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(x (N, 2) float32, y (N,) int64)`` from a CSV file with a header row.

    The label column is ``label``. The two features are the columns ``x1`` and ``x2`` when
    both exist, else the first two other columns (e.g. two colours ``g_r,r_i,label``). Labels
    must be integers >= 0 (``1`` or ``1.0``); every feature value a finite number.
    """
    path = Path(path)
    if not path.is_file():
        raise DeepfieldError(f"{path}: no such file")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DeepfieldError(f"{path}: cannot read it as CSV ({exc})") from None
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise DeepfieldError(f"{path}: the file is empty; expected a header {','.join(FEATURE_COLUMNS)},{LABEL_COLUMN}")
    header = [cell.strip() for cell in rows[0]]
    if LABEL_COLUMN not in header:
        raise DeepfieldError(f"{path}: no column {LABEL_COLUMN!r} (columns: {', '.join(header)})")
    others = [c for c in header if c != LABEL_COLUMN]
    features = list(FEATURE_COLUMNS) if set(FEATURE_COLUMNS) <= set(header) else others[:2]
    if len(features) < 2:
        raise DeepfieldError(
            f"{path}: needs two feature columns besides {LABEL_COLUMN!r} (columns: {', '.join(header)})"
        )
    columns = [header.index(c) for c in (*features, LABEL_COLUMN)]
    body = rows[1:]
    if not body:
        raise DeepfieldError(f"{path}: the file has a header but no rows")
    values = np.empty((len(body), 3), dtype=np.float64)
    for i, row in enumerate(body):
        for j, (name, col) in enumerate(zip((*features, LABEL_COLUMN), columns)):
            cell = row[col].strip() if col < len(row) else ""
            try:
                values[i, j] = float(cell)
            except ValueError:
                raise DeepfieldError(f"{path}: row {i + 2}, column {name!r}: {cell!r} is not a number") from None
            if not math.isfinite(values[i, j]):
                raise DeepfieldError(f"{path}: row {i + 2}, column {name!r}: {cell!r} is not a finite number")
    labels = values[:, 2]
    bad = np.flatnonzero((labels != np.round(labels)) | (labels < 0))
    if len(bad):
        raise DeepfieldError(
            f"{path}: row {bad[0] + 2}, column {LABEL_COLUMN!r}: labels must be integers >= 0, got {labels[bad[0]]:g}"
        )
    return np.ascontiguousarray(values[:, :2], dtype=np.float32), labels.astype(np.int64)
