"""Figures: each writes a readable PNG of the expected pixel size; the choices behind them, by hand."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from deepfield.analysis.classification import classification_metrics
from deepfield.analysis.photoz import binned_photoz_metrics, pit
from deepfield.errors import DeepfieldError
from deepfield.plots import (
    asinh_composite,
    load_history,
    overfitting_epoch,
    plot_confusion_matrix,
    plot_gallery,
    plot_learning_curves,
    plot_metrics_vs,
    plot_photoz_scatter,
    plot_pit,
    plot_precision_recall,
    plot_roc,
    select_examples,
)
from deepfield.plots.gallery import MAX_PANELS, TITLE_ROOM
from pngcheck import assert_png


RNG = np.random.default_rng(0)
EPOCHS = np.arange(20)
TRAIN = 1.0 / (1.0 + 0.4 * EPOCHS)  # always falling



def _classes(n: int = 300, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    y = RNG.integers(0, k, n)
    logits = RNG.normal(size=(n, k))
    logits[np.arange(n), y] += 1.5
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


# --- over-fitting detection -------------------------------------------------------------------

def test_overfitting_epoch_is_the_validation_minimum_when_validation_then_rises() -> None:
    val = 0.5 + 0.01 * (EPOCHS - 8) ** 2  # minimum at epoch 8, rising after
    assert overfitting_epoch({"loss": TRAIN, "val_loss": val}) == 8


def test_no_overfitting_while_validation_keeps_falling() -> None:
    assert overfitting_epoch({"loss": TRAIN, "val_loss": TRAIN + 0.1}) is None


def test_no_overfitting_when_both_losses_rise() -> None:
    rising = 0.5 + 0.01 * (EPOCHS - 8) ** 2
    assert overfitting_epoch({"loss": rising - 0.1, "val_loss": rising}) is None


def test_a_minimum_too_close_to_the_end_is_not_yet_overfitting() -> None:
    val = 0.5 + 0.01 * (EPOCHS - 18) ** 2  # one epoch after the minimum
    assert overfitting_epoch({"loss": TRAIN, "val_loss": val}) is None
    assert overfitting_epoch({"loss": TRAIN, "val_loss": val}, patience=1) == 18


def test_min_delta_ignores_a_small_rise() -> None:
    val = np.r_[TRAIN[:10] + 0.1, np.full(10, TRAIN[9] + 0.1 + 1e-4)]
    history = {"loss": TRAIN, "val_loss": val}
    assert overfitting_epoch(history) == 9
    assert overfitting_epoch(history, min_delta=1e-3) is None


def test_history_from_csv_object_and_mapping(tmp_path: Path) -> None:
    csv = tmp_path / "history.csv"
    csv.write_text("epoch,loss,val_loss\n" + "".join(
        f"{e + 5},{t},{'NA' if e == 0 else 0.5 + 0.01 * (e - 8) ** 2}\n" for e, t in zip(EPOCHS, TRAIN)))
    h = load_history(csv)
    assert h["epoch"][0] == 5 and math.isnan(h["val_loss"][0])
    assert overfitting_epoch(csv) == 13  # epoch numbers as written

    class History:
        epoch = list(range(3))
        history = {"loss": [3.0, 2.0, 1.0]}

    np.testing.assert_array_equal(load_history(History())["epoch"], [0, 1, 2])
    np.testing.assert_array_equal(load_history({"loss": [3.0, 2.0]})["epoch"], [0, 1])


@pytest.mark.parametrize("history, match", [
    ({"loss": [1.0, 2.0], "val_loss": [1.0]}, "one value per epoch"),
    ({}, "one value per epoch"),
    (3, "expected a mapping"),
])
def test_bad_histories_are_errors(history: object, match: str) -> None:
    with pytest.raises(DeepfieldError, match=match):
        load_history(history)


def test_missing_history_file_and_key_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DeepfieldError, match="history file not found"):
        load_history(tmp_path / "nope.csv")
    with pytest.raises(DeepfieldError, match="no 'val_loss'"):
        overfitting_epoch({"loss": TRAIN})


# --- gallery selection ------------------------------------------------------------------------

def test_select_examples_picks_the_most_confident_right_and_wrong() -> None:
    y = np.array([0, 1, 2, 0, 1, 2, 0])
    p = np.array([
        [0.90, 0.05, 0.05],  # right 0.90
        [0.60, 0.30, 0.10],  # wrong 0.60
        [0.10, 0.20, 0.70],  # right 0.70
        [0.05, 0.95, 0.00],  # wrong 0.95
        [0.20, 0.50, 0.30],  # right 0.50
        [0.80, 0.10, 0.10],  # wrong 0.80
        [0.99, 0.00, 0.01],  # right 0.99
    ])
    right, wrong = select_examples(y, p, k=2)
    assert right.tolist() == [6, 0] and wrong.tolist() == [3, 5]
    right, wrong = select_examples(y, p, k=10)
    assert right.tolist() == [6, 0, 2, 4] and wrong.tolist() == [3, 5, 1]


def test_select_examples_with_binary_scores() -> None:
    right, wrong = select_examples([1, 0, 1, 0], [0.9, 0.3, 0.4, 0.95], k=1)
    assert right.tolist() == [0] and wrong.tolist() == [3]


def test_asinh_composite_ranges_keeps_colour_and_masks_nan() -> None:
    stamp = np.zeros((3, 16, 16), np.float32)
    stamp[:, 8, 8] = [1.0, 2.0, 4.0]  # g, r, i: a red source
    stamp[:, 4, 4] = [10.0, 20.0, 40.0]
    rgb = asinh_composite(stamp, percentile=100)
    assert rgb.shape == (16, 16, 3) and rgb.min() >= 0 and rgb.max() <= 1
    np.testing.assert_allclose(rgb[8, 8] / rgb[8, 8, 0], [1.0, 0.5, 0.25])  # red = i, blue = g
    grey = asinh_composite(stamp, channels=1, percentile=100)
    assert grey.shape == (16, 16) and grey.max() == pytest.approx(1.0)
    assert 0 < grey[8, 8] < grey[4, 4]
    stamp[0, 0, :] = np.nan  # a masked row
    assert np.all(np.isfinite(asinh_composite(stamp)))
    with pytest.raises(DeepfieldError, match="pass channels="):
        asinh_composite(np.zeros((2, 4, 4)))


# --- every figure writes a PNG of the expected size -------------------------------------------

def test_learning_curves_png(tmp_path: Path) -> None:
    val = 0.5 + 0.01 * (EPOCHS - 8) ** 2
    history = {"loss": TRAIN, "val_loss": val, "accuracy": 1 - TRAIN / 2, "val_accuracy": 1 - val / 2}
    assert_png(plot_learning_curves(history, tmp_path / "a" / "learning.png"), (10.0, 4.0))
    assert_png(plot_learning_curves({"loss": TRAIN}, tmp_path / "b.png", figsize=(4.0, 3.0)), (4.0, 3.0))


def test_confusion_matrix_png(tmp_path: Path) -> None:
    y, p = _classes()
    m = classification_metrics(y, p, class_names=["elliptical", "spiral", "merger"])
    path = plot_confusion_matrix(m.confusion, tmp_path / "cm.png", m.class_names, figsize=(6.0, 5.0))
    assert_png(path, (6.0, 5.0))
    with pytest.raises(DeepfieldError, match=r"\(K, K\)"):
        plot_confusion_matrix(np.ones((2, 3)), tmp_path / "bad.png")


def test_roc_and_precision_recall_pngs(tmp_path: Path) -> None:
    y, p = _classes()
    assert_png(plot_roc(y, p, tmp_path / "roc.png"), (5.5, 5.0))
    good = (RNG.random(300) < 0.8).astype(int)
    score = np.clip(RNG.normal(0.3 + 0.4 * good, 0.2), 0, 1)
    assert_png(plot_roc(good, score, tmp_path / "roc_binary.png"), (5.5, 5.0))
    assert_png(plot_precision_recall(good, score, tmp_path / "pr.png", recall=0.99, positive_name="good"),
                (5.5, 5.0))


def test_photoz_pngs(tmp_path: Path) -> None:
    z_true = RNG.uniform(0.05, 2.0, 3000)
    z_phot = z_true + 0.03 * (1 + z_true) * RNG.standard_normal(3000)
    assert_png(plot_photoz_scatter(z_true, z_phot, tmp_path / "hex.png"), (5.5, 5.0))
    assert_png(plot_photoz_scatter(z_true[:300], z_phot[:300], tmp_path / "dots.png", figsize=(4.0, 4.0)),
                (4.0, 4.0))
    grid = np.linspace(0, 3, 61)
    pdf = np.exp(-0.5 * ((grid[None, :-1] + 0.025 - z_phot[:, None]) / 0.1) ** 2)
    assert_png(plot_pit(pit(pdf, z_true, edges=grid), tmp_path / "pit.png"), (5.5, 4.0))
    mag = RNG.uniform(18, 25, 3000)
    b = binned_photoz_metrics(z_true, z_phot, by=mag, edges=np.arange(18, 25.5, 1.0))
    path = plot_metrics_vs(b.edges, {"σ_NMAD": b.sigma_nmad, "bias": b.bias_median}, tmp_path / "vs.png",
                           xlabel="r magnitude [mag]", counts=b.count)
    assert_png(path, (6.0, 3 * 2.2 + 0.4))
    with pytest.raises(DeepfieldError, match="kind must be"):
        plot_photoz_scatter(z_true, z_phot, tmp_path / "x.png", kind="contour")
    with pytest.raises(DeepfieldError, match="expected \\(7,\\)"):
        plot_metrics_vs(b.edges, {"σ_NMAD": b.sigma_nmad[:3]}, tmp_path / "x.png", xlabel="r [mag]")


def test_gallery_pngs(tmp_path: Path) -> None:
    y, p = _classes(n=40)
    yy, xx = np.mgrid[:24, :24]
    source = np.exp(-np.hypot(xx - 12, yy - 12) / 3.0)
    images = source * np.array([1.0, 2.0, 3.0])[None, :, None, None] * RNG.uniform(5, 50, (40, 1, 1, 1))
    images = images + RNG.normal(0, 0.5, images.shape)
    path = plot_gallery(images, y, p, tmp_path / "gallery.png", ["E", "S", "M"], k=4, panel_size=1.5)
    assert_png(path, (4 * 1.5, 2 * TITLE_ROOM * 1.5))
    path = plot_gallery(images[:5, :1], y[:5], p[:5], tmp_path / "grey.png", ncols=3, panel_size=2.0)
    assert_png(path, (3 * 2.0, 2 * TITLE_ROOM * 2.0))
    with pytest.raises(DeepfieldError, match="choose with k="):
        plot_gallery(np.zeros((MAX_PANELS + 1, 1, 4, 4)), np.zeros(MAX_PANELS + 1, int),
                     np.full(MAX_PANELS + 1, 0.1), tmp_path / "big.png")


def test_gallery_of_spectra_draws_curves_on_wide_panels(tmp_path: Path) -> None:
    y, p = _classes(n=40)
    spectra = 1.0 + RNG.normal(0, 0.1, (40, 2, 120))  # (N, C, L): two channels, e.g. flux and ivar
    path = plot_gallery(spectra, y, p, tmp_path / "spectra.png", ["E", "S", "M"], k=4, panel_size=1.5)
    assert_png(path, (4 * 2 * 1.5, 2 * TITLE_ROOM * 1.5))
    with pytest.raises(DeepfieldError, match=r"expected images \(N=40, C, H, W\) or spectra \(N, C, L\), "
                                              r"got shape \(40, 120\)"):
        plot_gallery(spectra[:, 0], y, p, tmp_path / "flat.png")
