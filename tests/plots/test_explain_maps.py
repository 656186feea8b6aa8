"""Attribution and class-model figures: a PNG of the expected pixel size for 1- and 3-band stamps,
maps reduced over bands as documented, and bad inputs named."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from deepfield.analysis.explain import ClassModel
from deepfield.errors import DeepfieldError
from deepfield.plots import plot_attributions, plot_class_models
from deepfield.plots.explain_maps import COLORBAR_ROOM, CURVE_ROOM, MAX_ROWS, _plane, map_scale
from helpers import stamps
from pngcheck import assert_png


RNG = np.random.default_rng(0)



def bright_stamps(n: int, bands: int) -> np.ndarray:
    """``(n, bands, 16, 16)`` noise stamps with a bright 3×3 square near a corner."""
    x = stamps(n, bands, size=16, rng=RNG)
    x[:, :, 4:7, 4:7] += 10.0
    return x


@pytest.mark.parametrize("bands", [1, 3])
def test_attributions_write_one_row_per_stamp_and_one_column_per_method(tmp_path, bands):
    x = bright_stamps(3, bands)
    maps = {"saliency": np.abs(RNG.normal(size=x.shape)),        # non-negative, per band
            "integrated gradients": RNG.normal(size=x.shape),    # signed, per band
            "occlusion": RNG.normal(size=(3, 16, 16))}           # one plane per stamp
    path = plot_attributions(x, maps, tmp_path / "maps.png", titles=["a", "b", "c"], panel_size=1.5)
    assert path == tmp_path / "maps.png"
    assert_png(path, (4 * 1.5, (3 + COLORBAR_ROOM) * 1.5))


def test_signed_maps_are_summed_over_bands_and_non_negative_ones_take_the_band_maximum():
    signed = np.array([[[[1.0]], [[-3.0]], [[0.5]]]])  # (1, 3, 1, 1)
    np.testing.assert_allclose(_plane("ig", signed, (1, 3, 1, 1)), [[[-1.5]]])
    np.testing.assert_allclose(_plane("saliency", np.abs(signed), (1, 3, 1, 1)), [[[3.0]]])
    np.testing.assert_allclose(_plane("occlusion", np.full((1, 1, 1), 2.0), (1, 3, 1, 1)), [[[2.0]]])


@pytest.mark.parametrize(("images", "maps", "titles", "message"), [
    (bright_stamps(2, 1), {"ig": np.zeros((2, 1, 8, 8))}, None,
     "map 'ig' has shape \\(2, 1, 8, 8\\); expected \\(2, C, 16, 16\\) or \\(2, 16, 16\\)"),
    (bright_stamps(2, 1), {"ig": np.full((2, 16, 16), np.nan)}, None, "map 'ig' has non-finite values"),
    (bright_stamps(2, 1), {}, None, "maps is empty"),
    (bright_stamps(2, 1), {"ig": np.zeros((2, 16, 16))}, ["only one"], "1 titles for 2 stamps"),
    (bright_stamps(MAX_ROWS + 1, 1)[:, 0], {"ig": np.zeros((MAX_ROWS + 1, 16, 16))}, None,
     "images must be \\(N, C, H, W\\) with 1 ≤ N ≤ 32"),
])
def test_bad_attribution_inputs_are_named(tmp_path, images, maps, titles, message):
    with pytest.raises(DeepfieldError, match=f"^plot_attributions: {message}"):
        plot_attributions(images, maps, tmp_path / "bad.png", titles=titles)
    assert not (tmp_path / "bad.png").exists()


@pytest.mark.parametrize("bands", [1, 3])
def test_class_models_show_each_image_and_the_score_curves(tmp_path, bands):
    results = {"star": ClassModel(bright_stamps(1, bands)[0], np.linspace(0.1, 0.9, 50), 0.1, 0.9, 0),
               "galaxy": (bright_stamps(1, bands)[0], np.linspace(0.3, 0.99, 50)),
               "artefact": ClassModel(bright_stamps(1, bands)[0], np.linspace(0.0, 0.5, 50), 0.0, 0.5, 2)}
    path = plot_class_models(results, tmp_path / "class_models.png", panel_size=1.5)
    assert_png(path, (3 * 1.5, (1 + CURVE_ROOM) * 1.5))
    one = plot_class_models({"galaxy": results["galaxy"]}, tmp_path / "one.png")
    assert_png(one, (2 * 2.0, (1 + CURVE_ROOM) * 2.0))  # room for the curve's axis


def test_bad_class_models_are_named(tmp_path):
    with pytest.raises(DeepfieldError, match="^plot_class_models: 'star' is a ndarray; expected a ClassModel"):
        plot_class_models({"star": np.zeros((1, 8, 8))}, tmp_path / "bad.png")
    with pytest.raises(DeepfieldError, match="'star' needs an image \\(C, H, W\\) and scores \\(steps,\\), got "
                                             "shapes \\(8, 8\\) and \\(5,\\)"):
        plot_class_models({"star": (np.zeros((8, 8)), np.zeros(5))}, tmp_path / "bad.png")
    with pytest.raises(DeepfieldError, match="results is empty"):
        plot_class_models({}, tmp_path / "bad.png")


def test_each_map_has_its_own_scale_so_a_weak_one_is_not_blank(tmp_path):
    """Two stamps whose occlusion effects differ 1000-fold: both maps are drawn, equally strong."""
    yy, xx = np.mgrid[:16, :16]
    blob = np.exp(-((xx - 8.0) ** 2 + (yy - 8.0) ** 2) / 8.0)
    maps = {"occlusion": np.stack([1e-3 * blob, blob])}  # signed below: a faint dip around the blob
    maps["occlusion"][:, 0, 0] = -1e-9
    path = plot_attributions(np.zeros((2, 1, 16, 16), np.float32), maps, tmp_path / "maps.png", panel_size=2.0)
    image = plt.imread(path)[..., :3]
    rows = image[: int(image.shape[0] * 2 / (2 + COLORBAR_ROOM)), image.shape[1] // 2:]  # the map column
    red = rows[..., 0] - rows[..., 2]  # RdBu_r: positive values red over the black stamp
    top, bottom = red[: len(red) // 2], red[len(red) // 2:]
    assert top.max() > 0.2 and bottom.max() > 0.2
    assert top.max() == pytest.approx(bottom.max(), abs=0.1)
    assert map_scale(np.stack([1e-3 * blob])[0]) == pytest.approx(np.percentile(1e-3 * blob, 99.0))


def test_the_colour_bars_are_not_cut_off_at_the_bottom(tmp_path):
    """Ten rows (the demo's explain figure): the bars' tick labels stay inside the image."""
    x = bright_stamps(10, 3)
    maps = {"integrated gradients": RNG.normal(size=x.shape), "occlusion": RNG.normal(size=(10, 16, 16))}
    titles = [f"true a\npred b ({k / 10:.2f})" for k in range(10)]
    path = plot_attributions(x, maps, tmp_path / "maps.png", titles=titles)
    image = plt.imread(path)[..., :3]
    assert image[-3:].min() > 0.9  # a white margin below the lowest text
    assert image[-int(0.6 * 1.8 * 120):].min() < 0.2  # and the bars (dark ends, labels) are drawn above it


def test_region_outlines_are_drawn_on_every_panel_of_their_row(tmp_path):
    x = bright_stamps(2, 1)
    maps = {"integrated gradients": RNG.normal(size=x.shape)}
    square = np.array([(3.5, 3.5), (7.5, 3.5), (7.5, 7.5), (3.5, 7.5), (3.5, 3.5)])
    cyan = []
    for name, outlines in (("plain", None), ("outlined", [square, None])):
        path = plot_attributions(x, maps, tmp_path / f"{name}.png", outlines=outlines)
        pixels = plt.imread(path)[..., :3]
        cyan.append(int(np.sum((pixels[..., 0] < 0.2) & (pixels[..., 1] > 0.6) & (pixels[..., 2] > 0.8))))
    assert cyan[0] == 0 and cyan[1] > 20
    with pytest.raises(DeepfieldError, match="1 outlines for 2 stamps"):
        plot_attributions(x, maps, tmp_path / "bad.png", outlines=[square])
