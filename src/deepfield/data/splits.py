"""Train / validation / test splits: seeded, optionally stratified, saved and reused as JSON.

One ``seed`` fixes the split. With ``stratify`` (a class label per object) every class
is split on its own, so each part holds each class in proportion, to within one object.
A saved split lists, for each part, either the object indices or (when the split was
made with ``ids``) the object ids; loading checks it against the data it is used on.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from deepfield import arguments
from deepfield.atomic import write_text
from deepfield.data.images_core import as_ids, few
from deepfield.errors import DeepfieldError

PARTS = ("train", "validation", "test")
FORMAT = "deepfield-split"


@dataclass(frozen=True, eq=False)
class Split:
    """Disjoint index arrays (ascending int64) that together cover objects ``0 .. n-1``.

    ``ids``: ``(n,)`` the ids of the objects, by index, when the split was made with them.
    """

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    seed: int
    ids: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.train) + len(self.validation) + len(self.test)

    def parts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.train, self.validation, self.test

    def subsets(self, dataset: Dataset) -> tuple[Subset, Subset, Subset]:
        """``dataset`` cut into train, validation and test :class:`~torch.utils.data.Subset`\\ s."""
        size = len(dataset)  # type: ignore[arg-type]
        if size != self.n:
            raise DeepfieldError(f"the split covers {self.n} objects but the dataset has {size}")
        train, validation, test = (Subset(dataset, part.tolist()) for part in self.parts())
        return train, validation, test


def make_split(n: int, fractions: Sequence[float] = (0.8, 0.1, 0.1), *, seed: int,
               stratify: Any = None, ids: Any = None) -> Split:
    """Split ``n`` objects into train, validation and test by ``fractions`` (summing to 1).

    ``stratify``: ``(n,)`` class labels (integers or names); each class is then split
    by ``fractions`` to within ±1 object, and the part sizes stay as close to
    ``fractions * n`` as that allows. ``ids``: ``(n,)`` object ids, kept so that a saved
    split can be matched to the data by id.
    """
    fractions = _check_fractions(fractions)
    n = arguments.integer("n", n, expected="a positive number of objects")
    groups = [np.arange(n)] if stratify is None else _classes(stratify, n)
    counts = _allocate(np.array([len(g) for g in groups]), fractions)
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for members, row in zip(groups, counts):
        members = rng.permutation(members)
        bounds = np.concatenate([[0], np.cumsum(row)])
        for k in range(3):
            parts[k].append(members[bounds[k]:bounds[k + 1]])
    train, validation, test = (np.sort(np.concatenate(p)).astype(np.int64) for p in parts)
    return Split(train, validation, test, int(seed), None if ids is None else _ids(ids, n))


def save_split(split: Split, path: str | os.PathLike[str]) -> None:
    """Write ``split`` as JSON, atomically: its parts as ids if it has them, else as indices."""
    key = "index" if split.ids is None else "id"
    record: dict[str, Any] = {"format": FORMAT, "version": 1, "seed": split.seed, "n": split.n, "key": key}
    for name, part in zip(PARTS, split.parts()):
        record[name] = part.tolist() if split.ids is None else split.ids[part].tolist()
    write_text(path, json.dumps(record, indent=1) + "\n")


def load_split(path: str | os.PathLike[str], *, n: int | None = None, ids: Any = None) -> Split:
    """Read a split saved by :func:`save_split`, checked against the data it will cut.

    ``n``: the data's number of objects; ``ids``: its ids ``(n,)``. A split saved by id
    needs ``ids`` and is mapped onto their order; one saved by index must match ``n``
    (or ``len(ids)``). A mismatch is a :class:`DeepfieldError` naming the file.
    """
    where = os.fspath(path)
    record = _read_record(where)
    data_ids = None if ids is None else _ids(ids, len(np.asarray(ids)))
    if n is None and data_ids is not None:
        n = len(data_ids)
    if n is not None and n != record["n"]:
        raise DeepfieldError(f"{where}: the split was made for {record['n']} objects but the data has {n}")
    if record["key"] == "index":
        if not all(isinstance(i, int) for name in PARTS for i in record[name]):
            raise DeepfieldError(f"{where}: the parts must list integer indices")
        parts = [np.array(record[name], dtype=np.int64) for name in PARTS]
        _check_cover(parts, record["n"], where)
        return Split(*parts, seed=record["seed"], ids=data_ids)
    if data_ids is None:
        raise DeepfieldError(f"{where}: the split lists object ids; pass ids=... of the data to match them")
    position = {oid: i for i, oid in enumerate(data_ids)}
    saved = [as_ids(record[name], f"{where} part {name!r}") for name in PARTS]
    unknown = [oid for part in saved for oid in part if oid not in position]
    if unknown:
        raise DeepfieldError(f"{where}: {len(unknown)} id(s) of the split are not in the data: "
                             f"{few([repr(u) for u in unknown])}")
    parts = [np.sort(np.array([position[oid] for oid in part], dtype=np.int64)) for part in saved]
    _check_cover(parts, len(data_ids), where)
    return Split(*parts, seed=record["seed"], ids=data_ids)


# -- helpers --------------------------------------------------------------------------------------

def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    values = np.asarray(fractions, dtype=np.float64)
    if values.shape != (3,) or (values < 0).any() or not np.isclose(values.sum(), 1.0) or values[0] == 0:
        raise DeepfieldError(f"fractions must be three non-negative numbers (train > 0, validation, test) "
                             f"summing to 1, got {list(np.atleast_1d(fractions))}")
    return values


def _ids(ids: Any, n: int) -> np.ndarray:
    values = as_ids(ids, "ids")
    if len(values) != n or len(set(values)) != n:
        raise DeepfieldError(f"ids must be {n} distinct values, one per object; got {len(values)} "
                             f"with {len(set(values))} distinct")
    return values


def _classes(labels: Any, n: int) -> list[np.ndarray]:
    """The member indices of each class of ``labels`` ``(n,)``, classes in sorted order."""
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise DeepfieldError(f"stratify must hold one class label per object, shape ({n},); got {labels.shape}")
    if labels.dtype.kind == "f":
        raise DeepfieldError("stratify needs class labels (integers or names), got floats; bin them first")
    _, codes = np.unique(labels, return_inverse=True)
    return [np.flatnonzero(codes == c) for c in range(codes.max() + 1)]


def _allocate(sizes: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Objects per class and part ``(classes, 3)``: each ``floor`` or ``ceil`` of ``size * fraction``.

    Classes start at the floors; each class's leftover objects (fewer than its parts
    with a remainder) go to such parts, those furthest below their overall target
    ``fractions * sum(sizes)`` (rounded by largest remainder) first, then by remainder.
    """
    exact = np.round(np.outer(sizes, fractions), 9)
    counts = np.floor(exact).astype(np.int64)
    total = np.round(sizes.sum() * fractions, 9)
    target = np.floor(total).astype(np.int64)
    target[np.argsort(-(total - target), kind="stable")[: sizes.sum() - target.sum()]] += 1
    deficit = target - counts.sum(axis=0)
    leftover = sizes - counts.sum(axis=1)
    for c in np.argsort(-leftover, kind="stable"):
        remainder = exact[c] - counts[c]  # only parts with a remainder may round up
        chosen = np.lexsort((-remainder, -deficit, remainder <= 0))[: leftover[c]]
        counts[c, chosen] += 1
        deficit[chosen] -= 1
    return counts


def _read_record(where: str) -> dict[str, Any]:
    try:
        with open(where, encoding="utf-8") as fh:
            record = json.load(fh)
    except FileNotFoundError:
        raise DeepfieldError(f"{where}: no such split file") from None
    except (OSError, ValueError) as error:
        raise DeepfieldError(f"{where}: not a readable JSON split file ({error})") from None
    valid = (isinstance(record, dict) and record.get("format") == FORMAT and record.get("key") in ("index", "id")
             and all(isinstance(record.get(k), int) for k in ("n", "seed"))
             and all(isinstance(record.get(k), list) for k in PARTS))
    if not valid:
        raise DeepfieldError(f"{where}: not a deepfield split file (expected format {FORMAT!r} with "
                             f"n, seed, key and the parts {', '.join(PARTS)})")
    return record


def _check_cover(parts: list[np.ndarray], n: int, where: str) -> None:
    """The parts must be disjoint and cover ``0 .. n-1`` exactly."""
    every = np.concatenate(parts)
    if len(every) != n or len(np.unique(every)) != n or (len(every) and (every.min() < 0 or every.max() >= n)):
        raise DeepfieldError(f"{where}: the parts must together hold each of the {n} objects exactly once")


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled sample order ``(n,)`` int64 for ``epoch`` of a run seeded ``seed`` (CPU)."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0]
    generator = torch.Generator().manual_seed(int(state))
    return torch.randperm(n, generator=generator)
