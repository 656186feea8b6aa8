"""Translators of Keras's shape layers: ZeroPadding, Cropping and UpSampling 1D/2D/3D, the transposed,
depthwise and separable convolutions, Reshape, Permute and RepeatVector.

Padding, cropping and up-sampling name the spatial axes in the same order in both layouts (``(H, W)``), so
their arguments pass unchanged. Kernels: a transposed convolution's is ``(*kernel, out, in)`` in Keras,
``(in, out, *kernel)`` in PyTorch (the same transpose as a convolution's); a depthwise kernel is
``(*kernel, C, multiplier)`` in Keras, ``(C * multiplier, 1, *kernel)`` in PyTorch's grouped convolution.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from deepfield.errors import DeepfieldError
from deepfield.models import conv_transpose, reshaping, separable
from deepfield.models.base import Layer
from deepfield.models.keras_files import layout
from deepfield.models.keras_files.layers_conv import _ConvTranslator, _Spatial
from deepfield.models.keras_files.translate import (EXPORTS, KerasLayer, Tensor, Translator, activation,
                                                    activation_to_keras, arrays_named, chain_order, initializer,
                                                    initializer_to_keras, penalties, penalties_to_keras, register,
                                                    reorder_features)


DEPTHWISE_PENALTIES = ("depthwise_regularizer", "bias_regularizer", "activity_regularizer", "depthwise_constraint",
                       "bias_constraint")
SEPARABLE_PENALTIES = (*DEPTHWISE_PENALTIES, "pointwise_regularizer", "pointwise_constraint")


class _ResizeTranslator(_Spatial):
    argument: ClassVar[str]  # "padding", "cropping" or "size"

    def to_deepfield(self, keras: KerasLayer, x: Tensor) -> Layer:
        self.check_format(keras, x)
        extra = {"interpolation": keras.expect("interpolation", "nearest", "bilinear")} \
            if keras.class_name == "UpSampling2D" else {}
        return self.deepfield(keras.get(self.argument), **extra, name=keras.name)

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        config = layer.get_config()
        kept = {k: config[k] for k in (self.argument, "interpolation") if k in config}
        if type(layer).__name__ not in ("Cropping1D", "UpSampling1D"):  # these two are channels last only in Keras
            kept["data_format"] = "channels_last"
        return {"class_name": type(layer).__name__, "config": kept}


for _cls, _argument in ((reshaping.ZeroPadding1D, "padding"), (reshaping.ZeroPadding2D, "padding"),
                        (reshaping.ZeroPadding3D, "padding"), (reshaping.Cropping1D, "cropping"),
                        (reshaping.Cropping2D, "cropping"), (reshaping.Cropping3D, "cropping"),
                        (reshaping.UpSampling1D, "size"), (reshaping.UpSampling2D, "size"),
                        (reshaping.UpSampling3D, "size")):
    register(type(f"{_cls.__name__}Translator", (_ResizeTranslator,),
                  {"keras": (_cls.__name__,), "deepfield": _cls, "argument": _argument}))


class _ConvTransposeTranslator(_ConvTranslator):
    extra = ("output_padding",)
    grouped = False


for _cls in (conv_transpose.Conv1DTranspose, conv_transpose.Conv2DTranspose, conv_transpose.Conv3DTranspose):
    register(type(f"{_cls.__name__}Translator", (_ConvTransposeTranslator,),
                  {"keras": (_cls.__name__,), "deepfield": _cls}))


def depthwise_to_torch(kernel: np.ndarray) -> np.ndarray:
    """Keras's depthwise kernel ``(*k, C, m)`` as PyTorch's grouped one ``(C * m, 1, *k)``."""
    flat = kernel.reshape(*kernel.shape[:-2], -1)
    return np.ascontiguousarray(np.moveaxis(flat, -1, 0)[:, None])


def depthwise_to_keras(weight: np.ndarray, multiplier: int) -> np.ndarray:
    """PyTorch's grouped kernel ``(C * m, 1, *k)`` as Keras's depthwise ``(*k, C, m)``."""
    flat = np.moveaxis(weight[:, 0], 0, -1)
    return np.ascontiguousarray(flat.reshape(*flat.shape[:-1], -1, multiplier))


class _DepthwiseTranslator(_Spatial):
    def to_deepfield(self, keras: KerasLayer, x: Tensor) -> Layer:
        last = self.check_format(keras, x)
        return self.deepfield(keras.get("kernel_size"), strides=keras.get("strides", 1),
                              padding=keras.expect("padding", "valid", "same"),
                              depth_multiplier=int(keras.get("depth_multiplier", 1)),
                              dilation_rate=keras.get("dilation_rate", 1), activation=activation(keras, last),
                              use_bias=bool(keras.get("use_bias", True)),
                              depthwise_initializer=initializer(keras, "depthwise_initializer", "glorot_uniform"),
                              bias_initializer=initializer(keras, "bias_initializer", "zeros"),
                              **penalties(keras, *DEPTHWISE_PENALTIES), name=keras.name)

    def weights_to_deepfield(self, keras: KerasLayer, layer: Layer, arrays: list[np.ndarray],
                             x: Tensor) -> dict[str, np.ndarray]:
        named = arrays_named(keras, arrays, ["weight", "bias"] if layer.use_bias else ["weight"])
        named["weight"] = depthwise_to_torch(named["weight"])
        return named

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        return {"class_name": type(layer).__name__, "config": {
            "kernel_size": list(layer.kernel_size), "strides": list(layer.strides), "padding": layer.padding,
            "depth_multiplier": layer.depth_multiplier, "data_format": "channels_last",
            "dilation_rate": list(layer.dilation_rate), "activation": activation_to_keras(layer),
            "use_bias": layer.use_bias, "depthwise_initializer": initializer_to_keras(layer, "depthwise_initializer"),
            "bias_initializer": initializer_to_keras(layer, "bias_initializer"),
            **penalties_to_keras(layer, *DEPTHWISE_PENALTIES)}}

    def weights_to_keras(self, layer: Layer, x: Tensor) -> list[np.ndarray]:
        kernel = depthwise_to_keras(layer.weight.detach().cpu().numpy(), layer.depth_multiplier)
        return [kernel] + ([layer.bias.detach().cpu().numpy()] if layer.use_bias else [])


for _cls in (separable.DepthwiseConv1D, separable.DepthwiseConv2D):
    register(type(f"{_cls.__name__}Translator", (_DepthwiseTranslator,),
                  {"keras": (_cls.__name__,), "deepfield": _cls}))


class _SeparableTranslator(_Spatial):
    def to_deepfield(self, keras: KerasLayer, x: Tensor) -> Layer:
        last = self.check_format(keras, x)
        return self.deepfield(int(keras.get("filters")), keras.get("kernel_size"), strides=keras.get("strides", 1),
                              padding=keras.expect("padding", "valid", "same"),
                              dilation_rate=keras.get("dilation_rate", 1),
                              depth_multiplier=int(keras.get("depth_multiplier", 1)),
                              activation=activation(keras, last), use_bias=bool(keras.get("use_bias", True)),
                              depthwise_initializer=initializer(keras, "depthwise_initializer", "glorot_uniform"),
                              pointwise_initializer=initializer(keras, "pointwise_initializer", "glorot_uniform"),
                              bias_initializer=initializer(keras, "bias_initializer", "zeros"),
                              **penalties(keras, *SEPARABLE_PENALTIES), name=keras.name)

    def weights_to_deepfield(self, keras: KerasLayer, layer: Layer, arrays: list[np.ndarray],
                             x: Tensor) -> dict[str, np.ndarray]:
        names = ["depthwise.weight", "pointwise_weight"] + (["bias"] if layer.use_bias else [])
        named = arrays_named(keras, arrays, names)
        named["depthwise.weight"] = depthwise_to_torch(named["depthwise.weight"])
        named["pointwise_weight"] = layout.kernel_to_torch(named["pointwise_weight"])
        return named

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        return {"class_name": type(layer).__name__, "config": {
            "filters": layer.filters, "kernel_size": list(layer.kernel_size), "strides": list(layer.strides),
            "padding": layer.padding, "data_format": "channels_last", "dilation_rate": list(layer.dilation_rate),
            "depth_multiplier": layer.depth_multiplier, "activation": activation_to_keras(layer),
            "use_bias": layer.use_bias,
            "depthwise_initializer": initializer_to_keras(layer, "depthwise_initializer"),
            "pointwise_initializer": initializer_to_keras(layer, "pointwise_initializer"),
            "bias_initializer": initializer_to_keras(layer, "bias_initializer"),
            **penalties_to_keras(layer, *SEPARABLE_PENALTIES)}}

    def weights_to_keras(self, layer: Layer, x: Tensor) -> list[np.ndarray]:
        arrays = [depthwise_to_keras(layer.depthwise.weight.detach().cpu().numpy(), layer.depth_multiplier),
                  layout.kernel_to_keras(layer.pointwise_weight.detach().cpu().numpy())]
        return arrays + ([layer.bias.detach().cpu().numpy()] if layer.use_bias else [])


for _cls in (separable.SeparableConv1D, separable.SeparableConv2D):
    register(type(f"{_cls.__name__}Translator", (_SeparableTranslator,),
                  {"keras": (_cls.__name__,), "deepfield": _cls}))


@register
class ReshapeTranslator(Translator):
    """Flat features, or a tensor held alike in both (a sequence), reshape alike; the result is held alike.

    Flat features reshaped into an image (3 axes or more, in a channels-last model: the decoder's
    ``Dense(h*w*c) -> Reshape((h, w, c)) -> Conv2DTranspose``) become deepfield's ``Reshape((c, h, w))``; the
    Dense that makes them has its output columns and bias (and the BatchNormalization, PReLU ... after it, their
    vectors) reordered from (h, w, c) to (c, h, w) order (:func:`translate.reorder_features`): the mirror of the
    Dense after a Flatten, free at run time. A channels-last image reshaped with its channels kept last (a
    sequence of pixels: ``(h, w, c) -> (h*w, c)``) is deepfield's ``(c, h, w) -> (c, h*w)``, exactly; reshaped
    across its channels, it gets a ``Permute`` moving its channels last before it (:meth:`reads_keras_layout`).
    """

    keras = ("Reshape",)
    deepfield = reshaping.Reshape
    keeps_order = True  # it takes a Flatten's order when that is the order the image needs

    def to_deepfield(self, keras: KerasLayer, x: Tensor) -> Layer:
        target = tuple(int(s) for s in keras.get("target_shape"))
        if _makes_image(len(target), x) or _is_image(x):
            target = layout.shape_to_deepfield(_sized(target, x.shape), True)
        layer = reshaping.Reshape(list(target), name=keras.name)
        reason = _refusal(self.feature_order(layer, x), x, layer)
        if reason:
            raise keras.refuse(reason)
        order = chain_order(self, layer, x)
        if order is not None:
            reorder_features(x.features, order)
        return layer

    def reads_keras_layout(self, keras: KerasLayer, x: Tensor) -> bool:
        target = _sized(tuple(int(s) for s in keras.get("target_shape")), x.shape)
        return _is_image(x) and not (len(target) >= 2 and target[-1] == x.shape[0])

    def feature_order(self, layer: Layer, x: Tensor) -> np.ndarray | None:
        if not _makes_image(len(layer.target_shape), x):
            return None
        return layout.flatten_order(_sized(layer.target_shape, x.shape), True, False)

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        reason = _refusal(self.feature_order(layer, x), x, layer)
        if reason:
            raise DeepfieldError(f"{layer.label}: {reason}")
        target = list(layer.target_shape)
        if _makes_image(len(target), x) or _is_image(x):
            target = list(layout.shape_to_keras(_sized(tuple(target), x.shape), True))
        return {"class_name": "Reshape", "config": {"target_shape": target}}

    def output(self, keras: KerasLayer, x: Tensor, shape: tuple[int, ...]) -> Tensor:
        return Tensor(shape, channels_last=_makes_image(len(shape), x) or _is_image(x))


def _makes_image(rank: int, x: Tensor) -> bool:
    """Whether a Reshape to ``rank`` axes of ``x`` makes an image the Keras model holds channels last: flat
    features of a channels-last model, reshaped to 3 axes or more (2 axes stay a sequence, held alike)."""
    return len(x.shape) == 1 and x.channels_last and rank >= 3


def _is_image(x: Tensor) -> bool:
    """Whether ``x`` has axes that Keras holds channels last (an image, a Conv1D's sequence)."""
    return len(x.shape) > 1 and x.channels_last


def _refusal(order: np.ndarray | None, x: Tensor, layer: Layer) -> str:
    """Why ``layer``, a Reshape of ``x`` whose image needs its features in ``order`` (``None``: as they come), cannot
    be converted; ``""`` when it can (the features are in that order, or a Dense before makes them for it alone)."""
    if _is_image(x):
        target = _sized(tuple(layer.target_shape), x.shape)
        return "" if len(target) >= 2 and target[0] == x.shape[0] else (
            "it reshapes a channels-last tensor across its channels, which deepfield holds channels first; "
            "deepfield writes a Reshape that keeps the channels first, (C, ...), or one after a Permute moving "
            "the channels last")
    in_order = x.order is None if order is None else x.order is not None and np.array_equal(x.order, order)
    if in_order or order is not None and x.features:
        return ""
    if order is None:
        return "it follows a Flatten of a channels-last image, which deepfield flattens in another order"
    return ("it reshapes flat features into a channels-last image, which deepfield holds channels first; "
            "deepfield converts this when the features come from a Dense (through BatchNormalization, activations, "
            "dropout) used by this Reshape alone, whose columns it reorders")


def _sized(target: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """``target`` with its ``-1`` (if any) worked out for a sample of ``shape``."""
    known = -math.prod(target) if -1 in target else math.prod(target)
    return tuple(math.prod(shape) // known if s == -1 else s for s in target)


def _axis_map(rank: int, channels_last: bool) -> list[int]:
    """deepfield's sample axis (1-based) of each Keras sample axis 1..rank."""
    if not channels_last or rank < 2:
        return list(range(1, rank + 1))
    return [*range(2, rank + 1), 1]


@register
class PermuteTranslator(Translator):
    """Keras's ``dims`` as deepfield's axes: the output is held as the input is (channels moved first)."""

    keras = ("Permute",)
    deepfield = reshaping.Permute

    def to_deepfield(self, keras: KerasLayer, x: Tensor) -> Layer:
        dims = [int(d) for d in keras.get("dims")]
        to_df = _axis_map(len(x.shape), x.channels_last)
        moved = [0] * len(dims)
        for i, d in enumerate(dims, 1):
            moved[to_df[i - 1] - 1] = to_df[d - 1]
        return reshaping.Permute(moved, name=keras.name)

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        to_df = _axis_map(len(x.shape), x.channels_last)
        to_keras = {df: k for k, df in enumerate(to_df, 1)}
        dims = [0] * len(layer.dims)
        for j, d in enumerate(layer.dims, 1):
            dims[to_keras[j] - 1] = to_keras[d]
        return {"class_name": "Permute", "config": {"dims": dims}}

    def vanishes(self, layer: Layer, x: Tensor | list[Tensor], consumers: list[Any]) -> bool:
        """A Permute that leaves the tensor as Keras holds it for the layers after it: a channels-last sequence
        with its channels moved last (as deepfield's recurrent layers take it) read by no spatial layer, or an image
        so (before a Reshape across its channels) read by Reshapes alone; or a 2-axis sequence held alike put
        channels first for spatial layers alone (a Conv1D: Keras's reads the ``(steps, channels)`` it holds).
        They are the Permutes the loader puts in (:func:`translate.sequence_bridge`), or a user's."""
        if isinstance(x, list) or len(x.shape) < 2:
            return False
        spatial = [getattr(EXPORTS.get(type(c)), "spatial", False) for c in consumers]
        if x.channels_last and tuple(layer.dims) == (*range(2, len(x.shape) + 1), 1):
            return not any(spatial) if len(x.shape) == 2 else bool(consumers) and all(
                isinstance(c, reshaping.Reshape) for c in consumers)
        return not x.channels_last and tuple(layer.dims) == (2, 1) and bool(spatial) and all(spatial)


@register
class RepeatVectorTranslator(Translator):
    """``(F,) -> (n, F)`` in Keras, ``(F, n)`` in deepfield: the result is held as a channels-last tensor is."""

    keras = ("RepeatVector",)
    deepfield = reshaping.RepeatVector

    def to_deepfield(self, keras: KerasLayer, x: Tensor) -> Layer:
        return reshaping.RepeatVector(int(keras.get("n")), name=keras.name)

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        return {"class_name": "RepeatVector", "config": {"n": layer.n}}

    def output(self, keras: KerasLayer, x: Tensor, shape: tuple[int, ...]) -> Tensor:
        return Tensor(shape, channels_last=True)
