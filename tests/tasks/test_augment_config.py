"""training.augment takes the Keras augmentation layers by name; a morphology run trains on them."""
import importlib

import pytest

from deepfield.errors import DeepfieldError
from deepfield.tasks.config import load_config
from deepfield.tasks.pipeline import task_for
from deepfield.tasks.run import train


def write(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_keras_layer_entries_validate_beside_the_old_ones(tmp_path):
    text = ("task: morphology\ndata: {path: x}\ntraining:\n  augment:\n    - dihedral\n"
            "    - {name: shift, max_shift: 2}\n    - {name: RandomFlip, mode: horizontal}\n    - RandomRotation90\n"
            "    - {name: RandomRotation, factor: 0.25, fill_mode: constant}\n")
    config = load_config(write(tmp_path, text))
    assert config.training.augment[2:] == [{"name": "RandomFlip", "mode": "horizontal"}, "RandomRotation90",
                                           {"name": "RandomRotation", "factor": 0.25, "fill_mode": "constant"}]


@pytest.mark.parametrize("entries, message", [
    ("[dihedral, {name: RandomFlip, mode: sideways}]",
     "training.augment: entry 2: RandomFlip mode 'sideways'; expected one of: horizontal, vertical, "
     "horizontal_and_vertical"),
    ("[{name: RandomZoom, factor: 0.1}]", "training.augment: entry 1: layer RandomZoom: bad config"),
])
def test_a_bad_layer_entry_is_one_line_naming_it(tmp_path, entries, message):
    path = write(tmp_path, f"task: morphology\ndata: {{path: x}}\ntraining: {{augment: {entries}}}\n")
    with pytest.raises(DeepfieldError) as caught:
        load_config(path)
    assert message in str(caught.value) and "\n" not in str(caught.value).strip()


def test_a_morphology_run_trains_on_d4_stamps_by_keras_names(small_sky, tmp_path):
    config = load_config(None, document={
        "task": "morphology", "out": str(tmp_path / "run"), "seed": 3, "data": {"path": str(small_sky)},
        "model": {"preset": "resnet", "options": {"filters": [4, 6], "blocks": 1}},
        "training": {"epochs": 1, "batch_size": 32, "device": "cpu",
                     "augment": [{"name": "RandomFlip", "mode": "horizontal"}, "RandomRotation90",
                                 {"name": "RandomZoom", "height_factor": 0.1}]}})
    run = train(config, verbose=0)
    assert (run / "weights.safetensors").exists() and (run / "history.csv").exists()
    assert load_config(run / "config.yaml").training.augment == config.training.augment


@pytest.mark.parametrize("task", ["deblend", "denoise", "segment"])
def test_image_to_image_tasks_move_their_targets_and_take_only_pixel_moving_entries(task):
    module = importlib.import_module(f"deepfield.tasks.{task}")
    assert task_for(load_config(None, document={"task": task, "data": {"path": "x.h5"}})).augments_targets

    def config(entries):
        return load_config(None, document={"task": task, "data": {"path": "x.h5"}, "training": {"augment": entries}})

    module.check_options(config(["dihedral", {"name": "shift", "max_shift": 2}, "RandomFlip", "RandomRotation90"]))
    with pytest.raises(DeepfieldError) as error:
        module.check_options(config(["dihedral", {"name": "gaussian_noise", "sigma": 0.1}]))
    assert str(error.value).startswith("training.augment: entry 2: gaussian_noise changes pixel values, not only "
                                       "their places, and the targets move with the inputs here")
