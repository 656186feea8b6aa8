"""The deblending metrics against numbers worked out by hand."""
import numpy as np
import pytest

from deepfield.analysis.deblending import RECOVERED_WITHIN, deblending_scores, relative_flux_errors
from deepfield.errors import DeepfieldError


def gaussian(size, sigma, x=None, y=None, flux=1000.0, q=1.0):
    """(size, size) an elliptical Gaussian (axis ratio q along x) of total flux ``flux``, centred on (x, y)."""
    centre = (size - 1) / 2
    rows, columns = np.mgrid[:size, :size].astype(np.float64)
    r2 = ((columns - (centre if x is None else x)) / q) ** 2 + (rows - (centre if y is None else y)) ** 2
    image = np.exp(-r2 / (2 * sigma**2))
    return flux * image / image.sum()


def test_an_exact_output_scores_no_error_and_everything_recovered():
    truth = np.stack([gaussian(32, 2.0, q=0.7)[None], gaussian(32, 3.0, flux=50.0)[None]])
    scores = deblending_scores(truth, truth.copy(), bands=["r"])
    assert scores["flux_mape"] == 0 and scores["flux_mdape"] == 0 and scores["flux_bias"] == 0
    assert scores["recovered_fraction"] == 1.0 and scores["ssim"] == pytest.approx(1.0)
    assert scores["shape_e_rms"] == pytest.approx(0.0, abs=1e-9) and scores["size_mape"] == pytest.approx(0.0)
    assert scores["shape_failures"] == 0 and scores["n_sources"] == 2 and scores["flux_mape_per_band"] == {"r": 0.0}


def test_scaled_outputs_give_their_flux_errors_and_leave_shapes_and_sizes_alone():
    truth = np.stack([gaussian(32, 2.0)[None]] * 4)
    factors = np.array([1.05, 0.8, 1.3, 0.99])  # errors +5 %, -20 %, +30 %, -1 %
    scores = deblending_scores(truth, truth * factors[:, None, None, None])
    assert scores["flux_mape"] == pytest.approx(100 * np.mean([0.05, 0.2, 0.3, 0.01]))
    assert scores["flux_mdape"] == pytest.approx(100 * np.median([0.05, 0.2, 0.3, 0.01]))
    assert scores["flux_bias"] == pytest.approx(100 * np.median([0.05, -0.2, 0.3, -0.01]))
    assert RECOVERED_WITHIN == 0.10 and scores["recovered_fraction"] == 0.5
    assert scores["size_mape"] == pytest.approx(0.0, abs=1e-6) and scores["shape_e_rms"] == pytest.approx(0.0, abs=1e-6)


def test_a_wider_output_of_the_same_flux_is_a_size_error_of_its_width_ratio():
    truth, output = gaussian(48, 2.0)[None, None], gaussian(48, 2.2)[None, None]
    scores = deblending_scores(truth, output)
    assert scores["flux_mape"] == pytest.approx(0.0, abs=1e-9)
    assert scores["size_mape"] == pytest.approx(10.0, rel=1e-3)  # adaptive moments of a Gaussian: its σ


def test_flux_errors_per_band_then_summed_and_nan_where_the_truth_has_no_flux():
    truth = np.stack([gaussian(16, 1.5, flux=100.0), gaussian(16, 1.5, flux=300.0)])[None]
    output = truth * np.array([1.2, 1.0])[None, :, None, None]
    errors = relative_flux_errors(truth, output)
    np.testing.assert_allclose(errors, [[0.2, 0.0, 20.0 / 400.0]])
    assert np.isnan(relative_flux_errors(np.zeros((1, 1, 8, 8)), np.ones((1, 1, 8, 8)))).all()
    assert deblending_scores(truth, output, bands=["g", "r"])["flux_mape_per_band"] == {"g": pytest.approx(20.0),
                                                                                       "r": 0.0}


def test_stamps_of_different_shapes_are_refused_naming_both():
    with pytest.raises(DeepfieldError, match=r"deblended stamps of shape \(1, 1, 8, 8\) and truth of shape"):
        deblending_scores(np.zeros((1, 1, 16, 16)), np.zeros((1, 1, 8, 8)))
