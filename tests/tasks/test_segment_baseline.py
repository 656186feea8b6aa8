"""The watershed baseline on stamps whose answer is known: two well-separated bright sources on low noise
are both found, each as one segment close to its true footprint."""
import numpy as np
import pytest

from deepfield.analysis.segmentation import INSTANCE_CLASSES, classes_from_instances
from deepfield.tasks.baselines.watershed import watershed_baseline, watershed_sources


def two_sources(n, seed, size=32):
    """(images (n, 1, size, size), true instance maps): two round Gaussian sources (σ 1.5 px, peak 100) at
    random places a quarter of the stamp apart or more, noise σ 1; a source owns its pixels above 1σ."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    images = np.zeros((n, 1, size, size))
    instances = np.zeros((n, size, size), dtype=np.int64)
    for i in range(n):
        first = rng.uniform(6, size / 2 - 4, 2)
        second = rng.uniform(size / 2 + 4, size - 7, 2)
        profiles = [100 * np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * 1.5**2)) for x, y in (first, second)]
        images[i, 0] = sum(profiles) + rng.normal(size=(size, size))
        owner = np.argmax(profiles, axis=0) + 1
        instances[i] = np.where(np.max(profiles, axis=0) > 1.0, owner, 0)
    return images.astype(np.float32), instances


def test_two_separated_sources_are_both_found():
    images, truth = two_sources(6, seed=1)
    found = watershed_sources(images, 2.0)
    assert [len(np.unique(stamp)) - 1 for stamp in found] == [2] * 6


def test_the_baseline_row_finds_every_source_and_nothing_else():
    parts = []
    for seed in (2, 3):
        images, instances = two_sources(8, seed)
        parts.append((images, classes_from_instances(instances), instances))
    row = watershed_baseline(*parts, INSTANCE_CLASSES)
    assert row["model"] == "threshold + watershed (photutils)" and row["parameter"].startswith("n_sigma ")
    assert row["completeness"] == 1.0 and row["purity"] == 1.0
    assert row["iou_background"] > 0.95 and row["iou_source"] > 0.9 and np.isnan(row["iou_boundary"])
    assert row["mean_iou"] == pytest.approx(np.mean([row["iou_background"], row["iou_source"]]))
