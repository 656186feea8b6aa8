"""The restoration gallery: which stamps it picks and the figure's size."""
import numpy as np
import pytest

from deepfield.errors import DeepfieldError
from deepfield.plots import best_median_worst, plot_restoration_gallery
from pngcheck import assert_png


def test_best_median_worst_picks_by_score_and_puts_nan_last():
    assert best_median_worst([3.0, 9.0, np.nan, 5.0, 1.0]) == [1, 0, 2]
    assert best_median_worst([2.0]) == [0]
    assert best_median_worst([np.inf, 1.0, 2.0]) == [0, 2, 1]  # an exact output (PSNR inf) is the best


def test_the_gallery_has_a_row_per_stamp_and_a_column_per_panel(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 10, (4, 2, 16, 16))
    noisy, output = truth + rng.normal(size=truth.shape), truth + 0.3 * rng.normal(size=truth.shape)
    path = plot_restoration_gallery(noisy, output, truth, tmp_path / "g.png", [0, 3], ["a", "b"], unit="nJy")
    assert_png(path, (8.0, 4.2))
    with_sigma = plot_restoration_gallery(noisy, output, truth, tmp_path / "s.png", [1], ["c"],
                                          sigma=np.ones_like(truth), band=1)
    assert_png(with_sigma, (10.0, 2.1))
    with pytest.raises(DeepfieldError, match="alike"):
        plot_restoration_gallery(noisy, output[:, :1], truth, tmp_path / "x.png", [0], ["a"])


def test_a_deblending_gallery_names_its_panels_and_crosses_the_target(tmp_path):
    rng = np.random.default_rng(1)
    truth = rng.uniform(0, 10, (2, 1, 16, 16))
    path = plot_restoration_gallery(truth + 5, truth, truth, tmp_path / "d.png", [0, 1], ["a", "b"],
                                    titles=("blend", "network", "isolated truth"), marks=[[3.0, 4.0], [15.0, 0.0]])
    assert_png(path, (8.0, 4.2))
