"""A regression's test set: predicted against true values, and the residuals."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deepfield.analysis.regression import regression_scores
from deepfield.plots.style import PALETTE, figure

__all__ = ["plot_regression"]


def plot_regression(truth: np.ndarray, predicted: np.ndarray, path: Path, name: str) -> Path:
    """Predicted against true ``(N,)`` with the 1:1 line, and the residuals against the truth."""
    scores = regression_scores(truth, predicted)
    with figure(path, (10.0, 4.6)) as fig:
        left, right = fig.subplots(1, 2)
        low, high = min(truth.min(), predicted.min()), max(truth.max(), predicted.max())
        left.scatter(truth, predicted, s=8, alpha=0.5, color=PALETTE[0], linewidths=0)
        left.plot([low, high], [low, high], color="black", linewidth=1, label="predicted = true")
        left.set_xlabel(f"true {name}")
        left.set_ylabel(f"predicted {name}")
        left.legend(loc="lower right")
        left.text(0.03, 0.97, f"N = {scores['n']}\nMAE = {scores['mae']:.4g}\nRMSE = {scores['rmse']:.4g}\n"
                  f"R² = {scores['r2']:.3f}", transform=left.transAxes, ha="left", va="top",
                  bbox=dict(boxstyle="round", facecolor="white", alpha=0.85))
        right.scatter(truth, predicted - truth, s=8, alpha=0.5, color=PALETTE[0], linewidths=0)
        right.axhline(0.0, color="black", linewidth=1)
        right.set_xlabel(f"true {name}")
        right.set_ylabel("residual (predicted − true)")
        fig.suptitle(f"Test set: {name}")
    return path
