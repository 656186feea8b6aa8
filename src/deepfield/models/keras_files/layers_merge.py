"""Translators of Keras's merging layers: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate.

They take a list of tensors. The element-wise ones need their inputs in one layout (and, after Flatten,
in one order); Concatenate's ``axis`` moves with the channels, and flat inputs in Keras's order join into
one order, so a Dense after ``Concatenate()([Flatten()(image), table])`` still gets its rows right.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from deepfield.models import merge
from deepfield.models.base import Layer
from deepfield.models.keras_files import layout
from deepfield.models.keras_files.translate import KerasLayer, Tensor, Translator, register


def _inputs(keras: KerasLayer, x: Tensor | list[Tensor]) -> list[Tensor]:
    if not isinstance(x, list) or not x:
        raise keras.refuse("a merging layer is called on a list of tensors")
    if len({t.channels_last for t in x if len(t.shape) > 1}) > 1:
        raise keras.refuse("its inputs are held in different data formats")
    return x


class _ElementwiseTranslator(Translator):
    keeps_order = True

    def to_deepfield(self, keras: KerasLayer, x: Any) -> Layer:
        orders = [t.order for t in _inputs(keras, x)]
        if any(o is None for o in orders) != all(o is None for o in orders) or any(
                not np.array_equal(o, orders[0]) for o in orders if o is not None):
            raise keras.refuse("its inputs list their numbers in different orders (one follows a Flatten of an "
                               "image, another does not); deepfield cannot merge them element by element")
        return self.deepfield(name=keras.name)

    def to_keras(self, layer: Layer, x: Any) -> dict[str, Any]:
        return {"class_name": type(layer).__name__, "config": {}}

    def output(self, keras: KerasLayer, x: Any, shape: tuple[int, ...]) -> Tensor:
        first = x[0]
        return Tensor(shape, first.channels_last, first.order)


for _cls in (merge.Add, merge.Subtract, merge.Multiply, merge.Average, merge.Maximum, merge.Minimum):
    register(type(f"{_cls.__name__}Translator", (_ElementwiseTranslator,),
                  {"keras": (_cls.__name__,), "deepfield": _cls}))


@register
class ConcatenateTranslator(Translator):
    keras = ("Concatenate",)
    deepfield = merge.Concatenate
    keeps_order = True

    def to_deepfield(self, keras: KerasLayer, x: Any) -> Layer:
        inputs = _inputs(keras, x)
        first = inputs[0]
        axis = layout.axis_to_deepfield(int(keras.get("axis", -1)), first.keras_rank, first.channels_last,
                                        keras.label)
        if any(t.order is not None for t in inputs) and axis != 1:
            raise keras.refuse("it joins flattened inputs along another axis than their features")
        return merge.Concatenate(axis=axis, name=keras.name)

    def to_keras(self, layer: Layer, x: Any) -> dict[str, Any]:
        first = x[0]
        return {"class_name": "Concatenate",
                "config": {"axis": layout.axis_to_keras(layer.axis, first.keras_rank, first.channels_last)}}

    def output(self, keras: KerasLayer, x: Any, shape: tuple[int, ...]) -> Tensor:
        first = x[0]
        if len(shape) != 1 or all(t.order is None for t in x):
            return Tensor(shape, first.channels_last)
        parts, offset = [], 0
        for t in x:  # each input's order, shifted to where its numbers start in the joined features
            parts.append((t.order if t.order is not None else np.arange(t.shape[0])) + offset)
            offset += t.shape[0]
        return Tensor(shape, first.channels_last, np.concatenate(parts))
