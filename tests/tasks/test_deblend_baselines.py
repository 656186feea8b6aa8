"""photutils' segmentation deblender on blends whose answer is known, and the target marker."""
import numpy as np
import pytest

from deepfield.analysis.deblending import deblending_scores, relative_flux_errors
from deepfield.data.blend_stamps import target_marker
from deepfield.tasks.baselines.deblenders import deblend_baselines, segmentation_deblend, target_segment

NOISE = 0.05  # per pixel, against sources of 1000 and 400 over a few dozen pixels


def gaussian(x, y, flux, sigma=1.5, size=32):
    rows, columns = np.mgrid[:size, :size].astype(np.float64)
    image = np.exp(-((columns - x) ** 2 + (rows - y) ** 2) / (2 * sigma**2))
    return flux * image / image.sum()


def separated_pairs(n, seed=0):
    """``n`` one-band blends of two Gaussians 14 pixels apart, their isolated truths and the targets' centres."""
    rng = np.random.default_rng(seed)
    first, second = (np.stack([gaussian(x, 15.5, flux)[None] for _ in range(n)]) for x, flux in ((8.5, 1000.0),
                                                                                                 (22.5, 400.0)))
    blends = first + second + rng.normal(0.0, NOISE, first.shape)
    return blends, first, second


def test_two_well_separated_sources_are_each_recovered_by_the_segmentation_deblender():
    blends, first, second = separated_pairs(4)
    for truth, x in ((first, 8.5), (second, 22.5)):
        output = segmentation_deblend(blends, np.full(4, x), np.full(4, 15.5), np.array([NOISE]), contrast=0.001)
        errors = relative_flux_errors(truth, output)[:, -1]
        assert np.all(np.abs(errors) < 0.01)  # the segment holds the source: all but its faintest wings
        assert deblending_scores(truth, output)["recovered_fraction"] == 1.0
        other = slice(16, None) if x < 16 else slice(None, 16)
        assert not output[..., other].any()  # nothing of the other source


def test_a_target_off_every_segment_takes_the_nearest_within_the_match_radius_else_none():
    labels = np.zeros((16, 16), dtype=np.int64)
    labels[4:8, 4:8], labels[10:14, 10:14] = 1, 2
    detection = labels.astype(np.float64)
    assert target_segment(labels, detection, 5.0, 5.0) == 1  # on its segment
    assert target_segment(labels, detection, 8.0, 6.0) == 1  # off it, 2.55 px from its centroid (5.5, 5.5)
    assert target_segment(labels, detection, 9.0, 5.5) == 0  # 3.5 px from it: beyond the match radius
    assert target_segment(labels, detection, 0.0, 15.0) == 0


def test_a_target_no_segment_holds_gets_an_empty_output_and_counts_as_not_recovered():
    blends, first, _ = separated_pairs(1)
    output = segmentation_deblend(blends, np.array([8.5]), np.array([2.0]), np.array([NOISE]), contrast=0.001)
    assert not output.any()
    assert relative_flux_errors(first, output)[0, -1] == pytest.approx(-1.0)


def test_the_baselines_rows_score_the_blend_and_the_deblender_with_a_chosen_contrast():
    blends, first, second = separated_pairs(3)
    part = {"blends": np.concatenate([blends, blends]), "truth": np.concatenate([first, second]),
            "x": np.array([8.5] * 3 + [22.5] * 3), "y": np.full(6, 15.5)}
    rows = deblend_baselines(part, part, np.array([NOISE]), ["r"])
    assert [row["model"] for row in rows] == ["blend (no deblending)", "segmentation deblender (photutils)"]
    assert rows[1]["parameter"].startswith("contrast ") and rows[1]["flux_mape"] < 1.0
    companions = 100 * np.mean([0.4] * 3 + [2.5] * 3)  # the blend's excess: the other source's flux (and noise)
    assert rows[0]["flux_mape"] == pytest.approx(companions, abs=1.0)


def test_the_marker_is_a_unit_peak_gaussian_on_the_target():
    marker = target_marker([3.0, 10.5], [7.0, 2.0], (12, 16), sigma=1.5)
    assert marker.shape == (2, 1, 12, 16) and marker.dtype == np.float32
    assert marker[0, 0, 7, 3] == 1.0 and np.unravel_index(marker[0, 0].argmax(), (12, 16)) == (7, 3)
    assert marker[0, 0, 7, 4] == pytest.approx(np.exp(-1 / (2 * 1.5**2)))
    assert marker[1, 0, 2, 10] == pytest.approx(marker[1, 0, 2, 11]) == pytest.approx(np.exp(-0.25 / 4.5))
