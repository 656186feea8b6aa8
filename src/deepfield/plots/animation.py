"""Animated figures: one styled figure redrawn frame by frame, written as a GIF (or an MP4 where ffmpeg is).

>>> def draw(frame: int) -> None:          # update the artists for this frame
...     line.set_data(xs[:frame + 1], ys[:frame + 1])
>>> with animated("figures/path.gif", (6, 5)) as fig:
...     ax = fig.add_subplot(); line, = ax.plot([], [])
...     fig.frames = (draw, len(xs))        # what to draw, how many frames
"""
from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import matplotlib
from matplotlib.animation import FFMpegWriter, FuncAnimation, PillowWriter
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from deepfield import atomic
from deepfield.errors import DeepfieldError
from deepfield.plots.style import DPI, STYLE

FORMATS = (".gif", ".mp4")


def writer_for(path: Path, fps: int) -> PillowWriter | FFMpegWriter:
    """The matplotlib writer for ``path``'s suffix: Pillow for GIF, ffmpeg for MP4 (an error if absent)."""
    suffix = path.suffix.lower()
    if suffix == ".gif":
        return PillowWriter(fps=fps)
    if suffix == ".mp4":
        if shutil.which("ffmpeg") is None:
            raise DeepfieldError(f"{path}: writing MP4 needs ffmpeg, which is not installed; write a .gif")
        return FFMpegWriter(fps=fps)
    raise DeepfieldError(f"{path}: an animation is written as {' or '.join(FORMATS)}")


def default_suffix() -> str:
    """``.mp4`` where ffmpeg is installed, else ``.gif``."""
    return ".mp4" if shutil.which("ffmpeg") else ".gif"


@contextlib.contextmanager
def animated(path: str | os.PathLike[str], figsize: tuple[float, float], fps: int = 8) -> Iterator[Figure]:
    """Yield a styled figure; set ``fig.frames = (draw, n)`` inside. On leaving, ``draw(k)`` is called
    for ``k = 0 .. n-1`` and each state becomes one frame of ``path`` (``.gif``, or ``.mp4``), written atomically."""
    path = Path(path)
    writer = writer_for(path, fps)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        yield fig
        frames: tuple[Callable[[int], object], int] | None = getattr(fig, "frames", None)
        if frames is None or frames[1] < 1:
            raise DeepfieldError(f"{path}: an animation needs at least one frame")
        draw, count = frames
        movie = FuncAnimation(fig, draw, frames=count, blit=False, repeat=False)
        atomic.write_with(path, lambda tmp: _save(movie, writer, Path(tmp), path.suffix))


def _save(movie: FuncAnimation, writer: PillowWriter | FFMpegWriter, tmp: Path, suffix: str) -> None:
    """Write ``movie`` to ``tmp``; the writers choose the format by suffix, so go through a named sibling."""
    named = tmp.with_name(tmp.name + suffix)
    movie.save(str(named), writer=writer, dpi=DPI)
    os.replace(named, tmp)
