"""Splits: seeded fractions, stratified proportions, save/load round trip and mismatch errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from deepfield.data.splits import load_split, make_split, save_split
from deepfield.errors import DeepfieldError


def assert_partition(split, n: int) -> None:
    every = np.concatenate(split.parts())
    assert len(every) == n and set(every.tolist()) == set(range(n))
    assert all((np.diff(part) > 0).all() for part in split.parts())


def test_fractions_give_the_part_sizes_and_one_seed_fixes_the_split():
    split = make_split(101, (0.7, 0.2, 0.1), seed=5)
    assert [len(p) for p in split.parts()] == [71, 20, 10]
    assert_partition(split, 101)
    again, other = make_split(101, (0.7, 0.2, 0.1), seed=5), make_split(101, (0.7, 0.2, 0.1), seed=6)
    assert all(np.array_equal(a, b) for a, b in zip(split.parts(), again.parts()))
    assert not np.array_equal(split.test, other.test)


@pytest.mark.parametrize("fractions", [(0.8, 0.1, 0.1), (0.6, 0.25, 0.15), (0.5, 0.5, 0.0)])
def test_stratified_split_keeps_each_class_within_one_object_of_its_share(fractions):
    labels = np.repeat(["disk", "spheroid", "merger", "edge-on", "rare"], [203, 97, 41, 13, 3])
    np.random.default_rng(0).shuffle(labels)
    split = make_split(len(labels), fractions, seed=1, stratify=labels)
    assert_partition(split, len(labels))
    for part, fraction in zip(split.parts(), fractions):
        assert abs(len(part) - fraction * len(labels)) <= 1
        for name in np.unique(labels):
            assert abs((labels[part] == name).sum() - fraction * (labels == name).sum()) < 1


def test_saved_split_by_index_round_trips_and_must_fit_the_data_length(tmp_path):
    split = make_split(50, seed=2, stratify=np.arange(50) % 3)
    save_split(split, tmp_path / "split.json")
    assert [p.name for p in tmp_path.iterdir()] == ["split.json"]  # written atomically, no temp file left
    loaded = load_split(tmp_path / "split.json", n=50)
    assert loaded.seed == 2 and all(np.array_equal(a, b) for a, b in zip(split.parts(), loaded.parts()))
    with pytest.raises(DeepfieldError, match=r"split\.json: the split was made for 50 objects but the data has 49"):
        load_split(tmp_path / "split.json", n=49)


def test_saved_split_by_id_follows_the_ids_into_reordered_data(tmp_path):
    ids = [f"obj{k}" for k in range(20)]
    split = make_split(20, seed=3, ids=ids)
    save_split(split, tmp_path / "split.json")
    assert json.loads((tmp_path / "split.json").read_text())["key"] == "id"
    reordered = ids[::-1]
    loaded = load_split(tmp_path / "split.json", ids=reordered)
    for before, after in zip(split.parts(), loaded.parts()):
        assert sorted(np.array(ids)[before]) == sorted(np.array(reordered)[after])
    with pytest.raises(DeepfieldError, match=r"split\.json: 1 id\(s\) of the split are not in the data: 'obj0'"):
        load_split(tmp_path / "split.json", ids=["new"] + ids[1:])
    with pytest.raises(DeepfieldError, match=r"split\.json: the split lists object ids; pass ids="):
        load_split(tmp_path / "split.json", n=20)


def test_unreadable_split_files_are_named(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DeepfieldError, match=r"bad\.json: not a readable JSON split file"):
        load_split(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"train": [0]}')
    with pytest.raises(DeepfieldError, match=r"other\.json: not a deepfield split file"):
        load_split(tmp_path / "other.json")
    record = {"format": "deepfield-split", "version": 1, "seed": 0, "n": 3, "key": "index",
              "train": [0, 1], "validation": [1], "test": []}
    (tmp_path / "overlap.json").write_text(json.dumps(record))
    with pytest.raises(DeepfieldError, match=r"overlap\.json: the parts must together hold each of the 3 objects"):
        load_split(tmp_path / "overlap.json")


def test_bad_arguments_are_refused():
    with pytest.raises(DeepfieldError, match="fractions must be three non-negative numbers"):
        make_split(10, (0.5, 0.2, 0.2), seed=0)
    with pytest.raises(DeepfieldError, match="stratify needs class labels"):
        make_split(3, seed=0, stratify=[0.1, 0.2, 0.3])
    with pytest.raises(DeepfieldError, match=r"stratify must hold one class label per object, shape \(3,\)"):
        make_split(3, seed=0, stratify=[0, 1])
    with pytest.raises(DeepfieldError, match="ids must be 3 distinct values"):
        make_split(3, seed=0, ids=["a", "a", "b"])


def test_subsets_cut_a_dataset_and_check_its_length():
    dataset = TensorDataset(torch.arange(10))
    train, validation, test = make_split(10, seed=0).subsets(dataset)
    assert (len(train), len(validation), len(test)) == (8, 1, 1)
    with pytest.raises(DeepfieldError, match="the split covers 10 objects but the dataset has 9"):
        make_split(10, seed=0).subsets(TensorDataset(torch.arange(9)))
