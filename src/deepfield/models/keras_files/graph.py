"""Functional Keras models (``keras.Model(inputs, outputs)``) both ways: the graph walked layer by layer.

A Keras functional config lists its layers in an order where each comes after what it reads; each
layer has its ``inbound_nodes`` (one per call: a shared layer has several), each naming the tensors it
was called on by ``[layer, node, index]``: Keras 3 as ``{"args": [tensor or list], "kwargs": {}}`` with
``__keras_tensor__`` entries, Keras 2 as ``[[layer, node, index, kwargs], ...]``. The deepfield model is
made by calling the translated layers on symbolic tensors (``deepfield.models.symbolic``), as a user would.
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

from deepfield.errors import DeepfieldError
from deepfield.models.functional import Functional
from deepfield.models.keras_files import layout
from deepfield.models.keras_files.translate import (EXPORTS, KerasLayer, Tensor, feature_chain, sequence_bridge,
                                                    with_mask)
from deepfield.models.symbolic import Input, SymbolicTensor

History = tuple[str, int, int]
INPUT_LAYER = "InputLayer"
MODELS = ("Sequential", "Functional", "Model")
"""Keras's model classes: a layer of one of these is a model used as a layer."""
TENSOR = "__keras_tensor__"


def _history(entry: Any, owner: str) -> History:
    """``(layer, node, index)`` from a Keras 3 tensor entry or a Keras 2 ``[layer, node, index, kwargs]``."""
    if isinstance(entry, dict) and entry.get("class_name") == TENSOR:
        entry = (entry.get("config") or {}).get("keras_history")
    if (isinstance(entry, list) and len(entry) >= 3 and isinstance(entry[0], str)
            and all(isinstance(v, int) for v in entry[1:3])):
        if len(entry) > 3 and entry[3]:
            raise DeepfieldError(f"{owner}: is called with arguments {entry[3]!r}, which deepfield does not convert")
        return entry[0], entry[1], entry[2]
    raise DeepfieldError(f"{owner}: an input must be named [layer, node, index], got {str(entry)[:80]}")


def node_inputs(node: Any, owner: str) -> History | list[History]:
    """What one inbound node reads: one tensor, or a list of them (a merging layer's)."""
    if isinstance(node, dict):  # Keras 3
        args, kwargs = node.get("args"), node.get("kwargs") or {}
        if not isinstance(args, list) or len(args) != 1:
            raise DeepfieldError(f"{owner}: a call must have one argument (a tensor or a list), got {str(args)[:80]}")
        # a recurrent layer's node records its call's defaults, training=False and mask=None: nothing asked
        if any(v is not None and not (k == "training" and v is False) for k, v in kwargs.items()):
            raise DeepfieldError(f"{owner}: is called with {', '.join(kwargs)}, which deepfield does not convert")
        arg = args[0]
        return [_history(a, owner) for a in arg] if isinstance(arg, list) else _history(arg, owner)
    if isinstance(node, list) and node:  # Keras 2: the list of inputs of one call
        histories = [_history(entry, owner) for entry in node]
        return histories[0] if len(histories) == 1 else histories
    raise DeepfieldError(f"{owner}: an inbound node must be an object or a list, got {str(node)[:80]}")


def ends(value: Any, what: str) -> list[History] | dict[str, History]:
    """A model's ``input_layers`` / ``output_layers``: one ``[layer, node, index]``, a list or a dict of them."""
    if isinstance(value, dict):
        return {k: _history(v, what) for k, v in value.items()}
    if isinstance(value, list) and value and isinstance(value[0], str):
        return [_history(value, what)]
    if isinstance(value, list) and value:
        return [_history(v, what) for v in value]
    raise DeepfieldError(f"the model's {what} must name [layer, node, index], got {str(value)[:80]}")


def from_keras(layers: list[KerasLayer], config: dict[str, Any], keys: list[str], arrays_of: Any,
               input_shape: tuple[int, ...] | None, channels_last: bool, cls: type[Functional],
               make: Any, finish: Any, nested: Any, given: Any = None) -> tuple[Functional, list[Tensor]]:
    """The deepfield functional model of a Keras functional config (``layers`` in its order, ``keys`` their
    Keras 3 weight keys) and its outputs as the converter follows them; ``make`` and ``finish`` are the loader's
    steps of one layer, ``nested(keras, key, x) -> (model, outputs)`` its step of a model used as a layer (see
    ``loading``); ``given``: the tensors this model, used as a layer, is called on."""
    made: dict[History, tuple[SymbolicTensor, Tensor]] = {}
    inputs = [layer for layer in layers if layer.class_name == INPUT_LAYER]
    uses = _uses(layers, config)
    bridges: dict[str, Any] = {}  # the Permute((2, 1)) before a recurrent layer, by its name (one if shared)
    outer = None if given is None else given if isinstance(given, list) else [given]
    if outer is not None and len(outer) != len(inputs):
        raise DeepfieldError(f"the model {config.get('name')!r} is called on {len(outer)} tensors, it has "
                             f"{len(inputs)} inputs")
    for keras, key in zip(layers, keys):
        if keras.class_name == INPUT_LAYER:
            if outer is None:
                shape = _input_shape(keras, input_shape if len(inputs) == 1 else None, channels_last)
                tensor = Tensor(shape, channels_last)
            else:
                tensor = dataclasses.replace(outer[inputs.index(keras)], features=())
            dtype = "int64" if str(keras.get("dtype", "float32")).startswith(("int", "uint")) else "float32"
            made[(keras.name, 0, 0)] = (Input(tensor.shape, name=keras.name, dtype=dtype), tensor)
            continue
        nodes = keras.spec.get("inbound_nodes") or []
        if not isinstance(nodes, list) or not nodes:
            raise keras.refuse("it is called on nothing (no inbound nodes)")
        layer, translator = None, None
        for index, node in enumerate(nodes):
            read = node_inputs(node, keras.label)
            try:
                symbols, tensors = _resolve(read, made)
            except KeyError as exc:
                raise keras.refuse(f"it reads {exc.args[0]}, which no layer before it makes") from None
            if keras.class_name in MODELS:  # converted on its first call; called again, its weights are shared
                if layer is None:
                    layer, outputs = nested(keras, key, tensors)
                    first = _layout(tensors)
                elif _layout(tensors) != first:
                    raise keras.refuse("a model used as a layer is called on tensors deepfield holds apart (one "
                                       "channels last, one held alike, or flattened in another order); deepfield "
                                       "converts the calls of a shared model on tensors held alike")
                out = layer(symbols)
                for k, (symbol, tensor) in enumerate(zip(out if isinstance(out, list) else [out], outputs)):
                    made[(keras.name, index, k)] = (symbol, dataclasses.replace(tensor, features=()))
                continue
            bridge, tensors = sequence_bridge(keras, tensors)
            if bridge is not None:
                bridges.setdefault(keras.name, bridge)
                symbols = bridges[keras.name](symbols)
            if layer is None:
                translator, layer = make(keras, tensors)
            out = layer(symbols)
            if index == 0:
                finish(keras, translator, layer, tensors, arrays_of(keras.name, key, translator.parts))
            y = with_mask(translator, keras, tensors, translator.output(keras, tensors, out.sample_shape))
            if len(nodes) == 1 and uses.get((keras.name, index, 0), 0) == 1:  # else no Reshape may reorder it
                y = feature_chain(translator, layer, tensors, y)
            made[(keras.name, index, 0)] = (out, y)
    try:
        ends_in, ends_out = ends(config.get("input_layers"), "input_layers"), ends(config.get("output_layers"),
                                                                                 "output_layers")
        model_inputs, model_outputs = _symbols(ends_in, made), _symbols(ends_out, made)
        followed = [made[h][1] for h in (ends_out.values() if isinstance(ends_out, dict) else ends_out)]
    except KeyError as exc:
        raise DeepfieldError(f"the model's input or output {exc.args[0]} is made by no layer") from None
    return cls(model_inputs, model_outputs, name=str(config.get("name") or "functional")), followed


def _layout(x: Tensor | list[Tensor]) -> list[tuple[Any, ...]]:
    """How deepfield holds ``x`` against Keras: what two calls of one converted model must agree on."""
    return [(t.shape, t.channels_last, None if t.order is None else tuple(t.order), t.mask)
            for t in (x if isinstance(x, list) else [x])]


def _uses(layers: list[KerasLayer], config: dict[str, Any]) -> Counter[History]:
    """How many times each tensor is read, by a layer or as a model output."""
    uses: Counter[History] = Counter()
    for keras in layers:
        for node in keras.spec.get("inbound_nodes") or []:
            read = node_inputs(node, keras.label)
            uses.update(read if isinstance(read, list) else [read])
    outputs = ends(config.get("output_layers"), "output_layers")
    uses.update(outputs.values() if isinstance(outputs, dict) else outputs)
    return uses


def _input_shape(keras: KerasLayer, given: tuple[int, ...] | None, channels_last: bool) -> tuple[int, ...]:
    if given is not None:
        return tuple(given)
    shape = keras.get("batch_shape") or keras.get("batch_input_shape")
    if not isinstance(shape, list) or not shape or any(s is None for s in shape[1:]):
        raise keras.refuse(f"its shape {shape} has sizes Keras leaves open (None); pass input_shape=(C, H, W), "
                           "channels first, to fix them")
    return layout.shape_to_deepfield(tuple(shape[1:]), channels_last)


def _resolve(read: History | list[History], made: dict[History, tuple[SymbolicTensor, Tensor]]) -> tuple[Any, Any]:
    if isinstance(read, list):
        pairs = [made[h] for h in read]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    return made[read]


def _symbols(value: list[History] | dict[str, History], made: dict[History, tuple[SymbolicTensor, Tensor]]) -> Any:
    if isinstance(value, dict):
        return {k: made[h][0] for k, h in value.items()}
    return [made[h][0] for h in value]


# -- the way back --------------------------------------------------------------------------------------------


def to_keras(model: Functional, translate: Any, takes_sequence: Any,
             given: Any = None) -> tuple[list[dict[str, Any]], dict[str, Any], list[Any], list[Tensor]]:
    """A deepfield functional model as Keras 3's functional config, channels last.

    ``translate(name, layer, x) -> (translator, KerasLayer)`` is the saver's step of one layer;
    ``takes_sequence(layer)``: an input read by it keeps its layout (a sequence). Returns the
    layer entries in Keras's order (:func:`keras_order`), the ``input_layers`` / ``output_layers`` entries,
    and for each entry ``(layer, translator, KerasLayer, x)`` (``None`` for an input), and the model's outputs
    as the converter follows them. ``given``: the tensors the model, used as a layer, is called on.
    """
    outer = None if given is None else given if isinstance(given, list) else [given]
    if outer is not None and len(outer) != len(model.inputs):
        raise DeepfieldError(f"the model {model.name!r} is called on {len(outer)} tensors, it has "
                             f"{len(model.inputs)} inputs")
    names = model._names
    state: dict[int, tuple[History, Tensor]] = {}
    entries: dict[int, dict[str, Any]] = {}
    steps: dict[int, Any] = {}
    for i, t in enumerate(model.inputs):
        last = not any(takes_sequence(n.module) for n in model._nodes if any(r is t for r in n.input_tensors))
        last = last if outer is None else outer[i].channels_last
        state[id(t)] = ((names[id(t)], 0, 0), Tensor(t.sample_shape, channels_last=last))
        entries[id(t)] = {"module": "keras.layers", "class_name": INPUT_LAYER, "registered_name": None,
                          "name": names[id(t)], "inbound_nodes": [], "config": {
                              "batch_shape": [None, *layout.shape_to_keras(t.sample_shape, last)],
                              "dtype": "float32", "sparse": False, "name": names[id(t)]}}
        steps[id(t)] = None
    calls = Counter(id(node.module) for node in model._nodes)
    reads = Counter([*(id(t) for node in model._nodes for t in node.input_tensors), *map(id, model.outputs)])
    for node in model._nodes:
        module, inputs = node.module, node.inputs
        name = names[id(module)]
        read = [state[id(t)] for t in inputs] if isinstance(inputs, list) else [state[id(inputs)]]
        x: Any = [r[1] for r in read] if isinstance(inputs, list) else read[0][1]
        vanishing = EXPORTS.get(type(module))
        consumers = [n.module for n in model._nodes if any(t is node.outputs[0] for t in n.input_tensors)]
        if vanishing is not None and vanishing.vanishes(module, x, consumers):
            state[id(node.outputs[0])] = (read[0][0], Tensor(node.outputs[0].sample_shape,
                                                             channels_last=not x.channels_last))
            continue
        if id(module) not in entries:
            translator, keras = translate(name, module, x)
            entries[id(module)] = {**keras.spec, "name": name, "inbound_nodes": []}
            steps[id(module)] = (module, translator, keras, x)
        _, translator, keras, _ = steps[id(module)]
        index = len(entries[id(module)]["inbound_nodes"])
        args = [_tensor(h, t) for h, t in read]
        entries[id(module)]["inbound_nodes"].append({"args": [args if isinstance(inputs, list) else args[0]],
                                                     "kwargs": {}})
        for k, out in enumerate(node.outputs):
            y = translator.output(keras, x, out.sample_shape)
            if calls[id(module)] == 1 and reads.get(id(out), 0) == 1:  # else no Reshape may reorder it
                y = feature_chain(translator, module, x, y)
            state[id(out)] = ((name, index, k), y)
    ends_ = {"input_layers": [list(state[id(t)][0]) for t in model.inputs],
             "output_layers": [list(state[id(t)][0]) for t in model.outputs]}
    order = [id(o) for o in keras_order(model) if id(o) in entries]  # a vanishing layer has none
    return [entries[i] for i in order], ends_, [steps[i] for i in order], [state[id(t)][1] for t in model.outputs]


def keras_order(model: Functional) -> list[Any]:
    """The model's inputs and modules in the order Keras 3 lists a functional model's layers (its ``map_graph``):
    deepest first (depth: calls between a node and the outputs), ties in the order a depth-first walk from
    the outputs first meets them. Keras keys each layer's weights by this order (``conv2d``, ``conv2d_1``), so
    a file for Keras must follow it. An input tensor stands for its InputLayer."""
    def producer(t: SymbolicTensor) -> Any:
        return t.node if t.node is not None else t

    def operation(n: Any) -> Any:
        return n if isinstance(n, SymbolicTensor) else n.module

    def parents(n: Any) -> list[Any]:
        return [] if isinstance(n, SymbolicTensor) else [producer(t) for t in n.input_tensors]

    finished: set[int] = set()
    walk: list[Any] = []
    first_met: dict[int, int] = {}

    def visit(n: Any) -> None:
        if id(n) in finished:
            return
        first_met.setdefault(id(operation(n)), len(first_met))
        for parent in parents(n):
            visit(parent)
        finished.add(id(n))
        walk.append(n)

    for t in model.outputs:
        visit(producer(t))
    node_depth: dict[int, int] = {}
    depth: dict[int, int] = {}
    for n in reversed(walk):
        d = max(node_depth.setdefault(id(n), 0), depth.get(id(operation(n)), 0))
        depth[id(operation(n))] = node_depth[id(n)] = d
        for parent in parents(n):
            node_depth[id(parent)] = max(d + 1, node_depth.get(id(parent), 0))
    operations = {id(operation(n)): operation(n) for n in walk}
    return sorted(operations.values(), key=lambda o: (-depth[id(o)], first_met[id(o)]))


def _tensor(history: History, x: Tensor) -> dict[str, Any]:
    return {"class_name": TENSOR, "config": {"shape": [None, *layout.shape_to_keras(x.shape, x.channels_last)],
                                             "dtype": "float32", "keras_history": list(history)}}
