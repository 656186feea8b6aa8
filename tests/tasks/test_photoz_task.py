"""The photoz task on small simulated catalogues: both modes end to end, cleaning, normalisation, stamps."""
import json

import h5py
import numpy as np
import pytest
from astropy.table import Table

from deepfield.analysis.photoz import photoz_metrics
from deepfield.data.catalogues import read_catalogue
from deepfield.data.photometry import Cleaning, load_photometry
from deepfield.data.simulate import simulate_photoz
from deepfield.errors import DeepfieldError
from deepfield.tasks.config import load_config
from deepfield.tasks.photoz import PhotoZ
from deepfield.tasks.run import train
from helpers import LSST

KEYS = {"n", "bias_median", "bias_mean", "sigma_nmad", "outlier_fraction_0.15", "outlier_fraction_0.05"}


def config(path, out=None, loss=None, options=None, epochs=25, **data):
    return load_config(None, document={
        "task": "photoz", "out": str(out or "unused"), "seed": 3,
        "data": {"path": str(path), **LSST, **data},
        "model": {"preset": "mlp", "options": options or {}},
        "training": {"epochs": epochs, "batch_size": 32, "learning_rate": 0.003, "loss": loss},
    })


def constant_sigma_nmad(run_config):
    """σ_NMAD on the test part of predicting the training part's median redshift for every object."""
    prepared = PhotoZ().prepare(run_config)
    z_test = prepared.z["test"]
    return photoz_metrics(z_test, np.full_like(z_test, np.median(prepared.z["train"]))).sigma_nmad


@pytest.mark.parametrize("loss, options, figures", [
    (None, {}, {"photoz_scatter.png", "sigma_nmad_vs_magnitude.png"}),
    ("sparse_categorical_crossentropy", {"n_outputs": 40}, {"photoz_scatter.png", "sigma_nmad_vs_magnitude.png",
                                                            "pit.png"}),
])
def test_run_writes_metrics_and_beats_a_constant_redshift(photoz_catalogue, tmp_path, loss, options, figures):
    run_config = config(photoz_catalogue, tmp_path / "run", loss, options)
    metrics = json.loads((train(run_config, verbose=0) / "metrics.json").read_text())
    expected = KEYS | ({"crps"} if loss else set())
    assert expected <= set(metrics)
    assert metrics["mode"] == ("pdf" if loss else "regression") and metrics["n"] == 90
    assert ("crps" in metrics) == bool(loss)
    assert {p.name for p in (tmp_path / "run" / "figures").iterdir()} >= figures
    assert ("pit.png" in {p.name for p in (tmp_path / "run" / "figures").iterdir()}) == bool(loss)
    assert metrics["sigma_nmad"] < 0.5 * constant_sigma_nmad(run_config)
    assert 0.0 <= metrics["outlier_fraction_0.15"] <= metrics["outlier_fraction_0.05"] <= 1.0


def test_pdf_labels_are_bins_over_the_training_redshifts(photoz_catalogue):
    prepared = PhotoZ().prepare(config(photoz_catalogue, loss="sparse_categorical_crossentropy",
                                       options={"n_outputs": 30}))
    edges = np.asarray(prepared.info.bin_edges)
    assert len(edges) == 31 and edges[0] == prepared.z["train"].min() and edges[-1] == prepared.z["train"].max()
    for part, labels in prepared.y.items():
        assert labels.dtype == np.int64 and labels.min() >= 0 and labels.max() <= 29
        inside = (prepared.z[part] > edges[0]) & (prepared.z[part] < edges[-1])
        assert np.all(edges[labels[inside]] <= prepared.z[part][inside])
        assert np.all(prepared.z[part][inside] < edges[labels[inside] + 1])


def unnormalised(prepared, part):
    stats = prepared.info.standardize
    return prepared.x[part] * np.asarray(stats.std) + np.asarray(stats.mean)


def test_sentinels_and_missing_values_are_masked_and_filled(photoz_catalogue, tmp_path):
    table = read_catalogue(photoz_catalogue)
    assert np.sum(table["mag_u_lsst"] == 99.0) > 0  # the simulation's non-detections
    table["mag_g_lsst"][:5] = -99.0
    table["mag_err_r_lsst"][5:10] = np.nan
    table["mag_z_lsst"][10:15] = -9999.0
    path = tmp_path / "holes.csv"
    table.write(path, format="ascii.csv")
    prepared = PhotoZ().prepare(config(path))
    for part in prepared.x:
        raw = unnormalised(prepared, part)
        assert np.all(np.isfinite(raw)) and np.abs(raw).max() < 40.0
    fills = prepared.info.fills
    names = prepared.info.feature_names
    for band, rows in (("g", range(5)), ("r", range(5, 10)), ("z", range(10, 15))):
        for part, ids in prepared.ids.items():
            hit = np.isin(ids, rows)
            assert np.allclose(unnormalised(prepared, part)[hit, names.index(band)], fills[band], atol=1e-4)
    assert sum(prepared.info.unmeasured_values.values()) >= 15 + np.sum(table["mag_u_lsst"] == 99.0)


def test_normalisation_and_fills_come_from_the_training_part_only(photoz_catalogue, tmp_path):
    shifted = read_catalogue(photoz_catalogue)
    for band in "ugrizy":
        detected = shifted[f"mag_{band}_lsst"] != 99.0
        shifted[f"mag_{band}_lsst"][detected] += 2.0  # a test file two magnitudes fainter
    test_file = tmp_path / "fainter.fits"
    shifted.write(test_file)
    prepared = PhotoZ().prepare(config(photoz_catalogue, test=str(test_file)))
    names, x = prepared.info.feature_names, prepared.x
    assert np.allclose(x["train"].mean(axis=0), 0.0, atol=1e-4) and np.allclose(x["train"].std(axis=0), 1.0, atol=1e-3)

    table = read_catalogue(photoz_catalogue)
    train_rows = table[prepared.ids["train"]]  # the simulation's ids are its row indices
    fills = {}
    for band in "ugrizy":
        measured = (train_rows[f"mag_{band}_lsst"] != 99.0) & (train_rows[f"mag_err_{band}_lsst"] != 99.0)
        fills[band] = np.percentile(np.asarray(train_rows[f"mag_{band}_lsst"])[measured], 99.0)
    assert prepared.info.fills == pytest.approx(fills)
    raw = load_photometry(train_rows, list("ugrizy"), **LSST, cleaning=Cleaning(limits=fills)).features()
    assert prepared.info.standardize.mean == pytest.approx(raw.mean(axis=0, dtype=np.float64), abs=1e-6)
    assert prepared.info.standardize.std == pytest.approx(raw.std(axis=0, dtype=np.float64), rel=1e-6)

    std = np.asarray(prepared.info.standardize.std)
    i = names.index("i")
    assert x["test"][:, i].mean() - x["validation"][:, i].mean() == pytest.approx(2.0 / std[i], rel=0.3)
    assert len(prepared.z["test"]) == 600  # every row of the held-out file


def test_extra_features_and_errors(photoz_catalogue, tmp_path):
    prepared = PhotoZ().prepare(config(photoz_catalogue, features=["colours", "errors", "mag_i_true"],
                                       bands=["g", "r", "i"]))
    assert prepared.info.feature_names == ["g-r", "r-i", "g_err", "r_err", "i_err", "mag_i_true"]
    assert prepared.input_shape == (6,)
    table = read_catalogue(photoz_catalogue)
    table["mag_i_true"][7] = 99.0
    path = tmp_path / "bad.parquet"
    table.write(path)
    with pytest.raises(DeepfieldError, match=r"column 'mag_i_true' row 7 is 99"):
        PhotoZ().prepare(config(path, features=["magnitudes", "mag_i_true"]))


def test_new_file_is_prepared_like_the_training_data(photoz_catalogue):
    run_config = config(photoz_catalogue, loss="sparse_categorical_crossentropy", options={"n_outputs": 20})
    task = PhotoZ()
    prepared = task.prepare(run_config)
    new = task.read_new(run_config, prepared.info, photoz_catalogue, labelled=True)
    test_rows = prepared.ids["test"]
    assert np.allclose(new.x[test_rows], prepared.x["test"], atol=1e-5)
    assert np.array_equal(new.y[test_rows], prepared.y["test"])
    unlabelled = task.read_new(run_config, prepared.info, photoz_catalogue, labelled=False)
    assert unlabelled.y is None and len(unlabelled.x) == 600
    pdf = np.full((3, 20), 1.0 / 20)
    columns = task.describe(pdf, prepared.info)
    edges = prepared.info.bin_edges
    assert set(columns) == {"z_phot", "z_median", "z_mean", "z_mode", "z_peak", "z_peak_mean", "z_std"}
    assert columns["z_phot"] == pytest.approx(np.full(3, (edges[0] + edges[-1]) / 2))


def test_stamps_feed_an_image_network(tmp_path):
    path = simulate_photoz(60, tmp_path / "stamps.h5", seed=5, stamps=True, size=16, workers=1, progress=False)
    run_config = load_config(None, document={
        "task": "photoz", "out": str(tmp_path / "run"), "data": {"path": str(path), **LSST},
        "model": {"preset": "resnet", "options": {"filters": [4], "blocks": 1}},
        "training": {"epochs": 1, "batch_size": 16},
    })
    prepared = PhotoZ().prepare(run_config)
    assert prepared.input_shape == (6, 16, 16) and prepared.info.inputs == "stamps"
    with h5py.File(path) as f:
        raw = f["images"][np.sort(prepared.ids["train"])]
    assert prepared.info.normalize.median == pytest.approx(np.median(raw, axis=(0, 2, 3)), rel=1e-4, abs=1e-3)
    metrics = json.loads((train(run_config, verbose=0) / "metrics.json").read_text())
    assert KEYS <= set(metrics) and metrics["mode"] == "regression"


def test_stamp_network_without_stamps_is_a_clear_error(photoz_catalogue):
    run_config = load_config(None, document={"task": "photoz", "data": {"path": str(photoz_catalogue), **LSST},
                                              "model": {"preset": "resnet"}})
    with pytest.raises(DeepfieldError, match="no 'images' image dataset"):
        PhotoZ().prepare(run_config)


@pytest.mark.parametrize("loss, preset, options, message", [
    ("binary_crossentropy", "mlp", {}, "photoz learns with mse, mae or huber"),
    ("mse", "pasquet", {}, "outputs a redshift PDF"),
    (None, "mlp", {"n_outputs": 5}, "a regression has one output"),
])
def test_mode_errors_name_the_key(photoz_catalogue, loss, preset, options, message):
    run_config = load_config(None, document={"task": "photoz", "data": {"path": str(photoz_catalogue), **LSST},
                                              "model": {"preset": preset, "options": options},
                                              "training": {"loss": loss}})
    with pytest.raises(DeepfieldError, match=message):
        PhotoZ().prepare(run_config)


def test_rows_without_a_redshift_are_left_out(tmp_path, photoz_catalogue):
    table = Table(read_catalogue(photoz_catalogue), masked=True)
    table["redshift"][:3] = np.nan
    table["redshift"][3] = -99.0
    table["redshift"].mask[4] = True
    path = tmp_path / "partial.fits"
    table.write(path)
    prepared = PhotoZ().prepare(config(path))
    ids = np.concatenate(list(prepared.ids.values()))
    assert len(ids) == 595 and not np.isin(np.arange(5), ids).any()


def test_evaluate_a_pdf_run_on_another_catalogue(tmp_path):
    from deepfield.data.simulate import simulate_photoz
    from deepfield.tasks.config import load_config
    from deepfield.tasks.run import evaluate_run, train

    data = simulate_photoz(400, tmp_path / "cat.h5", seed=5, workers=1, progress=False)
    other = simulate_photoz(200, tmp_path / "other.h5", seed=6, workers=1, progress=False)
    config = load_config(None, document={
        "task": "photoz", "out": str(tmp_path / "run"),
        "data": {"path": str(data), **LSST},
        "model": {"preset": "mlp", "options": {"n_outputs": 20}},
        "training": {"epochs": 2, "loss": "sparse_categorical_crossentropy"},
    })
    run = train(config, verbose=0)
    metrics = evaluate_run(run, other)
    assert metrics["n"] == 200 and "crps" in metrics and 0.0 <= metrics["sigma_nmad"]
    assert (run / "evaluations" / "other" / "figures" / "pit.png").is_file()


def test_augmentation_on_a_catalogue_run_is_a_clear_error(photoz_catalogue, tmp_path):
    run_config = load_config(None, document={
        "task": "photoz", "out": str(tmp_path / "run"), "data": {"path": str(photoz_catalogue), **LSST},
        "model": {"preset": "mlp"}, "training": {"epochs": 1, "augment": [{"name": "gaussian_noise", "sigma": 0.1}]},
    })
    with pytest.raises(DeepfieldError, match=r"^training\.augment: the samples have shape \(\d+,\), rows of features: "
                                             r"augmentation applies to images \(C, H, W\) and spectra \(C, L\)$"):
        train(run_config, verbose=0)
    assert not (tmp_path / "run" / "weights.safetensors").exists()
