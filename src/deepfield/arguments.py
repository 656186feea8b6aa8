"""The one module that checks arguments: one line naming the argument, what was expected and what was
given; also what a model may ask for at most.

Sizes (layer widths, kernels, epochs, batch sizes, counts), number ranges and fractions arrive from
Python, configs and ``model.json`` files alike, so they are refused here, before anything is allocated:
``filters: 1e30`` in a file is an error, not a crash or a terabyte allocation. A caller keeps its own
words for what it expected (``expected="a positive integer"``); the check itself is written once.
This module sits below ``data`` and ``models``: it imports only :mod:`deepfield.errors`.
"""
from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence

from deepfield.errors import DeepfieldError

MAX_ELEMENTS = 2**31
"""The most numbers one model may hold in its parameters, or compute in one sample's largest
activation, or take as one sample's input (2**31 float32 = 8 GiB): far above the networks
deepfield is for (the largest preset has 42 million parameters), far below what crashes a machine."""


def is_number(value: object) -> bool:
    """Whether ``value`` is a real number (an int, a float or a numpy scalar), not a bool: ``True`` is an int to
    Python, never a rate or a size to a user."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_integer(value: object, minimum: int = 1, maximum: float = MAX_ELEMENTS) -> bool:
    """Whether ``value`` is a whole number in ``[minimum, maximum]``: an int, a numpy integer or an integral
    float such as ``64.0``; never a bool, a string or ``2.5``. ``maximum=math.inf``: no upper bound."""
    whole = isinstance(value, numbers.Integral) or (isinstance(value, numbers.Real) and math.isfinite(value)
                                                    and float(value).is_integer())
    return not isinstance(value, bool) and whole and minimum <= value <= maximum  # type: ignore[operator]


def integer(name: str, value: object, minimum: int = 1, maximum: float = MAX_ELEMENTS, *,
            expected: str | None = None) -> int:
    """``value`` as an int in ``[minimum, maximum]`` (see :func:`is_integer`), else the error naming ``name``,
    saying ``expected`` (default: the range) and showing the value given.

    >>> integer("Dense units", 1e30)
    Traceback (most recent call last):
    ...
    deepfield.errors.DeepfieldError: Dense units must be an integer from 1 to 2147483648, got 1e+30
    >>> integer("batch_size", 0, expected="a positive integer")
    Traceback (most recent call last):
    ...
    deepfield.errors.DeepfieldError: batch_size must be a positive integer, got 0
    """
    if not is_integer(value, minimum, maximum):
        raise DeepfieldError(f"{name} must be {expected or f'an integer from {minimum} to {maximum}'}, got {value!r}")
    return int(value)  # type: ignore[arg-type]


def shape(name: str, value: object) -> tuple[int, ...]:
    """A sample's shape (no batch axis): positive ints whose product is at most :data:`MAX_ELEMENTS`."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise DeepfieldError(f"{name} must be a list of positive integers such as [1, 64, 64], got {value!r}")
    sizes = tuple(integer(f"{name} entry", v) for v in value)
    if math.prod(sizes) > MAX_ELEMENTS:
        raise DeepfieldError(f"{name} {list(sizes)} holds {math.prod(sizes):,} numbers per sample; "
                             f"deepfield takes at most {MAX_ELEMENTS:,}")
    return sizes


def number_range(name: str, value: object, minimum: float = 0.0) -> tuple[float, float]:
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


def fraction(name: str, value: object) -> float:
    """A number in [0, 1]."""
    if not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        raise DeepfieldError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def workers(value: int | None) -> int:
    """A number of worker processes; ``None`` means every core (``os.cpu_count()``)."""
    return (os.cpu_count() or 1) if value is None else integer("workers", value, expected="an integer >= 1")
