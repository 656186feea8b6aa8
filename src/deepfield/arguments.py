"""Checks of the arguments that size things (layer widths, kernels, epochs, shapes): one line naming
the argument, what was expected and what was given; also what a model may ask for at most.

Layer sizes arrive from Python and from ``model.json`` files alike, so a size is refused here,
before anything is allocated: ``filters: 1e30`` in a file is an error, not a crash or a
terabyte allocation.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from deepfield.errors import DeepfieldError

MAX_ELEMENTS = 2**31
"""The most numbers one model may hold in its parameters, or compute in one sample's largest
activation, or take as one sample's input (2**31 float32 = 8 GiB): far above the networks
deepfield is for (the largest preset has 42 million parameters), far below what crashes a machine."""


def integer(name: str, value: object, minimum: int = 1, maximum: int = MAX_ELEMENTS) -> int:
    """``value`` as an int in ``[minimum, maximum]`` (an integral float such as ``64.0`` counts; a bool,
    a string or ``2.5`` does not).

    >>> integer("Dense units", 1e30)
    Traceback (most recent call last):
    ...
    deepfield.errors.DeepfieldError: Dense units must be an integer from 1 to 2147483648, got 1e+30
    """
    whole = isinstance(value, numbers.Integral) or (isinstance(value, numbers.Real) and math.isfinite(value)
                                                    and float(value).is_integer())
    if isinstance(value, bool) or not whole or not minimum <= value <= maximum:  # type: ignore[operator]
        raise DeepfieldError(f"{name} must be an integer from {minimum} to {maximum}, got {value!r}")
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
