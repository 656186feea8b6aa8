"""split_parts: the seeded split of one file, held-out files in place of a part, and empty parts refused."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepfield.errors import DeepfieldError
from deepfield.tasks.config import RunConfig
from deepfield.tasks.parts import split_parts


def _config(seed: int = 0, **data: object) -> RunConfig:
    return RunConfig.model_validate({"task": "denoise", "seed": seed,
                                     "data": {"path": "pairs.h5", "split": {"validation": 0.2, "test": 0.2}, **data}})


def test_one_file_is_split_by_the_seed_into_disjoint_parts() -> None:
    parts = split_parts(_config(), 10, lambda index: np.sort(index), lambda path: None, len)
    assert [len(parts[p]) for p in ("train", "validation", "test")] == [6, 2, 2]
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(10))
    again = split_parts(_config(), 10, lambda index: np.sort(index), lambda path: None, len)
    other = split_parts(_config(seed=1), 10, lambda index: np.sort(index), lambda path: None, len)
    assert all(np.array_equal(parts[p], again[p]) for p in parts)
    assert not all(np.array_equal(parts[p], other[p]) for p in parts)


def test_a_held_out_file_is_that_part_and_the_file_splits_into_the_others() -> None:
    parts = split_parts(_config(test="held.h5"), 10, lambda index: list(index), lambda path: [str(path)] * 3, len)
    assert parts["test"] == ["held.h5"] * 3
    assert [len(parts["train"]), len(parts["validation"])] == [8, 2]
    assert Path(parts["test"][0]).name == "held.h5"


def test_an_empty_part_is_one_line() -> None:
    with pytest.raises(DeepfieldError, match="data.split: the train, validation and test parts must not be empty"):
        split_parts(_config(), 2, lambda index: list(index), lambda path: [], len)
