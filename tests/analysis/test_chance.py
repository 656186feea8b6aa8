"""A classifier whose validation accuracy stayed at chance while it fitted its training set is flagged."""
import numpy as np
from torch import nn

from deepfield.analysis.chance import chance_level, chance_warning, has_batch_norm

MEMORISED = {"accuracy": [0.6, 0.95, 0.99, 0.99], "val_accuracy": [0.10, 0.37, 0.22, 0.30]}


def test_chance_is_the_larger_of_uniform_guessing_and_the_majority_class():
    assert chance_level(np.array([0, 1, 2, 3, 4]), 5) == 0.2
    assert chance_level(np.array([0, 0, 0, 1]), 2) == 0.75


def test_validation_at_chance_with_training_high_is_flagged_with_the_batch_norm_cause():
    line = chance_warning(MEMORISED, 0.2, batch_norm=True, steps_per_epoch=4)
    assert line.startswith("validation accuracy stayed near chance (median 0.26 over the later epochs, best 0.37, "
                           "chance 0.20) while training accuracy reached 0.99")
    assert "batch normalisation with only 4 training steps per epoch" in line
    assert "likely cause" not in chance_warning(MEMORISED, 0.2, batch_norm=True, steps_per_epoch=200)
    assert "likely cause" not in chance_warning(MEMORISED, 0.2, batch_norm=False, steps_per_epoch=4)


def test_a_run_that_generalises_or_learnt_nothing_is_not_flagged():
    assert chance_warning({"accuracy": [0.99], "val_accuracy": [0.81]}, 0.2) is None  # 0.81 > 0.2 + 0.25 * 0.8
    late = {"accuracy": [0.5, 0.9, 0.99, 0.99], "val_accuracy": [0.2, 0.2, 0.8, 0.85]}
    assert chance_warning(late, 0.2) is None  # learnt late: judged on its later epochs
    assert chance_warning({"accuracy": [0.3], "val_accuracy": [0.2]}, 0.2) is None  # not a generalisation gap
    assert chance_warning(MEMORISED, 0.75) is not None  # 0.37 is below a 75 % majority class
    assert chance_warning({"loss": [1.0]}, 0.2) is None  # a regression


def test_batch_norm_is_found_inside_a_model():
    assert has_batch_norm(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)))
    assert not has_batch_norm(nn.Sequential(nn.Linear(2, 2)))
