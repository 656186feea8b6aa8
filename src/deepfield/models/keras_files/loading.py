"""``load_keras``: a Keras model file as a deepfield model with the same outputs (inputs channels first).

The model comes back as the class registered in :data:`MODEL_CLASSES` for its Keras container
(``Sequential``, ``Functional``). The models layer may not import the training layer, yet the model a
user gets back must have ``compile`` / ``fit`` / ``predict``, which the training layer adds: so the
training layer registers its face classes here when it is imported (``deepfield.training.keras``), and
the public face (``deepfield.load_keras``, ``deepfield.models``) imports the training layer before
handing the loader out. Without them (the models layer used alone, ``deepfield.training`` never
imported) the plain models-layer classes are built, which have no ``fit``.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import torch
from torch import nn

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.models.base import Layer, snake_case
from deepfield.models.functional import Functional
from deepfield.models.keras_files import archive, graph, layout
from deepfield.models.keras_files.layers_sequences import SEQUENCE_CLASSES
from deepfield.models.keras_files.translate import (KerasLayer, Tensor, Translator, assign, check_mask,
                                                    feature_chain, refuse_code, sequence_bridge, translator_for,
                                                    with_mask)
from deepfield.models.sequential import Sequential
from deepfield.registry import Registry

MODEL_CLASSES: Registry[type[nn.Module]] = Registry("Keras model class")
"""Keras container class name -> the class :func:`load_keras` builds (filled by the training layer)."""
DEFAULT_CLASSES: dict[str, type[nn.Module]] = {"Sequential": Sequential, "Functional": Functional}
"""What is built when the training layer has registered nothing."""
INPUT_LAYER = graph.INPUT_LAYER
MODELS = graph.MODELS


def load_keras(path: str | os.PathLike[str], *, input_shape: tuple[int, ...] | None = None) -> nn.Module:
    """The model saved by Keras at ``path`` (``.keras``, or a legacy ``.h5`` full model), with its weights.

    Its outputs equal the Keras model's on the same inputs, given channels first (``(N, C, H, W)``
    where Keras took ``(N, H, W, C)``). ``input_shape``: one sample's shape, channels first, for a
    file that does not say it (an input of unknown size, ``None`` in Keras). Nothing in the file is
    run: a layer deepfield lacks, a ``Lambda`` layer or a custom object is refused in one line naming it.
    """
    keras_file = archive.read(path)
    where = str(keras_file.path)
    if keras_file.config is None:
        raise DeepfieldError(f"{where}: holds weights only; build the same model in deepfield and call "
                             f"model.load_weights({where!r})")
    try:
        return _model(keras_file.weights, keras_file.config, input_shape)[0]
    except DeepfieldError as exc:
        raise DeepfieldError(f"{where}: {exc}") from None


def _model(weights: archive.Weights, spec: dict[str, Any], input_shape: tuple[int, ...] | None,
           given: Tensor | list[Tensor] | None = None) -> tuple[nn.Module, list[Tensor]]:
    """The model of a Keras model config, with its weights, and its outputs as the converter follows them.
    ``given``: the tensors a model used as a layer is called on (else its own inputs, as Keras holds them)."""
    class_name = spec.get("class_name")
    config = spec.get("config")
    if class_name == "Sequential":
        layers = config.get("layers") if isinstance(config, dict) else config  # Keras 2.0-2.2: the list itself
        if not isinstance(layers, list):
            raise DeepfieldError("the Sequential config has no list of layers")
        refuse_code(spec, layers, "the model")
        return _sequential(weights, spec, layers, input_shape, given)
    if class_name in ("Functional", "Model"):  # Keras 3; tf.keras wrote Model or Functional
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise DeepfieldError("the functional model's config has no list of layers")
        refuse_code(spec, config["layers"], "the model")
        layers = [KerasLayer(entry) for entry in config["layers"]]

        def nested(keras: KerasLayer, key: str, x: Any) -> tuple[nn.Module, list[Tensor]]:
            return _model(weights.inside(keras.name, key), keras.spec, None, x)

        return graph.from_keras(layers, config, weight_keys([layer.class_name for layer in layers]), weights.of,
                                input_shape, _channels_last(layers), model_class("Functional"), make_layer,
                                finish_layer, nested, given)
    raise DeepfieldError(f"the model is a {class_name!r}; deepfield converts Keras Sequential and functional models "
                         "(a subclassed model is Python code, which a file does not carry)")


def model_class(keras_class: str) -> type[nn.Module]:
    """The class built for a Keras container: the training layer's when registered, else the models layer's."""
    return MODEL_CLASSES.find(keras_class) or DEFAULT_CLASSES[keras_class]


def weight_keys(class_names: list[str]) -> list[str]:
    """Keras 3's keys of layers' weights (``layers/<key>``): the class in snake case, numbered from its second use."""
    used: dict[str, int] = {}
    keys = []
    for name in class_names:
        base = snake_case(name)  # Keras's naming.to_snake_case: the same rules
        if base in used:
            used[base] += 1
            keys.append(f"{base}_{used[base]}")
        else:
            used[base] = 0
            keys.append(base)
    return keys


def _sequential(weights: archive.Weights, spec: dict[str, Any], entries: list[Any],
                input_shape: tuple[int, ...] | None, given: Any = None) -> tuple[nn.Module, list[Tensor]]:
    layers = [KerasLayer(entry) for entry in entries]
    inputs = [layer for layer in layers if layer.class_name == INPUT_LAYER]
    if inputs and inputs[0] is not layers[0] or len(inputs) > 1:
        raise DeepfieldError("an InputLayer inside a Sequential must come first, and only once")
    body = layers[1:] if inputs else layers
    if isinstance(given, list):
        raise DeepfieldError("a Sequential used as a layer takes one tensor")
    if given is None:
        channels_last = _channels_last(body)
        x = Tensor(_input_shape(spec, layers, input_shape, channels_last), channels_last)
    else:
        x = dataclasses.replace(given, features=())
    config = spec.get("config") if isinstance(spec.get("config"), dict) else {}
    model = model_class("Sequential")(name=str(config.get("name", "sequential")), input_shape=x.shape)
    for keras, key in zip(body, weight_keys([layer.class_name for layer in body])):
        if keras.class_name in MODELS:  # a model used as a layer: converted as a model, called on x
            inner, outputs = _model(weights.inside(keras.name, key), keras.spec, None, x)
            if len(outputs) != 1:
                raise keras.refuse("a model with several outputs inside a Sequential")
            model.add(inner)
            x = dataclasses.replace(outputs[0], features=())
            continue
        bridge, x = sequence_bridge(keras, x)
        if bridge is not None:
            model.add(bridge)
        translator, layer = make_layer(keras, x)
        y = with_mask(translator, keras, x, translator.output(keras, x, output_shape(layer, x.shape,
                                                                                    translator.input_dtype)))
        finish_layer(keras, translator, layer, x, weights.of(keras.name, key, translator.parts))
        model.add(layer)
        x = feature_chain(translator, layer, x, y)
    return model, [x]


def _channels_last(layers: list[KerasLayer]) -> bool:
    """How the Keras model holds its inputs: as the first layer that says it (a data_format; a sequence layer takes
    Keras's layout as deepfield does), else channels last, Keras's default."""
    for layer in layers:
        if "data_format" in layer.config:
            return layer.channels_last()
        if layer.class_name in SEQUENCE_CLASSES:
            return False
    return True


def _input_shape(spec: dict[str, Any], layers: list[KerasLayer], given: tuple[int, ...] | None,
                 channels_last: bool) -> tuple[int, ...]:
    """One sample's deepfield shape: ``given``, else the InputLayer's, the first layer's or the model's build shape."""
    if given is not None:
        return arguments.shape("input_shape", given)
    candidates = [layers[0].get(key) for key in ("batch_shape", "batch_input_shape") if layers]
    candidates.append((spec.get("build_config") or {}).get("input_shape"))
    shape = next((s for s in candidates if isinstance(s, list) and s), None)
    if shape is None:
        raise DeepfieldError("the file does not say the model's input shape (it was saved before it was built): "
                             "pass input_shape=(C, H, W)")
    if any(s is None for s in shape[1:]):
        raise DeepfieldError(f"the model's input shape {shape[1:]} has sizes Keras leaves open (None); "
                             "pass input_shape=(C, H, W), channels first, to fix them")
    return layout.shape_to_deepfield(arguments.shape("the Keras model's input shape", shape[1:]), channels_last)


def make_layer(keras: KerasLayer, x: Tensor | list[Tensor]) -> tuple[Translator, Layer]:
    """The translator of a Keras layer that takes ``x`` (a list: a merging layer) and the deepfield layer it makes."""
    translator = translator_for(keras)
    if any(t.order is not None for t in (x if isinstance(x, list) else [x])) and not translator.keeps_order:
        raise keras.refuse("it follows a Flatten of a channels-last tensor, which deepfield flattens in another "
                           "order; deepfield converts a Dense (or Dropout, Activation, BatchNormalization, a merge) "
                           "there")
    check_mask(translator, keras, x)
    try:
        return translator, translator.to_deepfield(keras, x)
    except DeepfieldError as exc:
        message = str(exc)
        raise (exc if message.startswith(keras.label) else keras.refuse(message)) from None


def finish_layer(keras: KerasLayer, translator: Translator, layer: Layer, x: Tensor | list[Tensor],
                 arrays: list[np.ndarray]) -> None:
    """Load Keras's ``arrays`` into the built ``layer``; a layer Keras froze (``trainable: false``) is frozen."""
    assign(keras, layer, translator.weights_to_deepfield(keras, layer, arrays, x))
    if keras.get("trainable", True) is False:
        layer.trainable = False


def output_shape(layer: nn.Module, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> tuple[int, ...]:
    """One sample's output shape of ``layer`` (built on the way) for a sample of ``shape``: a dry pass of zeros."""
    was_training = layer.training
    device = next((p.device for p in layer.parameters()), torch.device("cpu"))
    layer.eval()
    try:
        with torch.no_grad():
            return tuple(layer(torch.zeros((1, *shape), dtype=dtype, device=device)).shape[1:])
    finally:
        layer.train(was_training)

