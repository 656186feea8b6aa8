"""Figures of a network learning: decision boundaries over epochs, sweeps, gradients by depth.

>>> play = learn_2d(*make_toy("moons"))
>>> animate_decision_boundary(play, "figures/boundary.gif")   # one frame per snapshot
>>> plot_decision_boundary(play, "figures/boundary.png")       # the last snapshot
>>> plot_sweep(sweep(x, y), "figures/sweep.png")
>>> plot_gradient_norms_by_depth(depth_study(), "figures/depth.png")

Class colours are the palette's first two (blue for class 0, orange for class 1); the
probability map fades from one to the other through white at P = 0.5, where the black
decision boundary runs.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LinearSegmentedColormap, Normalize, to_rgb

from deepfield.analysis.learning.depth import DepthStudy
from deepfield.analysis.learning.playground import Playground
from deepfield.analysis.learning.sweeps import Sweep
from deepfield.errors import DeepfieldError
from deepfield.plots.animation import animated
from deepfield.plots.style import PALETTE, WRONG_COLOUR, figure

__all__ = [
    "animate_decision_boundary",
    "plot_decision_boundary",
    "plot_gradient_norms_by_depth",
    "plot_sweep",
]

LOSS_COLOUR, ACCURACY_COLOUR = PALETTE[7], PALETTE[4]
"""The animation's curves: loss in black, accuracy in reddish purple (dashed), apart from each
other and from the class colours (blue, orange) of the map beside them."""

_BINARY_MAP = LinearSegmentedColormap.from_list("deepfield_two_classes", [PALETTE[0], "#ffffff", PALETTE[1]])


def _class_colours(n: int) -> np.ndarray:
    return np.array([to_rgb(PALETTE[k % len(PALETTE)]) for k in range(n)])


def _map_image(play: Playground, frame: int) -> np.ndarray:
    """``(grid, grid, 3)`` RGB: the binary colour map of P(class 1), or the classes' colours
    mixed by probability and faded towards white."""
    p = play.probabilities[frame]
    if p.ndim == 2:
        return _BINARY_MAP(p)[..., :3]
    mixed = p @ _class_colours(p.shape[-1])
    return 0.45 + 0.55 * mixed


def _boundary(ax: Any, play: Playground, frame: int) -> list[Any]:
    """The decision boundary at ``frame`` as black contours (none where one class has it all).

    Two classes: P = 0.5. More: for each class the zero of its probability minus the largest
    other one, which traces the boundaries smoothly (each is drawn from both sides).
    """
    p = play.probabilities[frame]
    if p.ndim == 2:
        fields = [p - 0.5]
    else:
        fields = []
        for k in range(p.shape[-1]):
            others = np.delete(p, k, axis=-1).max(axis=-1)
            fields.append(p[..., k] - others)
    return [ax.contour(play.xx, play.yy, f, levels=[0.0], colors="black", linewidths=1.4)
            for f in fields if f.min() < 0.0 < f.max()]


def _check_frame(play: Playground, frame: int) -> int:
    n = len(play.frame_epochs)
    if not -n <= frame < n:
        raise DeepfieldError(f"frame {frame} is out of range: the playground recorded {n} frames")
    return frame % n


def _map_panel(ax: Any, play: Playground, frame: int) -> Any:
    """Probability map, data points and axes; returns the image artist."""
    extent = (play.xx[0], play.xx[-1], play.yy[0], play.yy[-1])
    image = ax.imshow(_map_image(play, frame), extent=extent, origin="lower", aspect="auto", interpolation="bilinear")
    colours = _class_colours(int(play.y.max()) + 1)
    ax.scatter(play.x[:, 0], play.x[:, 1], c=colours[play.y], s=14, edgecolors="black", linewidths=0.4, zorder=3)
    ax.set_xlim(extent[:2])
    ax.set_ylim(extent[2:])
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.grid(False)
    return image


def _map_title(play: Playground, frame: int) -> str:
    return f"epoch {play.frame_epochs[frame]}: accuracy {play.frame_accuracy[frame]:.0%}"


def plot_decision_boundary(playground: Playground, path: str | os.PathLike[str], frame: int = -1,
                           figsize: tuple[float, float] = (5.5, 5.0)) -> Path:
    """Write one snapshot (default the last) as a PNG: probability map, boundary, data points."""
    frame = _check_frame(playground, frame)
    path = Path(path)
    with figure(path, figsize) as fig:
        ax = fig.add_subplot()
        _map_panel(ax, playground, frame)
        _boundary(ax, playground, frame)
        ax.set_title(_map_title(playground, frame))
    return path


def animate_decision_boundary(playground: Playground, path: str | os.PathLike[str], fps: int = 6,
                              figsize: tuple[float, float] = (10.0, 4.5)) -> Path:
    """Write the boundary forming as an animation (``.gif``, or ``.mp4`` with ffmpeg), one frame per snapshot.

    Left: the data over the probability map with its decision boundary; right: the
    training loss per epoch up to the frame's epoch, the full-set loss at each snapshot
    (dots, evaluation mode) and the accuracy (right axis).
    """
    play, path = playground, Path(path)
    epochs = np.arange(1, len(play.history["loss"]) + 1)
    losses = np.concatenate([play.history["loss"], play.frame_loss])
    positive = losses[np.isfinite(losses) & (losses > 0)]
    with animated(path, figsize, fps) as fig:
        ax_map, ax_loss = fig.subplots(1, 2, width_ratios=[1.1, 1.0])
        image = _map_panel(ax_map, play, 0)
        contour = [_boundary(ax_map, play, 0)]
        (loss_line,) = ax_loss.plot([], [], color=LOSS_COLOUR, label="training loss (per epoch)")
        (frame_dots,) = ax_loss.plot([], [], "o", color=LOSS_COLOUR, markersize=4, label="loss at snapshot")
        ax_acc = ax_loss.twinx()
        (acc_line,) = ax_acc.plot([], [], color=ACCURACY_COLOUR, linestyle="--", linewidth=1.8, label="accuracy")
        ax_loss.set_xlim(0, max(1, int(play.frame_epochs[-1])))
        if len(positive):
            ax_loss.set_yscale("log")
            ax_loss.set_ylim(positive.min() / 1.5, positive.max() * 1.5)
        ax_acc.set_ylim(0.0, 1.02)
        ax_acc.grid(False)
        ax_loss.set_xlabel("epoch")
        ax_loss.set_ylabel("loss")
        ax_acc.set_ylabel("accuracy", color=ACCURACY_COLOUR)
        ax_acc.tick_params(axis="y", colors=ACCURACY_COLOUR)
        ax_loss.legend(handles=[loss_line, frame_dots, acc_line], loc="upper right")

        def draw(k: int) -> None:
            image.set_data(_map_image(play, k))
            for artist in contour.pop():
                artist.remove()
            contour.append(_boundary(ax_map, play, k))
            ax_map.set_title(_map_title(play, k))
            e = int(play.frame_epochs[k])
            loss_line.set_data(epochs[:e], play.history["loss"][:e])
            acc_line.set_data(epochs[:e], play.history["accuracy"][:e])
            frame_dots.set_data(play.frame_epochs[: k + 1], play.frame_loss[: k + 1])
            ax_loss.set_title(f"loss {play.frame_loss[k]:.3g} after {e} epochs")

        fig.frames = (draw, len(play.frame_epochs))
    return path


def _batch_title(batch_size: Any) -> str:
    if batch_size == "full":
        return "full batch (gradient descent)"
    return "batch 1 (stochastic)" if batch_size == 1 else f"batch {batch_size}"


def _heat_map(ax: Any, values: np.ndarray, diverged: np.ndarray, sweep: Sweep, cmap: str, norm: Normalize,
              fmt: str) -> Any:
    shown = np.ma.masked_array(values, mask=diverged | ~np.isfinite(values))
    colormap = colormaps[cmap].with_extremes(bad="0.85")
    image = ax.imshow(shown, cmap=colormap, norm=norm, origin="upper", aspect="auto")
    for (r, c), value in np.ndenumerate(values):
        if diverged[r, c]:
            ax.text(c, r, "×", ha="center", va="center", fontsize=18, color=WRONG_COLOUR, fontweight="bold")
        else:
            light = norm(value) < 0.5 if cmap == "viridis" else norm(value) > 0.5
            ax.text(c, r, format(value, fmt), ha="center", va="center", fontsize=7.5,
                    color="white" if light else "black")
    ax.set_xticks(range(len(sweep.initializers)), sweep.initializers, rotation=30, ha="right")
    ax.set_yticks(range(len(sweep.learning_rates)), [f"{r:g}" for r in sweep.learning_rates])
    ax.grid(False)
    return image


def plot_sweep(sweep: Sweep, path: str | os.PathLike[str], curves_initializer: str | None = None,
               figsize: tuple[float, float] | None = None) -> Path:
    """Write the sweep as a PNG, one column per batch size.

    Rows: final loss and final accuracy on the whole training set over learning rate ×
    initialiser (diverged runs crossed out); then, for one initialiser
    (``curves_initializer``, default ``glorot_uniform`` when swept, else the last), the loss
    of every step for each learning rate on a log scale, where the mini-batch fluctuations
    show (a diverged run's curve ends in an ×).
    """
    if curves_initializer is None:
        curves_initializer = "glorot_uniform" if "glorot_uniform" in sweep.initializers else sweep.initializers[-1]
    if curves_initializer not in sweep.initializers:
        raise DeepfieldError(f"plot_sweep: no initializer {curves_initializer!r} in the sweep "
                             f"(has {', '.join(sweep.initializers)})")
    init = sweep.initializers.index(curves_initializer)
    n_batch = len(sweep.batch_sizes)
    ok = ~sweep.diverged & np.isfinite(sweep.final_loss)
    top = float(np.max(sweep.final_loss[ok])) if ok.any() else 1.0
    loss_norm = Normalize(0.0, max(top, 1e-6))
    acc_low = float(np.nanmin(sweep.final_accuracy[ok])) if ok.any() else 0.5
    acc_norm = Normalize(min(0.5, acc_low), 1.0)
    colours = colormaps["plasma"](np.linspace(0.0, 0.85, len(sweep.learning_rates)))
    path = Path(path)
    with figure(path, figsize or (3.4 * n_batch + 1.2, 10.0)) as fig:
        axes = fig.subplots(3, n_batch, squeeze=False, height_ratios=[1.0, 1.0, 1.15])
        for b, batch_size in enumerate(sweep.batch_sizes):
            loss_image = _heat_map(axes[0, b], sweep.final_loss[:, :, b], sweep.diverged[:, :, b], sweep,
                                   "viridis_r", loss_norm, ".2f")
            acc_image = _heat_map(axes[1, b], sweep.final_accuracy[:, :, b], sweep.diverged[:, :, b], sweep,
                                  "viridis", acc_norm, ".0%")
            axes[0, b].set_title(_batch_title(batch_size))
            axes[0, b].tick_params(labelbottom=False)
            axes[1, b].set_xlabel("kernel initializer")
            for row in (0, 1):
                axes[row, b].set_ylabel("learning rate" if b == 0 else "")
            ax = axes[2, b]
            curves = []
            for l in range(len(sweep.learning_rates)):
                run = (l, init, b)
                curve = sweep.losses[run][: sweep.steps_run[run]].astype(np.float64)
                curve[~(curve > 0)] = np.nan
                curves.append(curve)
            calm = [c for l, c in enumerate(curves) if not sweep.diverged[l, init, b] and np.isfinite(c).any()]
            low = min((np.nanmin(c) for c in calm), default=1e-3) / 1.5
            high = max((np.nanmax(c) for c in calm), default=1.0) * 3.0
            for l, (rate, curve) in enumerate(zip(sweep.learning_rates, curves)):
                steps = np.arange(len(curve))
                ax.plot(steps, curve, color=colours[l], linewidth=0.8, alpha=0.85, label=f"lr {rate:g}")
                finite = np.flatnonzero(np.isfinite(curve))
                if sweep.diverged[l, init, b]:
                    end = finite[-1] if len(finite) else max(len(curve) - 1, 0)
                    where = curve[end] if len(finite) else high
                    ax.plot(end, np.clip(where, low, high), "x", color=WRONG_COLOUR, markersize=9,
                            markeredgewidth=2, clip_on=False)
            ax.set_ylim(low, high)
            ax.set_yscale("log")
            ax.set_xlim(0, sweep.steps)
            ax.set_xlabel("step")
            ax.set_ylabel(f"batch loss ({curves_initializer})" if b == 0 else "")
            if b == 0:
                ax.legend(loc="lower left")
        fig.colorbar(loss_image, ax=list(axes[0]), label="final loss", shrink=0.9)
        fig.colorbar(acc_image, ax=list(axes[1]), label="final accuracy", shrink=0.9)
        fig.suptitle(f"{sweep.settings.get('optimizer', '')} on hidden {tuple(sweep.settings.get('hidden', ()))}, "
                     f"{sweep.steps} steps per run; × diverged")
    return path


def plot_gradient_norms_by_depth(study: DepthStudy, path: str | os.PathLike[str],
                                 figsize: tuple[float, float] | None = None) -> Path:
    """Write the depth study as a PNG.

    Top, one panel per variant (shared log axis): each Dense layer's gradient norm against
    the step, coloured from the first layer (dark) to the head (yellow). Bottom: the norm
    averaged over steps against the layer's depth, one line per variant: vanishing
    gradients are the lines climbing by orders of magnitude from input to output.
    """
    runs = list(study.runs.values())
    if not runs or any(len(r.norms) == 0 for r in runs):
        raise DeepfieldError("plot_gradient_norms_by_depth: the study recorded no gradient norms")
    positive = np.concatenate([r.norms[r.norms > 0] for r in runs])
    if not len(positive):
        raise DeepfieldError("plot_gradient_norms_by_depth: every recorded gradient norm is zero")
    low, high = positive.min() / 2, positive.max() * 2
    layers = max(len(r.names) for r in runs)
    colour_of = colormaps["viridis"]
    layer_norm = Normalize(1, max(2, layers))
    path = Path(path)
    with figure(path, figsize or (max(8.0, 2.9 * len(runs) + 1.0), 7.5)) as fig:
        grid = fig.add_gridspec(2, len(runs), height_ratios=[1.15, 1.0])
        top = [fig.add_subplot(grid[0, k]) for k in range(len(runs))]
        for k, (ax, run) in enumerate(zip(top, runs)):
            for j in range(run.norms.shape[1]):
                values = np.where(run.norms[:, j] > 0, run.norms[:, j], np.nan)
                ax.plot(run.steps, values, color=colour_of(layer_norm(j + 1)), linewidth=1.0)
            ax.set_yscale("log")
            ax.set_ylim(low, high)
            ax.set_xlabel("step")
            if k:
                ax.tick_params(labelleft=False)
            else:
                ax.set_ylabel("gradient L2 norm")
            ax.set_title(f"{run.variant}\nfirst/last hidden {run.first_to_last:.1e}", fontsize=9.5)
        fig.colorbar(ScalarMappable(layer_norm, colour_of), ax=top, label="Dense layer (1 = input side)",
                     shrink=0.9)
        bottom = fig.add_subplot(grid[1, :])
        for k, run in enumerate(runs):
            mean = run.mean_norms
            bottom.plot(np.arange(1, len(mean) + 1), np.where(mean > 0, mean, np.nan), marker="o", markersize=4,
                        color=PALETTE[k % len(PALETTE)],
                        label=f"{run.variant} (training loss {run.train_loss:.2f})")
        bottom.set_yscale("log")
        bottom.set_xlabel(f"Dense layer ({study.depth} hidden of {study.width} units, then the head)")
        bottom.set_ylabel("mean gradient norm")
        bottom.xaxis.get_major_locator().set_params(integer=True)
        bottom.legend(loc="best", ncol=1 + len(runs) // 4)
        fig.suptitle(f"Gradients through {study.depth} layers")
    return path
