"""The train, validation and test parts of an image-to-image run: a seeded split of one file, or held-out files."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from deepfield.data.splits import make_split
from deepfield.errors import DeepfieldError
from deepfield.tasks.base import PARTS
from deepfield.tasks.config import RunConfig

Part = TypeVar("Part")


def split_parts(config: RunConfig, n: int, take: Callable[[np.ndarray], Part], held_out: Callable[[Path], Part],
                size: Callable[[Part], int]) -> dict[str, Part]:
    """``{"train", "validation", "test"}`` -> a part: ``take(index)`` of the ``n`` rows of ``data.path`` by a
    split seeded with ``config.seed`` (``data.split`` fractions), where ``data.validation`` / ``data.test``
    name no file, else ``held_out(path)`` of that file. An empty part (``size(part) == 0``) is one error line."""
    data = config.data
    held = {part: getattr(data, part) for part in ("validation", "test")}
    fractions = [0.0 if held["validation"] else data.split.validation, 0.0 if held["test"] else data.split.test]
    split = make_split(n, (1.0 - sum(fractions), *fractions), seed=config.seed)
    parts = {part: take(index) for part, index in zip(PARTS, split.parts())}
    for part, path in held.items():
        if path is not None:
            parts[part] = held_out(path)
    if any(size(parts[part]) == 0 for part in PARTS):
        raise DeepfieldError("data.split: the train, validation and test parts must not be empty")
    return parts
