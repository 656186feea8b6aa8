"""Animated figures: one frame per draw call, written atomically, formats by suffix."""
import shutil

import pytest
from PIL import Image

from deepfield.errors import DeepfieldError
from deepfield.plots.animation import animated, default_suffix
from deepfield.plots.style import DPI


def test_a_gif_has_one_frame_per_draw_and_the_figure_size(tmp_path):
    drawn = []
    with animated(tmp_path / "growing.gif", (3.0, 2.0)) as fig:
        ax = fig.add_subplot()
        ax.set_xlim(0, 10)
        ax.set_ylim(0, 10)
        line, = ax.plot([], [])
        fig.frames = (lambda k: drawn.append(k) or line.set_data(range(k + 1), range(k + 1)), 7)
    image = Image.open(tmp_path / "growing.gif")
    assert image.n_frames == 7 and image.size == (3 * DPI, 2 * DPI)
    assert sorted(set(drawn)) == list(range(7))
    assert [p.name for p in tmp_path.iterdir()] == ["growing.gif"]  # no temporary file left


def test_formats_and_frames_are_checked(tmp_path):
    with pytest.raises(DeepfieldError, match=r"written as \.gif or \.mp4"):
        with animated(tmp_path / "a.png", (2, 2)) as fig:
            fig.frames = (lambda k: None, 1)
    with pytest.raises(DeepfieldError, match="at least one frame"):
        with animated(tmp_path / "a.gif", (2, 2)):
            pass
    assert not (tmp_path / "a.gif").exists()
    if shutil.which("ffmpeg") is None:
        assert default_suffix() == ".gif"
        with pytest.raises(DeepfieldError, match="needs ffmpeg"):
            with animated(tmp_path / "a.mp4", (2, 2)) as fig:
                fig.frames = (lambda k: None, 1)
