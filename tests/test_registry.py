"""The one registry: every named family is found through it and refuses names the same way."""
from __future__ import annotations

import importlib
import re

import pytest

from deepfield import registry
from deepfield.errors import DeepfieldError

# family -> (the module that fills it, names users write: registered names, aliases, Keras spellings)
FAMILIES = {
    "layer": ("deepfield.models", ["Dense", "Conv2D", "MaxPooling2D"]),
    "loss": ("deepfield.training.losses", ["mse", "categorical_crossentropy", "mean_squared_error",
                                           "CategoricalCrossentropy"]),
    "metric": ("deepfield.training.metrics", ["accuracy", "acc", "mean_absolute_error", "AUC"]),
    "optimizer": ("deepfield.training.optimizers", ["adam", "Adam", "RMSprop", "sgd"]),
    "transform": ("deepfield.data.transforms", ["asinh", "dihedral", "compose"]),
    "initializer": ("deepfield.models.initializers", ["he_normal", "GLOROT_UNIFORM", "uniform"]),
    "initializer class": ("deepfield.models.initializers", ["VarianceScaling", "Constant"]),
    "activation": ("deepfield.models.activations", ["relu", "ReLU", "softmax", "swish"]),
    "model preset": ("deepfield.models.zoo", ["lecture-cnn", "resnet", "quality-cnn"]),
    "feature extractor": ("deepfield.tasks.features", ["hog", "HOG", "color_histogram", "glcm"]),
    "task": ("deepfield.tasks.pipeline", ["morphology", "quality", "photoz", "tabular"]),
}


@pytest.mark.parametrize("kind", FAMILIES)
def test_every_family_resolves_its_names_through_the_one_registry(kind):
    module, spellings = FAMILIES[kind]
    importlib.import_module(module)
    family = registry.family(kind)
    assert isinstance(family, registry.Registry) and family.kind == kind
    for spelling in spellings:
        assert family.lookup(spelling) in family.values()


@pytest.mark.parametrize("kind", FAMILIES)
def test_an_unknown_name_gives_the_one_message_listing_the_known_names(kind):
    importlib.import_module(FAMILIES[kind][0])
    family = registry.family(kind)
    with pytest.raises(DeepfieldError) as err:
        family.lookup("no-such-name")
    known = ", ".join(sorted(family.known()))
    assert str(err.value) == f"unknown {kind} 'no-such-name'; expected one of: {known}"
    assert set(family.names()) <= set(family.known())


def test_the_getters_raise_the_registry_message():
    from deepfield.data import transforms
    from deepfield.models import activations, initializers, zoo
    from deepfield.models.base import layer_from_config
    from deepfield.tasks import features
    from deepfield.training import losses, metrics, optimizers
    calls = {
        "layer": lambda: layer_from_config({"class_name": "Danse"}),
        "loss": lambda: losses.get("Danse"),
        "metric": lambda: metrics.get("Danse"),
        "optimizer": lambda: optimizers.get("Danse"),
        "transform": lambda: transforms.get("Danse"),
        "initializer": lambda: initializers.get("Danse"),
        "initializer class": lambda: initializers.get({"class_name": "Danse"}),
        "activation": lambda: activations.get("Danse"),
        "model preset": lambda: zoo.get("Danse"),
        "feature extractor": lambda: features.get("Danse"),
    }
    for kind, call in calls.items():
        with pytest.raises(DeepfieldError, match=re.escape(f"unknown {kind} 'Danse'; expected one of: ")):
            call()


def test_a_retired_name_is_accepted_but_not_offered():
    from deepfield.models import zoo
    assert zoo.PRESETS.lookup("quality-cnn") is zoo.PRESETS["euclid-quality"]
    assert "quality-cnn" not in registry.family("model preset").known()


def test_registering_a_taken_name_is_refused():
    from deepfield.training import losses
    family = registry.family("loss")
    with pytest.raises(DeepfieldError, match="loss 'mse' is registered already"):
        family.add("mse", losses.MeanAbsoluteError)
    with pytest.raises(DeepfieldError, match="loss 'MSE' is registered already"):
        family.alias("MSE", "mae")
    with pytest.raises(DeepfieldError, match="loss 'mse' is registered already"):
        class Mine(losses.Loss):  # a subclass registers itself under its name
            name = "mse"
    assert family.lookup("mse") is losses.MeanSquaredError


def test_a_second_registry_of_a_family_is_refused():
    importlib.import_module("deepfield.training.losses")
    with pytest.raises(DeepfieldError, match="a registry of loss names exists already"):
        registry.Registry("loss")


def test_a_class_defined_again_replaces_itself():
    family = registry.Registry("test redefinition")

    def define():
        class Redefined:
            pass
        return Redefined

    first, second = define(), define()  # a notebook cell run twice
    family.add("redefined", first)
    family.add("redefined", second)
    assert first is not second and family.lookup("redefined") is second
    with pytest.raises(DeepfieldError, match="test redefinition 'redefined' is registered already"):
        family.add("redefined", dict)


def test_the_config_offers_exactly_the_registered_tasks():
    """``task:`` is validated by the config (without loading torch); the pipeline builds it from the registry."""
    import typing

    from deepfield.tasks.config import RunConfig
    from deepfield.tasks.pipeline import TASKS

    assert sorted(typing.get_args(RunConfig.model_fields["task"].annotation)) == sorted(TASKS.names())
