"""The image-to-image tasks refuse the options that would move a stamp without its target, each in its own words."""
import pytest

from deepfield.errors import DeepfieldError
from deepfield.tasks import deblend, denoise, generate, segment
from deepfield.tasks.config import load_config

TASKS = {"segment": segment, "denoise": denoise, "deblend": deblend, "generate": generate}


def config(task, **sections):
    return load_config(None, document={"task": task, "data": {"path": "stamps.h5", **sections.pop("data", {})},
                                       **sections})


@pytest.mark.parametrize("task, moves", [("segment", "the stamp alone, not its label map"),
                                         ("denoise", "the input alone, not its target"),
                                         ("deblend", "the blend alone, not its target source"),
                                         ("generate", "the stamps alone, not their conditions")])
def test_augmentations_and_other_data_kinds_are_refused_in_the_tasks_words(task, moves):
    with pytest.raises(DeepfieldError, match=rf"^training\.augment: the augmentations move {moves}; leave it out "
                                             rf"for task {task}$"):
        TASKS[task].check_options(config(task, training={"augment": ["dihedral"]}))
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
