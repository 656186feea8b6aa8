"""The way back to Keras: ``save_keras`` writes a ``.keras`` archive Keras 3 loads with ``keras.saving.load_model``;
and ``load_keras_weights`` puts a Keras weights file onto a deepfield model built the same way.

The archive is written **channels last**, Keras's default data format: convolution kernels are transposed
back and the rows of the Dense after a Flatten reordered back, so a collaborator feeds the Keras model
``(N, H, W, C)`` as usual and gets the deepfield model's outputs (channels last where they are images).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from deepfield.errors import DeepfieldError
from deepfield.models.base import Layer
from deepfield.models.keras_files import archive, layout
from deepfield.models.keras_files.loading import INPUT_LAYER, output_shape, weight_keys
from deepfield.models.keras_files.translate import EXPORTS, KerasLayer, Tensor, Translator, assign
from deepfield.models.sequential import Sequential
from deepfield.version import __version__


def _walk(model: nn.Module) -> list[tuple[Layer, Translator, KerasLayer, Tensor]]:
    """Each layer of ``model`` with its translator, its Keras config (channels last) and the tensor it takes."""
    if not isinstance(model, Sequential):
        raise DeepfieldError(f"a {type(model).__name__} has no Keras counterpart deepfield writes; save_keras and "
                             "Keras weights take a Sequential")
    if not model.built:
        model.build()
    x = Tensor(tuple(model.input_shape), channels_last=True)
    walked = []
    for name, layer in model.named_children():
        translator = EXPORTS.get(type(layer))
        label = f"layer {name!r} ({type(layer).__name__})"
        if translator is None:
            raise DeepfieldError(f"{label}: deepfield cannot write this layer for Keras (yet); the layers it converts "
                                 "are listed in the README, 'Coming from Keras'")
        spec = translator.to_keras(layer, x)
        spec["config"] = {"name": name, "trainable": True, **spec["config"]}
        keras = KerasLayer(spec)
        if x.order is not None and not translator.keeps_order:
            raise keras.refuse("it follows a Flatten of an image, whose numbers Keras lists in another order; "
                               "deepfield writes a Dense (or Dropout, Activation, BatchNormalization) there")
        walked.append((layer, translator, keras, x))
        x = translator.output(keras, x, output_shape(layer, x.shape))
    return walked


def save_keras(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` (a Sequential) as a Keras 3 ``.keras`` archive at ``path``, atomically; returns the path.

    Channels last, Keras's default: the Keras model takes ``(N, H, W, C)`` where deepfield takes ``(N, C, H, W)``.
    """
    walked = _walk(model)
    keras_shape = layout.shape_to_keras(tuple(model.input_shape), True)
    batch_shape = [None, *keras_shape]
    layers: list[dict[str, Any]] = [_entry({"class_name": INPUT_LAYER, "config": {
        "batch_shape": batch_shape, "dtype": "float32", "sparse": False, "name": "input_layer"}})]
    weights: dict[str, tuple[str, list[np.ndarray]]] = {}
    keys = weight_keys([keras.class_name for _, _, keras, _ in walked])
    for (layer, translator, keras, x), key in zip(walked, keys):
        layers.append(_entry(keras.spec))
        weights[key] = (keras.name, translator.weights_to_keras(layer, x))
    config = {"module": "keras", "class_name": "Sequential", "registered_name": None,
              "config": {"name": model.name, "trainable": True, "layers": layers},
              "build_config": {"input_shape": batch_shape}}
    return archive.write(path, config, weights, model.name, f"deepfield {__version__}")


def _entry(spec: dict[str, Any]) -> dict[str, Any]:
    return {"module": "keras.layers", "class_name": spec["class_name"], "config": spec["config"],
            "registered_name": None}


def load_keras_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load the weights Keras saved at ``path`` (``.weights.h5``, a legacy ``.h5``, or a ``.keras``'s) into
    ``model``, a deepfield Sequential built as the Keras model was (the same layers, in the same order).

    Keras 3's files name each layer's weights by its class and place (``conv2d_1``), legacy files list the
    layers that have weights in order: both are matched so, as Keras itself does. The Keras model is taken to
    be channels last, Keras's default (the Dense after a Flatten is reordered accordingly).
    """
    keras_file = archive.read(path)
    where = str(keras_file.path)
    walked = _walk(model)
    try:
        if keras_file.weights.by == "key":
            keys = weight_keys([keras.class_name for _, _, keras, _ in walked])
            found = [keras_file.weights.of(keras.name, key) for (_, _, keras, _), key in zip(walked, keys)]
        else:
            found = _in_order(walked, keras_file.weights)
        for (layer, translator, keras, x), arrays in zip(walked, found):
            assign(keras, layer, translator.weights_to_deepfield(keras, layer, arrays, x))
    except DeepfieldError as exc:
        raise DeepfieldError(f"{where}: {exc}") from None


def _in_order(walked: list[tuple[Layer, Translator, KerasLayer, Tensor]],
              weights: archive.Weights) -> list[list[np.ndarray]]:
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
