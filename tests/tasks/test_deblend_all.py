"""Deblending all sources at once (``data.deblend: all``): slots and their order, a network that returns each
source of two well-separated ones scored as such, and a tiny run of examples/deblend_all.yaml end to end."""
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from astropy.table import Table

from deepfield.data.blend_stamps import BlendStamps
from deepfield.data.simulate.blends import simulate_blends
from deepfield.errors import DeepfieldError
from deepfield.tasks.config import load_config
from deepfield.tasks.blend_examples import examples, placed, source_stamps
from deepfield.tasks.deblend import Deblend, network_inputs, network_targets
from deepfield.tasks.pixel_scaling import to_network
from deepfield.tasks.pipeline import prepare, task_for
from deepfield.tasks.prepared_info import DeblendInfo
from deepfield.tasks.run import evaluate_run, predict_run, train

EXAMPLE = Path(__file__).parents[2] / "examples" / "deblend_all.yaml"
SIDE = 16
RNG = np.random.default_rng(5)


def stamps_of(counts, bands=2, side=8):
    """Blends of ``counts`` sources each (3 slots in the file), every source a distinct constant stamp."""
    n, slots = len(counts), 3
    inside = np.arange(slots)[None, :] < np.asarray(counts)[:, None]
    sources = np.zeros((n, slots, bands, side, side), np.float32)
    sources[inside] = (1 + np.arange(inside.sum() * bands, dtype=np.float32)).reshape(-1, bands, 1, 1)
    x, y = (np.where(inside, RNG.uniform(1, side - 2, (n, slots)), np.nan) for _ in range(2))
    return BlendStamps(sources.sum(axis=1), sources, x, y, np.asarray(counts), ("g", "r")[:bands], "nJy")


def test_all_at_once_holds_each_blend_in_slots_ordered_as_the_file_and_scores_them_in_the_one_target_order():
    stamps = stamps_of([2, 1, 3])
    info = DeblendInfo(bands=["g", "r"], unit="nJy", inputs="images", targets="sources", marker_sigma=1.5,
                       stretch="asinh", slots=3)
    every, each = examples(stamps, slots=3), examples(stamps)
    assert list(every.ids) == ["0", "1", "2"] and list(each.ids) == ["0:0", "0:1", "1:0", "2:0", "2:1", "2:2"]
    assert every.source.tolist() == [[0, 1, -1], [0, -1, -1], [0, 1, 2]]
    inputs, targets = network_inputs(every, info), network_targets(every, info)
    assert inputs.shape == (3, 2 + 3, 8, 8) and targets.shape == (3, 3 * 2, 8, 8)
    assert not inputs[1, 3:].any() and inputs[1, 2].max() == pytest.approx(1.0, abs=0.2)  # empty slots unmarked
    np.testing.assert_array_equal(targets[2, 2:4], to_network(stamps.sources[2, 1:2], info)[0])  # slot 1's bands
    np.testing.assert_array_equal(targets[1, 2:], to_network(np.zeros((2, 2, 8, 8), np.float32), info).reshape(4, 8, 8))
    centres, slots = placed(every.x, every.y)
    assert slots.tolist() == [[0, 0], [0, 1], [1, 0], [2, 0], [2, 1], [2, 2]]
    np.testing.assert_array_equal(centres, np.column_stack([each.x[:, 0], each.y[:, 0]]))
    np.testing.assert_array_equal(source_stamps(targets, slots, 2), network_targets(each, info))
    assert Deblend().describe(targets, info)["deblended"].shape == (3, 3, 2, 8, 8)
    with pytest.raises(DeepfieldError, match="blends of up to 3 sources for a run of 2 source slots"):
        examples(stamps, slots=2)


def separated(path, n, seed=0):
    """Blends of two round Gaussian sources far apart (one on the left, one on the right), in the blends layout."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[:SIDE, :SIDE].astype(np.float64)
    x = np.column_stack([rng.uniform(3, 5, n), rng.uniform(SIDE - 5, SIDE - 3, n)])
    y = rng.uniform(4, SIDE - 5, (n, 2))
    flux, width = rng.uniform(500, 3000, (n, 2)), rng.uniform(1.0, 1.4, (n, 2))
    profile = np.exp(-((columns - x[..., None, None])**2 + (rows - y[..., None, None])**2)
                     / (2 * width[..., None, None]**2)) / (2 * np.pi * width[..., None, None]**2)
    sources = (flux[..., None, None] * profile)[:, :, None].astype(np.float32)
    with h5py.File(path, "w") as h5:
        h5["images"] = sources.sum(axis=1) + rng.normal(0, 1.0, (n, 1, SIDE, SIDE)).astype(np.float32)
        h5["images"].attrs.update(bands=["r"], unit="nJy")
        h5["sources"], h5["truth/x"], h5["truth/y"] = sources, x, y
    return path


class Cutter(torch.nn.Module):
    """A deblender for well-separated sources: slot k returns the blend (network units) where slot k's marker
    stands above exp(−r² / 2σ²) at ``radius`` pixels, nothing elsewhere; ``order`` permutes the slots."""

    def __init__(self, bands, slots, order=None, radius=5.0):
        super().__init__()
        self.bands, self.order, self.level = bands, order or list(range(slots)), np.exp(-radius**2 / (2 * 1.5**2))

    def forward(self, x):
        blend, markers = x[:, :self.bands], x[:, self.bands:]
        return torch.cat([blend * (markers[:, k:k + 1] > self.level) for k in self.order], dim=1)


def test_two_well_separated_sources_come_back_each_alone_and_a_swapped_network_is_scored_as_such(tmp_path):
    config = load_config(EXAMPLE, [f"data.path={separated(tmp_path / 'pairs.h5', 40)}", "data.normalize=none"])
    prepared = prepare(task_for(config), config)
    assert prepared.x["test"].shape == (6, 1 + 2, SIDE, SIDE) and prepared.y["test"].shape == (6, 2, SIDE, SIDE)
    assert list(prepared.ids["test"]) == sorted(prepared.ids["test"], key=int)
    with torch.no_grad():
        right, swapped = (Cutter(1, 2, order)(torch.from_numpy(prepared.x["test"])).numpy() for order in (None, [1, 0]))
    scores = Deblend().analyse(right, prepared, "test", tmp_path)
    assert scores["n_sources"] == 12 and scores["flux_mape"] < 2.0 and scores["recovered_fraction"] == 1.0
    assert scores["ssim"] > 0.95
    assert Deblend().analyse(swapped, prepared, "test", tmp_path)["ssim"] < 0.5  # each slot holds the other source


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("deblend_all")
    blends = simulate_blends(30, folder / "blends.h5", size=SIDE, bands="r", seed=3, min_sources=2, max_sources=3,
                             star_fraction=0.0, mag_limit=22.0, workers=1, progress=False)
    config = load_config(EXAMPLE, [f"data.path={blends}", f"out={folder / 'run'}", "training.epochs=1",
                                   "training.batch_size=8", "baselines.run=false",
                                   "model.options={depth: 2, filters: 4, normalization: null}"])
    return config, train(config, verbose=0), blends


def test_the_example_trains_one_network_for_every_slot_and_scores_each_source_as_the_one_target_form(trained):
    config, out, blends = trained
    each = config.model_copy(update={"data": config.data.model_copy(update={"deblend": "each"})})
    counted = prepare(task_for(each), each)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_sources"] == len(counted.ids["test"]) and np.isfinite(metrics["flux_mape"])
    assert json.loads((out / "prepared.json").read_text())["slots"] == 3
    prepared = prepare(task_for(config), config)
    assert prepared.x["train"].shape[1:] == (1 + 3, SIDE, SIDE) and prepared.y["train"].shape[1:] == (3, SIDE, SIDE)


def test_predict_writes_one_row_per_blend_with_a_stamp_per_slot_and_evaluate_scores_each_source(trained, tmp_path):
    _, out, blends = trained
    table = Table.read(predict_run(out, blends, tmp_path / "deblended.h5"), path="predictions")
    assert list(table["id"][:3]) == ["0", "1", "2"]
    assert table["deblended"].shape == (30, 3, 1, SIDE, SIDE) and table["deblended_flux"].shape == (30, 3, 1)
    with h5py.File(blends, "r") as h5:
        sources = int(h5["n_sources"][:].sum())
    assert evaluate_run(out, blends)["n_sources"] == sources
