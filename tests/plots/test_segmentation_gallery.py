"""The segmentation gallery: a PNG of image, predicted and true maps per row; maps that do not line up are refused."""
import numpy as np
import pytest
from PIL import Image

from deepfield.errors import DeepfieldError
from deepfield.plots import plot_segmentation_gallery


def test_one_row_per_stamp_is_written(tmp_path):
    rng = np.random.default_rng(0)
    maps = rng.integers(0, 3, (4, 8, 8))
    path = plot_segmentation_gallery(rng.normal(size=(4, 8, 8)), maps, maps, tmp_path / "g.png", [0, 2],
                                     ["best", "worst"], ["background", "source", "boundary"])
    width, height = Image.open(path).size
    assert height > width / 2  # two rows of three panels and the legend


def test_maps_of_another_shape_are_refused(tmp_path):
    with pytest.raises(DeepfieldError, match=r"must be \(N, H, W\) alike"):
        plot_segmentation_gallery(np.zeros((2, 8, 8)), np.zeros((2, 8, 9)), np.zeros((2, 8, 8)), tmp_path / "g.png",
                                  [0], ["x"], ["background", "source"])
