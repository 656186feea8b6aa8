"""The photoz section: training on magnitudes resampled within their errors, the PDF's point estimate."""
import json

import numpy as np
import pytest
import torch

from deepfield.data.memmap import loader
from deepfield.errors import DeepfieldError
from deepfield.tasks.config import load_config
from deepfield.tasks.photoz import PhotoZ
from deepfield.tasks.prepared_info import PhotozInfo
from deepfield.tasks.run import train
from helpers import LSST

PDF = "sparse_categorical_crossentropy"


def config(path, out="unused", loss=None, options=None, photoz=None, epochs=2, preset="mlp"):
    return load_config(None, document={
        "task": "photoz", "out": str(out), "seed": 3,
        "data": {"path": str(path), **LSST},
        "model": {"preset": preset, "options": options or {}},
        "training": {"epochs": epochs, "batch_size": 32, "loss": loss},
        "photoz": photoz or {},
    })


def epoch_batches(dataset, epoch, seed=7):
    """Every (x, y) batch of one epoch as fit draws them, concatenated, with the epoch's sample order."""
    batches = loader(dataset, batch_size=64, shuffle=False, seed=seed, workers=0, epoch=epoch)
    xs, ys = zip(*batches)
    return torch.cat(xs).numpy(), torch.cat(ys).numpy()


def test_training_batches_see_magnitudes_redrawn_within_their_errors(photoz_catalogue):
    task = PhotoZ()
    plain = task.prepare(config(photoz_catalogue))
    prepared = task.prepare(config(photoz_catalogue, photoz={"resample_errors": True}))
    for part in ("train", "validation", "test"):  # what is stored, validation and test included, is untouched
        assert np.array_equal(prepared.x[part], plain.x[part])
    assert prepared.info.resample_errors is True
    dataset, y = task.training_data(prepared)
    assert y is None and len(dataset) == len(plain.x["train"])

    x0, y0 = epoch_batches(dataset, 0)
    again, _ = epoch_batches(dataset, 0)
    x1, _ = epoch_batches(dataset, 1)
    assert np.array_equal(x0, again)  # seeded by (seed, epoch, batch)
    assert not np.allclose(x0, x1)  # drawn afresh every epoch
    assert np.array_equal(y0, plain.y["train"])  # the targets never move

    names, std = prepared.info.feature_names, np.asarray(prepared.info.standardize.std)
    bands = prepared.info.bands
    shift = (x0 - plain.x["train"]) * std  # in magnitudes
    dm = shift[:, [names.index(b) for b in bands]]
    errors = prepared.magnitude_errors["train"]
    measured = errors > 0
    assert (~measured).any(), "the simulated catalogue should hold non-detections"
    assert np.all(dm[~measured] == 0.0)  # a non-detection keeps its fill
    pulls = dm[measured] / errors[measured]
    assert pulls.std() == pytest.approx(1.0, abs=0.05) and abs(pulls.mean()) < 0.05
    for a, b in zip(bands[:-1], bands[1:]):  # each colour moves with its two magnitudes
        dc = shift[:, names.index(f"{a}-{b}")]
        assert dc == pytest.approx(dm[:, bands.index(a)] - dm[:, bands.index(b)], abs=1e-4)


def test_without_resampling_training_data_are_the_arrays(photoz_catalogue):
    prepared = PhotoZ().prepare(config(photoz_catalogue))
    x, y = PhotoZ().training_data(prepared)
    assert x is prepared.x["train"] and y is prepared.y["train"]


def test_point_estimate_of_a_known_pdf():
    task = PhotoZ()
    pdf = np.array([[0.2, 0.2, 0.6], [0.5, 0.1, 0.4]])
    info = PhotozInfo(mode="pdf", target="z", bands=["r"], reference_band="r", inputs="catalogue",
                      bin_edges=[0.0, 1.0, 2.0, 3.0])
    # peak: in both rows the window 2.5 ± 0.525, [1.975, 3.025], holds the most (0.605, 0.4025 against
    # 0.225 in 0.5 ± 0.225): the median between its CDF values (0.395 or 0.5975, and 1)
    expected = {"mode": [2.5, 0.5], "mean": [1.9, 1.4], "median": [2.0 + 0.1 / 0.6, 1.0],
                "peak": [2.0 + (0.6975 - 0.4) / 0.6, 2.0 + (0.79875 - 0.6) / 0.4],
                # peak_mean: the window holds 0.025 of the middle bin ([1.975, 2], centre 1.9875) and the last
                "peak_mean": [(0.2 * 0.025 * 1.9875 + 0.6 * 2.5) / 0.605, (0.1 * 0.025 * 1.9875 + 0.4 * 2.5) / 0.4025]}
    for choice, z in expected.items():
        chosen = info.model_copy(update={"point_estimate": choice})
        assert task.point_estimates(pdf, chosen) == pytest.approx(z)
        columns = task.describe(pdf, chosen)
        assert columns["z_phot"] == pytest.approx(z)
        assert columns[f"z_{choice}"] == pytest.approx(z)
    assert task.point_estimates(pdf, info) == pytest.approx(expected["median"])  # runs from before the option


def test_run_records_its_point_estimate_and_resampling(photoz_catalogue, tmp_path):
    run_config = config(photoz_catalogue, tmp_path / "run", PDF, {"n_outputs": 20},
                        photoz={"point_estimate": "mode", "resample_errors": True})
    out = train(run_config, verbose=0)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["point_estimate"] == "PDF mode" and metrics["resample_errors"] is True
    info = json.loads((out / "prepared.json").read_text())
    assert info["point_estimate"] == "mode"


def test_smoothing_kernel_spreads_each_bin_by_a_gaussian_growing_with_1_plus_z():
    from deepfield.tasks.photoz import smoothing_kernel

    edges = np.linspace(0.0, 3.0, 301)  # bins of 0.01
    mid = 0.5 * (edges[1:] + edges[:-1])
    kernel = smoothing_kernel(edges, 0.02)
    assert kernel.shape == (300, 300) and kernel.sum(axis=1) == pytest.approx(np.ones(300), abs=1e-5)
    for j in (100, 200):  # z = 1.005 and 2.005, far from the ends
        mean = kernel[j] @ mid
        assert mean == pytest.approx(mid[j], abs=1e-4)
        assert np.sqrt(kernel[j] @ (mid - mean) ** 2) == pytest.approx(0.02 * (1 + mid[j]), rel=0.02)
    assert np.array_equal(smoothing_kernel(edges, 0.0), np.eye(300, dtype=np.float32))


def test_label_smoothing_trains_the_pdf_on_smoothed_bins(photoz_catalogue, tmp_path):
    from deepfield.tasks.photoz import smoothing_kernel
    from deepfield.training.losses import SmoothedSparseCrossentropy

    task = PhotoZ()
    smoothed = config(photoz_catalogue, tmp_path / "run", PDF, {"n_outputs": 20}, photoz={"label_smoothing": 0.05})
    prepared = task.prepare(smoothed)
    loss = task.loss(smoothed, prepared)
    assert isinstance(loss, SmoothedSparseCrossentropy)
    assert loss.kernel.numpy() == pytest.approx(smoothing_kernel(np.asarray(prepared.info.bin_edges), 0.05))
    plain = config(photoz_catalogue, loss=PDF, options={"n_outputs": 20})
    assert task.loss(plain, task.prepare(plain)) == PDF
    out = train(smoothed, verbose=0)
    assert json.loads((out / "prepared.json").read_text())["label_smoothing"] == 0.05
    assert json.loads((out / "metrics.json").read_text())["label_smoothing"] == 0.05
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 3 and all(np.isfinite(float(v)) for v in history[-1].split(",")[1:])


@pytest.mark.parametrize("photoz, loss, preset, message", [
    ({"point_estimate": "top"}, PDF, "mlp", r"photoz\.point_estimate: .*'median', 'mean', 'mode', 'peak' or 'peak_mean'"),
    ({"resample": True}, PDF, "mlp", r"photoz\.resample: unknown key"),
    ({"point_estimate": "mode"}, "mae", "mlp", r"photoz\.point_estimate 'mode' applies to a redshift PDF"),
    ({"resample_errors": True}, None, "resnet", r"photoz\.resample_errors needs catalogue features"),
    ({"label_smoothing": 0.02}, "mae", "mlp", r"photoz\.label_smoothing 0\.02 applies to a redshift PDF"),
    ({"label_smoothing": -0.1}, PDF, "mlp", r"photoz\.label_smoothing: .*greater than or equal to 0"),
])
def test_photoz_options_are_checked(photoz_catalogue, photoz, loss, preset, message):
    with pytest.raises(DeepfieldError, match=message):
        PhotoZ().prepare(config(photoz_catalogue, loss=loss, preset=preset, photoz=photoz))


def test_the_example_config_is_valid():
    from pathlib import Path

    from deepfield.tasks.photoz import check_photoz_options, photoz_mode

    example = load_config(Path(__file__).parents[2] / "examples" / "photoz.yaml")
    mode = photoz_mode(example)
    check_photoz_options(example, mode)
    assert mode == "pdf" and example.photoz.point_estimate is not None
