"""The translation of one Keras layer into a deepfield layer and back: what every layer family shares.

A :class:`Translator` knows one family of Keras layer classes (``layers_core``, ``layers_conv``,
``layers_normalization``, ...; each registers its translators here by Keras class name). It makes the
deepfield layer from the Keras config, moves the weights into it, and does both the other way.
Between layers the converter follows a :class:`Tensor`: its deepfield shape, whether the Keras model
holds it channels last, and, after a ``Flatten``, the order Keras lists its numbers in.

Files are data, never code: a ``Lambda`` layer, and any layer, activation or initialiser from outside
Keras (a custom object, :func:`refuse_code`), is refused with its name; nothing in the file is run.
"""
from __future__ import annotations

import dataclasses
import inspect
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from deepfield.errors import DeepfieldError
from deepfield.models import activations, initializers, reshaping
from deepfield.models.base import Layer, snake_case
from deepfield.registry import Registry

CODE_CLASSES = ("Lambda", "TFOpLambda", "SlicingOpLambda", "__lambda__")
"""Keras objects that hold Python code: refused, since loading must never run code from a file."""


@dataclass(frozen=True)
class Tensor:
    """What the converter knows of the tensor between two layers (one sample, no batch axis).

    ``shape``: deepfield's, channels first. ``channels_last``: the Keras model holds it as
    ``(*spatial, C)`` (meaningful for two axes or more). ``order``: for a flat ``(features,)`` tensor
    after a ``Flatten``, ``order[k]`` is where deepfield holds Keras's ``k``-th number (``None``: in order).
    """

    shape: tuple[int, ...]
    channels_last: bool
    order: np.ndarray | None = None
    mask: str = ""
    """A sequence's mask of padded steps: ``"on"`` (deepfield carries it, as Keras), ``"lost"`` (Keras carries it
    here, deepfield's layer before did not pass it on), ``""`` (none)."""
    features: tuple[Layer, ...] = ()
    """For a flat tensor: the layers back to the ``Dense`` that made it (then BatchNormalization, activations,
    dropout, ...), each used once, whose output features a ``Reshape`` into a channels-last image reorders
    (:func:`reorder_features`): deepfield's image is channels first, so its flat numbers come in another order."""

    @property
    def keras_rank(self) -> int:
        """The tensor's number of axes in Keras, the batch axis included."""
        return len(self.shape) + 1


class KerasLayer:
    """One layer's entry in a Keras config: ``{"class_name": ..., "config": {...}}`` (``name`` inside config)."""

    def __init__(self, spec: dict[str, Any]):
        if not isinstance(spec, dict) or not isinstance(spec.get("class_name"), str):
            raise DeepfieldError(f"a layer entry must be an object with a class_name, got {str(spec)[:80]}")
        self.spec = spec
        self.class_name: str = spec["class_name"]
        config = spec.get("config", {})
        if not isinstance(config, dict):
            raise DeepfieldError(f"layer of class {self.class_name}: its config must be an object, "
                                 f"got {str(config)[:80]}")
        self.config: dict[str, Any] = config
        self.name: str = str(config.get("name") or spec.get("name") or snake_case(self.class_name))

    @property
    def label(self) -> str:
        """``layer 'conv2d' (Conv2D)``, for messages."""
        return f"layer {self.name!r} ({self.class_name})"

    def get(self, key: str, default: Any = None) -> Any:
        return self.config.get(key, default)

    def refuse(self, what: str) -> DeepfieldError:
        """The one-line error for something this layer asks that deepfield cannot do."""
        return DeepfieldError(f"{self.label}: {what}")

    def expect(self, key: str, *allowed: Any) -> Any:
        """The value of ``key`` (absent: the first allowed); any other value is refused."""
        value = self.config.get(key, allowed[0])
        if value not in allowed:
            shown = " or ".join(map(repr, allowed))
            raise self.refuse(f"{key}={value!r} has no deepfield equivalent yet (deepfield converts {key}={shown})")
        return value

    def channels_last(self) -> bool:
        """Whether the layer's ``data_format`` is channels last (Keras's default)."""
        return self.expect("data_format", "channels_last", "channels_first", None) != "channels_first"


class Translator:
    """How the Keras classes ``keras`` become a deepfield layer of class ``deepfield`` and back.

    ``keeps_order``: the layer may follow a ``Flatten`` whose order differs from deepfield's (it acts on
    each number alone, or it is the ``Dense`` that takes the order into its weights).
    """

    keras: ClassVar[tuple[str, ...]]
    deepfield: ClassVar[type[Layer]]
    keeps_order: ClassVar[bool] = False
    weights_path: ClassVar[str] = ""
    """Where inside the layer's group Keras 3 keeps its weights (a recurrent layer's: in its ``cell``)."""
    parts: ClassVar[tuple[str, ...]] = ()
    """The parts holding the weights, in the order :meth:`weights_to_deepfield` takes them (Bidirectional's)."""
    input_dtype: ClassVar[torch.dtype] = torch.float32
    """What the layer takes (an Embedding: integer ids)."""
    takes_sequence: ClassVar[bool] = False
    """The layer reads a sequence ``(N, T, F)`` as Keras holds it (the recurrent layers): one held channels last
    (a Conv1D's, a RepeatVector's) gets a ``Permute((2, 1))`` before it in deepfield (:func:`sequence_bridge`)."""
    spatial: ClassVar[bool] = False
    """The layer runs over spatial axes, as its ``data_format`` says (a convolution, pooling, padding, ...): a
    channels-last one reading a 2-axis tensor held alike (a recurrent layer's sequence, flat features reshaped to
    ``(steps, channels)``) gets a ``Permute((2, 1))`` before it in deepfield (:func:`sequence_bridge`)."""
    makes_features: ClassVar[bool] = False
    """The layer makes flat features whose order is its own to choose (a Dense: its output columns)."""
    masks: ClassVar[str] = "drop"
    """What the deepfield layer does with a sequence's mask: ``"make"`` (Masking, Embedding), ``"read"`` (the
    recurrent layers: they use it, and pass it on with their sequences), ``"pass"`` (Dropout), ``"drop"``."""

    def to_deepfield(self, keras: KerasLayer, x: Tensor) -> Layer:
        raise NotImplementedError

    def to_keras(self, layer: Layer, x: Tensor) -> dict[str, Any]:
        """``{"class_name": ..., "config": {...}}`` of the Keras layer (the name is added by the caller)."""
        raise NotImplementedError

    def weights_to_deepfield(self, keras: KerasLayer, layer: Layer, arrays: list[np.ndarray],
                             x: Tensor) -> dict[str, np.ndarray]:
        """The layer's ``state_dict`` entries from Keras's arrays (kernel, bias, ...); no weights by default."""
        return {}

    def weights_to_keras(self, layer: Layer, x: Tensor) -> list[np.ndarray]:
        """Keras's arrays, in Keras's order, from the layer's weights; no weights by default."""
        return []

    def weight_groups(self, layer: Layer, x: Tensor) -> dict[str, list[np.ndarray]]:
        """Keras 3's groups of the layer's arrays, by their path inside the layer's group."""
        return {self.weights_path: self.weights_to_keras(layer, x)}

    def output(self, keras: KerasLayer, x: Tensor, shape: tuple[int, ...]) -> Tensor:
        """The tensor after the layer, whose deepfield shape is ``shape``."""
        return Tensor(shape, x.channels_last, x.order if self.keeps_order else None)

    def vanishes(self, layer: Layer, x: Tensor | list[Tensor], consumers: list[Any]) -> bool:
        """Whether Keras has nothing in its place before ``consumers`` (the modules reading its output): it only
        swaps how deepfield holds the tensor against Keras (channels last one side, held alike the other)."""
        return False

    def reads_keras_layout(self, keras: KerasLayer, x: Tensor) -> bool:
        """Whether the layer reads a channels-last ``x`` only as Keras holds it (a Reshape across the channels): a
        ``Permute`` moving deepfield's channels last goes before it (:func:`sequence_bridge`)."""
        return False

    def feature_order(self, layer: Layer, x: Tensor) -> np.ndarray | None:
        """The order the layer needs of its flat input's features, as :func:`layout.flatten_order` gives it
        (a Reshape into a channels-last image's); ``None``: the order they come in."""
        return None


TRANSLATORS: Registry[Translator] = Registry("Keras layer")
"""Keras layer class name -> its translator (filled by the family modules)."""
EXPORTS: dict[type[Layer], Translator] = {}
"""deepfield layer class -> the translator that writes it as Keras (the first registered for it)."""


def register(translator: type[Translator]) -> type[Translator]:
    """Class decorator: register one instance for each Keras class it reads and for export."""
    instance = translator()
    for name in translator.keras:
        TRANSLATORS.add(name, instance)
    EXPORTS.setdefault(translator.deepfield, instance)
    return translator


def feature_chain(translator: Translator, layer: Layer, x: Tensor | list[Tensor], y: Tensor) -> Tensor:
    """``y`` knowing the layers whose output features a Reshape after it may reorder (``Tensor.features``)."""
    if len(y.shape) != 1 or isinstance(x, list):
        return y
    if translator.makes_features:
        return dataclasses.replace(y, features=(layer,))
    if translator.keeps_order and x.features:
        return dataclasses.replace(y, features=(*x.features, layer))
    return y


def sequence_bridge(keras: KerasLayer, x: Tensor | list[Tensor]) -> tuple[Layer | None, Any]:
    """The ``Permute((2, 1))`` deepfield needs before ``keras`` and the tensor after it, or ``(None, x)``.

    Keras holds a Conv1D's or RepeatVector's output as ``(steps, features)``, which its recurrent layers read as it
    is; deepfield holds it ``(features, steps)`` (channels first), and its recurrent layers take ``(N, T, F)``.
    The other way, a recurrent layer's sequence (or flat features reshaped to ``(steps, channels)``) is held alike
    in both, and a channels-last Conv1D (any 1-D spatial layer) reads it as ``(steps, channels)``: deepfield's
    reads ``(channels, steps)``, so the Permute makes it channels first, a channels-last tensor from then on.
    A Reshape of a channels-last tensor across its channels gets the Permute moving the channels last.
    """
    translator = translator_for(keras)
    if isinstance(x, list) or len(x.shape) < 2:
        return None, x
    if x.channels_last and translator.reads_keras_layout(keras, x):
        return (reshaping.Permute((*range(2, len(x.shape) + 1), 1), name=f"{keras.name}_permute"),
                Tensor((*x.shape[1:], x.shape[0]), channels_last=False))
    if len(x.shape) != 2:
        return None, x
    if translator.takes_sequence and x.channels_last:
        after = Tensor(x.shape[::-1], channels_last=False)
    elif translator.spatial and not x.channels_last and keras.channels_last():
        after = Tensor(x.shape[::-1], channels_last=True)
    else:
        return None, x
    return reshaping.Permute((2, 1), name=f"{keras.name}_permute"), after


def chain_order(translator: Translator, layer: Layer, x: Tensor | list[Tensor]) -> np.ndarray | None:
    """The order ``layer`` (taking ``x``) needs of the features of the layers ``x.features``, ``None`` if none."""
    if isinstance(x, list):
        return None
    order = translator.feature_order(layer, x)
    return order if order is not None and x.features else None


def reorder_features(layers: tuple[Layer, ...], order: np.ndarray) -> None:
    """Reorder the output features of ``layers`` (a Dense's rows and bias, BatchNormalization's vectors, ...: each
    weight's axis 0 of the features' size) so that deepfield's feature ``order[k]`` is Keras's ``k``-th."""
    index = torch.as_tensor(order)
    with torch.no_grad():
        for layer in layers:
            for weight in [*layer.parameters(), *layer.buffers()]:
                if weight.dim() and weight.shape[0] == len(order):
                    moved = torch.empty_like(weight)
                    moved[index] = weight
                    weight.copy_(moved)


def with_mask(translator: Translator, keras: KerasLayer, x: Tensor | list[Tensor], y: Tensor) -> Tensor:
    """``y`` with its mask state: Keras passes a mask through every layer that keeps the time axis; deepfield
    only through the ones that make, read or pass it (:mod:`deepfield.models.masking`)."""
    inputs = x if isinstance(x, list) else [x]
    carried = next((t.mask for t in inputs if t.mask), "")
    if translator.masks == "make":
        state = "on" if keras.class_name == "Masking" or keras.get("mask_zero") else ""
    elif not carried or len(y.shape) != 2 or y.channels_last:  # no mask, or no time axis any more
        state = ""
    elif translator.masks in ("read", "pass"):
        state = carried
    else:
        state = "lost"
    return dataclasses.replace(y, mask=state)


def check_mask(translator: Translator, keras: KerasLayer, x: Tensor | list[Tensor]) -> None:
    """Refuse a recurrent layer whose mask Keras would give it and deepfield would not (the outputs would differ)."""
    if translator.masks == "read" and any(t.mask == "lost" for t in (x if isinstance(x, list) else [x])):
        raise keras.refuse("Keras hands it the mask of padded steps through the layers before it, deepfield's "
                           "Dense, Activation, ... do not pass masks on: its outputs would differ; put the masking "
                           "layer right before the recurrent one")


def translator_for(keras: KerasLayer) -> Translator:
    """The translator of a Keras layer; an unknown class is one line naming the layer and its class."""
    translator = TRANSLATORS.find(keras.class_name)
    if translator is None:
        raise keras.refuse("deepfield cannot convert this Keras layer class (yet); the layers it converts are "
                           "listed in the README, 'Coming from Keras'")
    return translator


def refuse_code(model: dict[str, Any], layers: list[Any], where: str) -> None:
    """Refuse a model that names code: a ``Lambda`` layer, or a model, layer, activation or initialiser defined
    outside Keras (``module`` not ``keras...``, or a ``registered_name`` of its own). ``where``: the file."""
    _check_code(model, where)
    for spec in layers:
        label = KerasLayer(spec).label if isinstance(spec, dict) else where
        for node in _dicts(spec):
            _check_code(node, label)


def _check_code(node: dict[str, Any], owner: str) -> None:
    class_name, module, registered = node.get("class_name"), node.get("module"), node.get("registered_name")
    custom = ((isinstance(module, str) and module != "keras" and not module.startswith("keras."))
              or registered not in (None, class_name, "function"))  # Keras names its own functions "function"
    if class_name in CODE_CLASSES:
        what = "a Lambda layer holds Python code"
    elif custom:
        thing = f"the function {node.get('config')!r}" if class_name == "function" else registered or class_name
        what = f"{thing} is a custom object from {module or 'outside Keras'}"
    else:
        return
    raise DeepfieldError(f"{owner}: {what}; deepfield never runs code from a file: rebuild this part with deepfield "
                         "layers (or a torch.nn.Module) and load the weights into it")


def _dicts(node: Any) -> Any:
    """Every dict with a ``class_name`` inside ``node``, ``node`` included."""
    if isinstance(node, dict):
        if isinstance(node.get("class_name"), str):
            yield node
        for value in node.values():
            yield from _dicts(value)
    elif isinstance(node, list):
        for value in node:
            yield from _dicts(value)


# -- the arguments every family shares -----------------------------------------------------------------------


def activation(keras: KerasLayer, last_is_channels: bool, key: str = "activation") -> str | None:
    """The layer's activation as a deepfield name (``linear``: None); one deepfield lacks is refused.

    ``last_is_channels``: the last axis of the layer's output in Keras is deepfield's axis 1, the axis
    deepfield's softmax normalises (else a softmax is refused: it would normalise another axis).
    """
    value = keras.get(key)
    if isinstance(value, dict):  # {"module": "keras.activations", "class_name": "function", "config": "relu"}
        value = value.get("config")
    if value in (None, "linear"):
        return None
    if value in ("softmax", "log_softmax") and not last_is_channels:
        raise keras.refuse(f"activation {value!r} on a channels-first tensor normalises its last axis in Keras, "
                           "deepfield's normalises axis 1")
    if not isinstance(value, str) or activations.REGISTRY.find(value) is None or value == "prelu":
        raise keras.refuse(f"activation {value!r} has no deepfield equivalent (deepfield has: "
                           f"{', '.join(n for n in activations.NAMES if n != 'prelu')})")
    return value


def activation_to_keras(layer: Layer, key: str = "activation") -> str:
    """The layer's activation as Keras names it; one with weights (``prelu``) has no Keras equivalent."""
    name = layer.get_config().get(key)
    if name == "prelu":
        raise DeepfieldError(f"{layer.label}: activation 'prelu' has a weight; Keras activations have none "
                             "(use a PReLU layer)")
    return "linear" if name is None else str(name).lower()


def initializer(keras: KerasLayer, key: str, default: str) -> str | dict[str, Any]:
    """A Keras initialiser as deepfield's (it matters only when weights are drawn again, not for the loaded ones):
    a class deepfield has keeps the arguments it takes (``RandomNormal(stddev=0.02)``; Keras's ``seed`` goes), a
    name stays a name; one deepfield lacks leaves the default, with a warning."""
    value = keras.get(key, default)
    if isinstance(value, str):
        name, config = value, {}
    elif isinstance(value, dict) and isinstance(value.get("class_name"), str):
        name, config = value["class_name"], value.get("config") or {}
    else:
        name, config = repr(value), {}
    cls = initializers.CLASSES.find(name)
    if cls is not None:
        taken = inspect.signature(cls.__init__).parameters
        return {"class_name": name, "config": {k: v for k, v in config.items() if k in taken and k != "self"}}
    if initializers.REGISTRY.find(snake_case(name)) is not None:
        return snake_case(name)
    warnings.warn(f"{keras.label}: {key} {name!r} has no deepfield equivalent; the deepfield layer keeps "
                  f"{default!r} (it matters only if the weights are drawn again)", stacklevel=4)
    return default


def initializer_to_keras(layer: Layer, key: str) -> Any:
    """The layer's initialiser as Keras reads it: a name, or a class with its config."""
    value = layer.get_config()[key]
    if isinstance(value, dict):
        return {"module": "keras.initializers", "class_name": value["class_name"], "config": value["config"],
                "registered_name": None}
    return "random_uniform" if value == "uniform" else value


PENALTY_MODULES = {"regularizer": "keras.regularizers", "constraint": "keras.constraints"}


def penalties(keras: KerasLayer, *keys: str) -> dict[str, Any]:
    """The layer's regularisers and constraints (``kernel_regularizer``, ...) as deepfield takes them: a name or
    ``{"class_name", "config"}``; the penalty of a sum does not depend on the weights' layout, and constraints
    keep Keras's axes (:mod:`deepfield.models.constraints`), so they pass as written."""
    found = {}
    for key in keys:
        value = keras.get(key)
        found[key] = ({"class_name": value.get("class_name"), "config": value.get("config") or {}}
                      if isinstance(value, dict) else value)
    return found


def penalties_to_keras(layer: Layer, *keys: str) -> dict[str, Any]:
    """The layer's regularisers and constraints as Keras reads them."""
    config = layer.get_config()
    found = {}
    for key in keys:
        value = config.get(key)
        module = PENALTY_MODULES[key.rsplit("_", 1)[1]]
        found[key] = ({"module": module, "class_name": value["class_name"], "config": value["config"],
                       "registered_name": None} if isinstance(value, dict) else value)
    return found


def training_only(keras: KerasLayer, *keys: str) -> None:
    """Arguments that change training, not outputs, and that deepfield does not have yet: warned, then dropped."""
    for key in keys:
        if keras.get(key) is not None:
            warnings.warn(f"{keras.label}: {key} is not converted (deepfield has none yet); outputs are unchanged, "
                          "but training the converted model would not use it", stacklevel=4)


def assign(keras: KerasLayer, layer: Layer, state: dict[str, np.ndarray]) -> None:
    """Load ``state`` into the built ``layer``; a name or shape that does not fit is one line naming the layer."""
    own = layer.state_dict()
    if set(state) != set(own):
        raise keras.refuse(f"the file holds weights for {sorted(state) or 'nothing'}, the deepfield layer has "
                           f"{sorted(own) or 'none'}")
    for name, array in state.items():
        if tuple(array.shape) != tuple(own[name].shape):
            raise keras.refuse(f"weight {name} has shape {tuple(array.shape)} in the file, the deepfield layer "
                               f"expects {tuple(own[name].shape)}")
    layer.load_state_dict({k: torch.as_tensor(np.asarray(v, dtype=np.float32)) for k, v in state.items()})


def arrays_named(keras: KerasLayer, arrays: list[np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """Keras's arrays by the names the layer has for them; a count that differs is one line naming the layer."""
    if len(arrays) != len(names):
        raise keras.refuse(f"the file holds {len(arrays)} weight arrays for it, deepfield expects {len(names)} "
                           f"({', '.join(names) or 'none'})")
    return dict(zip(names, arrays))
