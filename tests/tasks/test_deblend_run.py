"""Deblending end to end from examples/deblend.yaml on a tiny simulated set: metrics and the segmentation
deblender's row in metrics.json, predictions of each source alone in flux units, and bad inputs said in one line."""
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from astropy.table import Table

from deepfield.data.simulate.blends import read_blends, simulate_blends
from deepfield.errors import DeepfieldError
from deepfield.report.html import headline, write_report
from deepfield.tasks.config import load_config
from deepfield.tasks.pixel_scaling import from_network
from deepfield.tasks.pipeline import prepare, task_for
from deepfield.tasks.run import evaluate_run, predict_run, train

EXAMPLE = Path(__file__).parents[2] / "examples" / "deblend.yaml"
TINY = ["training.epochs=1", "training.batch_size=16", "model.options={depth: 2, filters: 4, normalization: null}"]
METRICS = {"flux_mape", "flux_mdape", "flux_bias", "flux_mape_per_band", "recovered_fraction", "recovered_within",
           "ssim", "shape_e_rms", "size_mape", "shape_failures", "n_sources", "unit"}


def blends(path, n, seed):
    """Two bright galaxies per 16×16 stamp, one band."""
    return simulate_blends(n, path, size=16, bands="r", seed=seed, min_sources=2, max_sources=2, star_fraction=0.0,
                           mag_limit=22.0, workers=1, progress=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("deblend")
    config = load_config(EXAMPLE, [f"data.path={blends(folder / 'blends.h5', 40, seed=1)}",
                                   f"out={folder / 'run'}", *TINY])
    return config, train(config, verbose=0, report=write_report), folder


def test_the_example_trains_a_unet_and_writes_the_metrics_and_the_segmentation_deblenders_row(trained):
    config, out, _ = trained
    assert config.model.preset == "unet"
    metrics = json.loads((out / "metrics.json").read_text())
    assert METRICS <= set(metrics) and metrics["task"] == "deblend" and metrics["unit"] == "nJy"
    assert metrics["n_sources"] == 12  # 15 % of 40 blends, two sources each
    rows = metrics["baselines"]
    assert [row["model"] for row in rows] == ["network (unet)", "blend (no deblending)",
                                              "segmentation deblender (photutils)"]
    assert rows[0]["flux_mape"] == metrics["flux_mape"] and rows[2]["parameter"].startswith("contrast ")
    assert rows[1]["flux_bias"] > 0  # the blend holds the companion's light too
    prepared = json.loads((out / "prepared.json").read_text())
    assert prepared["bands"] == ["r"] and prepared["targets"] == "sources" and prepared["marker_sigma"] == 1.5
    assert prepared["stretch"] == "asinh"
    assert headline(metrics).startswith("test flux error (MAPE, %) ")
    assert (out / "figures" / "deblend_gallery.png").is_file()
    assert "segmentation deblender (photutils)" in (out / "report.html").read_text()


def test_predict_writes_each_source_of_each_blend_in_flux_units(trained, tmp_path):
    _, out, _ = trained
    new = blends(tmp_path / "new.h5", 3, seed=9)
    table = Table.read(predict_run(out, new, tmp_path / "deblended.h5"), path="predictions")
    assert list(table["id"]) == ["0:0", "0:1", "1:0", "1:1", "2:0", "2:1"]
    assert table["deblended"].shape == (6, 1, 16, 16) and table["deblended"].dtype == np.float32
    flux = table["deblended"].sum(axis=(1, 2, 3))
    truth = read_blends(new).sources.sum(axis=(2, 3, 4)).ravel()
    assert np.all(np.abs(flux) < 10 * truth.max())  # nJy, the file's unit, not sky-noise units
    metrics = evaluate_run(out, new)  # the same file, labelled: scored source by source
    assert metrics["n_sources"] == 6 and 0.0 <= metrics["recovered_fraction"] <= 1.0 and metrics["flux_mape"] >= 0


def test_the_split_keeps_the_sources_of_a_blend_in_one_part_and_the_stretch_is_undone_exactly(trained):
    config, _, folder = trained
    prepared = prepare(task_for(config), config)
    blend, source = np.array([i.split(":") for i in prepared.ids["test"]], dtype=np.int64).T
    truth = read_blends(folder / "blends.h5").sources[blend, source]
    np.testing.assert_allclose(from_network(prepared.y["test"], prepared.info), truth, rtol=1e-5, atol=1e-3)
    blends_of = {part: {i.split(":")[0] for i in ids} for part, ids in prepared.ids.items()}
    assert not (blends_of["train"] & blends_of["test"]) and not (blends_of["train"] & blends_of["validation"])
    assert prepared.x["train"].shape[1:] == (2, 16, 16) and prepared.y["train"].shape[1:] == (1, 16, 16)


def test_a_file_without_the_isolated_sources_is_one_line_naming_the_array(trained, tmp_path):
    config, _, folder = trained
    bare = tmp_path / "bare.h5"
    with h5py.File(folder / "blends.h5", "r") as source, h5py.File(bare, "w") as h5:
        for name in ("images", "truth"):
            source.copy(name, h5)
    with pytest.raises(DeepfieldError, match=r"bare.h5: no array 'sources' \(each source alone, \(N, S, C, H, W\); "
                                             r"data.target names it\); it holds 'images'"):
        prepare(task_for(config), config.model_copy(update={"data": config.data.model_copy(update={"path": bare})}))
    with pytest.raises(DeepfieldError, match=r"no array 'isolated'"):
        task_for(config).prepare(load_config(EXAMPLE, [f"data.path={folder / 'blends.h5'}", "data.target=isolated"]))
    del_truth = tmp_path / "no_truth.h5"
    with h5py.File(folder / "blends.h5", "r") as source, h5py.File(del_truth, "w") as h5:
        for name in ("images", "sources"):
            source.copy(name, h5)
    with pytest.raises(DeepfieldError, match=r"no_truth.h5: no array 'truth/x' \(the sources' centres"):
        task_for(config).prepare(load_config(EXAMPLE, [f"data.path={del_truth}"]))


@pytest.mark.parametrize("override, message", [
    (["training.augment=[dihedral, {name: gaussian_noise, sigma: 0.1}]"],
     "training.augment: entry 2: gaussian_noise changes pixel values, not only their places"),
    (["model.options={heteroscedastic: true}"],
     "model.options.heteroscedastic: set uncertainty.heteroscedastic: true instead"),
    (["uncertainty.heteroscedastic=true", "training.loss=mae"],
     "training.loss: mae with uncertainty.heteroscedastic: the head's log-variances train only with gaussian_nll"),
    (["data.deblend=all", "training.loss=flux_mae"],
     "training.loss: flux_mae takes one source per output; with data.deblend: all use mae"),
    (["uncertainty.mc_samples=5"],
     r"uncertainty.mc_samples: model.options.dropout is 0, so every draw would be the same; set a dropout rate"),
])
def test_options_that_would_break_a_deblending_pair_are_refused(trained, override, message):
    config, _, folder = trained
    with pytest.raises(DeepfieldError, match=message):
        task_for(config).prepare(load_config(EXAMPLE, [f"data.path={folder / 'blends.h5'}", *override]))


def test_flux_mae_is_told_the_runs_stretch_and_normalisation_so_its_flux_is_the_sources_in_njy(trained):
    config, _, folder = trained
    config = load_config(EXAMPLE, [f"data.path={folder / 'blends.h5'}", "training.loss=flux_mae"])
    task = task_for(config)
    prepared = prepare(task, config)
    loss = task.loss(config, prepared)
    assert loss.get_config()["softening"] == 3.0 and loss.get_config()["scale"] == prepared.info.normalize.sigma
    truth = from_network(prepared.y["test"], prepared.info).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(loss.flux(torch.from_numpy(prepared.y["test"])).numpy(), truth, rtol=1e-4)
