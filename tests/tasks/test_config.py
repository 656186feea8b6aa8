"""Run configs: validation names the bad key; overrides; the resolved config round-trips."""
import pytest
import yaml

from deepfield.errors import DeepfieldError
from deepfield.tasks.config import load_config


def write(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_defaults_overrides_and_round_trip(tmp_path):
    path = write(tmp_path, "task: morphology\ndata:\n  path: sky.h5\n  bands: g,r,i\n")
    config = load_config(path, ["training.epochs=3", "data.split.test=0.2", "model.options={dropout: 0.1}"])
    assert config.data.bands == ["g", "r", "i"]
    assert config.training.epochs == 3 and config.data.split.test == 0.2
    assert config.model.options == {"dropout": 0.1}
    again = load_config(None, document=yaml.safe_load(config.to_yaml()))
    assert again == config


@pytest.mark.parametrize("text, message", [
    ("task: morphology\ndata: {path: x}\ntraining: {epochs: ten}\n", "training.epochs: Input should be a valid integer"),
    ("task: morph\ndata: {path: x}\n", "task: Input should be 'morphology', 'quality', 'photoz', 'tabular', 'denoise'"),
    ("task: morphology\ndata: {path: x, bandz: [g]}\n", "data.bandz: unknown key"),
    ("task: morphology\n", "data: Field required"),
    ("task: morphology\ndata: {path: x}\ntraining: {epochs: 0}\n", "training.epochs: Input should be greater than or equal to 1"),
    ("task: morphology\ndata: {path: x}\ntraining: {reduce_lr: 0}\n", "training.reduce_lr: Input should be greater"),
    ("a: [\n", "not valid YAML at line"),
    ("- just\n- a list\n", "expected a mapping of sections"),
    ("task: tabular\ndata: {path: x}\ntraining: {optimizer: {name: adam, amsgrad: maybe}}\n",
     "training.optimizer: adam: amsgrad must be true or false, got 'maybe'"),
    ("task: tabular\ndata: {path: x}\ntraining: {optimizer: {name: sgd, nesterov: 'false'}}\n",
     "training.optimizer: sgd: nesterov must be true or false, got 'false'"),
    ("task: tabular\ndata: {path: x}\ntraining: {optimizer: {name: adam, beta1: 0.8}}\n",
     "training.optimizer: unknown adam argument 'beta1'"),
    ("task: tabular\ndata: {path: x}\ntraining: {optimizer: adamm}\n", "training.optimizer: unknown optimizer 'adamm'"),
])
def test_bad_configs_name_the_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(DeepfieldError) as error:
        load_config(path)
    assert str(error.value).startswith(str(path)) and message in str(error.value)


def test_bad_override_and_missing_file(tmp_path):
    path = write(tmp_path, "task: morphology\ndata: {path: x}\n")
    with pytest.raises(DeepfieldError, match="must look like key=value"):
        load_config(path, ["training.epochs"])
    with pytest.raises(DeepfieldError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")


def test_baselines_default_to_every_feature_family_and_learner():
    from deepfield.tasks import features
    from deepfield.tasks.baselines.learners import NAMES
    from deepfield.tasks.config import BaselinesConfig

    defaults = BaselinesConfig()
    assert set(defaults.learners) == set(NAMES)
    assert set(defaults.features) == {"hog", "colour_histogram", "texture", "sift_bovw", "morphology"}
    assert all(features.get(name) for name in defaults.features)  # every default is a real extractor


def test_training_augment_lists_random_transforms_by_name_with_their_options(tmp_path):
    path = write(tmp_path, "task: morphology\ndata: {path: x}\ntraining:\n  augment:\n    - dihedral\n"
                           "    - {name: shift, max_shift: 2}\n    - {name: gaussian_noise, sigma: 0.05}\n")
    config = load_config(path)
    assert config.training.augment == ["dihedral", {"name": "shift", "max_shift": 2},
                                       {"name": "gaussian_noise", "sigma": 0.05}]
    assert load_config(None, document=yaml.safe_load(config.to_yaml())) == config
    assert load_config(write(tmp_path, "task: morphology\ndata: {path: x}\n")).training.augment == []


@pytest.mark.parametrize("entries, message", [
    ("[dihedral, {name: shift, max: 2}]", "training.augment: entry 2: shift: unexpected argument 'max'"),
    ("[flips]", "training.augment: entry 1: unknown transform 'flips'; expected one of:"),
    ("[asinh]", "training.augment: entry 1: asinh is not a random augmentation"),
    ("[{name: gaussian_noise, sigma: -1}]", "training.augment: entry 1: gaussian_noise: sigma must be finite and >= 0"),
    ("dihedral", "training.augment: Input should be a valid list"),
])
def test_bad_training_augment_names_the_key_and_the_entry(tmp_path, entries, message):
    path = write(tmp_path, f"task: morphology\ndata: {{path: x}}\ntraining: {{augment: {entries}}}\n")
    with pytest.raises(DeepfieldError) as error:
        load_config(path)
    assert str(error.value).startswith(f"{path}: {message}")
