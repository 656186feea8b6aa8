"""The generative judging figures: PNGs of the size asked for, read back; mismatched inputs refused in one line."""
import numpy as np
import pytest

from deepfield.analysis.generative_judging import wasserstein_score
from deepfield.errors import DeepfieldError
from deepfield.plots import plot_memorisation, plot_power_spectra, plot_statistic_distributions
from pngcheck import assert_png


def test_the_three_figures_are_written(tmp_path):
    rng = np.random.default_rng(0)
    heldout = {"gini": rng.normal(0.5, 0.05, 50), "m20": rng.normal(-1.6, 0.3, 50), "flux_r": rng.lognormal(8, 1, 50)}
    samples = {name: values + 0.1 * values.std() for name, values in heldout.items()}
    samples["gini"][:3] = np.nan
    score = wasserstein_score(samples, heldout)
    path = plot_statistic_distributions(samples, heldout, score, tmp_path / "stats.png", columns=2)
    assert_png(path, (2.3 * 2, 1.7 * 2 + 0.5))
    k = np.linspace(0.04, 0.46, 6)
    path = plot_power_spectra(k, rng.normal(-3, 0.2, (30, 6)), rng.normal(-3, 0.2, (40, 6)), tmp_path / "power.png")
    assert_png(path, (4.2, 3.0))
    path = plot_memorisation(rng.uniform(0.1, 1, 30), rng.uniform(0.2, 1, 40), 0.21, tmp_path / "memo.png", True)
    assert_png(path, (4.2, 3.0))


def test_mismatched_inputs_are_refused(tmp_path):
    with pytest.raises(DeepfieldError, match="must name the same statistics"):
        plot_statistic_distributions({"a": [1.0]}, {"b": [1.0]}, {"mean_w1": 0.0, "statistics": {}}, tmp_path / "x.png")
    with pytest.raises(DeepfieldError, match=r"expected \(N, 6\) log powers"):
        plot_power_spectra(np.arange(6), np.zeros((3, 5)), np.zeros((3, 6)), tmp_path / "x.png")
    with pytest.raises(DeepfieldError, match="needs finite sample and held-out distances"):
        plot_memorisation([np.nan], [1.0], 0.5, tmp_path / "x.png")
