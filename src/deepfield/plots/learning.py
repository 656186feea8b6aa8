"""Learning curves: training vs validation loss (and a metric) per epoch, over-fitting marked;
and each layer's gradient norm per step (from a :class:`~deepfield.training.GradientNormLogger`).

>>> plot_learning_curves(model.history, "figures/learning_curves.png", metric="accuracy")
>>> overfitting_epoch(load_history("run/history.csv"))    # e.g. 14, or None
>>> plot_gradient_norms(logger.steps, logger.history(), "figures/gradient_norms.png")
"""
from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps

from deepfield.errors import DeepfieldError
from deepfield.plots.style import TRAIN_COLOUR, VALIDATION_COLOUR, figure

__all__ = ["HistoryLike", "load_history", "overfitting_epoch", "plot_gradient_norms", "plot_learning_curves"]

HistoryLike = Mapping[str, Sequence[float]] | str | os.PathLike | Any
"""A ``{key: per-epoch values}`` mapping, a ``History`` (``.history`` and ``.epoch``) or a history.csv path."""

_NOT_METRICS = frozenset({"epoch", "loss", "lr", "learning_rate"})


def _read_csv(path: Path) -> dict[str, list[float]]:
    if not path.is_file():
        raise DeepfieldError(f"{path}: history file not found")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise DeepfieldError(f"{path}: history file has no epochs")
    columns: dict[str, list[float]] = {key: [] for key in rows[0]}
    for line, row in enumerate(rows, start=2):
        for key, text in row.items():
            try:
                columns[key].append(math.nan if text in ("", "NA", None) else float(text))
            except ValueError:
                raise DeepfieldError(f"{path}: line {line}, column {key!r}: {text!r} is not a number") from None
    return columns


def load_history(history: HistoryLike) -> dict[str, np.ndarray]:
    """Per-epoch values as float arrays ``(E,)``, always with an ``"epoch"`` key (0, 1, ... if absent).

    Accepts a ``{key: values}`` mapping (``History.history``), a ``History`` object
    (its ``.epoch`` is used) or the path of a ``history.csv`` (``NA`` or empty → NaN).
    """
    if isinstance(history, (str, os.PathLike)):
        columns: Mapping[str, Sequence[float]] = _read_csv(Path(history))
    elif isinstance(history, Mapping):
        columns = history
    elif hasattr(history, "history"):
        columns = {**history.history, "epoch": list(getattr(history, "epoch", []))}
    else:
        raise DeepfieldError(f"history: expected a mapping, a History or a CSV path, got {type(history).__name__}")
    out = {str(k): np.asarray(v, dtype=np.float64) for k, v in columns.items()}
    epochs = out.pop("epoch", np.zeros(0))
    lengths = sorted({len(v) for v in out.values()})
    if len(lengths) != 1 or lengths[0] == 0 or len(epochs) not in (0, lengths[0]):
        raise DeepfieldError(f"history: every key needs one value per epoch, got lengths {lengths} "
                             f"and {len(epochs)} epoch numbers")
    out["epoch"] = epochs if len(epochs) else np.arange(lengths[0], dtype=np.float64)
    return out


def _series(h: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    if key not in h:
        raise DeepfieldError(f"history: no {key!r}; it has: {', '.join(sorted(h))}")
    return h[key]


def overfitting_epoch(history: HistoryLike, monitor: str = "val_loss", train: str = "loss",
                      patience: int = 2, min_delta: float = 0.0) -> int | None:
    """The epoch where over-fitting starts, or ``None``.

    That is the epoch ``e*`` of minimum ``monitor`` (the validation loss; the first one on
    ties) when all of these hold at the last epoch:

    - at least ``patience`` epochs follow ``e*``;
    - the validation loss has risen: ``val[last] > val[e*] + min_delta``;
    - the training loss kept falling: ``train[last] < train[e*]``.

    A validation loss still falling (its minimum is the last epoch) gives ``None``, and so
    does one rising with the training loss (divergence, not over-fitting). NaN epochs are
    ignored. The epoch is reported as numbered in the history.
    """
    h = load_history(history)
    val, loss, epochs = _series(h, monitor), _series(h, train), h["epoch"]
    valid = np.flatnonzero(np.isfinite(val) & np.isfinite(loss))
    if len(valid) <= patience:
        return None
    best = valid[np.argmin(val[valid])]
    last = valid[-1]
    rose = val[last] > val[best] + min_delta
    kept_falling = loss[last] < loss[best]
    if np.sum(valid > best) >= patience and rose and kept_falling:
        return int(epochs[best])
    return None


def _default_metric(h: Mapping[str, np.ndarray]) -> str | None:
    """The first training metric (sorted) other than the loss, if any."""
    return next((k for k in sorted(h) if not k.startswith("val_") and k not in _NOT_METRICS), None)


def _panel(ax: Any, h: Mapping[str, np.ndarray], key: str, label: str) -> None:
    epochs = h["epoch"]
    ax.plot(epochs, _series(h, key), color=TRAIN_COLOUR, marker="o", markersize=3, label="training")
    if f"val_{key}" in h:
        ax.plot(epochs, h[f"val_{key}"], color=VALIDATION_COLOUR, marker="o", markersize=3, label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel(label)


def plot_learning_curves(history: HistoryLike, path: str | os.PathLike[str], metric: str | None = None,
                         loss: str = "loss", title: str = "Learning curves",
                         figsize: tuple[float, float] | None = None) -> Path:
    """Write loss (and ``metric``) per epoch, training vs validation, as a PNG; returns ``path``.

    Args:
        history: see :func:`load_history`; validation keys are ``val_<key>``.
        metric: a second panel for this key (e.g. ``"accuracy"``); default the first
            non-loss training key, none if there is none.
        loss: the loss key; its over-fitting epoch (:func:`overfitting_epoch`) is marked.
        figsize: inches, default ``(5, 4)`` per panel.
    """
    h = load_history(history)
    metric = metric if metric is not None else _default_metric(h)
    keys = [loss] + ([metric] if metric else [])
    for key in keys:
        _series(h, key)
    start = overfitting_epoch(h, f"val_{loss}", loss) if f"val_{loss}" in h else None
    path = Path(path)
    with figure(path, figsize or (5.0 * len(keys), 4.0)) as fig:
        axes = fig.subplots(1, len(keys), squeeze=False)[0]
        for ax, key in zip(axes, keys):
            _panel(ax, h, key, key.replace("_", " "))
            if start is not None:
                ax.axvline(start, color="0.3", linestyle="--", linewidth=1,
                           label=f"over-fitting from epoch {start}")
            ax.legend()
        if start is not None:
            best = np.flatnonzero(h["epoch"] == start)[0]
            axes[0].plot(start, h[f"val_{loss}"][best], marker="*", markersize=12, color=VALIDATION_COLOUR)
        fig.suptitle(title)
    return path


def plot_gradient_norms(steps: Sequence[int] | np.ndarray, norms: Mapping[str, np.ndarray],
                        path: str | os.PathLike[str], title: str = "Gradient norm per layer") -> Path:
    """Write each layer's gradient L2 norm against the training step (log y axis) as a PNG.

    ``norms``: layer name → its norms at ``steps``, in order from input to output (coloured
    along viridis), as :meth:`GradientNormLogger.history` gives them. Returns ``path``.
    """
    steps = np.asarray(steps)
    if not len(steps) or not norms:
        raise DeepfieldError("gradient norms: nothing recorded yet (train with a GradientNormLogger in callbacks)")
    path = Path(path)
    with figure(path, (8.5, 4.5)) as fig:
        ax = fig.add_subplot()
        colours = colormaps["viridis"](np.linspace(0.0, 0.9, len(norms)))
        for colour, (name, values) in zip(colours, norms.items()):
            ax.plot(steps, values, color=colour, label=name, linewidth=1.2)
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel("gradient L2 norm")
        ax.set_title(title)
        ax.legend(fontsize="small", ncol=1 + len(norms) // 16, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return path
