"""Translators of Keras's convolution and pooling layers: Conv1D/2D/3D, MaxPooling and AveragePooling
1D/2D/3D, GlobalAveragePooling and GlobalMaxPooling 1D/2D.

Kernels are ``(*kernel, in, out)`` in Keras whatever the data format, ``(out, in, *kernel)`` in PyTorch;
the layer's ``data_format`` says how Keras holds the tensors around it, which deepfield holds channels first.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from deepfield.models import conv, pooling
from deepfield.models.base import Layer
from deepfield.models.keras_files import layout
from deepfield.models.keras_files.layers_core import REGULARISERS
from deepfield.models.keras_files.translate import (KerasLayer, Tensor, Translator, activation, activation_to_keras,
                                                    arrays_named, initializer, initializer_to_keras, penalties,
                                                    penalties_to_keras, register)


class _Spatial(Translator):
    """A layer over the spatial axes: its ``data_format`` must be the layout its input has in the Keras model (a
    2-axis tensor held alike is made channels last before a channels-last one: :func:`translate.sequence_bridge`)."""

    spatial = True

    def check_format(self, keras: KerasLayer, x: Tensor) -> bool:
        channels_last = keras.channels_last()
        if channels_last != x.channels_last:
            raise keras.refuse(f"its data_format {keras.get('data_format')!r} differs from the layers before it; "
                               "deepfield converts models of one data format")
        return channels_last

    def output(self, keras: KerasLayer, x: Tensor, shape: tuple[int, ...]) -> Tensor:
        return Tensor(shape, keras.channels_last())


class _ConvTranslator(_Spatial):
    extra: ClassVar[tuple[str, ...]] = ()
    """Further arguments a subclass's layers take as Keras writes them (a transposed convolution's output_padding)."""
    grouped: ClassVar[bool] = True
    """The Keras class takes ``groups`` (deepfield converts 1); the transposed convolutions do not."""

    def to_deepfield(self, keras: KerasLayer, x: Tensor) -> Layer:
        last = self.check_format(keras, x)
        if self.grouped:
            keras.expect("groups", 1)
        keras.expect("lora_rank", None)
        padding = keras.expect("padding", "valid", "same")
        return self.deepfield(int(keras.get("filters")), keras.get("kernel_size"), strides=keras.get("strides", 1),
                              padding=padding, dilation_rate=keras.get("dilation_rate", 1),
                              activation=activation(keras, last), use_bias=bool(keras.get("use_bias", True)),
                              kernel_initializer=initializer(keras, "kernel_initializer", "glorot_uniform"),
                              bias_initializer=initializer(keras, "bias_initializer", "zeros"),
                              **penalties(keras, *REGULARISERS), **{key: keras.get(key) for key in self.extra},
                              name=keras.name)

    def weights_to_deepfield(self, keras: KerasLayer, layer: Layer, arrays: list[np.ndarray],
                             x: Tensor) -> dict[str, np.ndarray]:
        named = arrays_named(keras, arrays, ["weight", "bias"] if layer.use_bias else ["weight"])
        if named["weight"].ndim != layer.rank + 2:
            raise keras.refuse(f"its kernel has shape {named['weight'].shape}, expected {layer.rank + 2} axes")
        named["weight"] = layout.kernel_to_torch(named["weight"])
        return named

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        return {"class_name": type(layer).__name__, "config": {
            "filters": layer.filters, "kernel_size": list(layer.kernel_size), "strides": list(layer.strides),
            "padding": layer.padding, "data_format": "channels_last", "dilation_rate": list(layer.dilation_rate),
            **({"groups": 1} if self.grouped else {}), "activation": activation_to_keras(layer),
            "use_bias": layer.use_bias,
            "kernel_initializer": initializer_to_keras(layer, "kernel_initializer"),
            "bias_initializer": initializer_to_keras(layer, "bias_initializer"),
            **penalties_to_keras(layer, *REGULARISERS), **{key: layer.get_config()[key] for key in self.extra}}}

    def weights_to_keras(self, layer: Layer, x: Tensor) -> list[np.ndarray]:
        kernel = layout.kernel_to_keras(layer.weight.detach().cpu().numpy())
        return [kernel] + ([layer.bias.detach().cpu().numpy()] if layer.use_bias else [])


for _cls in (conv.Conv1D, conv.Conv2D, conv.Conv3D):
    register(type(f"{_cls.__name__}Translator", (_ConvTranslator,), {"keras": (_cls.__name__,), "deepfield": _cls}))


class _PoolingTranslator(_Spatial):
    def to_deepfield(self, keras: KerasLayer, x: Tensor) -> Layer:
        self.check_format(keras, x)
        return self.deepfield(keras.get("pool_size", 2), strides=keras.get("strides"),
                              padding=keras.expect("padding", "valid", "same"), name=keras.name)

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        return {"class_name": type(layer).__name__, "config": {
            "pool_size": list(layer.pool_size), "strides": list(layer.strides), "padding": layer.padding,
            "data_format": "channels_last"}}


for _cls in (pooling.MaxPooling1D, pooling.MaxPooling2D, pooling.MaxPooling3D, pooling.AveragePooling1D,
             pooling.AveragePooling2D, pooling.AveragePooling3D):
    register(type(f"{_cls.__name__}Translator", (_PoolingTranslator,), {"keras": (_cls.__name__,), "deepfield": _cls}))


class _GlobalPoolingTranslator(_Spatial):
    def to_deepfield(self, keras: KerasLayer, x: Tensor) -> Layer:
        self.check_format(keras, x)
        return self.deepfield(keepdims=bool(keras.get("keepdims", False)), name=keras.name)

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        return {"class_name": type(layer).__name__, "config": {"data_format": "channels_last",
                                                                "keepdims": layer.keepdims}}

    def output(self, keras: KerasLayer, x: Tensor, shape: tuple[int, ...]) -> Tensor:
        return Tensor(shape, x.channels_last)  # (C,) or, kept, (C, 1, ...) as Keras's (1, ..., C)


for _cls in (pooling.GlobalAveragePooling1D, pooling.GlobalAveragePooling2D, pooling.GlobalMaxPooling1D,
             pooling.GlobalMaxPooling2D):
    register(type(f"{_cls.__name__}Translator", (_GlobalPoolingTranslator,),
                  {"keras": (_cls.__name__,), "deepfield": _cls}))
