"""Scores of a regression: predicted against true values ``(N,)``, in the target's own units."""
from __future__ import annotations

import numpy as np


def regression_scores(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """mae, rmse, bias (mean of predicted − true; target units) and the coefficient of determination r2."""
    residual = predicted - truth
    total = float(np.sum((truth - truth.mean()) ** 2))
    return {"n": int(len(truth)), "mae": float(np.mean(np.abs(residual))),
            "rmse": float(np.sqrt(np.mean(residual ** 2))), "bias": float(np.mean(residual)),
            "r2": 1.0 - float(np.sum(residual ** 2)) / total if total > 0 else float("nan")}
