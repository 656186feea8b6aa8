"""Translators of Keras's preprocessing layers: Rescaling, Normalization, RandomFlip, RandomRotation,
RandomTranslation, RandomZoom.

The random layers act only while training and have no weights: their arguments pass as written (flips and
factors name the height and width axes alike in both layouts); deepfield's take no ``data_format`` but
their own channels first. Normalization's statistics are Keras's ``mean`` and ``variance`` (its third
weight, ``count``, serves only further ``adapt`` calls); written back, they go into the Keras config.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from deepfield.models import preprocessing
from deepfield.models.base import Layer
from deepfield.models.keras_files import layout
from deepfield.models.keras_files.layers_conv import _Spatial
from deepfield.models.keras_files.translate import KerasLayer, Tensor, Translator, arrays_named, register


@register
class RescalingTranslator(Translator):
    keras = ("Rescaling",)
    deepfield = preprocessing.Rescaling
    keeps_order = True

    def to_deepfield(self, keras: KerasLayer, x: Tensor) -> Layer:
        return preprocessing.Rescaling(keras.get("scale"), offset=keras.get("offset", 0.0), name=keras.name)

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        config = layer.get_config()
        return {"class_name": "Rescaling", "config": {"scale": config["scale"], "offset": config["offset"]}}


@register
class NormalizationTranslator(Translator):
    """One kept axis (Keras's default -1, the channels), moved with the channels."""

    keras = ("Normalization",)
    deepfield = preprocessing.Normalization

    def to_deepfield(self, keras: KerasLayer, x: Tensor) -> Layer:
        axis = keras.get("axis", -1)
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise keras.refuse(f"axis {axis!r}: deepfield converts a Normalization keeping one axis")
        given = {k: keras.get(k) for k in ("mean", "variance") if keras.get(k) is not None}
        return preprocessing.Normalization(axis=layout.axis_to_deepfield(axis, x.keras_rank, x.channels_last,
                                                                         keras.label),
                                           invert=bool(keras.get("invert", False)), **given, name=keras.name)

    def weights_to_deepfield(self, keras: KerasLayer, layer: Layer, arrays: list[np.ndarray],
                             x: Tensor) -> dict[str, np.ndarray]:
        if not arrays:  # mean and variance given in the config
            return {k: v.numpy() for k, v in layer.state_dict().items()}
        named = arrays_named(keras, arrays, ["mean", "variance", "count"])
        own = layer.state_dict()
        return {k: named[k].reshape(tuple(own[k].shape)) for k in ("mean", "variance")}

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        config = layer.get_config()
        return {"class_name": "Normalization", "config": {
            "axis": layout.axis_to_keras(config["axis"] if isinstance(config["axis"], int) else config["axis"][0],
                                         x.keras_rank, x.channels_last),
            "invert": layer.invert, "mean": layer.mean.cpu().numpy().tolist(),
            "variance": layer.variance.cpu().numpy().tolist()}}


class _RandomTranslator(_Spatial):
    arguments: ClassVar[tuple[str, ...]]

    def to_deepfield(self, keras: KerasLayer, x: Tensor) -> Layer:
        if "data_format" in keras.config:
            self.check_format(keras, x)
        return self.deepfield(**{k: keras.get(k) for k in self.arguments if k in keras.config}, name=keras.name)

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        config = layer.get_config()
        return {"class_name": type(layer).__name__, "config": {k: config[k] for k in self.arguments if k in config}}

    def output(self, keras: KerasLayer, x: Tensor, shape: tuple[int, ...]) -> Tensor:
        return Tensor(shape, x.channels_last)


_AFFINE = ("fill_mode", "interpolation", "seed", "fill_value")
for _cls, _arguments in ((preprocessing.RandomFlip, ("mode", "seed")),
                         (preprocessing.RandomRotation, ("factor", *_AFFINE)),
                         (preprocessing.RandomTranslation, ("height_factor", "width_factor", *_AFFINE)),
                         (preprocessing.RandomZoom, ("height_factor", "width_factor", *_AFFINE))):
    register(type(f"{_cls.__name__}Translator", (_RandomTranslator,),
                  {"keras": (_cls.__name__,), "deepfield": _cls, "arguments": _arguments}))
