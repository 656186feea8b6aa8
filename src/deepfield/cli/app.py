"""The ``deepfield`` command line: parses, calls the API, prints. No logic of its own.

Every user-fixable problem arrives as a DeepfieldError and is printed as one
line on stderr with exit code 2; an unexpected failure prints one line too
(set DEEPFIELD_DEBUG=1 to see the traceback).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from deepfield.analysis import trace as glass_box
from deepfield.errors import DeepfieldError
from deepfield.models import serialization, zoo
from deepfield.models.summary import summarize
from deepfield.tasks.demo import run_demo

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="deepfield: deep learning for astronomers, on PyTorch.",
)
console = Console()


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1x64x64" -> (1, 64, 64)``."""
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        shape = ()
    if not shape or any(s < 1 for s in shape):
        raise DeepfieldError(f"--input-shape {text!r} must be positive integers joined by 'x', like 1x64x64")
    return shape


@app.command()
def summary(
    model: Annotated[str, typer.Argument(help="a preset name (e.g. lecture-cnn) or a saved model / run folder")],
    input_shape: Annotated[Optional[str], typer.Option(help="one sample's shape, channels first: 1x64x64")] = None,
) -> None:
    """Print a model's Keras-style summary: output shapes, parameters, multiply-adds, memory."""
    shape = parse_shape(input_shape) if input_shape else None
    if Path(model).is_dir():
        net = serialization.load_model(model)
    else:
        net = zoo.get(model, **({"input_shape": shape} if shape else {}))
    summarize(net, shape).print()


@app.command()
def trace(
    spec: Annotated[Optional[Path], typer.Option(help="JSON file with your own small network and sample")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the trace as JSON")] = False,
) -> None:
    """One training step of a small dense network, neuron by neuron (default: the course's example)."""
    chosen = glass_box.load_trace_spec(spec) if spec else glass_box.course_example()
    result = glass_box.run_trace(chosen)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        glass_box.render_trace(result, console)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="run folder to write")] = Path("runs/demo"),
    epochs: Annotated[int, typer.Option(help="training epochs")] = 8,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
) -> None:
    """The worked backpropagation example, then a small galaxy-classifier training run."""
    run_demo(out=out, epochs=epochs, seed=seed, console=console)


def main() -> None:
    """Console-script entry point: one clear line and a non-zero exit on any error."""
    err = Console(stderr=True, soft_wrap=True)  # one line, however long
    try:
        app()
    except DeepfieldError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # a bug, not the user's fault: still one line unless debugging
        if os.environ.get("DEEPFIELD_DEBUG"):
            raise
        err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))} "
                  "(set DEEPFIELD_DEBUG=1 for the traceback)", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
