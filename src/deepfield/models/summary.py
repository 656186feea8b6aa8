"""``model.summary()``: the Keras table, plus multiply-adds and activation memory.

Works on any ``nn.Module`` whose input shape is known: one dry forward pass of a
single zero sample (eval mode, no gradients) records each top-level layer's output
shape; torch's FlopCounterMode counts its multiply-adds (FLOPs / 2 of the matrix
products and convolutions, as the papers count them).

Parameter counts follow Keras: non-trainable parameters are frozen parameters plus
floating-point buffers (BatchNormalization's moving mean and variance).
"""
from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from deepfield.errors import DeepfieldError
from deepfield.models.base import ensure_built


@dataclass(frozen=True)
class LayerRow:
    """One line of the table. ``output_shape`` has no batch axis; ``activation_bytes`` is per sample."""

    name: str
    type: str
    output_shape: tuple[int, ...]
    trainable: int
    non_trainable: int
    mult_adds: int
    activation_bytes: int
    connected: tuple[str, ...] | None = None  # a functional model's: the tensors read, as Keras shows them

    @property
    def params(self) -> int:
        return self.trainable + self.non_trainable


@dataclass(frozen=True)
class ModelSummary:
    """What ``summary()`` prints, as numbers (for tests and programs)."""

    name: str
    input_shape: tuple[int, ...]
    rows: list[LayerRow] = field(default_factory=list)
    trainable: int = 0
    non_trainable: int = 0
    param_bytes: int = 0

    @property
    def total(self) -> int:
        return self.trainable + self.non_trainable

    @property
    def mult_adds(self) -> int:
        return sum(r.mult_adds for r in self.rows)

    @property
    def activation_bytes(self) -> int:
        return sum(r.activation_bytes for r in self.rows)

    def table(self) -> Table:
        graph = any(r.connected is not None for r in self.rows)  # a functional model: its inputs are rows
        title = f'Model: "{self.name}"' + ("" if graph else f'  input (None, {", ".join(map(str, self.input_shape))})')
        table = Table(title=title, title_justify="left")
        table.add_column("Layer (type)")
        table.add_column("Output Shape")
        table.add_column("Param #", justify="right")
        table.add_column("Mult-Adds", justify="right")
        table.add_column("Act. memory", justify="right")
        if graph:
            table.add_column("Connected to")
        for r in self.rows:
            table.add_row(f"{r.name} ({r.type})", "(None, " + ", ".join(map(str, r.output_shape)) + ")",
                          f"{r.params:,}", f"{r.mult_adds:,}", _bytes(r.activation_bytes),
                          *([", ".join(r.connected or ()) or "-"] if graph else []))
        return table

    def totals_text(self) -> str:
        per = self.param_bytes / max(self.total, 1)
        return (
            f" Total params: {self.total:,} ({_bytes(self.param_bytes)})\n"
            f" Trainable params: {self.trainable:,} ({_bytes(int(self.trainable * per))})\n"
            f" Non-trainable params: {self.non_trainable:,} ({_bytes(int(self.non_trainable * per))})\n"
            f" Mult-adds per sample: {self.mult_adds:,}\n"
            f" Activation memory per sample (forward): {_bytes(self.activation_bytes)}"
        )

    def print(self, print_fn: Callable[[str], None] | None = None) -> None:
        """Print with rich to the terminal, or hand the rendered text to ``print_fn``."""
        if print_fn is None:
            console = Console()
            if not console.is_terminal:  # piped or captured: don't squeeze the table into 80 columns
                console.width = 120
            console.print(self.table())
            console.print(self.totals_text())
            return
        print_fn(str(self))

    def __str__(self) -> str:
        buffer = io.StringIO()
        console = Console(file=buffer, width=110, color_system=None)
        console.print(self.table())
        console.print(self.totals_text())
        return buffer.getvalue()


def _bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    raise AssertionError("unreachable")


def _counts(module: nn.Module) -> tuple[int, int, int]:
    """(trainable, non-trainable, bytes) of a module's parameters and float buffers."""
    trainable = non_trainable = nbytes = 0
    for p in module.parameters():
        if p.requires_grad:
            trainable += p.numel()
        else:
            non_trainable += p.numel()
        nbytes += p.numel() * p.element_size()
    for b in module.buffers():
        if b.is_floating_point():
            non_trainable += b.numel()
            nbytes += b.numel() * b.element_size()
    return trainable, non_trainable, nbytes


def summarize(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> ModelSummary:
    """Summarise ``model`` for samples of ``input_shape`` (no batch axis, e.g. ``(1, 64, 64)``).

    The shape may be omitted when the model knows it (``model.input_shape``). A functional model
    summarises its graph (:func:`deepfield.models.graph_summary.summarize_graph`).
    """
    graph = getattr(model, "graph_summary", None)
    if callable(graph):
        return graph()
    shape = tuple(input_shape) if input_shape is not None else getattr(model, "input_shape", None)
    if shape is None:
        raise DeepfieldError(
            "summary() needs the input shape: pass input_shape= to the model or its first layer, "
            "or call summary(input_shape=(C, H, W))"
        )
    shape = tuple(int(s) for s in shape)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    example = torch.zeros((1, *shape), device=device)
    children = list(model.named_children()) or [(type(model).__name__.lower(), model)]
    outputs: dict[str, torch.Tensor] = {}
    hooks = [child.register_forward_hook(lambda _m, _i, out, name=name: outputs.__setitem__(name, out))
             for name, child in children]
    was_training = model.training
    model.eval()
    try:
        ensure_built(model, example)
        inputs = model.example_inputs(example) if hasattr(model, "example_inputs") else (example,)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*inputs)
    except RuntimeError as exc:
        raise DeepfieldError(f"input shape {shape} does not fit the model: {exc}".splitlines()[0]) from None
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()

    flops = counter.get_flop_counts()
    root = type(model).__name__
    rows = []
    for name, child in children:
        out = outputs.get(name)
        trainable, non_trainable, _ = _counts(child)
        key = f"{root}.{name}" if child is not model else root
        rows.append(LayerRow(
            name=name,
            type=type(child).__name__,
            output_shape=tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else (),
            trainable=trainable,
            non_trainable=non_trainable,
            mult_adds=sum(flops.get(key, {}).values()) // 2,
            activation_bytes=out[0].numel() * out.element_size() if isinstance(out, torch.Tensor) else 0,
        ))
    trainable, non_trainable, nbytes = _counts(model)
    return ModelSummary(name=getattr(model, "name", root), input_shape=shape, rows=rows,
                        trainable=trainable, non_trainable=non_trainable, param_bytes=nbytes)
