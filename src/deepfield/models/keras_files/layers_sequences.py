"""Translators of Keras's sequence layers: SimpleRNN, LSTM, GRU, Bidirectional, Embedding, Masking,
TimeDistributed.

deepfield's recurrent layers take ``(N, T, F)`` as Keras does (:mod:`deepfield.models.recurrent`), and
store their weights as Keras 3 does (``kernel``, ``recurrent_kernel``, ``bias``, Keras's gate order): the
weights copy over unchanged. A sequence is held alike in both (``Tensor.channels_last`` False): a model
that starts with one of these layers takes its inputs as Keras does, ``(N, T, F)`` or ids ``(N, T)``.
Keras 3 keeps a recurrent layer's weights in its cell (``layers/lstm/cell/vars``).
"""
from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch

from deepfield.models import bidirectional, blocks, embedding, masking, recurrent
from deepfield.models.base import Layer
from deepfield.models.keras_files.translate import (EXPORTS, KerasLayer, Tensor, Translator, arrays_named,
                                                    initializer, initializer_to_keras, penalties, penalties_to_keras,
                                                    register, translator_for)

SEQUENCE_CLASSES = ("SimpleRNN", "LSTM", "GRU", "Bidirectional", "Embedding", "Masking")
"""Keras layers that take a sequence as Keras holds it: a model starting with one takes Keras's layout."""
_INITIALIZERS = {"kernel_initializer": "glorot_uniform", "recurrent_initializer": "orthogonal",
                 "bias_initializer": "zeros"}
_EMBEDDING_PENALTIES = ("embeddings_regularizer", "activity_regularizer", "embeddings_constraint")
_FLAGS = ("use_bias", "unit_forget_bias", "dropout", "recurrent_dropout", "seed", "return_sequences",
          "go_backwards", "stateful", "unroll", "reset_after", "use_cudnn", "zero_output_for_mask")


class _RecurrentTranslator(Translator):
    weights_path = "cell"
    masks = "read"
    takes_sequence = True

    def to_deepfield(self, keras: KerasLayer, x: Tensor) -> Layer:
        if len(x.shape) != 2 or x.channels_last:
            raise keras.refuse(f"it takes a sequence (N, T, F), here a tensor of shape {x.shape} (deepfield's)")
        keras.expect("return_state", False)
        taken = inspect.signature(self.deepfield.__init__).parameters
        flags = {k: keras.get(k) for k in _FLAGS if k in keras.config and k in taken}
        activations = {k: keras.get(k) for k in ("activation", "recurrent_activation") if k in taken and k in
                       keras.config}
        inits = {k: initializer(keras, k, v) for k, v in _INITIALIZERS.items()}
        return self.deepfield(int(keras.get("units")), **activations, **flags, **inits,
                              **penalties(keras, *recurrent.PENALTIES), name=keras.name)

    def weights_to_deepfield(self, keras: KerasLayer, layer: Layer, arrays: list[np.ndarray],
                             x: Tensor) -> dict[str, np.ndarray]:
        return arrays_named(keras, arrays, ["kernel", "recurrent_kernel"] + (["bias"] if layer.use_bias else []))

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        config = layer.get_config()
        kept = {k: config[k] for k in ("units", "activation", "recurrent_activation", *_FLAGS) if k in config}
        return {"class_name": type(layer).__name__,
                "config": {**kept, **{k: initializer_to_keras(layer, k) for k in _INITIALIZERS},
                           **penalties_to_keras(layer, *recurrent.PENALTIES)}}

    def weights_to_keras(self, layer: Layer, x: Tensor) -> list[np.ndarray]:
        return [getattr(layer, w).detach().cpu().numpy() for w in ("kernel", "recurrent_kernel", "bias")
                if getattr(layer, w, None) is not None]

    def output(self, keras: KerasLayer, x: Tensor, shape: tuple[int, ...]) -> Tensor:
        return Tensor(shape, channels_last=False)


for _cls in (recurrent.SimpleRNN, recurrent.LSTM, recurrent.GRU):
    register(type(f"{_cls.__name__}Translator", (_RecurrentTranslator,),
                  {"keras": (_cls.__name__,), "deepfield": _cls}))


@register
class BidirectionalTranslator(Translator):
    """The wrapped recurrent layer (and its backward copy) translated as above; weights: the forward layer's, then
    the backward layer's."""

    keras = ("Bidirectional",)
    deepfield = bidirectional.Bidirectional
    parts = ("forward_layer", "backward_layer")
    masks = "read"
    takes_sequence = True

    def to_deepfield(self, keras: KerasLayer, x: Tensor) -> Layer:
        merge_mode = keras.expect("merge_mode", "concat", "sum", "ave", "mul")
        inner = [KerasLayer(spec) for spec in (keras.get("layer"), keras.get("backward_layer")) if spec is not None]
        made = []
        for part in inner:
            translator = translator_for(part)
            if not isinstance(translator, _RecurrentTranslator):
                raise keras.refuse(f"it wraps a {part.class_name}; deepfield's Bidirectional wraps a recurrent layer")
            made.append(translator.to_deepfield(part, x))
        return bidirectional.Bidirectional(made[0], merge_mode=merge_mode,
                                           backward_layer=made[1] if len(made) > 1 else None, name=keras.name)

    def weights_to_deepfield(self, keras: KerasLayer, layer: Layer, arrays: list[np.ndarray],
                             x: Tensor) -> dict[str, np.ndarray]:
        names = [f"{part}.{w}" for part in self.parts for w in ("kernel", "recurrent_kernel", "bias")
                 if w != "bias" or getattr(layer, part).use_bias]
        return arrays_named(keras, arrays, names)

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        specs = {}
        for key, part in (("layer", layer.forward_layer), ("backward_layer", layer.backward_layer)):
            spec = EXPORTS[type(part)].to_keras(part, x)
            specs[key] = {"module": "keras.layers", "class_name": spec["class_name"], "registered_name": None,
                          "config": {"name": part.name, **spec["config"]}}
        return {"class_name": "Bidirectional", "config": {"merge_mode": layer.merge_mode, **specs}}

    def weight_groups(self, layer: Layer, x: Tensor) -> dict[str, list[np.ndarray]]:
        return {f"{part}/cell": EXPORTS[type(getattr(layer, part))].weights_to_keras(getattr(layer, part), x)
                for part in self.parts}

    def output(self, keras: KerasLayer, x: Tensor, shape: tuple[int, ...]) -> Tensor:
        return Tensor(shape, channels_last=False)


@register
class EmbeddingTranslator(Translator):
    """Ids ``(N, T)`` -> vectors ``(N, T, output_dim)``; ``embeddings`` ``(input_dim, output_dim)``, as Keras's."""

    keras = ("Embedding",)
    deepfield = embedding.Embedding
    input_dtype = torch.int64
    masks = "make"

    def to_deepfield(self, keras: KerasLayer, x: Tensor) -> Layer:
        keras.expect("lora_rank", None)
        return embedding.Embedding(int(keras.get("input_dim")), int(keras.get("output_dim")),
                                   embeddings_initializer=initializer(keras, "embeddings_initializer", "uniform"),
                                   mask_zero=bool(keras.get("mask_zero", False)),
                                   **penalties(keras, *_EMBEDDING_PENALTIES), name=keras.name)

    def weights_to_deepfield(self, keras: KerasLayer, layer: Layer, arrays: list[np.ndarray],
                             x: Tensor) -> dict[str, np.ndarray]:
        return arrays_named(keras, arrays, ["embeddings"])

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        return {"class_name": "Embedding", "config": {
            "input_dim": layer.input_dim, "output_dim": layer.output_dim, "mask_zero": layer.mask_zero,
            "embeddings_initializer": initializer_to_keras(layer, "embeddings_initializer"),
            **penalties_to_keras(layer, *_EMBEDDING_PENALTIES)}}

    def weights_to_keras(self, layer: Layer, x: Tensor) -> list[np.ndarray]:
        return [layer.embeddings.detach().cpu().numpy()]

    def output(self, keras: KerasLayer, x: Tensor, shape: tuple[int, ...]) -> Tensor:
        return Tensor(shape, channels_last=False)


@register
class MaskingTranslator(Translator):
    keras = ("Masking",)
    deepfield = masking.Masking
    masks = "make"

    def to_deepfield(self, keras: KerasLayer, x: Tensor) -> Layer:
        return masking.Masking(float(keras.get("mask_value", 0.0)), name=keras.name)

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        return {"class_name": "Masking", "config": {"mask_value": layer.get_config()["mask_value"]}}


@register
class TimeDistributedTranslator(Translator):
    """``TimeDistributed(layer)`` over a sequence ``(N, T, F)``: the same wrapper in both, the wrapped layer
    (a Dense, Dropout, Activation, ...) translated as it is on flat features ``(F,)``; Keras 3 keeps its weights in
    the wrapper's ``layer``. Frames (``(N, T, H, W, C)`` in Keras) would be ``(N, C, T, H, W)`` in deepfield, which
    its TimeDistributed does not take: refused."""

    keras = ("TimeDistributed",)
    deepfield = blocks.TimeDistributed
    weights_path = "layer"
    takes_sequence = True  # a Conv1D's (steps, features) gets a Permute((2, 1)) before it, as a recurrent layer

    def to_deepfield(self, keras: KerasLayer, x: Tensor) -> Layer:
        if len(x.shape) != 2 or x.channels_last:
            raise keras.refuse(f"it runs a layer over the steps of a {x.keras_rank}-axis channels-last tensor, which "
                               "deepfield holds channels first; deepfield converts TimeDistributed over a sequence "
                               "(N, T, F)")
        inner = KerasLayer(keras.get("layer"))
        return blocks.TimeDistributed(translator_for(inner).to_deepfield(inner, _step(x)), name=keras.name)

    def weights_to_deepfield(self, keras: KerasLayer, layer: Layer, arrays: list[np.ndarray],
                             x: Tensor) -> dict[str, np.ndarray]:
        inner = KerasLayer(keras.get("layer"))
        state = translator_for(inner).weights_to_deepfield(inner, layer.layer, arrays, _step(x))
        return {f"layer.{k}": v for k, v in state.items()}

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        spec = EXPORTS[type(layer.layer)].to_keras(layer.layer, _step(x))
        return {"class_name": "TimeDistributed", "config": {"layer": {
            "module": "keras.layers", "class_name": spec["class_name"], "registered_name": None,
            "config": {"name": layer.layer.name, **spec["config"]}}}}

    def weights_to_keras(self, layer: Layer, x: Tensor) -> list[np.ndarray]:
        return EXPORTS[type(layer.layer)].weights_to_keras(layer.layer, _step(x))

    def output(self, keras: KerasLayer, x: Tensor, shape: tuple[int, ...]) -> Tensor:
        return Tensor(shape, channels_last=False)


def _step(x: Tensor) -> Tensor:
    """One step of a sequence ``(T, F)``: flat features ``(F,)``."""
    return Tensor(x.shape[1:], channels_last=False)
