"""The playground: watch a network learn, as folders of figures, animations and tables.

``deepfield playground optimizers|learn|sweep|depth ... --out DIR`` call these; each writes
``DIR/figures/`` (PNG figures and the animation: GIF, or MP4 where ffmpeg is), ``DIR/metrics.json``
(the numbers behind them) and ``DIR/report.html`` (the figures and those numbers on one page),
and returns the numbers. The arrays come from :mod:`deepfield.analysis.learning`, the figures
from :mod:`deepfield.plots`.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepfield import atomic
from deepfield.analysis.classification import jsonable
from deepfield.analysis.learning.depth import DEFAULT_VARIANTS, depth_study
from deepfield.analysis.learning.paths import DEFAULT_OPTIMIZERS, loss_grid, optimizer_paths
from deepfield.analysis.learning.playground import learn_2d
from deepfield.analysis.learning.surfaces import load_surface
from deepfield.analysis.learning.sweeps import DEFAULT_BATCH_SIZES, DEFAULT_INITIALIZERS, sweep
from deepfield.data.toy2d import make_toy, read_toy_csv
from deepfield.errors import DeepfieldError
from deepfield.outputs import check_output
from deepfield.plots import (animate_decision_boundary, animate_optimizer_paths, plot_decision_boundary,
                             plot_gradient_norms_by_depth, plot_loss_curves, plot_optimizer_paths,
                             plot_sweep)
from deepfield.plots.animation import default_suffix

TOY_SETS = ("moons", "circles", "spirals", "xor")
DEPTH_POINTS = 256
"""Points of the depth playground's default data: a problem a shallow network solves."""


def figures_folder(out: Path) -> Path:
    """``out/figures``, made; ``out`` may be a new or earlier playground folder, never a run folder or inside one."""
    check_output(out, folder="metrics.json", overwrite=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    return out / "figures"


def write_summary(out: Path, summary: dict[str, Any], title: str) -> dict[str, Any]:
    """``metrics.json`` of a playground folder, with its ``title`` (the report's); returns ``summary``."""
    atomic.write_text(out / "metrics.json",
                      json.dumps(jsonable({"title": title, **summary}), indent=2, allow_nan=False) + "\n")
    return summary


def optimizers_playground(surface: str | Path, out: Path, optimizers: Sequence[str] = DEFAULT_OPTIMIZERS,
                          learning_rate: float | None = None, steps: int = 200, start: Sequence[float] | None = None,
                          tolerance: float = 1e-6, animation: str | None = None) -> dict[str, Any]:
    """Each optimiser's path from the same start on ``surface``, into ``out``.

    ``surface``: a name, a formula in x and y (parsed, never run) or a ``FILE.py`` (run as Python).

    Figures ``paths.png`` (the paths on the contours), ``paths.gif``/``.mp4`` (growing frame by
    frame; ``animation`` picks the suffix) and ``losses.png``; numbers per optimiser: its
    learning rate, steps to ``tolerance``, final value, end point and whether it diverged.
    """
    surf = load_surface(surface)  # a bad surface is refused before the folder is made
    paths = optimizer_paths(surf, optimizers=tuple(optimizers), start=start, learning_rates=learning_rate,
                            steps=steps, tolerance=tolerance)
    figures = figures_folder(out)
    grid = loss_grid(surf)
    plot_optimizer_paths(surf, grid, paths, figures / "paths.png")
    animate_optimizer_paths(surf, grid, paths, figures / f"paths{animation or default_suffix()}")
    plot_loss_curves(paths, figures / "losses.png")
    rows = {name: {"learning_rate": p.learning_rate, "steps_to_tolerance": p.steps_to_tolerance,
                   "final_value": p.final_value, "end": p.points[-1].tolist(), "diverged": p.diverged}
            for name, p in paths.items()}
    return write_summary(out, {"surface": surf.name, "start": paths[next(iter(paths))].points[0].tolist(),
                               "steps": steps, "tolerance": tolerance, "optimizers": rows},
                         f"Optimisers on {surf.name}")


def toy_data(data: str | Path, n: int = 400, noise: float | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A built-in 2-D set (moons, circles, spirals, xor) or a CSV file of ``x1,x2,label`` rows."""
    if str(data) in TOY_SETS:
        return make_toy(str(data), n=n, noise=noise, seed=seed)
    if not str(data).lower().endswith(".csv"):
        raise DeepfieldError(f"--data {data!r}: choose {', '.join(TOY_SETS)} or a .csv file of x1,x2,label rows")
    return read_toy_csv(Path(data))


def learn_playground(x: np.ndarray, y: np.ndarray, out: Path, animation: str | None = None,
                     **settings: Any) -> dict[str, Any]:
    """A small network learning a 2-D classification (:func:`~deepfield.analysis.learning.playground.learn_2d`
    with ``settings``): figures ``boundary.gif``/``.mp4`` frame by frame and ``boundary.png`` at the end."""
    figures = figures_folder(out)
    play = learn_2d(x, y, **settings)
    animate_decision_boundary(play, figures / f"boundary{animation or default_suffix()}")
    plot_decision_boundary(play, figures / "boundary.png")
    return write_summary(out, {"settings": play.settings, "frame_epochs": play.frame_epochs,
                               "frame_loss": play.frame_loss, "frame_accuracy": play.frame_accuracy,
                               "final_accuracy": float(play.frame_accuracy[-1])}, "A network learns a 2-D classification")


def sweep_playground(x: np.ndarray, y: np.ndarray, out: Path, learning_rates: Sequence[float] = (0.01, 0.1, 1.0, 10.0),
                     initializers: Sequence[str] = DEFAULT_INITIALIZERS,
                     batch_sizes: Sequence[Any] = DEFAULT_BATCH_SIZES, **settings: Any) -> dict[str, Any]:
    """The same network over learning rates x initialisations x batch sizes: figure ``sweep.png``
    (heat maps, diverged runs marked, loss curves overlaid) and one row of numbers per run."""
    figures = figures_folder(out)
    result = sweep(x, y, learning_rates=tuple(learning_rates), initializers=tuple(initializers),
                   batch_sizes=tuple(batch_sizes), **settings)
    plot_sweep(result, figures / "sweep.png")
    runs = [{"learning_rate": float(lr), "initializer": init, "batch_size": batch,
             "final_loss": result.final_loss[i, j, k], "final_accuracy": result.final_accuracy[i, j, k],
             "diverged": bool(result.diverged[i, j, k]), "steps_run": int(result.steps_run[i, j, k])}
            for i, lr in enumerate(result.learning_rates) for j, init in enumerate(result.initializers)
            for k, batch in enumerate(result.batch_sizes)]
    return write_summary(out, {"settings": result.settings, "runs": runs},
                         "Learning rate, initialisation and batch size")


def depth_playground(out: Path, x: np.ndarray | None = None, y: np.ndarray | None = None,
                     variants: Sequence[str] = DEFAULT_VARIANTS, **settings: Any) -> dict[str, Any]:
    """Deep stacks (sigmoid vs ReLU, with He initialisation, with batch norm) trained briefly:
    figure ``depth_gradient_norms.png`` (per-layer gradient norms side by side) and per variant
    the first-to-last hidden layer gradient ratio and the mean norm of each layer.
    ``x, y`` default to ``DEPTH_POINTS`` points of the ``moons`` set, seeded by ``settings["seed"]``."""
    if x is None and y is None:
        x, y = make_toy("moons", n=DEPTH_POINTS, seed=settings.get("seed", 0))
    figures = figures_folder(out)
    study = depth_study(x, y, variants=tuple(variants), **settings)
    plot_gradient_norms_by_depth(study, figures / "depth_gradient_norms.png")
    rows = {name: {"first_to_last": run.first_to_last, "mean_norms": run.mean_norms, "layers": run.names,
                   "train_loss": run.train_loss, "final_loss": run.final_loss, "final_accuracy": run.final_accuracy}
            for name, run in study.runs.items()}
    return write_summary(out, {"settings": study.settings, "variants": rows}, "Vanishing gradients and their cures")
