"""The recalibration record a run keeps: half-widths fitted on one part cover their levels on another."""
import json

import numpy as np
import pytest
from scipy import stats

from deepfield.analysis.image_uncertainty import CURVE_LEVELS, coverage_curve, interval_coverage
from deepfield.analysis.interval_recalibration import fit_interval_record, record_widths
from deepfield.errors import DeepfieldError

N = 50_000
TOLERANCE = 4 * np.sqrt(0.25 / N)
"""Four binomial standard deviations at worst (p = 0.5) for N entries: 0.009."""


def heavy_tailed(seed, n=N):
    """Two quantities of (truth, estimate, σ): pulls of Student's t (3 dof) and of a Laplace, σ 0.5 to 3."""
    rng = np.random.default_rng(seed)
    sigma = rng.uniform(0.5, 3.0, (2, n))
    estimate = rng.normal(size=(2, n)) * 10
    return {"pixel": (estimate[0] + sigma[0] * rng.standard_t(3, n), estimate[0], sigma[0]),
            "flux": (estimate[1] + sigma[1] * rng.laplace(size=n), estimate[1], sigma[1])}


def test_widths_fitted_on_validation_cover_every_level_on_test_where_the_raw_sigma_does_not():
    record = fit_interval_record(heavy_tailed(seed=1))
    assert json.loads(json.dumps(record)) == record  # JSON-ready as calibration.json holds it
    assert record["levels"] == list(CURVE_LEVELS) and record["n"] == {"pixel": N, "flux": N}
    # the t's 84 % quantile is z_68 of its central interval; the Laplace's |x| is exponential: z_L = −ln(1 − L)
    np.testing.assert_allclose(record_widths(record, "pixel", (0.68, 0.95)), stats.t.ppf([0.84, 0.975], 3), rtol=0.03)
    np.testing.assert_allclose(record_widths(record, "flux", (0.68, 0.95)), -np.log([0.32, 0.05]), rtol=0.03)
    test = heavy_tailed(seed=2)
    for name, (truth, estimate, sigma) in test.items():
        raw = interval_coverage(truth, estimate, sigma)
        assert abs(raw["68"] - 0.68) > 0.05 or abs(raw["95"] - 0.95) > 0.02  # the Gaussian intervals miss
        calibrated = interval_coverage(truth, estimate, sigma, record_widths(record, name, (0.68, 0.95)))
        assert calibrated["68"] == pytest.approx(0.68, abs=TOLERANCE)
        assert calibrated["95"] == pytest.approx(0.95, abs=TOLERANCE)
        curve = coverage_curve(truth, estimate, sigma, widths=record_widths(record, name, CURVE_LEVELS))
        np.testing.assert_allclose(curve.observed, curve.nominal, atol=TOLERANCE)


def test_a_quantity_without_finite_widths_is_left_out_and_unrecorded_levels_are_refused():
    truth, estimate = np.ones(100), np.zeros(100)
    sigma = np.where(np.arange(100) < 50, 0.0, 1.0)  # half the entries wrong with σ = 0: infinite pulls
    record = fit_interval_record({"pixel": (truth, estimate, sigma), "flux": (truth, estimate, np.ones(100))},
                                 levels=(0.68, 0.95))
    assert set(record["half_widths"]) == {"flux"} and record_widths(record, "pixel", (0.68,)) is None
    assert record_widths(record, "flux", (0.95, 0.68)).tolist() == [1.0, 1.0]
    with pytest.raises(DeepfieldError, match=r"calibration.json: no recalibrated interval at level\(s\) \[0.5\]"):
        record_widths(record, "flux", (0.5,))
