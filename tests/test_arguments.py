"""The one validation module: whole numbers, ranges, fractions and worker counts, checked once."""
from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest

from deepfield import arguments
from deepfield.data.splits import make_split
from deepfield.data.toy2d import make_toy
from deepfield.errors import DeepfieldError
from deepfield.tasks import features
from deepfield.training.batches import check_batch_size

SRC = Path(__file__).resolve().parents[1] / "src" / "deepfield"


@pytest.mark.parametrize("value", [1, 64, np.int64(3), 64.0, np.float32(2.0), 2**31])
def test_whole_numbers_in_range_pass(value):
    assert arguments.is_integer(value)
    assert arguments.integer("n", value) == int(value) and type(arguments.integer("n", value)) is int


@pytest.mark.parametrize("value", [True, False, np.bool_(True), 0, -1, 2.5, "3", None, math.nan, math.inf,
                                   2**31 + 1, [1], np.array([1, 2])])
def test_bools_fractions_text_and_out_of_range_fail(value):
    assert not arguments.is_integer(value)
    with pytest.raises(DeepfieldError):
        arguments.integer("n", value)


def test_bounds_and_no_upper_bound():
    assert arguments.is_integer(0, 0) and not arguments.is_integer(-1, 0)
    assert arguments.is_integer(7, 0, 7) and not arguments.is_integer(8, 0, 7)
    assert arguments.is_integer(2**40, 0, math.inf)


def test_the_message_names_the_argument_the_expectation_and_the_value():
    with pytest.raises(DeepfieldError, match=r"^Dense units must be an integer from 1 to 2147483648, got 1e\+30$"):
        arguments.integer("Dense units", 1e30)
    with pytest.raises(DeepfieldError, match=r"^sweep: steps must be an integer >= 2, got True$"):
        arguments.integer("sweep: steps", True, 2, expected="an integer >= 2")


def test_number_range_fraction_and_workers():
    assert arguments.number_range("snr", 5) == (5.0, 5.0)
    assert arguments.number_range("snr", (5, 50)) == (5.0, 50.0)
    with pytest.raises(DeepfieldError, match=r"^snr must be a number or a \(low, high\) pair with 0.0 < low <= high"):
        arguments.number_range("snr", (50, 5))
    assert arguments.fraction("spoiled_fraction", 0.5) == 0.5
    with pytest.raises(DeepfieldError, match=r"^spoiled_fraction must be a number in \[0, 1\], got 2"):
        arguments.fraction("spoiled_fraction", 2)
    assert arguments.workers(None) >= 1 and arguments.workers(3) == 3
    with pytest.raises(DeepfieldError, match=r"^workers must be an integer >= 1, got 0$"):
        arguments.workers(0)


def test_arguments_sits_low_it_imports_only_errors():
    tree = ast.parse((SRC / "arguments.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert {name for name in imported if name and name.startswith("deepfield")} == {"deepfield.errors"}


@pytest.mark.parametrize("call, message", [
    (lambda: make_toy("moons", n=True), "make_toy: n must be an integer >= 4, got True"),
    (lambda: make_split(2.5, seed=0), "n must be a positive number of objects, got 2.5"),
    (lambda: check_batch_size(0), "batch_size must be a positive integer or 'full', got 0"),
    (lambda: features.get("sift_bovw", words=1), "features sift_bovw: words must be an integer >= 2, got 1"),
])
def test_callers_keep_their_words(call, message):
    with pytest.raises(DeepfieldError) as err:
        call()
    assert str(err.value) == message
