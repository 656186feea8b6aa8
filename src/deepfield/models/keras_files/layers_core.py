"""Translators of Keras's core layers: Dense, Flatten, Activation (and the ReLU, Softmax, LeakyReLU, ELU
layers, which are activations), PReLU, Dropout, SpatialDropout1D/2D/3D, GaussianNoise, GaussianDropout,
AlphaDropout, ActivityRegularization."""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from deepfield.models import noise, regularizers
from deepfield.models.base import Layer
from deepfield.models.blocks import PReLU
from deepfield.models.core import Activation, Dense, Dropout, Flatten, SpatialDropout
from deepfield.models.keras_files import layout
from deepfield.models.keras_files.translate import (KerasLayer, Tensor, Translator, activation, activation_to_keras,
                                                    arrays_named, initializer, initializer_to_keras, penalties,
                                                    penalties_to_keras, register, training_only)

REGULARISERS = ("kernel_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint",
                "bias_constraint")


@register
class DenseTranslator(Translator):
    """``kernel (in, units)`` -> ``weight (units, in)``; after a Flatten its rows follow deepfield's order."""

    keras = ("Dense",)
    deepfield = Dense
    keeps_order = True
    makes_features = True

    def to_deepfield(self, keras: KerasLayer, x: Tensor) -> Layer:
        if len(x.shape) > 1 and x.channels_last:
            raise keras.refuse(f"a Dense on a {x.keras_rank}-axis channels-last tensor acts on its channels, which "
                               "deepfield holds on axis 1 (put a Flatten or a global pooling before it)")
        keras.expect("lora_rank", None)
        return Dense(int(keras.get("units")), activation=activation(keras, True),
                     use_bias=bool(keras.get("use_bias", True)),
                     kernel_initializer=initializer(keras, "kernel_initializer", "glorot_uniform"),
                     bias_initializer=initializer(keras, "bias_initializer", "zeros"),
                     **penalties(keras, *REGULARISERS), name=keras.name)

    def weights_to_deepfield(self, keras: KerasLayer, layer: Layer, arrays: list[np.ndarray],
                             x: Tensor) -> dict[str, np.ndarray]:
        named = arrays_named(keras, arrays, ["weight", "bias"] if layer.use_bias else ["weight"])
        kernel = named["weight"]
        if kernel.ndim != 2:
            raise keras.refuse(f"its kernel has shape {kernel.shape}, a Dense kernel is (inputs, units)")
        named["weight"] = layout.rows_to_deepfield(kernel, x.order)
        return named

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        return {"class_name": "Dense", "config": {
            "units": layer.units, "activation": activation_to_keras(layer), "use_bias": layer.use_bias,
            "kernel_initializer": initializer_to_keras(layer, "kernel_initializer"),
            "bias_initializer": initializer_to_keras(layer, "bias_initializer"),
            **penalties_to_keras(layer, *REGULARISERS)}}

    def weights_to_keras(self, layer: Layer, x: Tensor) -> list[np.ndarray]:
        kernel = layout.rows_to_keras(layer.weight.detach().cpu().numpy(), x.order)
        return [kernel] + ([layer.bias.detach().cpu().numpy()] if layer.use_bias else [])

    def output(self, keras: KerasLayer, x: Tensor, shape: tuple[int, ...]) -> Tensor:
        return Tensor(shape, x.channels_last)  # the order is in the weights now


@register
class FlattenTranslator(Translator):
    """deepfield flattens ``(C, H, W)`` in that order, Keras in its own tensor's: the order travels to the Dense."""

    keras = ("Flatten",)
    deepfield = Flatten

    def to_deepfield(self, keras: KerasLayer, x: Tensor) -> Layer:
        keras.channels_last()  # a data_format deepfield knows
        return Flatten(name=keras.name)

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        return {"class_name": "Flatten", "config": {"data_format": "channels_last"}}

    def output(self, keras: KerasLayer, x: Tensor, shape: tuple[int, ...]) -> Tensor:
        order = layout.flatten_order(x.shape, x.channels_last, not keras.channels_last())
        return Tensor(shape, x.channels_last, order)


@register
class ActivationTranslator(Translator):
    """``Activation(name)``; also Keras's activation layers at their deepfield-equivalent settings."""

    keras = ("Activation", "ReLU", "Softmax", "LeakyReLU", "ELU")
    deepfield = Activation
    keeps_order = True

    def to_deepfield(self, keras: KerasLayer, x: Tensor) -> Layer:
        name = {"Activation": None, "ReLU": "relu", "Softmax": "softmax", "LeakyReLU": "leaky_relu",
                "ELU": "elu"}[keras.class_name]
        if name == "relu":
            keras.expect("max_value", None)
            keras.expect("negative_slope", 0.0, 0)
            keras.expect("threshold", 0.0, 0)
        elif name == "softmax" and (x.channels_last or len(x.shape) == 1):
            keras.expect("axis", -1, x.keras_rank - 1)
        elif name == "softmax":
            keras.expect("axis", 1)
        elif name == "leaky_relu":  # Keras 3 says negative_slope (default 0.3), Keras 2 alpha; deepfield's is 0.2
            keras.expect("negative_slope" if "negative_slope" in keras.config else "alpha", 0.2)
        elif name == "elu":
            keras.expect("alpha", 1.0, 1)
        name = name or activation(keras, x.channels_last or len(x.shape) == 1) or "linear"
        return Activation(name, name=keras.name)

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        return {"class_name": "Activation", "config": {"activation": activation_to_keras(layer)}}


class _DropoutBase(Translator):
    keeps_order = True

    def to_deepfield(self, keras: KerasLayer, x: Tensor) -> Layer:
        keras.expect("noise_shape", None)
        if keras.class_name.startswith("Spatial"):
            keras.channels_last()
            return SpatialDropout(float(keras.get("rate")), name=keras.name)
        return Dropout(float(keras.get("rate")), name=keras.name)


@register
class DropoutTranslator(_DropoutBase):
    keras = ("Dropout",)
    deepfield = Dropout
    masks = "pass"

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        return {"class_name": "Dropout", "config": {"rate": layer.rate}}


@register
class SpatialDropoutTranslator(_DropoutBase):
    """Keras's SpatialDropout1D/2D/3D are deepfield's one SpatialDropout (the input's rank decides)."""

    keras = ("SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D")
    deepfield = SpatialDropout
    keeps_order = False

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        return {"class_name": f"SpatialDropout{len(x.shape) - 1}D",
                "config": {"rate": layer.rate, "data_format": "channels_last"}}


@register
class PReLUTranslator(Translator):
    """deepfield's PReLU has one slope per channel: Keras's with every spatial axis shared (``shared_axes=[1, 2]``
    on images; on flat features, one slope per feature, Keras's default)."""

    keras = ("PReLU",)
    deepfield = PReLU
    keeps_order = True  # on flat features the slopes are reordered with them

    def to_deepfield(self, keras: KerasLayer, x: Tensor) -> Layer:
        spatial = list(range(1, len(x.shape))) if x.channels_last else list(range(2, len(x.shape) + 1))
        shared = keras.get("shared_axes") or []
        if sorted(int(a) for a in ([shared] if isinstance(shared, int) else shared)) != spatial:
            raise keras.refuse(f"shared_axes={shared!r}: deepfield's PReLU has one slope per channel "
                               f"(shared_axes={spatial})")
        training_only(keras, "alpha_regularizer", "alpha_constraint")
        return PReLU(alpha_initializer=initializer(keras, "alpha_initializer", "zeros"), name=keras.name)

    def weights_to_deepfield(self, keras: KerasLayer, layer: Layer, arrays: list[np.ndarray],
                             x: Tensor) -> dict[str, np.ndarray]:
        alpha = arrays_named(keras, arrays, ["alpha"])["alpha"].reshape(-1)
        return {"alpha": layout.features_to_deepfield(alpha, x.order)}

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        return {"class_name": "PReLU", "config": {
            "alpha_initializer": initializer_to_keras(layer, "alpha_initializer"),
            "shared_axes": list(range(1, len(x.shape))) or None}}

    def weights_to_keras(self, layer: Layer, x: Tensor) -> list[np.ndarray]:
        alpha = layout.features_to_keras(layer.alpha.detach().cpu().numpy(), x.order)
        return [alpha.reshape(*([1] * (len(x.shape) - 1)), -1)]


class _NoiseTranslator(Translator):
    """Noise drawn per number while training (and in MC sampling), the identity otherwise."""

    keeps_order = True
    argument: ClassVar[str]  # "stddev" or "rate"

    def to_deepfield(self, keras: KerasLayer, x: Tensor) -> Layer:
        extra = {"noise_shape": keras.get("noise_shape")} if keras.class_name == "AlphaDropout" else {}
        return self.deepfield(float(keras.get(self.argument)), seed=keras.get("seed"), **extra, name=keras.name)

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        config = layer.get_config()
        return {"class_name": type(layer).__name__,
                "config": {k: config[k] for k in (self.argument, "seed", "noise_shape") if k in config}}


for _cls, _argument in ((noise.GaussianNoise, "stddev"), (noise.GaussianDropout, "rate"),
                        (noise.AlphaDropout, "rate")):
    register(type(f"{_cls.__name__}Translator", (_NoiseTranslator,),
                  {"keras": (_cls.__name__,), "deepfield": _cls, "argument": _argument}))


@register
class ActivityRegularizationTranslator(Translator):
    """The identity, with a penalty on its input while training (a sum: the order of the numbers does not matter)."""

    keras = ("ActivityRegularization",)
    deepfield = regularizers.ActivityRegularization
    keeps_order = True

    def to_deepfield(self, keras: KerasLayer, x: Tensor) -> Layer:
        return regularizers.ActivityRegularization(l1=float(keras.get("l1", 0.0)), l2=float(keras.get("l2", 0.0)),
                                                   name=keras.name)

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        return {"class_name": "ActivityRegularization", "config": {"l1": layer.l1, "l2": layer.l2}}
