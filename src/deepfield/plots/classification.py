"""Classification figures: confusion matrix, ROC curves, precision–recall with an operating point.

>>> plot_confusion_matrix(m.confusion, "figures/confusion.png", class_names=m.class_names)
>>> plot_roc(y_true, proba, "figures/roc.png", class_names=names)
>>> plot_precision_recall(is_good, p_good, "figures/pr.png", recall=0.99)
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from deepfield.analysis.classification import (
    class_names_for,
    precision_at_recall,
    precision_recall_points,
    roc_curves,
)
from deepfield.errors import DeepfieldError
from deepfield.plots.style import PALETTE, figure

__all__ = ["plot_confusion_matrix", "plot_precision_recall", "plot_roc"]


def plot_confusion_matrix(counts: ArrayLike, path: str | os.PathLike[str], class_names: Sequence[str] | None = None,
                          title: str = "Confusion matrix", figsize: tuple[float, float] | None = None) -> Path:
    """Write the row-normalised confusion matrix, each cell annotated with its fraction and count.

    Args:
        counts: ``(K, K)`` counts, row = true class, column = predicted class.
        class_names: ``K`` names (default ``"0" .. "K-1"``).
        figsize: inches, default grows with K.
    """
    counts = np.asarray(counts)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or np.any(counts < 0):
        raise DeepfieldError(f"confusion matrix: expected (K, K) non-negative counts, got shape {counts.shape}")
    k = len(counts)
    names = class_names_for(k, class_names)
    rows = counts.sum(axis=1, keepdims=True)
    fraction = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    size = max(4.5, 0.7 * k + 2.5)
    path = Path(path)
    with figure(path, figsize or (size + 1.0, size)) as fig:
        ax = fig.add_subplot()
        image = ax.imshow(fraction, cmap="Blues", vmin=0.0, vmax=1.0, origin="upper")
        fig.colorbar(image, ax=ax, label="fraction of the true class")
        fontsize = max(5.0, 9.0 - 0.25 * k)
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{fraction[i, j]:.2f}\n({int(counts[i, j])})", ha="center", va="center",
                        fontsize=fontsize, color="white" if fraction[i, j] > 0.5 else "black")
        ax.set_xticks(range(k), names, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center")
        ax.set_yticks(range(k), names)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.grid(False)
        ax.set_title(f"{title} (N = {int(counts.sum())})")
    return path


def plot_roc(y_true: ArrayLike, scores: ArrayLike, path: str | os.PathLike[str],
             class_names: Sequence[str] | None = None, title: str = "ROC curves",
             figsize: tuple[float, float] = (5.5, 5.0)) -> Path:
    """Write ROC curves (one-vs-rest per class, or class 1 for binary scores), AUC in the legend.

    Args:
        y_true: ``(N,)`` integer labels.
        scores: ``(N,)`` score of class 1 or ``(N, K)`` class probabilities.
    """
    roc = roc_curves(y_true, scores, class_names)
    path = Path(path)
    with figure(path, figsize) as fig:
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=1, label="chance (AUC = 0.5)")
        for i, (name, curve) in enumerate(roc.curves.items()):
            if len(curve.fpr):
                ax.plot(curve.fpr, curve.tpr, color=PALETTE[i % len(PALETTE)], linewidth=1.5,
                        label=f"{name} (AUC = {curve.auc:.3f})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("false positive rate (fraction of negatives selected)")
        ax.set_ylabel("true positive rate (recall)")
        ax.set_aspect("equal")
        ax.legend(loc="lower right", title=f"macro AUC = {roc.macro_auc:.3f}" if len(roc.curves) > 1 else None)
        ax.set_title(title)
    return path


def plot_precision_recall(y_true: ArrayLike, score: ArrayLike, path: str | os.PathLike[str], recall: float = 0.99,
                          positive: int = 1, positive_name: str | None = None, title: str = "Precision–recall",
                          figsize: tuple[float, float] = (5.5, 5.0)) -> Path:
    """Write the precision–recall curve with the operating point at ``recall`` marked.

    The point is :func:`~deepfield.analysis.classification.precision_at_recall`: the
    purest selection ``score >= threshold`` that keeps at least ``recall`` of the positives.

    Args:
        y_true: ``(N,)`` labels, ``positive`` the positive class (e.g. good images).
        score: ``(N,)`` higher means more likely positive.
    """
    precision, recalls, _ = precision_recall_points(y_true, score, positive)
    point = precision_at_recall(y_true, score, recall, positive)
    prevalence = float(np.mean(np.asarray(y_true) == positive))
    path = Path(path)
    with figure(path, figsize) as fig:
        ax = fig.add_subplot()
        ax.plot(recalls, precision, color=PALETTE[0], linewidth=1.5, drawstyle="steps-post",
                label=f"class {positive_name or positive}")
        ax.axhline(prevalence, color="0.6", linestyle=":", linewidth=1, label=f"no skill ({prevalence:.3f})")
        ax.axvline(recall, color="0.4", linestyle="--", linewidth=0.8)
        ax.plot(point.recall, point.precision, marker="o", markersize=8, color=PALETTE[3], linestyle="none",
                label=f"recall ≥ {recall:g}: precision {point.precision:.3f}\n(score ≥ {point.threshold:.3g})")
        ax.set_xlim(0, 1.01)
        ax.set_ylim(max(0.0, min(prevalence, float(precision.min())) - 0.05), 1.01)
        ax.set_xlabel("recall (fraction of positives kept)")
        ax.set_ylabel("precision (fraction of selection positive)")
        ax.legend(loc="lower left")
        ax.set_title(title)
    return path
