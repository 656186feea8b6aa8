"""``deepfield playground ...``: watch a network learn (thin: parses, calls deepfield.tasks.playground, prints).

The task module is imported inside each command, as in :mod:`deepfield.cli.app`: the CLI starts fast.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from deepfield.cli.common import console, parse_batch_size, parse_numbers, parse_range, split_list

playground_app = typer.Typer(no_args_is_help=True, help="Watch a network learn: optimiser paths, decision "
                                                        "boundaries, sweeps, vanishing gradients.")
SEED = Annotated[int, typer.Option(help="random seed: the same seed gives the same figures")]
TOY = Annotated[str, typer.Option(help="moons, circles, spirals, xor, or FILE.csv with x1,x2,label columns")]
PLAY_OUT = Annotated[Path, typer.Option(help="folder for figures/, metrics.json and report.html")]


@playground_app.command("optimizers")
def playground_optimizers(
    surface: Annotated[str, typer.Option(help="beale, rosenbrock, saddle, himmelblau, quadratic; a formula in x "
                                              "and y, parsed and never run, e.g. \"(1-x)**2 + 100*(y-x**2)**2\" "
                                              "(+ - * / **, sin cos tan exp log sqrt abs tanh sinh cosh, pi, e); or "
                                              "FILE.py defining f(x, y) with torch ops: a FILE.py RUNS AS PYTHON, "
                                              "with your rights: only a file you wrote or trust")] = "beale",
    optimizers: Annotated[str, typer.Option(help="comma-separated: sgd, momentum, nesterov, adagrad, rmsprop, adam, "
                                                 "amsgrad, newton")] = "sgd,momentum,adagrad,rmsprop,adam,newton",
    lr: Annotated[Optional[float], typer.Option(help="one learning rate for all (default: one per optimiser)")] = None,
    steps: Annotated[int, typer.Option(min=1, help="steps of each optimiser")] = 200,
    start: Annotated[Optional[str], typer.Option(help="start point x,y (default: the surface's)")] = None,
    out: Annotated[Path, typer.Option(help="folder for paths.png, the animation, losses.png, summary.json")] = Path(
        "playground"),
) -> None:
    """The paths of several optimisers from the same start, on the contours of a 2-D surface."""
    point = parse_range(start, "--start", "x,y (e.g. 1,1.5)") if start else None
    from deepfield.report.html import write_report
    from deepfield.tasks import playground

    summary = playground.optimizers_playground(surface, out, split_list(optimizers), lr, steps, point)
    table = Table("optimizer", "lr", "steps to tolerance", "final value", "diverged", title=f"{summary['surface']}")
    for name, row in summary["optimizers"].items():
        reached = "-" if row["steps_to_tolerance"] is None else str(row["steps_to_tolerance"])
        table.add_row(name, f"{row['learning_rate']:g}", reached, f"{row['final_value']:.4g}",
                      "yes" if row["diverged"] else "")
    console.print(table)
    write_report(out)  # the report sits above the tasks: asked for once the task returns
    console.print(f"wrote {out}")


@playground_app.command("learn")
def playground_learn(
    data: TOY = "moons",
    hidden: Annotated[str, typer.Option(help="hidden layer widths, comma-separated ('' for none)")] = "8,8",
    activation: Annotated[str, typer.Option(help="relu, sigmoid, tanh, ...")] = "relu",
    optimizer: Annotated[str, typer.Option(help="sgd, adagrad, rmsprop, adam, ...")] = "adam",
    lr: Annotated[float, typer.Option(min=0.0, help="learning rate")] = 0.01,
    epochs: Annotated[int, typer.Option(min=1)] = 200,
    batch_size: Annotated[str, typer.Option(help="an integer, or full")] = "32",
    init: Annotated[str, typer.Option(help="kernel initialiser (glorot_uniform, he_normal, zeros, ...)")] = (
        "glorot_uniform"),
    batch_norm: Annotated[bool, typer.Option(help="batch normalisation after each hidden layer")] = False,
    frames: Annotated[int, typer.Option(min=2, help="snapshots of the boundary (animation frames)")] = 40,
    seed: SEED = 0,
    out: PLAY_OUT = Path("playground-learn"),
) -> None:
    """A small network learning a 2-D classification: its decision boundary and loss, frame by frame."""
    from deepfield.report.html import write_report
    from deepfield.tasks import playground

    x, y = playground.toy_data(data, seed=seed)
    summary = playground.learn_playground(
        x, y, out, hidden=tuple(parse_numbers(hidden, "--hidden")), activation=activation,
        optimizer=optimizer, learning_rate=lr, epochs=epochs, batch_size=parse_batch_size(batch_size),
        kernel_initializer=init, batch_norm=batch_norm, frames=frames, seed=seed)
    write_report(out)  # the report sits above the tasks: asked for once the task returns
    console.print(f"training accuracy {summary['final_accuracy']:.3f}; wrote {out}")


@playground_app.command("sweep")
def playground_sweep(
    data: TOY = "moons",
    lrs: Annotated[str, typer.Option(help="learning rates, comma-separated")] = "0.01,0.1,1,10",
    inits: Annotated[str, typer.Option(help="initialisers, comma-separated")] = "zeros,small_uniform,glorot_uniform,"
                                                                                  "he_normal",
    batch_sizes: Annotated[str, typer.Option(help="batch sizes, comma-separated (full for gradient descent)")] = (
        "full,32,1"),
    hidden: Annotated[str, typer.Option(help="hidden layer widths, comma-separated")] = "8,8",
    steps: Annotated[int, typer.Option(min=1, help="optimiser steps per run")] = 200,
    seed: SEED = 0,
    out: PLAY_OUT = Path("playground-sweep"),
) -> None:
    """The same network over learning rates x initialisations x batch sizes: final loss and accuracy."""
    from deepfield.report.html import write_report
    from deepfield.tasks import playground

    x, y = playground.toy_data(data, seed=seed)
    summary = playground.sweep_playground(
        x, y, out, learning_rates=parse_numbers(lrs, "--lrs", float), initializers=split_list(inits) or [],
        batch_sizes=[parse_batch_size(b) for b in split_list(batch_sizes) or []],
        hidden=tuple(parse_numbers(hidden, "--hidden")), steps=steps, seed=seed)
    diverged = sum(run["diverged"] for run in summary["runs"])
    write_report(out)  # the report sits above the tasks: asked for once the task returns
    console.print(f"{len(summary['runs'])} runs, {diverged} diverged; wrote {out}")


@playground_app.command("depth")
def playground_depth(
    depth: Annotated[int, typer.Option(min=2, help="hidden layers")] = 10,
    variants: Annotated[str, typer.Option(help="activation[+initialiser][+bn], comma-separated")] = (
        "sigmoid,relu,relu+he,relu+he+bn,sigmoid+bn"),
    seed: SEED = 0,
    out: PLAY_OUT = Path("playground-depth"),
) -> None:
    """Deep stacks with sigmoid or ReLU, He initialisation, batch norm: per-layer gradient norms side by side."""
    from deepfield.report.html import write_report
    from deepfield.tasks import playground

    summary = playground.depth_playground(out, variants=split_list(variants) or [], depth=depth, seed=seed)
    table = Table("variant", "first / last hidden layer gradient", "training loss", title=f"{depth} hidden layers")
    for name, row in summary["variants"].items():
        table.add_row(name, f"{row['first_to_last']:.2e}", f"{row['train_loss']:.3f}")
    console.print(table)
    write_report(out)  # the report sits above the tasks: asked for once the task returns
    console.print(f"wrote {out}")
