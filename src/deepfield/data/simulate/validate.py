"""Argument checks shared by the simulators: one line naming the argument and what was expected."""
from __future__ import annotations

import numbers
import os
from pathlib import Path

from deepfield.errors import DeepfieldError


def check_int(name: str, value: object, minimum: int) -> int:
    """``value`` as an int of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise DeepfieldError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_range(name: str, value: object, minimum: float = 0.0) -> tuple[float, float]:
    """A number or a ``(low, high)`` pair as ``(low, high)`` with ``minimum < low <= high``."""
    try:
        pair = (value, value) if isinstance(value, numbers.Real) else tuple(value)  # type: ignore[arg-type]
    except TypeError:
        pair = ()
    if (len(pair) != 2 or not all(isinstance(v, numbers.Real) for v in pair)
            or not minimum < pair[0] <= pair[1]):
        raise DeepfieldError(f"{name} must be a number or a (low, high) pair with {minimum} < low <= high, "
                             f"got {value!r}")
    return float(pair[0]), float(pair[1])


def check_fraction(name: str, value: object) -> float:
    """A number in [0, 1]."""
    if not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        raise DeepfieldError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def check_workers(workers: int | None) -> int:
    """``None`` means every core (``os.cpu_count()``)."""
    return (os.cpu_count() or 1) if workers is None else check_int("workers", workers, 1)


def check_out(out: str | os.PathLike[str]) -> Path:
    """The output file path; it may exist (it is replaced) but must not be a folder."""
    path = Path(out)
    if path.is_dir():
        raise DeepfieldError(f"{path}: is a folder; out must name an HDF5 file to write")
    return path
