"""Segmentation scores against small maps computed by hand: class IoU, the boundary class, instances
from classes or probabilities (seeded watershed), completeness and purity by the IoU > 0.5 rule."""
import numpy as np
import pytest

from deepfield.analysis.segmentation import (class_iou, classes_from_instances, instances_from_classes,
                                             instances_from_probabilities, match_sources, segmentation_metrics)


def test_class_iou_by_hand():
    truth = np.array([[[0, 0, 1, 1],
                       [0, 0, 1, 1]]])
    predicted = np.array([[[0, 1, 1, 1],
                           [0, 0, 0, 1]]])
    # class 0: truth 4 px, predicted 4 px, both 3 -> 3 / 5; class 1: 3 / 5; class 2 absent -> NaN
    iou = class_iou(truth, predicted, 3)
    np.testing.assert_allclose(iou[:2], [0.6, 0.6])
    assert np.isnan(iou[2])
    metrics = segmentation_metrics(truth, predicted, ["background", "source", "other"], truth, predicted)
    assert metrics["mean_iou"] == pytest.approx(0.6) and metrics["pixel_accuracy"] == pytest.approx(6 / 8)
    assert metrics["iou"]["source"] == pytest.approx(0.6)


def test_boundary_pixels_are_where_two_sources_touch():
    instances = np.array([[[1, 1, 2, 2, 0],
                           [1, 1, 2, 0, 0],
                           [0, 0, 0, 0, 3]]])
    expected = np.array([[[1, 2, 2, 1, 0],
                          [1, 2, 2, 0, 0],
                          [0, 0, 0, 0, 1]]])
    np.testing.assert_array_equal(classes_from_instances(instances), expected)


def test_instances_come_back_from_interior_and_boundary_classes():
    instances = np.zeros((1, 6, 10), dtype=np.int64)
    instances[0, 1:5, 1:5], instances[0, 1:5, 5:9] = 1, 2  # two touching 4x4 squares
    classes = classes_from_instances(instances)
    recovered = instances_from_classes(classes, boundary=2)
    assert set(np.unique(recovered)) == {0, 1, 2}
    assert match_sources(instances, recovered) == {"n_true": 2, "n_predicted": 2, "n_matched": 2}
    merged = instances_from_classes(classes, boundary=None)  # no boundary class: one merged segment
    assert match_sources(instances, merged) == {"n_true": 2, "n_predicted": 1, "n_matched": 0}


def test_completeness_and_purity_by_hand():
    truth = np.zeros((2, 8, 8), dtype=np.int64)
    truth[0, 0:3, 0:3], truth[0, 5:8, 5:8] = 1, 2  # 9 px each
    truth[1, 2:6, 2:6] = 1
    predicted = np.zeros_like(truth)
    predicted[0, 0:3, 0:2] = 4  # 6 of source 1's 9 px: IoU 6/9 > 0.5, matched
    predicted[0, 5:8, 7:8] = 7  # 3 of source 2's 9: IoU 1/3, a miss and a false segment
    predicted[1, 0:1, 0:1] = 1  # a spurious pixel: IoU 0; source 1 of stamp 1 is missed
    result = match_sources(truth, predicted)
    assert result == {"n_true": 3, "n_predicted": 3, "n_matched": 1}
    metrics = segmentation_metrics(truth > 0, predicted > 0, ["background", "source"], truth, predicted)
    assert metrics["completeness"] == pytest.approx(1 / 3) and metrics["purity"] == pytest.approx(1 / 3)


def test_seeded_watershed_splits_a_blend_the_argmax_map_merges():
    instances = np.zeros((1, 6, 10), dtype=np.int64)
    instances[0, 1:5, 1:5], instances[0, 1:5, 5:9] = 1, 2
    probabilities = np.zeros((1, 3, 6, 10))
    probabilities[0, 0] = 1.0
    inside = instances[0] > 0
    probabilities[0, :, inside] = [0.03, 0.95, 0.02]
    probabilities[0, :, 1:5, 4:6] = np.array([0.1, 0.5, 0.4])[:, None, None]  # where they touch: a dip, no boundary
    merged = instances_from_classes(probabilities.argmax(axis=1), boundary=2)
    assert match_sources(instances, merged)["n_matched"] == 0
    split = instances_from_probabilities(probabilities, boundary=2)
    assert match_sources(instances, split) == {"n_true": 2, "n_predicted": 2, "n_matched": 2}
    np.testing.assert_array_equal(split[0] > 0, inside)


def test_source_class_purity_counts_the_detected_sources_given_their_true_class():
    from deepfield.analysis.segmentation import source_class_purity

    true_sources = np.array([[[1, 1, 0, 2, 2, 0, 3]]])
    truth = np.array([[[1, 1, 0, 4, 4, 0, 2]]])  # a spheroid, a point source, a disk
    found = np.array([[[1, 1, 0, 2, 2, 0, 0]]])  # the disk missed
    predicted = np.array([[[1, 2, 0, 4, 4, 0, 0]]])  # spheroid's segment split 1:1 (the lower class wins)
    result = source_class_purity(truth, predicted, true_sources, found)
    assert result == {"source_class_purity": 1.0, "n_classified": 2}
    predicted[0, 0, 3:5] = 2
    assert source_class_purity(truth, predicted, true_sources, found)["source_class_purity"] == 0.5
    assert np.isnan(source_class_purity(truth, predicted, true_sources, np.zeros_like(found))["source_class_purity"])


def test_the_seed_level_of_best_detection_f1_and_the_lowest_on_a_tie():
    from deepfield.analysis.segmentation import choose_seed_level

    background, peak, saddle = [1.0, 0.0, 0.0], [0.04, 0.94, 0.02], [0.15, 0.7, 0.15]  # p(s) - p(b): 0.92, 0.55
    probabilities = np.array([background, peak, saddle, saddle, peak, background]).T[None, :, None, :]
    truth = np.array([[[0, 1, 1, 2, 2, 0]]])
    level, scores = choose_seed_level(probabilities, truth, boundary=2)
    # 0.5: one seed over the saddle, one source of IoU 0.5 with each (no match); 0.95: no seed, the same region
    assert scores == {0.5: 0.0, 0.6: 1.0, 0.7: 1.0, 0.8: 1.0, 0.9: 1.0, 0.95: 0.0} and level == 0.6
