"""The glass box of one training step: a small dense network traced neuron by neuron.

``run_trace(spec)`` runs ONE gradient-descent step of a small fully-connected network on one
sample and returns every number the course's backpropagation example writes out: each neuron's
net input ``in`` and output ``out``, each loss term, the chain-rule factors and gradient of every
weight and bias, and the updated values ``w <- w - lr * dL/dw``. Every number comes from PyTorch
autograd in float64 (``torch.autograd.grad`` with respect to every net input, output and
parameter), never from hand-written derivative formulas, and each gradient is checked against
the autograd ``.grad`` of its parameter.

Names follow the course:

* inputs ``i1, i2, ...``; hidden neurons ``h1, h2, ...`` numbered on across all hidden layers
  (a 2-3-3-1 network has ``h1..h3`` in the first hidden layer, ``h4..h6`` in the second);
  output neurons ``o1, o2, ...``;
* weights ``w1, w2, ...`` numbered on layer by layer; inside a layer, for each receiving neuron
  its incoming weights in the order of the sending neurons (``w1: i1->h1, w2: i2->h1,
  w3: i1->h2, ...``), i.e. the rows of the ``(out, in)`` weight matrix read row after row;
* a bias shared by all neurons of a layer (the course's way) is named after the layer, ``b1`` for
  layer 1, ``b2`` for layer 2, ...; a bias per neuron is named after its neuron: ``b_h1``,
  ``b_h2``, ``b_o1``, ...; a layer without ``bias`` has none.

Losses: ``half_sse`` (the course's, default) ``L = sum_k 1/2 (target_k - out_k)^2`` and ``mse``
``L = sum_k (target_k - out_k)^2 / n_outputs``; the terms ``L_o1, L_o2, ...`` are the summands.

The spec is a :class:`TraceSpec`, from :func:`course_example`, :func:`trace_spec_from_dict` or
:func:`load_trace_spec` (a JSON file)::

    {"inputs": [0.05, 0.10], "targets": [0.01, 0.99], "learning_rate": 0.5, "loss": "half_sse",
     "layers": [{"weights": [[0.15, 0.20], [0.25, 0.30]], "bias": 0.35, "activation": "sigmoid"},
                {"weights": [[0.40, 0.45], [0.50, 0.55]], "bias": 0.60, "activation": "sigmoid"}]}

``weights`` are rows ``(out, in)`` as in PyTorch; ``bias`` is one number (shared by the layer),
a list (one per neuron) or absent; ``activation`` is ``sigmoid`` (default), ``tanh``, ``relu`` or
``linear``; ``learning_rate`` defaults to 0.5 and ``loss`` to ``half_sse``. At a relu's kink
(``in = 0``) the local derivative is PyTorch's, 0.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from deepfield.analysis.trace_render import render_trace
from deepfield.arguments import is_number
from deepfield.errors import DeepfieldError, unknown_name

__all__ = [
    "MAX_TRACE_WEIGHTS",
    "BackpropTerm",
    "ChainTerm",
    "LayerSpec",
    "NeuronTrace",
    "ParameterTrace",
    "TraceResult",
    "TraceSpec",
    "course_example",
    "load_trace_spec",
    "render_trace",
    "run_trace",
    "trace_spec_from_dict",
]

MAX_TRACE_WEIGHTS = 64
"""The most weights a trace writes out; larger networks are for ``model.summary()``."""

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "linear": lambda z: z,
}
LOSSES = ("half_sse", "mse")

Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]

# Relative and absolute tolerance of the internal autograd cross-checks (float64).
_RTOL, _ATOL = 1e-9, 1e-12


# ---------------------------------------------------------------------------------------------
# The spec
# ---------------------------------------------------------------------------------------------


class LayerSpec(BaseModel):
    """One dense layer: ``out = activation(weights @ previous_out + bias)``.

    ``weights``: ``(out, in)`` rows; ``bias``: one number shared by the layer, one per neuron,
    or ``None`` for no bias.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    weights: list[list[Number]] = Field(min_length=1)
    bias: Number | list[Number] | None = None
    activation: str = "sigmoid"

    @field_validator("bias", mode="before")
    @classmethod
    def _bias_is_number_or_list(cls, value: Any) -> Any:
        """Give a bias of the wrong type one readable message instead of one per union branch."""
        if value is None or _is_finite(value):
            return value
        if isinstance(value, list) and all(_is_finite(v) for v in value):
            return value
        raise ValueError(
            f"expected a number (shared by the layer) or a list of numbers (one per neuron), got {value!r}"
        )

    @field_validator("activation", mode="before")
    @classmethod
    def _known_activation(cls, value: Any) -> str:
        """Accept the four elementwise activations the trace can write out, any case."""
        key = value.lower() if isinstance(value, str) else value
        if key not in ACTIVATIONS:
            raise unknown_name("activation", value, ACTIVATIONS)
        return key

    @property
    def units(self) -> int:
        """Number of neurons in the layer (rows of ``weights``)."""
        return len(self.weights)

    @property
    def shared_bias(self) -> bool:
        """Whether the layer has one bias shared by all its neurons (the course's way)."""
        return self.bias is not None and not isinstance(self.bias, list)


class TraceSpec(BaseModel):
    """A small dense network, one sample, a loss and a learning rate: what one step needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    inputs: list[Number] = Field(min_length=1)
    targets: list[Number] = Field(min_length=1)
    learning_rate: Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0)] = 0.5
    loss: str = "half_sse"
    layers: list[LayerSpec] = Field(min_length=1)

    @field_validator("loss", mode="before")
    @classmethod
    def _known_loss(cls, value: Any) -> str:
        """Accept ``half_sse`` or ``mse``, any case."""
        key = value.lower() if isinstance(value, str) else value
        if key not in LOSSES:
            raise unknown_name("loss", value, LOSSES)
        return key

    @model_validator(mode="after")
    def _shapes_agree(self) -> TraceSpec:
        """Check every weight matrix against the layer before it, biases and targets likewise."""
        fan_in, source = len(self.inputs), f"the {len(self.inputs)} inputs"
        for index, layer in enumerate(self.layers):
            where = f"layers[{index}]"
            for row, weights in enumerate(layer.weights):
                if len(weights) != fan_in:
                    raise ValueError(
                        f"{where}.weights: each row must have {fan_in} numbers (one per value of "
                        f"{source}), row {row} has {len(weights)}"
                    )
            if isinstance(layer.bias, list) and len(layer.bias) != layer.units:
                raise ValueError(
                    f"{where}.bias: has {len(layer.bias)} values for {layer.units} neurons; give one "
                    "per neuron or a single number shared by the layer"
                )
            fan_in, source = layer.units, f"the {layer.units} outputs of {where}"
        if len(self.targets) != fan_in:
            raise ValueError(f"targets: has {len(self.targets)} values but the last layer has {fan_in} outputs")
        count = sum(layer.units * len(layer.weights[0]) for layer in self.layers)
        if count > MAX_TRACE_WEIGHTS:
            raise ValueError(
                f"the network has {count} weights; the trace writes out every one and is meant for "
                f"small networks (at most {MAX_TRACE_WEIGHTS}); look at a larger model with "
                "model.summary() instead"
            )
        return self


def _is_finite(value: Any) -> bool:
    """A finite number, not a bool."""
    return is_number(value) and math.isfinite(value)


def course_example() -> TraceSpec:
    """The course's worked example: a 2-2-2 sigmoid network, one shared bias per layer, lr 0.5."""
    return TraceSpec(
        inputs=[0.05, 0.10],
        targets=[0.01, 0.99],
        learning_rate=0.5,
        loss="half_sse",
        layers=[
            LayerSpec(weights=[[0.15, 0.20], [0.25, 0.30]], bias=0.35, activation="sigmoid"),
            LayerSpec(weights=[[0.40, 0.45], [0.50, 0.55]], bias=0.60, activation="sigmoid"),
        ],
    )


def trace_spec_from_dict(data: Any, source: str = "trace spec") -> TraceSpec:
    """Validate a mapping (e.g. parsed JSON) into a :class:`TraceSpec`.

    Raises :class:`DeepfieldError` with one line ``"<source>: <where>: <what is wrong>"``.
    """
    if not isinstance(data, Mapping):
        raise DeepfieldError(
            f"{source}: expected a JSON object with inputs, targets and layers, got {type(data).__name__}"
        )
    try:
        return TraceSpec.model_validate(dict(data))
    except ValidationError as exc:
        raise DeepfieldError(f"{source}: {_describe(exc)}") from None


def load_trace_spec(path: str | Path) -> TraceSpec:
    """Read and validate a JSON trace spec (schema in the module docstring).

    Raises :class:`DeepfieldError` naming the file for a missing file, bad JSON, wrong shapes,
    an unknown activation or loss, or a non-numeric value.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DeepfieldError(f"{path}: no such trace spec file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DeepfieldError(f"{path}: cannot read the trace spec ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DeepfieldError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    return trace_spec_from_dict(data, source=str(path))


def _describe(exc: ValidationError) -> str:
    """The first pydantic error as ``where: what`` (plus how many more), on one line."""
    errors = exc.errors()
    first = errors[0]
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]).lstrip(".")
    if first["type"] == "extra_forbidden":
        what = "unknown key"
    elif first["type"] == "missing":
        what = "required but missing"
    elif "error" in first.get("ctx", {}):
        what = str(first["ctx"]["error"])
    else:
        what = f"{first['msg'][0].lower()}{first['msg'][1:]}, got {first['input']!r}"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{where}: {what}{more}" if where else f"{what}{more}"


# ---------------------------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainTerm:
    """One path of the chain rule from the loss to a parameter, through one neuron ``n``.

    ``dL/dp (this path) = dL/dout_n * dout_n/din_n * din_n/dp``.
    """

    neuron: str
    dL_dout: float
    dout_din: float
    din_dparam: float

    @property
    def product(self) -> float:
        """The three factors multiplied."""
        return self.dL_dout * self.dout_din * self.din_dparam


@dataclass(frozen=True)
class BackpropTerm:
    """How a neuron of the next layer sends the loss back: ``dL/din_next * din_next/dout_this``."""

    neuron: str
    dL_din: float
    din_dout: float

    @property
    def product(self) -> float:
        """The two factors multiplied."""
        return self.dL_din * self.din_dout


@dataclass(frozen=True)
class NeuronTrace:
    """One neuron: forward values, its local derivatives and, if hidden, what flows back to it.

    ``sources`` and ``weights`` are the sending neurons and incoming weight names, in order;
    ``backprop`` is empty for an output neuron and otherwise sums to ``dL_dout``.
    """

    name: str
    layer: int
    activation: str
    net_input: float
    output: float
    sources: tuple[str, ...]
    weights: tuple[str, ...]
    bias: str | None
    dL_dout: float
    dout_din: float
    dL_din: float
    backprop: tuple[BackpropTerm, ...]


@dataclass(frozen=True)
class ParameterTrace:
    """One weight or bias: value, autograd gradient, its chain rule and the updated value.

    ``chain`` has one term for a weight or a per-neuron bias and one per neuron for a bias
    shared by a layer; the terms sum to ``gradient`` (checked when traced).
    """

    name: str
    kind: Literal["weight", "bias"]
    layer: int
    value: float
    gradient: float
    updated: float
    chain: tuple[ChainTerm, ...]


@dataclass(frozen=True)
class TraceResult:
    """Everything one gradient-descent step computed, neuron by neuron and weight by weight."""

    inputs: dict[str, float]
    targets: dict[str, float]
    neurons: tuple[NeuronTrace, ...]
    loss: str
    loss_terms: dict[str, float]
    loss_total: float
    parameters: tuple[ParameterTrace, ...]
    learning_rate: float

    def neuron(self, name: str) -> NeuronTrace:
        """The neuron called ``name`` (``h1``, ``o2``, ...)."""
        for neuron in self.neurons:
            if neuron.name == name:
                return neuron
        raise unknown_name("neuron", name, [n.name for n in self.neurons])

    def parameter(self, name: str) -> ParameterTrace:
        """The weight or bias called ``name`` (``w5``, ``b1``, ``b_h2``, ...)."""
        for parameter in self.parameters:
            if parameter.name == name:
                return parameter
        raise unknown_name("parameter", name, [p.name for p in self.parameters])

    def value(self, name: str) -> float:
        """The forward output of an input or neuron (``i1``, ``h1``, ``o1``)."""
        return self.inputs[name] if name in self.inputs else self.neuron(name).output

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (full float64 precision) for ``deepfield trace --json``."""
        return {
            "learning_rate": self.learning_rate,
            "inputs": dict(self.inputs),
            "targets": dict(self.targets),
            "forward": {
                n.name: {"layer": n.layer, "activation": n.activation, "in": n.net_input, "out": n.output}
                for n in self.neurons
            },
            "loss": {"function": self.loss, "terms": dict(self.loss_terms), "total": self.loss_total},
            "parameters": {p.name: p.value for p in self.parameters},
            "gradients": {p.name: p.gradient for p in self.parameters},
            "chain_rule": {
                p.name: [
                    {
                        "neuron": t.neuron,
                        "dL_dout": t.dL_dout,
                        "dout_din": t.dout_din,
                        "din_dparam": t.din_dparam,
                        "product": t.product,
                    }
                    for t in p.chain
                ]
                for p in self.parameters
            },
            "backpropagated": {
                n.name: {
                    "dL_dout": n.dL_dout,
                    "terms": [
                        {"neuron": t.neuron, "dL_din": t.dL_din, "din_dout": t.din_dout, "product": t.product}
                        for t in n.backprop
                    ],
                }
                for n in self.neurons
                if n.backprop
            },
            "updated": {p.name: p.updated for p in self.parameters},
        }


# ---------------------------------------------------------------------------------------------
# The step
# ---------------------------------------------------------------------------------------------


def _neuron_names(spec: TraceSpec) -> list[list[str]]:
    """Names per layer, inputs first: ``[[i1, i2], [h1, h2], [o1, o2]]``."""
    names = [[f"i{k + 1}" for k in range(len(spec.inputs))]]
    hidden = 0
    for layer in spec.layers[:-1]:
        names.append([f"h{hidden + j + 1}" for j in range(layer.units)])
        hidden += layer.units
    names.append([f"o{j + 1}" for j in range(spec.layers[-1].units)])
    return names


def _check(what: str, value: float, expected: float) -> None:
    """Internal consistency check between two autograd routes to the same number."""
    if not math.isclose(value, expected, rel_tol=_RTOL, abs_tol=_ATOL):
        raise RuntimeError(f"trace self-check failed for {what}: {value!r} != {expected!r}")


@dataclass(frozen=True)
class _Step:
    """The tensors of one traced step, per layer ``l`` (all float64, all from autograd).

    ``outs[0]`` is the input sample, ``outs[l + 1]`` and ``ins[l]`` the outputs and net inputs of
    layer ``l``; ``dL_dout``/``dL_din`` their loss gradients; ``dout_din[l][j]`` the activation's
    local derivative; ``din_dw[l][j, k] = din_j/dw_jk``, ``din_db[l][j] = din_j/db``,
    ``din_dprev[l][j, k] = din_j/dout_k`` (layer ``l - 1``; None for the first layer).
    ``weights``/``biases`` are the leaves, their ``.grad`` filled by ``backward()``.
    """

    weights: list[torch.Tensor]
    biases: list[torch.Tensor | None]
    outs: list[torch.Tensor]
    ins: list[torch.Tensor]
    terms: torch.Tensor
    total: torch.Tensor
    dL_dout: list[torch.Tensor]
    dL_din: list[torch.Tensor]
    dout_din: list[torch.Tensor]
    din_dw: list[torch.Tensor]
    din_db: list[torch.Tensor | None]
    din_dprev: list[torch.Tensor | None]


def _step(spec: TraceSpec) -> _Step:
    """Forward, loss, every local and loss derivative by autograd, then ``backward()``."""
    f64 = torch.float64
    with torch.enable_grad():
        weights = [torch.tensor(layer.weights, dtype=f64, requires_grad=True) for layer in spec.layers]
        biases = [
            None if layer.bias is None else torch.tensor(layer.bias, dtype=f64, requires_grad=True)
            for layer in spec.layers
        ]
        outs = [torch.tensor(spec.inputs, dtype=f64)]
        ins: list[torch.Tensor] = []
        for layer, weight, bias in zip(spec.layers, weights, biases):
            ins.append(weight @ outs[-1] + (bias if bias is not None else 0.0))
            outs.append(ACTIVATIONS[layer.activation](ins[-1]))
        error2 = (torch.tensor(spec.targets, dtype=f64) - outs[-1]) ** 2
        terms = 0.5 * error2 if spec.loss == "half_sse" else error2 / len(spec.targets)
        total = terms.sum()

        # dL/din and dL/dout of every neuron. (Not retain_grad: its hooks would also collect the
        # local autograd.grad calls below.)
        grads = torch.autograd.grad(total, ins + outs[1:], retain_graph=True)
        dL_din, dL_dout = list(grads[: len(ins)]), list(grads[len(ins) :])
        # The activations are elementwise, so the vector-Jacobian product with ones is the
        # diagonal dout_j/din_j, exact even where dL/dout_j is 0.
        dout_din = [
            torch.autograd.grad(out, net, torch.ones_like(out), retain_graph=True)[0]
            for net, out in zip(ins, outs[1:])
        ]
        # din_j/dw_jk, din_j/db and din_j/dout_prev_k: one row of the Jacobian per neuron j.
        din_dw, din_db, din_dprev = [], [], []
        for index, (net, weight, bias) in enumerate(zip(ins, weights, biases)):
            wrt = [weight] + ([bias] if bias is not None else []) + ([outs[index]] if index > 0 else [])
            rows = [torch.autograd.grad(net[j], wrt, retain_graph=True) for j in range(net.numel())]
            din_dw.append(torch.stack([row[0][j] for j, row in enumerate(rows)]))
            if bias is None:
                din_db.append(None)
            else:
                din_db.append(torch.stack([row[1] if bias.ndim == 0 else row[1][j] for j, row in enumerate(rows)]))
            din_dprev.append(torch.stack([row[-1] for row in rows]) if index > 0 else None)
        total.backward()
    return _Step(
        weights, biases, [o.detach() for o in outs], [i.detach() for i in ins], terms.detach(), total.detach(),
        dL_dout, dL_din, dout_din, din_dw, din_db, din_dprev,
    )


def run_trace(spec: TraceSpec | Mapping[str, Any] | None = None) -> TraceResult:
    """Run one gradient-descent step on ``spec`` (default: the course example) and trace it.

    A mapping is validated with :func:`trace_spec_from_dict` first.
    """
    if spec is None:
        spec = course_example()
    elif not isinstance(spec, TraceSpec):
        spec = trace_spec_from_dict(spec)
    names = _neuron_names(spec)
    step = _step(spec)
    return TraceResult(
        inputs=dict(zip(names[0], spec.inputs)),
        targets=dict(zip(names[-1], spec.targets)),
        neurons=_trace_neurons(spec, names, step),
        loss=spec.loss,
        loss_terms={f"L_{name}": float(v) for name, v in zip(names[-1], step.terms)},
        loss_total=float(step.total),
        parameters=_trace_parameters(spec, names, step),
        learning_rate=spec.learning_rate,
    )


def _trace_neurons(spec: TraceSpec, names: list[list[str]], step: _Step) -> tuple[NeuronTrace, ...]:
    """Forward values and local/backpropagated derivatives of every neuron, layer by layer."""
    neurons = []
    first_weight = 1
    for index, layer in enumerate(spec.layers):
        fan_in = len(names[index])
        for j, name in enumerate(names[index + 1]):
            dL_dout = float(step.dL_dout[index][j])
            local = float(step.dout_din[index][j])
            dL_din = float(step.dL_din[index][j])
            _check(f"dL/din_{name} = dL/dout_{name} * dout_{name}/din_{name}", dL_dout * local, dL_din)
            backprop: tuple[BackpropTerm, ...] = ()
            if index + 1 < len(spec.layers):
                backprop = tuple(
                    BackpropTerm(nxt, float(step.dL_din[index + 1][m]), float(step.din_dprev[index + 1][m, j]))
                    for m, nxt in enumerate(names[index + 2])
                )
                _check(f"dL/dout_{name} summed over the next layer", sum(t.product for t in backprop), dL_dout)
            neurons.append(
                NeuronTrace(
                    name=name,
                    layer=index + 1,
                    activation=layer.activation,
                    net_input=float(step.ins[index][j]),
                    output=float(step.outs[index + 1][j]),
                    sources=tuple(names[index]),
                    weights=tuple(f"w{first_weight + j * fan_in + k}" for k in range(fan_in)),
                    bias=_bias_name(layer, index, name),
                    dL_dout=dL_dout,
                    dout_din=local,
                    dL_din=dL_din,
                    backprop=backprop,
                )
            )
        first_weight += layer.units * fan_in
    return tuple(neurons)


def _bias_name(layer: LayerSpec, index: int, neuron: str) -> str | None:
    """``b<layer>`` for a shared bias, ``b_<neuron>`` for a per-neuron one, None without."""
    if layer.bias is None:
        return None
    return f"b{index + 1}" if layer.shared_bias else f"b_{neuron}"


def _trace_parameters(spec: TraceSpec, names: list[list[str]], step: _Step) -> tuple[ParameterTrace, ...]:
    """Every weight (numbered on across layers), then every bias, with chain rule and update."""
    lr = spec.learning_rate

    def term(index: int, j: int, din_dparam: torch.Tensor) -> ChainTerm:
        dL_dout, dout_din = float(step.dL_dout[index][j]), float(step.dout_din[index][j])
        return ChainTerm(names[index + 1][j], dL_dout, dout_din, float(din_dparam))

    def parameter(
        name: str,
        kind: Literal["weight", "bias"],
        index: int,
        value: torch.Tensor,
        grad: torch.Tensor,
        chain: tuple[ChainTerm, ...],
    ) -> ParameterTrace:
        _check(f"dL/d{name} by the chain rule against autograd .grad", sum(t.product for t in chain), float(grad))
        return ParameterTrace(name, kind, index + 1, float(value), float(grad), float(value - lr * grad), chain)

    traced = []
    number = 1
    with torch.no_grad():
        for index, weight in enumerate(step.weights):
            rows, cols = weight.shape
            for j in range(rows):
                for k in range(cols):
                    chain = (term(index, j, step.din_dw[index][j, k]),)
                    traced.append(parameter(f"w{number}", "weight", index, weight[j, k], weight.grad[j, k], chain))
                    number += 1
        for index, (layer, bias) in enumerate(zip(spec.layers, step.biases)):
            if bias is None:
                continue
            if layer.shared_bias:
                chain = tuple(term(index, j, step.din_db[index][j]) for j in range(layer.units))
                traced.append(parameter(f"b{index + 1}", "bias", index, bias, bias.grad, chain))
            else:
                for j, neuron in enumerate(names[index + 1]):
                    chain = (term(index, j, step.din_db[index][j]),)
                    traced.append(parameter(f"b_{neuron}", "bias", index, bias[j], bias.grad[j], chain))
    return tuple(traced)
