"""Uncertainty figures: each writes a readable PNG of the expected pixel size."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import special

from deepfield.analysis.calibration import (
    apply_temperature,
    fit_temperature,
    gaussian_coverage_curve,
    mutual_information,
    predictive_entropy,
)
from deepfield.errors import DeepfieldError
from deepfield.plots import (
    plot_coverage,
    plot_error_vs_uncertainty,
    plot_reliability_diagram,
    plot_uncertainty_flags,
)
from pngcheck import assert_png


RNG = np.random.default_rng(0)



def _over_confident(n: int = 2000, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from ``softmax(z / 2)`` and the over-confident probabilities ``softmax(z)``."""
    z = RNG.normal(0.0, 3.0, (n, k))
    truth = special.softmax(z / 2.0, axis=1)
    y = np.minimum((np.cumsum(truth, axis=1) < RNG.random((n, 1))).sum(axis=1), k - 1)
    return y, special.softmax(z, axis=1)


def test_reliability_diagram_pngs(tmp_path: Path) -> None:
    y, p = _over_confident()
    calibrated = apply_temperature(p, fit_temperature(y, p))
    assert_png(plot_reliability_diagram(y, p, tmp_path / "a" / "reliability.png", calibrated=calibrated), (5.5, 6.5))
    binary = RNG.random(500)
    labels = (RNG.random(500) < binary).astype(int)
    assert_png(plot_reliability_diagram(labels, binary[:, None], tmp_path / "binary.png", n_bins=10,
                                         figsize=(4.0, 5.0)), (4.0, 5.0))
    with pytest.raises(DeepfieldError, match="probabilities: each row must sum to 1"):
        plot_reliability_diagram(y, p * 2 / 3, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_error_vs_uncertainty_png(tmp_path: Path) -> None:
    sigma = RNG.uniform(0.02, 0.2, 3000)
    error = RNG.normal(0.0, 1.3 * sigma)
    path = plot_error_vs_uncertainty(error, sigma, tmp_path / "error.png", xlabel="predicted σ_z",
                                     ylabel="RMS of z_phot − z_true")
    assert_png(path, (5.5, 5.0))


def test_uncertainty_flags_pngs(tmp_path: Path) -> None:
    y, p = _over_confident()
    samples = np.clip(p[None] + RNG.normal(0.0, 0.05, (8, *p.shape)), 1e-6, None)
    samples /= samples.sum(axis=2, keepdims=True)
    path = plot_uncertainty_flags(y, samples.mean(axis=0), mutual_information(samples), tmp_path / "flags.png",
                                  uncertainty_name="mutual information [nats]")
    assert_png(path, (10.0, 4.5))
    all_right = np.argmax(p, axis=1)  # no mistakes: no ROC curve, one histogram
    assert_png(plot_uncertainty_flags(all_right, p, predictive_entropy(p), tmp_path / "right.png",
                                       figsize=(8.0, 4.0)), (8.0, 4.0))


def test_coverage_pngs(tmp_path: Path) -> None:
    mean, sigma = RNG.normal(size=1000), RNG.uniform(0.5, 1.5, 1000)
    y = RNG.normal(mean, sigma)
    curve = gaussian_coverage_curve(y, mean, sigma)
    assert_png(plot_coverage(curve, tmp_path / "one.png"), (5.5, 5.0))
    curves = {"σ": curve, "σ / 2": gaussian_coverage_curve(y, mean, sigma / 2)}
    assert_png(plot_coverage(curves, tmp_path / "two.png", figsize=(4.5, 4.5)), (4.5, 4.5))
    with pytest.raises(DeepfieldError, match="plot_coverage: curves is empty"):
        plot_coverage({}, tmp_path / "none.png")
