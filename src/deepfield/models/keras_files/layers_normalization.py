"""Translator of Keras's BatchNormalization.

deepfield's BatchNormalization takes Keras's ``momentum`` as Keras means it (``moving = moving * momentum +
batch * (1 - momentum)``, PyTorch's ``1 - momentum``) and Keras's ``epsilon``, so both pass unchanged; the
``axis`` moves with the channels (:func:`~deepfield.models.keras_files.layout.axis_to_deepfield`). Weights:
``gamma`` (when ``scale``), ``beta`` (when ``center``), ``moving_mean``, ``moving_variance``, in that order.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from deepfield.models.base import Layer
from deepfield.models.keras_files import layout
from deepfield.models.keras_files.translate import (KerasLayer, Tensor, Translator, arrays_named, initializer,
                                                    initializer_to_keras, register, training_only)
from deepfield.models.normalization import BatchNormalization

_WEIGHTS = ("gamma", "beta", "moving_mean", "moving_variance")


@register
class BatchNormalizationTranslator(Translator):
    keras = ("BatchNormalization",)
    deepfield = BatchNormalization
    keeps_order = True  # on flat features each vector is reordered with them

    def to_deepfield(self, keras: KerasLayer, x: Tensor) -> Layer:
        axis = keras.get("axis", -1)
        if isinstance(axis, list) and len(axis) == 1:  # tf.keras writes the built layer's [3]
            axis = axis[0]
        if not isinstance(axis, int):
            raise keras.refuse(f"axis {axis!r}: deepfield normalises along one axis")
        for key in ("renorm", "synchronized"):
            keras.expect(key, False)
        keras.expect("virtual_batch_size", None)
        keras.expect("adjustment", None)
        training_only(keras, "beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint")
        return BatchNormalization(
            axis=layout.axis_to_deepfield(axis, x.keras_rank, x.channels_last, keras.label),
            momentum=float(keras.get("momentum", 0.99)), epsilon=float(keras.get("epsilon", 0.001)),
            center=bool(keras.get("center", True)), scale=bool(keras.get("scale", True)),
            **{f"{w}_initializer": initializer(keras, f"{w}_initializer", "ones" if w in ("gamma", "moving_variance")
                                               else "zeros") for w in _WEIGHTS},
            name=keras.name)

    @staticmethod
    def _names(layer: BatchNormalization) -> list[str]:
        return [w for w, on in zip(_WEIGHTS, (layer.scale, layer.center, True, True)) if on]

    def weights_to_deepfield(self, keras: KerasLayer, layer: Layer, arrays: list[np.ndarray],
                             x: Tensor) -> dict[str, np.ndarray]:
        named = arrays_named(keras, arrays, self._names(layer))
        return {k: layout.features_to_deepfield(v, x.order) for k, v in named.items()}

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        return {"class_name": "BatchNormalization", "config": {
            "axis": layout.axis_to_keras(layer._channel_axis, x.keras_rank, x.channels_last),
            "momentum": layer.momentum, "epsilon": layer.epsilon, "center": layer.center, "scale": layer.scale,
            **{f"{w}_initializer": initializer_to_keras(layer, f"{w}_initializer") for w in _WEIGHTS}}}

    def weights_to_keras(self, layer: Layer, x: Tensor) -> list[np.ndarray]:
        return [layout.features_to_keras(getattr(layer, w).detach().cpu().numpy(), x.order)
                for w in self._names(layer)]
