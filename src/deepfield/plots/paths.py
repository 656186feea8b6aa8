"""Optimiser paths on a 2-D loss surface: a still, an animation, and the loss per step.

Inputs come from :mod:`deepfield.analysis.learning.paths`:

>>> surface = load_surface("beale")
>>> grid = loss_grid(surface)
>>> paths = optimizer_paths(surface, steps=300)
>>> plot_optimizer_paths(surface, grid, paths, "figures/beale_paths.png")
>>> animate_optimizer_paths(surface, grid, paths, "figures/beale_paths.gif", frames=60)
>>> plot_loss_curves(paths, "figures/beale_losses.png")

Contours are log-spaced when the surface asks for it (``Surface.log_scale``) or, when it
leaves it open, when the values on the grid are all >= 0 and span more than three decades.
Each optimiser keeps one colour (Okabe–Ito, in the order given) in all three figures.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import ticker
from matplotlib.colors import LogNorm

from deepfield import arguments
from deepfield.analysis.learning.paths import Path2D
from deepfield.analysis.learning.surfaces import Surface
from deepfield.errors import DeepfieldError
from deepfield.plots.animation import animated
from deepfield.plots.style import PALETTE, figure

__all__ = ["animate_optimizer_paths", "frame_steps", "plot_loss_curves", "plot_optimizer_paths"]

Grid = tuple[np.ndarray, np.ndarray, np.ndarray]

_LEVELS = 30
_DECADES = 3.0  # a surface spanning more decades than this gets log-spaced levels (when not told)
_FLOOR_DECADES = 9.0  # log levels go at most this many decades below the grid's maximum
_LINTHRESH = 1e-6  # the linear part of a symlog loss axis (losses <= 0)


def plot_optimizer_paths(surface: Surface, grid: Grid, paths: Mapping[str, Path2D],
                         path_png: str | os.PathLike[str], title: str | None = None,
                         figsize: tuple[float, float] = (7.0, 6.5)) -> Path:
    """Write the paths over the surface's contours as a PNG; returns ``path_png``.

    Each optimiser is a line through its points (a dot per step, so step sizes show) in its
    own colour, from a hollow circle (the start) to a filled square (the end; a cross where
    it diverged); the known minima are black stars. The legend gives each optimiser's
    learning rate, final value and the step it came within tolerance of a minimum.

    Args:
        surface: the surface (its window, minima and log-scale hint are used).
        grid: ``(X, Y, Z)`` from ``loss_grid``.
        paths: ``{label: Path2D}`` from ``optimizer_paths``.
        title: default ``"<name>: <formula>"``.
        figsize: inches.
    """
    X, Y, Z = _grid(grid)
    paths = _paths(paths)
    path_png = Path(path_png)
    with figure(path_png, figsize) as fig:
        ax = fig.add_subplot()
        _surface(fig, ax, surface, X, Y, Z)
        for colour, p in zip(_colours(len(paths)), paths.values()):
            ax.plot(p.points[:, 0], p.points[:, 1], color=colour, linewidth=1.6, marker=".", markersize=3,
                    label=_label(p))
            ax.plot(*p.points[0], marker="o", markersize=8, markerfacecolor="white", markeredgecolor=colour,
                    markeredgewidth=1.8, linestyle="none")
            ax.plot(*p.points[-1], marker="X" if p.diverged else "s", markersize=8, color=colour,
                    markeredgecolor="black", markeredgewidth=0.6, linestyle="none")
        ax.set_title(title if title is not None else _title(surface))
        _legend(fig, paths, figsize[0])
    return path_png


def frame_steps(paths: Mapping[str, Path2D], frames: int) -> np.ndarray:
    """The last step each animation frame shows: frame ``k`` draws steps ``0 .. s_k`` of every path.

    With ``S`` the longest path's number of steps and ``n = min(frames, S + 1)`` frames,
    ``s_k = floor(k · S / (n − 1) + 1/2)``: evenly spaced, strictly increasing, from 0 (the
    start alone) to ``S`` (every step); one step per frame when there are fewer steps than frames.
    """
    frames = arguments.integer("frames", frames, expected="an integer >= 1")
    total = max(p.steps for p in _paths(paths).values())
    n = min(frames, total + 1)
    if n == 1:
        return np.array([total])
    return np.floor(np.arange(n) * total / (n - 1) + 0.5).astype(int)


def animate_optimizer_paths(surface: Surface, grid: Grid, paths: Mapping[str, Path2D],
                            path_anim: str | os.PathLike[str], frames: int = 60, fps: int = 10,
                            title: str | None = None, figsize: tuple[float, float] = (7.0, 6.5)) -> Path:
    """Write the paths growing over the contours as a GIF (or MP4, by suffix); returns ``path_anim``.

    The figure is :func:`plot_optimizer_paths`'s; frame ``k`` shows steps ``0 .. s_k`` of each
    path (:func:`frame_steps`: at most ``frames`` frames, subsampling the steps evenly when
    there are more), with a square at each optimiser's current point, a cross once it has
    diverged, and ``step s_k`` in the title.
    """
    X, Y, Z = _grid(grid)
    paths = _paths(paths)
    schedule = frame_steps(paths, frames)
    head = title if title is not None else _title(surface)
    with animated(path_anim, figsize, fps) as fig:
        ax = fig.add_subplot()
        _surface(fig, ax, surface, X, Y, Z)
        artists = []
        for colour, p in zip(_colours(len(paths)), paths.values()):
            (line,) = ax.plot([], [], color=colour, linewidth=1.6, marker=".", markersize=3, label=_label(p))
            ax.plot(*p.points[0], marker="o", markersize=8, markerfacecolor="white", markeredgecolor=colour,
                    markeredgewidth=1.8, linestyle="none")
            (end,) = ax.plot([], [], marker="s", markersize=8, color=colour, markeredgecolor="black",
                             markeredgewidth=0.6, linestyle="none")
            artists.append((p, line, end))
        heading = ax.set_title(head)
        _legend(fig, paths, figsize[0])

        def draw(k: int) -> None:
            step = int(schedule[k])
            for p, line, end in artists:
                shown = p.points[: step + 1]
                line.set_data(shown[:, 0], shown[:, 1])
                end.set_data([shown[-1, 0]], [shown[-1, 1]])
                end.set_marker("X" if p.diverged and step >= p.steps + 1 else "s")
            heading.set_text(f"{head}\nstep {step}")

        fig.frames = (draw, len(schedule))
    return Path(path_anim)


def plot_loss_curves(paths: Mapping[str, Path2D], path_png: str | os.PathLike[str],
                     title: str = "Loss along each optimiser's path",
                     figsize: tuple[float, float] = (6.5, 4.5)) -> Path:
    """Write ``f`` at each step of each path (log ``y``) as a PNG; returns ``path_png``.

    A dot marks the step each optimiser came within tolerance; a cross where it diverged.
    When some loss is <= 0 (a surface unbounded below, or a minimum reached exactly) the
    ``y`` axis is symmetric-log, linear within ±1e-6.
    """
    paths = _paths(paths)
    path_png = Path(path_png)
    with figure(path_png, figsize) as fig:
        ax = fig.add_subplot()
        positive = all(bool((p.losses > 0).all()) for p in paths.values())
        for colour, p in zip(_colours(len(paths)), paths.values()):
            steps = np.arange(len(p.losses))
            ax.plot(steps, p.losses, color=colour, linewidth=1.5, label=f"{p.optimizer} (lr {p.learning_rate:g})")
            if p.steps_to_tolerance is not None:
                k = p.steps_to_tolerance
                ax.plot(k, p.losses[k], marker="o", markersize=6, color=colour, markeredgecolor="black",
                        markeredgewidth=0.6, linestyle="none")
            if p.diverged:
                ax.plot(steps[-1], p.losses[-1], marker="X", markersize=8, color=colour, markeredgecolor="black",
                        markeredgewidth=0.6, linestyle="none")
        if positive:
            ax.set_yscale("log")
        else:
            ax.set_yscale("symlog", linthresh=_LINTHRESH)
        ax.set_xlabel("step")
        ax.set_ylabel("f(x, y)")
        ax.set_title(title)
        ax.legend()
    return path_png


# --- internals ----------------------------------------------------------------------------------

def _grid(grid: Any) -> Grid:
    try:
        X, Y, Z = (np.asarray(a, dtype=np.float64) for a in grid)
    except (TypeError, ValueError):
        raise DeepfieldError("grid must be (X, Y, Z) from loss_grid") from None
    if X.ndim != 2 or X.shape != Y.shape or X.shape != Z.shape or min(X.shape) < 2:
        raise DeepfieldError(f"grid: X, Y, Z must be 2-D arrays of one shape, got {X.shape}, {Y.shape}, {Z.shape}")
    return X, Y, Z


def _paths(paths: Any) -> dict[str, Path2D]:
    if not isinstance(paths, Mapping) or not paths:
        raise DeepfieldError("paths must be a non-empty {label: Path2D} from optimizer_paths")
    return dict(paths)


def _colours(n: int) -> list[str]:
    return [PALETTE[i % len(PALETTE)] for i in range(n)]


def _title(surface: Surface) -> str:
    return f"{surface.name}: {surface.formula}" if surface.formula else surface.name


def _label(p: Path2D) -> str:
    if p.diverged:
        outcome = f"diverged at step {p.diverged_at}"
    elif p.steps_to_tolerance is not None:
        outcome = f"tol. at step {p.steps_to_tolerance}"
    else:
        outcome = "tol. not reached"
    return f"{p.optimizer} (lr {p.learning_rate:g}): f = {p.final_value:.3g}, {outcome}"


def _legend(fig: Any, paths: Mapping[str, Path2D], width: float) -> None:
    """One legend under the axes, in two columns when the labels fit (~0.06 inch per character)."""
    longest = max(len(_label(p)) for p in paths.values())
    fig.legend(loc="outside lower center", ncols=2 if 2 * (0.06 * longest + 0.7) <= width else 1)


def _log_levels(surface: Surface, Z: np.ndarray) -> bool:
    finite = Z[np.isfinite(Z)]
    if finite.size == 0:
        return False
    lo, hi = float(finite.min()), float(finite.max())
    if lo < 0 or hi <= 0:
        return False
    if surface.log_scale is not None:
        return surface.log_scale
    positive = finite[finite > 0]
    return math.log10(hi / float(positive.min())) > _DECADES


def _surface(fig: Any, ax: Any, surface: Surface, X: np.ndarray, Y: np.ndarray, Z: np.ndarray) -> None:
    """Filled and line contours of ``Z``, the known minima, axes limited to the window."""
    finite = Z[np.isfinite(Z)]
    if _log_levels(surface, Z):
        hi = float(finite.max())
        floor = max(float(finite[finite > 0].min()), hi * 10.0**-_FLOOR_DECADES)
        levels = np.logspace(math.log10(floor), math.log10(hi), _LEVELS)
        shown = np.clip(np.where(np.isfinite(Z), Z, hi), floor, hi)
        filled = ax.contourf(X, Y, shown, levels=levels, norm=LogNorm(floor, hi), cmap="Greys", alpha=0.4)
        ax.contour(X, Y, shown, levels=levels, colors="0.45", linewidths=0.4)
        label, ticks = "f(x, y) (log levels)", ticker.LogLocator()
    else:
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        hi = hi if hi > lo else lo + 1.0
        levels = np.linspace(lo, hi, _LEVELS)
        shown = np.where(np.isfinite(Z), Z, hi)
        filled = ax.contourf(X, Y, shown, levels=levels, cmap="Greys", alpha=0.4)
        ax.contour(X, Y, shown, levels=levels, colors="0.45", linewidths=0.4)
        label, ticks = "f(x, y)", ticker.MaxNLocator(7)
    fig.colorbar(filled, ax=ax, label=label, shrink=0.9, ticks=ticks)
    if surface.minima:
        mx, my = zip(*surface.minima)
        ax.plot(mx, my, linestyle="none", marker="*", markersize=14, color="black", markeredgecolor="white",
                markeredgewidth=0.8, label="known minimum" if len(surface.minima) == 1 else "known minima",
                zorder=5)
    xmin, xmax, ymin, ymax = surface.window
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymin, ymax)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.grid(False)
