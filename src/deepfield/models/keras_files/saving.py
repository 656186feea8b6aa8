"""The way back to Keras: ``save_keras`` writes a ``.keras`` archive Keras 3 loads with ``keras.saving.load_model``;
and ``load_keras_weights`` puts a Keras weights file onto a deepfield model built the same way.

The archive is written **channels last**, Keras's default data format: convolution kernels are transposed
back and the rows of the Dense after a Flatten reordered back, so a collaborator feeds the Keras model
``(N, H, W, C)`` as usual and gets the deepfield model's outputs (channels last where they are images).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from deepfield.errors import DeepfieldError
from deepfield.models.base import Layer
from deepfield.models.functional import Functional
from deepfield.models.keras_files import archive, graph, layout
from deepfield.models.keras_files.layers_sequences import SEQUENCE_CLASSES
from deepfield.models.keras_files.loading import INPUT_LAYER, output_shape, weight_keys
from deepfield.models.keras_files.translate import (EXPORTS, KerasLayer, Tensor, Translator, assign, chain_order,
                                                    feature_chain, reorder_features)
from deepfield.models.sequential import Sequential
from deepfield.version import __version__


Walked = list[tuple[Layer, Translator, KerasLayer, Any]]
"""Each layer with weights to move: the layer, its translator, its Keras config and the tensor(s) it takes."""


def _translate(name: str, layer: nn.Module, x: Any) -> tuple[Translator, KerasLayer]:
    """The translator of one deepfield layer taking ``x`` and its Keras config (channels last)."""
    if isinstance(layer, (Sequential, Functional)):  # a model used as a layer: Keras nests its config
        nested = _Nested(name, layer, x)
        return nested, KerasLayer(nested.spec)
    translator = EXPORTS.get(type(layer))
    if translator is None:
        raise DeepfieldError(f"layer {name!r} ({type(layer).__name__}): deepfield cannot write this layer for Keras "
                             "(yet); the layers it converts are listed in the README, 'Coming from Keras'")
    spec = translator.to_keras(layer, x)
    spec = {"module": "keras.layers", "class_name": spec["class_name"], "registered_name": None,
            "config": {"name": name, "trainable": layer.trainable, **spec["config"]}}
    keras = KerasLayer(spec)
    if translator.spatial and not isinstance(x, list) and len(x.shape) == 2 and not x.channels_last:
        raise keras.refuse(f"it reads as (channels, steps) a tensor of shape {x.shape} that Keras holds alike, which "
                           f"Keras's {keras.class_name} would read as (steps, channels); put a Permute((2, 1)) "
                           "before it on a (steps, channels) tensor (Keras then needs none)")
    if translator.takes_sequence and not isinstance(x, list) and len(x.shape) == 2 and x.channels_last:
        raise keras.refuse(f"it reads as (steps, features) a tensor of shape {x.shape} that Keras holds channels last, "
                           "as its transpose; put a Permute((2, 1)) before it (Keras then needs none)")
    if any(t.order is not None for t in (x if isinstance(x, list) else [x])) and not translator.keeps_order:
        raise keras.refuse("it follows a Flatten of an image, whose numbers Keras lists in another order; "
                           "deepfield writes a Dense (or Dropout, Activation, BatchNormalization, a merge) there")
    return translator, keras


def takes_sequence(module: nn.Module) -> bool:
    """Whether ``module`` takes a sequence as Keras holds it (a recurrent layer, Embedding, Masking): a model's
    input read by it keeps its layout in Keras; any other is written channels last."""
    translator = EXPORTS.get(type(module))
    return translator is not None and translator.keras[0] in SEQUENCE_CLASSES


def _sequential(model: Sequential, given: Tensor | None = None) -> tuple[Walked, Tensor, Tensor]:
    """The layers to write, the model's input as Keras holds it (``given``: a model used as a layer, called on it)
    and its output."""
    if not model.built:
        model.build()
    if given is None:
        given = Tensor(tuple(model.input_shape), channels_last=not takes_sequence(next(iter(model.children()))))
    x = given = dataclasses.replace(given, features=())
    walked = []
    children = list(model.named_children())
    for i, (name, layer) in enumerate(children):
        if (vanishing := EXPORTS.get(type(layer))) is not None and vanishing.vanishes(layer, x, [
                child for _, child in children[i + 1:i + 2]]):
            x = Tensor(output_shape(layer, x.shape), channels_last=not x.channels_last)
            continue
        translator, keras = _translate(name, layer, x)
        walked.append((layer, translator, keras, x))
        x = feature_chain(translator, layer, x,
                          translator.output(keras, x, output_shape(layer, x.shape, translator.input_dtype)))
    return walked, given, x


def _keras_model(model: nn.Module, given: Any = None) -> tuple[dict[str, Any], list[str], list[Any], list[Tensor]]:
    """Keras's config of ``model``, the Keras 3 weight keys of its layers, the layers (an input: ``None``) and its
    outputs as the converter follows them; ``given``: the tensors a model used as a layer is called on."""
    if isinstance(model, Functional):
        entries, ends, steps, outputs = graph.to_keras(model, _translate, takes_sequence, given)
        config = {"module": "keras.src.models.functional", "class_name": "Functional", "registered_name": "Functional",
                  "config": {"name": model.name, "trainable": True, "layers": entries, **ends}}
        return config, weight_keys([e["class_name"] for e in entries]), steps, outputs
    if not isinstance(model, Sequential):
        raise DeepfieldError(f"a {type(model).__name__} has no Keras counterpart deepfield writes; save_keras and "
                             "Keras weights take a Sequential or functional model")
    if isinstance(given, list):
        raise DeepfieldError(f"{model.name!r}: a Sequential used as a layer takes one tensor")
    walked, given, output = _sequential(model, given)
    batch_shape = [None, *layout.shape_to_keras(given.shape, given.channels_last)]
    layers = [{"module": "keras.layers", "class_name": INPUT_LAYER, "registered_name": None, "config": {
        "batch_shape": batch_shape, "dtype": "float32", "sparse": False, "name": "input_layer"}}]
    layers += [keras.spec for _, _, keras, _ in walked]
    config = {"module": "keras", "class_name": "Sequential", "registered_name": None,
              "config": {"name": model.name, "trainable": True, "layers": layers},
              "build_config": {"input_shape": batch_shape}}
    return config, weight_keys([keras.class_name for _, _, keras, _ in walked]), list(walked), [output]


class _Nested(Translator):
    """A deepfield Sequential or functional model used as a layer of a functional model: Keras nests its config
    (the model's own, written for the tensor it is called on) and keeps its weights under ``layers/<key>/layers``."""

    keeps_order = False

    def __init__(self, name: str, model: nn.Module, x: Any):
        config, self.keys, self.steps, outputs = _keras_model(model, x)
        if len(outputs) != 1:
            raise DeepfieldError(f"model {name!r}: a model with several outputs used as a layer is not written yet")
        self.spec = {**config, "config": {**config["config"], "name": name}}
        self.followed = outputs[0]

    def output(self, keras: KerasLayer, x: Any, shape: tuple[int, ...]) -> Tensor:
        return dataclasses.replace(self.followed, features=())

    def weight_groups(self, layer: Layer, x: Tensor) -> dict[str, list[np.ndarray]]:
        return {f"layers/{key}": arrays for key, (_, arrays) in _weights(self.keys, self.steps).items()}

    def weights_to_deepfield(self, keras: KerasLayer, layer: Layer, arrays: list[np.ndarray],
                             x: Tensor) -> dict[str, np.ndarray]:
        raise keras.refuse("a model inside the model: load the Keras file with load_keras, which converts it")


def _weights(keys: list[str], walked: list[Any]) -> dict[str, tuple[str, list[np.ndarray]]]:
    """Keras 3's weight groups of a model's layers (``walked``, keyed ``keys``), by their path, with the layer's
    name; the layers before a Reshape into an image with their features in Keras's order."""
    weights: dict[str, tuple[str, list[np.ndarray]]] = {}
    of_layer: dict[int, list[list[np.ndarray]]] = {}
    for key, step in zip(keys, walked):
        if step is not None:
            layer, translator, keras, x = step
            for part, arrays in translator.weight_groups(layer, x).items():
                weights[f"{key}/{part}" if part else key] = (keras.name, arrays)
                of_layer.setdefault(id(layer), []).append(arrays)
            if (order := chain_order(translator, layer, x)) is None:
                continue
            for arrays in (a for made in x.features for a in of_layer.get(id(made), [])):
                # Keras's features (the last axis) in Keras's order: deepfield's feature order[k] is its k-th
                arrays[:] = [a[..., order] if a.ndim and a.shape[-1] == len(order) else a for a in arrays]
    return weights


def save_keras(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` (a Sequential or functional model) as a Keras 3 ``.keras`` archive at ``path``, atomically;
    returns the path.

    Channels last, Keras's default: the Keras model takes ``(N, H, W, C)`` where deepfield takes ``(N, C, H, W)``.
    """
    config, keys, walked, _ = _keras_model(model)
    weights = _weights(keys, walked)
    return archive.write(path, config, weights, model.name, f"deepfield {__version__}")


def load_keras_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load the weights Keras saved at ``path`` (``.weights.h5``, a legacy ``.h5``, or a ``.keras``'s) into
    ``model``, a deepfield Sequential or functional model built as the Keras model was (the same layers, in the
    same order).

    Keras 3's files name each layer's weights by its class and place (``conv2d_1``), legacy files list the
    layers that have weights in order: both are matched so, as Keras itself does. The Keras model is taken to
    be channels last, Keras's default (the Dense after a Flatten is reordered accordingly).
    """
    keras_file = archive.read(path)
    where = str(keras_file.path)
    _, keys, steps, _ = _keras_model(model)
    walked = [(step, key) for step, key in zip(steps, keys) if step is not None]
    try:
        if keras_file.weights.by == "key":
            found = [keras_file.weights.of(step[2].name, key, step[1].parts) for step, key in walked]
        else:
            found = _in_order([step for step, _ in walked], keras_file.weights)
        for ((layer, translator, keras, x), _), arrays in zip(walked, found):
            assign(keras, layer, translator.weights_to_deepfield(keras, layer, arrays, x))
        for (layer, translator, _, x), _ in walked:
            if (order := chain_order(translator, layer, x)) is not None:
                reorder_features(x.features, order)
    except DeepfieldError as exc:
        raise DeepfieldError(f"{where}: {exc}") from None


def _in_order(walked: Walked, weights: archive.Weights) -> list[list[np.ndarray]]:
    """Legacy files: the arrays of the layers that have weights, given in order to the layers that have weights."""
    stored = [arrays for arrays in weights.arrays.values() if arrays]
    holders = [i for i, (layer, _, _, _) in enumerate(walked) if layer.state_dict()]
    if len(stored) != len(holders):
        raise DeepfieldError(f"the file holds weights for {len(stored)} layers, the model has {len(holders)} "
                             "layers with weights (build the model as the Keras model was)")
    found: list[list[np.ndarray]] = [[] for _ in walked]
    for i, arrays in zip(holders, stored):
        found[i] = arrays
    return found
