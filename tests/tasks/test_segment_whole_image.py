"""A segment run (its boundary pixels weighted 3) with its seed level chosen on its validation part, and whole FITS
images segmented by tiles (``deepfield predict RUN field.fits --out seg.fits``): as one pass, the header kept."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.io import fits

from deepfield.analysis.segmentation import SEED_LEVELS, instances_from_probabilities
from deepfield.data.simulate.blends import simulate_blends
from deepfield.errors import DeepfieldError
from deepfield.tasks.config import load_config
from deepfield.tasks.run import load_run, predict_run, train
from deepfield.tasks.segment_whole import Segmenting

EXAMPLE = Path(__file__).parents[2] / "examples" / "segment.yaml"
TINY = ["training.epochs=1", "training.batch_size=8", "training.early_stopping=null", "baselines.run=false",
        "training.class_weight={boundary: 3}",
        "model.options={depth: 2, filters: 4, normalization: null}"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("segwhole")
    blends = simulate_blends(30, folder / "blends.h5", size=16, bands="r", seed=5, max_sources=3, mag_limit=22.0,
                             workers=1, progress=False)
    return train(load_config(EXAMPLE, [f"data.path={blends}", f"out={folder / 'run'}", *TINY]), verbose=0)


def test_the_seed_level_is_chosen_on_the_validation_part_and_read_back(run):
    calibration = json.loads((run / "calibration.json").read_text())
    level = calibration["seed_level"]
    assert level in SEED_LEVELS and set(calibration["detection_f1"]) == {str(v) for v in SEED_LEVELS}
    assert calibration["detection_f1"][str(level)] == max(calibration["detection_f1"].values())
    assert json.loads((run / "metrics.json").read_text())["seed_level"] == level
    assert load_run(run).info.seed_level == level


def field(path, shape, bands=1):
    rng = np.random.default_rng(3)
    image = rng.normal(scale=18.0, size=(bands, *shape)).astype(np.float32)
    for y, x in [(40, 30), (44, 37), (150, 90), (270, 20)]:  # a touching pair and two alone
        yy, xx = np.mgrid[:shape[0], :shape[1]]
        image += 900.0 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 8.0)
    header = fits.Header({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 150.0, "CRVAL2": 2.0,
                          "CRPIX1": 50.0, "CRPIX2": 150.0, "CDELT1": -5.5e-5, "CDELT2": 5.5e-5, "BUNIT": "nJy"})
    fits.PrimaryHDU(image[0] if bands == 1 else image, header).writeto(path)
    return image[0]


def test_a_whole_image_by_tiles_has_the_classes_of_one_pass_and_keeps_the_header(run, tmp_path):
    image = field(tmp_path / "field.fits", (300, 120))  # two tiles of 256 rows (depth 2)
    written = predict_run(run, tmp_path / "field.fits", tmp_path / "seg.fits")
    with fits.open(written) as hdul:
        assert [hdu.name for hdu in hdul] == ["PRIMARY", "CLASSES", "SOURCES", "PROBABILITY"]
        classes, sources, probability = (hdul[name].data for name in ("CLASSES", "SOURCES", "PROBABILITY"))
        assert all(hdul[k].header["CRVAL1"] == 150.0 and hdul[k].header["BUNIT"] == "nJy" for k in range(4))
        assert [hdul["PROBABILITY"].header[f"CLASS{k}"] for k in range(3)] == ["background", "source", "boundary"]
    loaded = load_run(run)
    with torch.no_grad():
        whole = Segmenting(loaded.models, loaded.info).eval()(torch.from_numpy(image)[None, None])[0].numpy()
    assert classes.shape == (300, 120) and probability.shape == (3, 300, 120)
    np.testing.assert_allclose(probability, whole, atol=1e-5)
    inner = (slice(8, -8), slice(8, -8))
    np.testing.assert_array_equal(classes[inner], np.argmax(whole, axis=0)[inner])
    np.testing.assert_array_equal(classes, np.argmax(probability, axis=0))
    np.testing.assert_array_equal(sources, instances_from_probabilities(probability[None], 2,
                                                                         loaded.info.seed_level)[0])


def test_an_image_of_other_bands_is_one_line(run, tmp_path):
    field(tmp_path / "cube.fits", (40, 40), bands=2)
    with pytest.raises(DeepfieldError, match=r"the image has 2 band\(s\); the run segments 1 \(r\)"):
        predict_run(run, tmp_path / "cube.fits", tmp_path / "seg.fits")
    with pytest.raises(DeepfieldError, match="written as FITS"):
        predict_run(run, tmp_path / "cube.fits", tmp_path / "seg.h5")
    assert not (tmp_path / "seg.fits").exists()
