"""An election forecast's seats: the distribution of seats won over the forecast's joint samples."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deepfield.plots.style import PALETTE, figure

__all__ = ["plot_seat_distribution"]


def plot_seat_distribution(forecasts: Mapping[str, Mapping[str, Any]], path: str | Path,
                           party: str = "Democratic") -> Path:
    """Histograms of the seats won per sample, one per forecast (name -> result of
    :func:`~deepfield.tasks.forecast.forecast_seats`),
    with the majority line and each forecast's P(majority) in the legend."""
    path = Path(path)
    with figure(path, (7.0, 4.2)) as fig:
        ax = fig.add_subplot()
        every = np.concatenate([f["seats"] for f in forecasts.values()])
        width = max(1, int(np.ceil((every.max() - every.min() + 1) / 60)))  # at most ~60 bins of whole seats
        bins = np.arange(every.min() - 0.5, every.max() + width + 0.5, width)
        majority = next(iter(forecasts.values()))["majority"]
        for colour, (name, forecast) in zip(PALETTE, forecasts.items()):
            ax.hist(forecast["seats"], bins=bins, density=True, histtype="stepfilled", alpha=0.35, color=colour,
                    edgecolor=colour, label=f"{name}: P(≥ {majority}) = {100 * forecast['p_majority']:.1f} %")
        ax.axvline(majority - 0.5, color="black", linewidth=1, linestyle="--", label=f"majority ({majority})")
        ax.set_xlabel(f"{party} seats")
        ax.set_ylabel("probability per seat")
        ax.legend(loc="upper left")
        ax.set_title("Forecast seat distribution")
    return path
