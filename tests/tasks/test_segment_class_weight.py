"""``training.class_weight`` for task segment: the per-pixel cross-entropy weighted per class (against torch's
unweighted one), the names checked, and refused by the other tasks."""
import numpy as np
import pytest
import torch

from deepfield.errors import DeepfieldError
from deepfield.tasks.config import load_config
from deepfield.tasks.segment import Segment
from deepfield.training.losses import ClassWeightedCrossentropy


def test_each_pixel_is_weighted_by_its_class_and_weights_of_one_are_the_plain_cross_entropy():
    torch.manual_seed(1)
    logits, labels = torch.randn(2, 3, 4, 5), torch.randint(0, 3, (2, 4, 5))
    plain = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    weighted = ClassWeightedCrossentropy([1.0, 1.0, 5.0], from_logits=True)
    torch.testing.assert_close(weighted(logits, labels), (plain * torch.where(labels == 2, 5.0, 1.0)).mean())
    ones = ClassWeightedCrossentropy([1.0, 1.0, 1.0])
    torch.testing.assert_close(ones(torch.softmax(logits, 1), labels), plain.mean(), rtol=1e-5, atol=1e-6)
    with pytest.raises(DeepfieldError, match="class weights must be numbers >= 0"):
        ClassWeightedCrossentropy([1.0, -2.0])


def config(**training):
    return load_config(None, document={"task": "segment", "data": {"path": "blends.h5"}, "training": training})


class Prepared:  # what Segment.loss reads of a prepared run
    class info:
        classes = ["background", "source", "boundary"]


def test_segment_builds_the_weighted_loss_from_class_names():
    loss = Segment().loss(config(class_weight={"boundary": 4.0}), Prepared())
    assert isinstance(loss, ClassWeightedCrossentropy) and loss.weights.tolist() == [1.0, 1.0, 4.0]
    assert Segment().loss(config(), Prepared()) == "sparse_categorical_crossentropy"
    with pytest.raises(DeepfieldError, match="unknown training.class_weight class 'edge'; expected one of: "
                                             "background, boundary, source"):
        Segment().loss(config(class_weight={"edge": 4.0}), Prepared())
    with pytest.raises(DeepfieldError, match="not training.loss 'mse'"):
        Segment().loss(config(class_weight={"boundary": 4.0}, loss="mse"), Prepared())


def test_other_tasks_refuse_class_weight():
    with pytest.raises(DeepfieldError, match="training.class_weight weighs the classes of pixels"):
        load_config(None, document={"task": "denoise", "data": {"path": "p.h5"},
                                    "training": {"class_weight": {"a": 2}}})
    assert np.isclose(config(class_weight={"boundary": 2}).training.class_weight["boundary"], 2.0)
