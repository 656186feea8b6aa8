"""Translators of Keras's BatchNormalization, LayerNormalization (over one axis) and GroupNormalization.

deepfield's BatchNormalization takes Keras's ``momentum`` as Keras means it (``moving = moving * momentum +
batch * (1 - momentum)``, PyTorch's ``1 - momentum``) and Keras's ``epsilon``, so both pass unchanged; the
``axis`` moves with the channels (:func:`~deepfield.models.keras_files.layout.axis_to_deepfield`). Weights:
``gamma`` (when ``scale``), ``beta`` (when ``center``), ``moving_mean``, ``moving_variance``, in that order.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from deepfield.errors import DeepfieldError
from deepfield.models.base import Layer
from deepfield.models.keras_files import layout
from deepfield.models.keras_files.translate import (KerasLayer, Tensor, Translator, arrays_named, initializer,
                                                    initializer_to_keras, penalties, penalties_to_keras, register,
                                                    training_only)
from deepfield.models.normalization import BatchNormalization, GroupNormalization, LayerNormalization

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


class _PerChannelTranslator(Translator):
    """LayerNormalization over one axis and GroupNormalization: the axis moves with the channels, gamma and beta
    (one number per channel, or per feature) stay as they are."""

    keeps_order = True  # on flat features, their gamma and beta are reordered with them

    def axis(self, keras: KerasLayer, x: Tensor) -> int:
        axis = keras.get("axis", -1)
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise keras.refuse(f"axis {axis!r}: deepfield converts it over one axis")
        if x.order is not None and len(x.shape) == 1 and keras.class_name == "GroupNormalization":
            raise keras.refuse("it groups flattened features, which deepfield holds in another order")
        return layout.axis_to_deepfield(axis, x.keras_rank, x.channels_last, keras.label)

    def common(self, keras: KerasLayer) -> dict[str, Any]:
        return {"epsilon": float(keras.get("epsilon", 0.001)), "center": bool(keras.get("center", True)),
                "scale": bool(keras.get("scale", True)),
                "beta_initializer": initializer(keras, "beta_initializer", "zeros"),
                "gamma_initializer": initializer(keras, "gamma_initializer", "ones"),
                **penalties(keras, *NORMALISATION_PENALTIES), "name": keras.name}

    def weights_to_deepfield(self, keras: KerasLayer, layer: Layer, arrays: list[np.ndarray],
                             x: Tensor) -> dict[str, np.ndarray]:
        names = [w for w, on in (("gamma", layer.scale), ("beta", layer.center)) if on]
        return {k: layout.features_to_deepfield(v, x.order) for k, v in arrays_named(keras, arrays, names).items()}

    def to_keras_common(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        axis = layer.get_config()["axis"]
        return {"axis": layout.axis_to_keras(axis, x.keras_rank, x.channels_last), "epsilon": layer.epsilon,
                "center": layer.center, "scale": layer.scale,
                "beta_initializer": initializer_to_keras(layer, "beta_initializer"),
                "gamma_initializer": initializer_to_keras(layer, "gamma_initializer"),
                **penalties_to_keras(layer, *NORMALISATION_PENALTIES)}

    def weights_to_keras(self, layer: Layer, x: Tensor) -> list[np.ndarray]:
        return [layout.features_to_keras(getattr(layer, w).detach().cpu().numpy(), x.order)
                for w, on in (("gamma", layer.scale), ("beta", layer.center)) if on]


NORMALISATION_PENALTIES = ("beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint")


@register
class LayerNormalizationTranslator(_PerChannelTranslator):
    keras = ("LayerNormalization",)
    deepfield = LayerNormalization

    def to_deepfield(self, keras: KerasLayer, x: Tensor) -> Layer:
        keras.expect("rms_scaling", False)
        return LayerNormalization(axis=self.axis(keras, x), **self.common(keras))

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        if not isinstance(layer.get_config()["axis"], int):
            raise DeepfieldError(f"{layer.label}: Keras files get a LayerNormalization over one axis from deepfield")
        return {"class_name": "LayerNormalization", "config": self.to_keras_common(layer, x)}


@register
class GroupNormalizationTranslator(_PerChannelTranslator):
    keras = ("GroupNormalization",)
    deepfield = GroupNormalization

    def to_deepfield(self, keras: KerasLayer, x: Tensor) -> Layer:
        return GroupNormalization(groups=int(keras.get("groups", 32)), axis=self.axis(keras, x), **self.common(keras))

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        return {"class_name": "GroupNormalization", "config": {"groups": layer.groups,
                                                                **self.to_keras_common(layer, x)}}
