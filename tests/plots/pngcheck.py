"""A figure test's first check, shared by the report tests (not a test file)."""
from __future__ import annotations

from pathlib import Path

from matplotlib import image as mpimg

from deepfield.plots.style import DPI


def assert_png(path: Path, figsize: tuple[float, float]) -> None:
    """``path`` is a non-empty PNG that reads back as ``figsize × DPI`` pixels with something drawn."""
    assert path.is_file() and path.stat().st_size > 0
    pixels = mpimg.imread(path)
    assert pixels.shape[:2] == (round(figsize[1] * DPI), round(figsize[0] * DPI))
    assert pixels.std() > 0
