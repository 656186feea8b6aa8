"""The one look of deepfield's figures and the one way they are written.

Every figure is a matplotlib ``Figure`` on the Agg canvas (no pyplot state, safe in
threads and on headless machines), drawn under :data:`STYLE` and written atomically as
a PNG at :data:`DPI`, so its size in pixels is ``figsize × DPI``.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import matplotlib
from matplotlib import cycler
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from deepfield import atomic

DPI = 120
"""Dots per inch of every written PNG."""

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
"""Okabe–Ito colours, distinguishable with the common colour-vision deficiencies."""

TRAIN_COLOUR, VALIDATION_COLOUR = PALETTE[0], PALETTE[3]
RIGHT_COLOUR, WRONG_COLOUR = "#1a9641", "#d7191c"
"""Frames of right (green) and wrong (red) predictions."""

STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 8.5,
    "legend.framealpha": 0.85,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": cycler(color=PALETTE),
    "image.origin": "lower",
    "savefig.facecolor": "white",
}


@contextlib.contextmanager
def figure(path: str | os.PathLike[str], figsize: tuple[float, float]) -> Iterator[Figure]:
    """Yield a styled ``Figure`` of ``figsize`` inches; on leaving, write it to ``path`` as a PNG.

    >>> with figure("figures/roc.png", (5.5, 5)) as fig:
    ...     ax = fig.add_subplot()
    """
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        yield fig
        atomic.write_with(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
