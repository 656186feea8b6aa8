"""The functional model: a graph of layers from ``Input`` tensors to outputs, Keras's ``Functional``.

>>> image = Input((3, 32, 32), name="image"); ebv = Input((1,), name="ebv")
>>> x = Flatten()(MaxPooling2D()(Conv2D(8, 3, activation="relu")(image)))
>>> z = Dense(1, name="z")(Concatenate()([x, ebv]))
>>> model = Functional([image, ebv], z)                # df.Model([image, ebv], z) on the Keras face

It is an ``nn.Module``: ``forward(*inputs)`` (or one list, or one dict keyed by input name) runs
the layers in an order where every layer comes after what it reads; ``state_dict`` keys are the
layer names (``conv2d.weight``), as a Sequential's. A layer called twice is one module with one
set of weights (Keras's sharing). A functional or Sequential model is a layer too: called on
symbolic tensors inside another model it adds one node, its weights under its own name.

Unnamed layers are named when the model is made, the Keras way (``dense``, ``dense_1``, ...);
names must be unique in a model. Outputs are named by the layer that makes them, or by their
keys when ``outputs`` is a dict; ``compile`` and ``fit`` find losses and targets by those names.

``get_config`` writes the graph as Keras does (each layer with its ``inbound_nodes``, every
tensor as ``{"class_name": "__keras_tensor__", "config": {"shape", "dtype", "keras_history":
[layer, node, index]}}``, then ``input_layers`` and ``output_layers``), with deepfield's layer
configs (channels first); ``from_config`` rebuilds it from registered layer classes only.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from deepfield.errors import DeepfieldError
from deepfield.models import symbolic
from deepfield.models.base import Layer, layer_from_config, snake_case
from deepfield.models.graph_summary import summarize_graph
from deepfield.models.packed import Packed
from deepfield.models.summary import ModelSummary
from deepfield.models.symbolic import Input, Node, SymbolicTensor

__all__ = ["Functional", "Input"]

INPUT_CLASS = "InputLayer"
TENSOR_CLASS = "__keras_tensor__"


def _structure(value: Any, what: str) -> tuple[list[SymbolicTensor], list[str] | None]:
    """The tensors of a tensor, list or dict (with the dict's keys), or an error naming ``what``."""
    if isinstance(value, SymbolicTensor):
        return [value], None
    if isinstance(value, dict) and value:
        keys = list(value)
        if not all(isinstance(k, str) for k in keys):
            raise DeepfieldError(f"model {what}: a dict's keys must be names (strings), got {keys!r}")
        tensors = list(value.values())
    elif isinstance(value, (list, tuple)) and value:
        keys, tensors = None, list(value)
    else:
        raise DeepfieldError(f"model {what} must be a symbolic tensor (from df.Input or a layer called on one), "
                             f"a list or a dict of them, got {type(value).__name__}")
    for t in tensors:
        if not isinstance(t, SymbolicTensor):
            raise DeepfieldError(f"model {what} must be symbolic tensors (from df.Input or a layer called on one), "
                                 f"got {type(t).__name__}")
    return tensors, keys


def _history(tensor: SymbolicTensor, names: dict[int, str], node_index: dict[int, int]) -> list[Any]:
    """``[layer, node, index]``: where ``tensor`` comes from, as Keras's ``keras_history``."""
    if tensor.node is None:
        return [names[id(tensor)], 0, 0]
    return [names[id(tensor.node.module)], node_index[id(tensor.node)], tensor.index]


class Functional(nn.Module):
    """A model from ``inputs`` to ``outputs`` (each a symbolic tensor, a list or a dict of them).

    ``input_shape``: a sample's shape for one input, a list of them for several (Keras's).
    """

    def __init__(self, inputs: Any, outputs: Any, name: str | None = None):
        super().__init__()
        self.name = name or "functional"
        inputs_, input_keys = _structure(inputs, "inputs")
        outputs_, output_keys = _structure(outputs, "outputs")
        for t in inputs_:
            if t.node is not None:
                raise DeepfieldError(f"model inputs must come from df.Input(...); one was made by "
                                     f"{symbolic.label(t.node.module)}")
        if len({id(t) for t in inputs_}) != len(inputs_):
            raise DeepfieldError("the same Input is given twice among the model's inputs")
        nodes = self._trace(inputs_, outputs_, output_keys)
        names = self._name(inputs_, input_keys, nodes)
        self._inputs, self._outputs = inputs_, outputs_
        self._input_dict, self._output_dict = input_keys is not None, output_keys is not None
        self.input_names = [names[id(t)] for t in inputs_] if input_keys is None else input_keys
        self.output_names = output_keys or self._output_layer_names(outputs_, names)
        if len(set(self.output_names)) != len(self.output_names):
            raise DeepfieldError(f"model outputs have the same name twice ({', '.join(self.output_names)}); "
                                 "give the output layers distinct names, or pass outputs as a dict")
        self._nodes = nodes
        self._names = names
        self._plan = self._make_plan(inputs_, outputs_, nodes, names)

    # -- building the graph ---------------------------------------------------------------
    @staticmethod
    def _trace(inputs: list[SymbolicTensor], outputs: list[SymbolicTensor],
               output_keys: list[str] | None) -> list[Node]:
        """The nodes between ``inputs`` and ``outputs``, each after the nodes it reads (Keras's order)."""
        given = {id(t) for t in inputs}
        order: list[Node] = []
        seen: set[int] = set()
        used: set[int] = set()

        def visit(tensor: SymbolicTensor, output: str) -> None:
            if id(tensor) in given:
                used.add(id(tensor))
                return
            node = tensor.node
            if node is None:
                needed = f"{tensor.name!r} " if tensor.name else ""
                raise DeepfieldError(f"output {output} is not connected to the model's inputs: it needs the Input "
                                     f"{needed}of shape {tensor.shape}, which is not among them")
            if id(node) in seen:
                return
            for t in node.input_tensors:
                visit(t, output)
            seen.add(id(node))
            order.append(node)

        for i, tensor in enumerate(outputs):
            label = repr(output_keys[i]) if output_keys else f"{i} ({tensor.shape})"
            visit(tensor, label)
        unused = [t for t in inputs if id(t) not in used]
        if unused:
            shown = ", ".join(f"{t.name or 'input'} {t.shape}" for t in unused)
            raise DeepfieldError(f"model input {shown} is not used by any output; remove it from inputs "
                                 "or connect it")
        return order

    def _name(self, inputs: list[SymbolicTensor], input_keys: list[str] | None, nodes: list[Node]) -> dict[int, str]:
        """Names of the inputs and modules (unnamed ones get Keras's default names); clashes refused."""
        names: dict[int, str] = {}
        owner: dict[str, str] = {}

        def claim(key: int, name: str, what: str) -> None:
            if name in owner:
                raise DeepfieldError(f"model {self.name!r}: the name {name!r} is used twice ({owner[name]} and "
                                     f"{what}); names in a model must be unique")
            owner[name] = what
            names[key] = name

        def fresh(base: str) -> str:
            name, i = base, 0
            while name in owner or any(getattr(n.module, "name", None) == name for n in nodes):
                i += 1
                name = f"{base}_{i}"
            return name

        for i, t in enumerate(inputs):
            name = t.name or (input_keys[i] if input_keys else None) or fresh("input_layer")
            t.name = name
            claim(id(t), name, "an Input")
        modules = list({id(n.module): n.module for n in nodes}.values())
        for module in modules:
            name = getattr(module, "name", None)
            if not name:
                name = fresh(snake_case(type(module).__name__))
                module.name = name
            claim(id(module), name, f"a {type(module).__name__}")
        for module in modules:
            try:
                self.add_module(names[id(module)], module)
            except KeyError as exc:  # a name torch keeps for itself ("training", "forward", one with a dot)
                raise DeepfieldError(f"model {self.name!r}: a layer cannot be named {names[id(module)]!r} "
                                     f"({exc.args[0]})") from None
        return names

    @staticmethod
    def _output_layer_names(outputs: list[SymbolicTensor], names: dict[int, str]) -> list[str]:
        result = []
        for t in outputs:
            if t.node is None:
                result.append(names[id(t)])
            else:
                base = names[id(t.node.module)]
                result.append(base if len(t.node.outputs) == 1 else f"{base}_{t.index}")
        return result

    @staticmethod
    def _make_plan(inputs: list[SymbolicTensor], outputs: list[SymbolicTensor], nodes: list[Node],
                   names: dict[int, str]) -> tuple[list[tuple[str, Any, list[int], bool, list[int]]], list[int], int]:
        """Slots: each tensor's place in one list of values; the plan says which module (by name, so that a
        layer swapped in place, as ``bayesianize`` does, is the one called) reads and fills which, and which
        slots it read for the last time (emptied after it: a U-Net's inference kept every activation
        alive and ran 20 % slower than the same torch module, which frees them; bench_unet.py)."""
        slot: dict[int, int] = {id(t): i for i, t in enumerate(inputs)}
        steps = []
        last_read: dict[int, int] = {}  # slot -> the step that reads it last
        for k, node in enumerate(nodes):
            reads: Any = ([slot[id(t)] for t in node.inputs] if isinstance(node.inputs, list)
                          else slot[id(node.inputs)])
            last_read.update((i, k) for i in (reads if isinstance(reads, list) else [reads]))
            writes = []
            for t in node.outputs:
                slot[id(t)] = len(slot)
                writes.append(slot[id(t)])
            steps.append((names[id(node.module)], reads, writes, node.several))
        out_slots = [slot[id(t)] for t in outputs]
        frees: list[list[int]] = [[] for _ in steps]
        for i, k in last_read.items():
            if i not in out_slots:
                frees[k].append(i)
        return [(*step, free) for step, free in zip(steps, frees)], out_slots, len(slot)

    # -- what it is -----------------------------------------------------------------------
    @property
    def built(self) -> bool:
        return True

    def build(self, input_shape: Any = None) -> Functional:
        """A functional model is built when it is made (the layers were built by the symbolic calls)."""
        return self

    @property
    def input_shape(self) -> tuple[int, ...] | list[tuple[int, ...]]:
        shapes = [t.sample_shape for t in self._inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self) -> tuple[int, ...] | list[tuple[int, ...]]:
        shapes = [t.sample_shape for t in self._outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def inputs(self) -> list[SymbolicTensor]:
        return list(self._inputs)

    @property
    def outputs(self) -> list[SymbolicTensor]:
        return list(self._outputs)

    @property
    def layers(self) -> list[nn.Module]:
        """The modules in graph order (the inputs are not modules)."""
        return list(self._modules.values())

    def graph_summary(self) -> ModelSummary:
        """What ``summary()`` prints, as numbers (:func:`deepfield.models.graph_summary.summarize_graph`)."""
        return summarize_graph(self)

    def summary(self, print_fn: Any = None) -> None:
        """Print the Keras-style table with its "Connected to" column."""
        summarize_graph(self).print(print_fn)

    def get_layer(self, name: str) -> nn.Module:
        if name not in self._modules:
            raise DeepfieldError(f"model {self.name!r} has no layer {name!r}; its layers: {', '.join(self._modules)}")
        return self._modules[name]

    # -- running --------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if args and symbolic.is_symbolic(args[0]) or (args and isinstance(args[0], dict)
                                                       and symbolic.is_symbolic(list(args[0].values()))):
            ordered = self._ordered(args[0] if len(args) == 1 else list(args))
            return symbolic.symbolic_call(self, ordered[0] if len(ordered) == 1 else ordered, (), kwargs)
        return super().__call__(*args, **kwargs)

    def _ordered(self, inputs: Any) -> list[Any]:
        """``inputs`` (one, a list, or a dict by input name) as the list of the model's inputs, in order."""
        if isinstance(inputs, dict):
            missing = [n for n in self.input_names if n not in inputs]
            unknown = [k for k in inputs if k not in self.input_names]
            if missing or unknown:
                raise DeepfieldError(f"model {self.name!r} takes inputs {self.input_names}; got keys {list(inputs)}")
            inputs = [inputs[n] for n in self.input_names]
        elif not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        if len(inputs) != len(self._inputs):
            raise DeepfieldError(f"model {self.name!r} takes {len(self._inputs)} input(s) "
                                 f"({', '.join(self.input_names)}), got {len(inputs)}")
        return list(inputs)

    def forward(self, *inputs: Any) -> Any:
        """The outputs for ``inputs``: tensors in the order of the model's inputs, or one list or dict of them.

        One output: a tensor; several: a list, or a dict when the outputs were given as a dict;
        a :class:`Packed` of inputs (what the training engine passes): a :class:`Packed` of the outputs
        when there are several.
        """
        packed = len(inputs) == 1 and isinstance(inputs[0], Packed)
        if packed:
            given: Any = inputs[0].parts
        else:
            given = inputs[0] if len(inputs) == 1 and isinstance(inputs[0], (list, tuple, dict)) else inputs
        steps, out_slots, size = self._plan
        values: list[Any] = self._ordered(given) + [None] * (size - len(self._inputs))
        modules = self._modules
        for name, reads, writes, several, frees in steps:
            result = modules[name]([values[i] for i in reads] if isinstance(reads, list) else values[reads])
            for i in frees:
                values[i] = None
            if several:
                for i, r in zip(writes, result.values() if isinstance(result, dict) else result):
                    values[i] = r
            else:
                values[writes[0]] = result
        outputs = [values[i] for i in out_slots]
        if packed and len(outputs) > 1:
            return Packed(outputs, self.output_names)
        if self._output_dict:
            return dict(zip(self.output_names, outputs))
        return outputs[0] if len(outputs) == 1 else outputs

    # -- architecture as JSON -------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The graph, Keras's functional config in form: layers with inbound nodes, input and output layers."""
        names = self._names
        node_index: dict[int, int] = {}
        per_module: dict[str, list[Node]] = {}  # by name: the module there now may be a swapped-in one
        for node in self._nodes:
            per_module.setdefault(names[id(node.module)], []).append(node)
            node_index[id(node)] = len(per_module[names[id(node.module)]]) - 1

        def tensor(t: SymbolicTensor) -> dict[str, Any]:
            return {"class_name": TENSOR_CLASS, "config": {"shape": list(t.shape), "dtype": str(t.dtype)[6:],
                                                          "keras_history": _history(t, names, node_index)}}

        layers: list[dict[str, Any]] = []
        for t in self._inputs:
            layers.append({"class_name": INPUT_CLASS, "name": names[id(t)], "inbound_nodes": [],
                           "config": {"batch_shape": list(t.shape), "dtype": str(t.dtype)[6:], "name": names[id(t)]}})
        for name, module in self._modules.items():
            if not hasattr(module, "get_config"):
                raise DeepfieldError(f"layer {name!r} is a plain {type(module).__name__}; only deepfield layers "
                                     "can be saved as architecture JSON (save the weights alone instead)")
            inbound = [{"args": [[tensor(t) for t in n.inputs] if isinstance(n.inputs, list) else tensor(n.inputs)],
                        "kwargs": {}} for n in per_module[name]]
            layers.append({"class_name": _class_name(module), "name": name, "config": module.get_config(),
                           "inbound_nodes": inbound})

        def ends(tensors: list[SymbolicTensor], keys: list[str] | None) -> Any:
            histories = [_history(t, names, node_index) for t in tensors]
            if keys is not None:
                return dict(zip(keys, histories))
            return histories[0] if len(histories) == 1 else histories  # one: Keras writes the history alone

        return {"name": self.name, "layers": layers,
                "input_layers": ends(self._inputs, self.input_names if self._input_dict else None),
                "output_layers": ends(self._outputs, self.output_names if self._output_dict else None)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Functional:
        """The model a :meth:`get_config` describes (layers found by registered class name only)."""
        specs = config.get("layers")
        if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
            raise DeepfieldError("functional model config has no 'layers' list")
        made: dict[tuple[str, int, int], SymbolicTensor] = {}
        modules: dict[str, nn.Module] = {}
        pending: list[tuple[str, int, Any]] = []
        for spec in specs:
            name = spec.get("name")
            if not isinstance(name, str) or not name:
                raise DeepfieldError(f"functional model config: a layer has no name ({spec.get('class_name')!r})")
            if spec.get("class_name") == INPUT_CLASS:
                layer_config = spec.get("config", {})
                shape = layer_config.get("batch_shape") or [None]
                made[(name, 0, 0)] = Input(shape[1:], name=name, dtype=layer_config.get("dtype", "float32"))
                continue
            modules[name] = module_from_config(spec)
            if getattr(modules[name], "name", None) != name and isinstance(modules[name], (Layer, Functional)):
                modules[name].name = name
            nodes = spec.get("inbound_nodes", [])
            if not isinstance(nodes, list):
                raise DeepfieldError(f"functional model config: layer {name!r} 'inbound_nodes' must be a list")
            pending += [(name, i, node) for i, node in enumerate(nodes)]
        while pending:  # a shared layer's later node may read layers listed after it: repeat until all are made
            waiting = []
            for name, index, node in pending:
                if any(n == name and i < index for n, i, _ in waiting):
                    waiting.append((name, index, node))
                    continue
                args = _node_args(node, name)
                try:
                    inputs = _resolve(args, made)
                except KeyError:
                    waiting.append((name, index, node))
                    continue
                out = modules[name](inputs)
                for k, t in enumerate(out if isinstance(out, list) else [out]):
                    made[(name, index, k)] = t
            if len(waiting) == len(pending):
                raise DeepfieldError("functional model config: layers "
                                     f"{sorted({n for n, _, _ in waiting})} read tensors no layer makes")
            pending = waiting
        try:
            inputs = _ends(config.get("input_layers"), made)
            outputs = _ends(config.get("output_layers"), made)
        except KeyError as exc:
            raise DeepfieldError(f"functional model config: input or output {exc.args[0]} is made by no layer"
                                 ) from None
        return cls(inputs, outputs, name=config.get("name"))


def _class_name(module: nn.Module) -> str:
    """The container's models-layer name for the Keras-face subclasses (Sequential, Functional), else the class."""
    for cls in type(module).__mro__:
        if cls.__module__.startswith("deepfield.models") and cls.__name__ in ("Sequential", "Functional"):
            return cls.__name__
    return type(module).__name__


def module_from_config(spec: dict[str, Any]) -> nn.Module:
    """A layer or nested model from ``{"class_name": ..., "config": {...}}`` (registered names only)."""
    class_name = spec.get("class_name")
    if class_name == "Functional":
        return Functional.from_config(spec.get("config", {}))
    if class_name == "Sequential":
        from deepfield.models.sequential import Sequential

        return Sequential.from_config(spec.get("config", {}))
    return layer_from_config(spec)


def _node_args(node: Any, name: str) -> Any:
    args = node.get("args") if isinstance(node, dict) else None
    if not isinstance(args, list) or len(args) != 1:
        raise DeepfieldError(f"functional model config: layer {name!r} has an inbound node without one 'args' entry")
    return args[0]


def _resolve(arg: Any, made: dict[tuple[str, int, int], SymbolicTensor]) -> Any:
    """The symbolic tensor(s) an inbound node's argument names (KeyError: not made yet)."""
    if isinstance(arg, list):
        return [_resolve(a, made) for a in arg]
    if not isinstance(arg, dict) or arg.get("class_name") != TENSOR_CLASS:
        raise DeepfieldError(f"functional model config: an inbound node argument must be a {TENSOR_CLASS!r} entry, "
                             f"got {arg!r}")
    history = arg.get("config", {}).get("keras_history")
    if not isinstance(history, list) or len(history) != 3:
        raise DeepfieldError(f"functional model config: keras_history must be [layer, node, index], got {history!r}")
    return made[tuple(history)]  # type: ignore[index]


def _ends(value: Any, made: dict[tuple[str, int, int], SymbolicTensor]) -> Any:
    """The tensors ``input_layers``/``output_layers`` name: a dict, a list of histories, or one history."""
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        return made[tuple(value)]  # type: ignore[index]
    if isinstance(value, dict):
        return {k: made[tuple(v)] for k, v in value.items()}
    if not isinstance(value, list) or not value:
        raise DeepfieldError(f"functional model config: input_layers/output_layers must be a list, got {value!r}")
    return [made[tuple(v)] for v in value]  # type: ignore[misc]

