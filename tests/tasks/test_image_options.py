"""The image tasks check training.augment, data.kind and the uncertainty they cannot give alike, each in its own words."""
import pytest

from deepfield.errors import DeepfieldError
from deepfield.tasks import deblend, denoise, generate, segment
from deepfield.tasks.config import load_config

TASKS = {"segment": segment, "denoise": denoise, "deblend": deblend, "generate": generate}


def config(task, **sections):
    return load_config(None, document={"task": task, "data": {"path": "stamps.h5", **sections.pop("data", {})},
                                       **sections})


@pytest.mark.parametrize("task", ["segment", "denoise", "deblend"])
def test_an_image_to_image_task_moves_its_targets_so_takes_only_pixel_moving_augmentations(task):
    TASKS[task].check_options(config(task, training={"augment": ["dihedral"]}))
    with pytest.raises(DeepfieldError, match=r"^training\.augment: entry 2: gaussian_noise changes pixel values"):
        TASKS[task].check_options(config(task, training={"augment": ["dihedral", {"name": "gaussian_noise", "sigma": 0.1}]}))


def test_generate_refuses_augmentations_which_would_move_stamps_without_their_conditions():
    with pytest.raises(DeepfieldError, match=r"^training\.augment: the augmentations would move the stamps alone, not "
                                             r"their conditions; leave it out for task generate$"):
        generate.check_options(config("generate", training={"augment": ["dihedral"]}))


@pytest.mark.parametrize("task", TASKS)
def test_other_data_kinds_are_refused_in_the_tasks_words(task):
    with pytest.raises(DeepfieldError, match=rf"^data\.kind: task {task} takes .+ \(images\)$"):
        TASKS[task].check_options(config(task, data={"kind": "spectra"}))
    TASKS[task].check_options(config(task))


@pytest.mark.parametrize("task, uncertainty, message", [
    ("segment", {"heteroscedastic": True}, "uncertainty.heteroscedastic: a mean and log-variance head is for "
                                           "regression; task segment is a per-pixel classification"),
    ("generate", {"heteroscedastic": True}, r"uncertainty.heteroscedastic: task generate draws samples instead"),
    ("generate", {"mc_samples": 4}, r"uncertainty.mc_samples: task generate draws samples instead"),
])
def test_uncertainty_a_task_cannot_give_is_refused(task, uncertainty, message):
    with pytest.raises(DeepfieldError, match=message):
        TASKS[task].check_options(config(task, uncertainty=uncertainty))
