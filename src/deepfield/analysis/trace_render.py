"""Text report of a traced training step, written like the course slides (6 decimals).

Sections: 1. FORWARD PASS, 2. LOSS, 3. BACKWARD PASS (output layer first, then back-propagated
to the hidden layers), 4. UPDATE. Each equation is one line, printed without wrapping so that
it can be copied; numbers below zero are parenthesised inside products and sums.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.rule import Rule

if TYPE_CHECKING:
    from deepfield.analysis.trace import NeuronTrace, ParameterTrace, TraceResult

__all__ = ["render_trace"]


def _num(value: float) -> str:
    """Six decimals, in parentheses when negative (so ``a × (-b)`` reads right)."""
    text = f"{value:.6f}"
    return f"({text})" if text.startswith("-") else text


def _line(console: Console, text: str) -> None:
    """Print one equation as plain text, never wrapped or highlighted."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _symbol(result: TraceResult, source: str) -> str:
    """How a sending value is written in a net input: ``i1`` for an input, ``out_h1`` else."""
    return source if source in result.inputs else f"out_{source}"


def render_trace(result: TraceResult, console: Console) -> None:
    """Write the full step report of ``result`` to ``console``."""
    layers = sorted({n.layer for n in result.neurons})
    sizes = [len(result.inputs)] + [sum(1 for n in result.neurons if n.layer == layer) for layer in layers]
    console.print(
        f"[bold]One training step[/bold] of a {'-'.join(map(str, sizes))} network, "
        f"loss {result.loss}, learning rate λ = {result.learning_rate:g}",
        highlight=False,
    )
    _line(console, "sample: " + ", ".join(f"{k} = {v:.6f}" for k, v in result.inputs.items())
          + "  →  targets: " + ", ".join(f"{k} = {v:.6f}" for k, v in result.targets.items()))

    console.print(Rule("1. FORWARD PASS", align="left"))
    for layer in layers:
        neurons = [n for n in result.neurons if n.layer == layer]
        _layer_heading(console, layer, layers[-1], neurons[0].activation)
        for neuron in neurons:
            _forward(console, result, neuron)

    console.print(Rule("2. LOSS", align="left"))
    _loss(console, result)

    console.print(Rule("3. BACKWARD PASS", align="left"))
    for layer in reversed(layers):
        neurons = [n for n in result.neurons if n.layer == layer]
        _layer_heading(console, layer, layers[-1], neurons[0].activation)
        for neuron in neurons:
            _neuron_gradient(console, neuron)
        for parameter in (p for p in result.parameters if p.layer == layer):
            _chain_rule(console, parameter)

    console.print(Rule("4. UPDATE", align="left"))
    lr = f"{result.learning_rate:g}"
    for p in result.parameters:
        rule = f"{p.name} ← {p.name} - λ × ∂L/∂{p.name}"
        _line(console, f"{rule} = {p.value:.6f} - {lr} × {_num(p.gradient)} = {p.updated:.6f}")


def _layer_heading(console: Console, layer: int, last: int, activation: str) -> None:
    """``layer 1 · hidden · sigmoid`` in bold."""
    role = "output" if layer == last else "hidden"
    console.print(f"[bold]layer {layer} · {role} · {activation}[/bold]", highlight=False)


def _forward(console: Console, result: TraceResult, neuron: NeuronTrace) -> None:
    """``in_h1 = w1 × i1 + ... + b1 = ... = 0.377500`` and ``out_h1 = sigmoid(in_h1) = ...``."""
    symbols = [f"{w} × {_symbol(result, s)}" for w, s in zip(neuron.weights, neuron.sources)]
    values = [
        f"{_num(result.parameter(w).value)} × {_num(result.value(s))}" for w, s in zip(neuron.weights, neuron.sources)
    ]
    if neuron.bias is not None:
        symbols.append(neuron.bias)
        values.append(_num(result.parameter(neuron.bias).value))
    name = neuron.name
    _line(console, f"in_{name} = {' + '.join(symbols)} = {' + '.join(values)} = {neuron.net_input:.6f}")
    if neuron.activation == "linear":
        _line(console, f"out_{name} = in_{name} = {neuron.output:.6f}")
    else:
        f = neuron.activation
        _line(console, f"out_{name} = {f}(in_{name}) = {f}({neuron.net_input:.6f}) = {neuron.output:.6f}")


def _loss(console: Console, result: TraceResult) -> None:
    """Each term ``L_o1 = ½ × (target_o1 - out_o1)² = ...`` and the total."""
    n = len(result.targets)
    for (name, target), term in zip(result.targets.items(), result.loss_terms.values()):
        out = result.neuron(name).output
        square = f"(target_{name} - out_{name})²"
        numbers = f"({target:.6f} - {_num(out)})²"
        if result.loss == "half_sse":
            _line(console, f"L_{name} = ½ × {square} = 0.5 × {numbers} = {term:.6f}")
        else:
            _line(console, f"L_{name} = {square} / {n} = {numbers} / {n} = {term:.6f}")
    names = " + ".join(result.loss_terms)
    values = " + ".join(f"{v:.6f}" for v in result.loss_terms.values())
    _line(console, f"L_total = {names} = {values} = {result.loss_total:.6f}")


def _neuron_gradient(console: Console, neuron: NeuronTrace) -> None:
    """The factors a neuron contributes; for a hidden one, how ∂L/∂out is back-propagated."""
    name = neuron.name
    if neuron.backprop:
        symbols = " + ".join(f"∂L/∂in_{t.neuron} × ∂in_{t.neuron}/∂out_{name}" for t in neuron.backprop)
        values = " + ".join(f"{_num(t.dL_din)} × {_num(t.din_dout)}" for t in neuron.backprop)
        _line(console, f"∂L/∂out_{name} = {symbols} = {values} = {neuron.dL_dout:.6f}")
    else:
        _line(console, f"∂L/∂out_{name} = {neuron.dL_dout:.6f}")
    _line(
        console,
        f"∂out_{name}/∂in_{name} = {neuron.dout_din:.6f}    "
        f"∂L/∂in_{name} = ∂L/∂out_{name} × ∂out_{name}/∂in_{name} = {neuron.dL_din:.6f}",
    )


def _chain_rule(console: Console, parameter: ParameterTrace) -> None:
    """``∂L/∂w5 = ∂L/∂out_o1 × ∂out_o1/∂in_o1 × ∂in_o1/∂w5 = 0.741365 × ... = 0.082167``."""
    p = parameter.name
    symbols = " + ".join(
        f"∂L/∂out_{t.neuron} × ∂out_{t.neuron}/∂in_{t.neuron} × ∂in_{t.neuron}/∂{p}" for t in parameter.chain
    )
    values = " + ".join(f"{_num(t.dL_dout)} × {_num(t.dout_din)} × {_num(t.din_dparam)}" for t in parameter.chain)
    _line(console, f"∂L/∂{p} = {symbols} = {values} = {parameter.gradient:.6f}")
