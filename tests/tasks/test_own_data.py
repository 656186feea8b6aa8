"""Your own survey data end to end: a FITS folder + a label table of class names trains from a
config; predictions carry ids, the cutouts' WCS centres and the columns asked for (CSV, FITS,
HDF5 alike, FITS without warnings); a file laid out differently predicts the same."""
import json
import shutil
import warnings

import h5py
import numpy as np
import pytest
from astropy.table import Table
from astropy.wcs import WCS
from astropy.io import fits

from deepfield.errors import DeepfieldError
from deepfield.tasks.config import load_config
from deepfield.tasks.run import evaluate_run, features_run, predict_run, train

TINY = {"preset": "resnet", "options": {"filters": [4], "blocks": 1}}


def cutout_folder(folder, n=40, size=16, seed=0):
    """``n`` cutout cubes (g, r, i) in the primary HDU with a TAN WCS; class 'spiral' stamps are bright.

    Returns the label table (objid, class, mag_r)."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    names = np.where(np.arange(n) % 2 == 0, "spiral", "elliptical")
    for k in range(n):
        wcs = WCS(naxis=2)
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        wcs.wcs.crval = [150.0 + k / 100, 2.0]
        wcs.wcs.crpix = [(size + 1) / 2, (size + 1) / 2]
        wcs.wcs.cdelt = [-0.262 / 3600, 0.262 / 3600]
        stamp = rng.normal(size=(3, size, size)) + (3.0 if names[k] == "spiral" else 0.0)
        fits.PrimaryHDU(stamp.astype(np.float32), header=wcs.to_header()).writeto(folder / f"{7000 + k}.fits")
    return Table({"objid": 7000 + np.arange(n), "class": names, "mag_r": np.round(rng.uniform(18, 22, n), 2)})


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A run trained from a FITS folder + CSV label table of class names, as a config says."""
    root = tmp_path_factory.mktemp("own")
    table = cutout_folder(root / "cutouts")
    table.write(root / "labels.csv")
    config = load_config(None, document={
        "task": "morphology", "out": str(root / "run"), "seed": 0,
        "data": {"path": str(root / "cutouts"), "bands": "g,r,i", "hdus": 0,
                 "labels": {"table": str(root / "labels.csv"), "id": "objid", "column": "class"}},
        "model": TINY, "training": {"epochs": 1, "batch_size": 16},
    })
    return train(config, verbose=0), root, table


def test_a_fits_folder_trains_with_a_label_table_of_class_names(folder_run):
    run, root, _ = folder_run
    info = json.loads((run / "prepared.json").read_text())
    assert info["classes"] == ["elliptical", "spiral"] and info["bands"] == ["g", "r", "i"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["per_class"]) == {"elliptical", "spiral"}
    evaluated = evaluate_run(run, root / "cutouts")  # the run's own table labels the same folder
    assert 0.0 <= evaluated["accuracy"] <= 1.0


@pytest.mark.parametrize("suffix", [".csv", ".fits", ".h5"])
def test_predictions_carry_id_ra_dec_and_kept_columns(folder_run, suffix, tmp_path):
    run, root, table = folder_run
    out = tmp_path / f"predictions{suffix}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FITS output without astropy warnings
        predict_run(run, root / "cutouts", out, reading={"labels": {"table": str(root / "labels.csv")}},
                    keep=["mag_r", "objid"])
    written = Table.read(out, format="ascii.csv") if suffix == ".csv" else Table.read(out)
    assert written.colnames[:5] == ["id", "ra", "dec", "mag_r", "objid"]
    assert [str(v) for v in written["id"]] == [str(v) for v in table["objid"]]  # ids sort as text: 7000..7039
    np.testing.assert_allclose(written["ra"], 150.0 + np.arange(40) / 100, atol=1e-9)
    np.testing.assert_allclose(written["dec"], 2.0, atol=1e-9)
    np.testing.assert_allclose(written["mag_r"], table["mag_r"])
    assert set(str(v) for v in written["predicted"]) <= {"spiral", "elliptical"}  # names, not 0/1
    assert {"p_elliptical", "p_spiral"} <= set(written.colnames)
    if suffix == ".fits":
        assert Table.read(out).meta["temperature"] > 0  # a long meta key, kept as a HIERARCH card


def test_keep_of_an_unknown_column_names_the_available_ones(folder_run, tmp_path):
    run, root, _ = folder_run
    with pytest.raises(DeepfieldError, match=r"--keep: .*cutouts has no column 'mag_r'; its columns are ra, dec"):
        predict_run(run, root / "cutouts", tmp_path / "p.csv", keep=["mag_r"])
    table = features_run(run, root / "cutouts", tmp_path / "f.csv", keep=[])
    assert Table.read(table, format="ascii.csv").colnames[:4] == ["id", "ra", "dec", "f0"]


def test_an_unknown_class_name_in_a_new_label_table_is_named(folder_run, tmp_path):
    run, root, table = folder_run
    table = table.copy()
    table["class"][3] = "merger"
    table.write(tmp_path / "new.csv")
    with pytest.raises(DeepfieldError, match=r"7003\.fits: label 'merger' in .*new\.csv column 'class' is not "
                                             r"one of the classes elliptical, spiral"):
        evaluate_run(run, root / "cutouts", reading={"labels": {"table": str(tmp_path / "new.csv")}})


def test_a_folder_without_a_label_table_says_how_to_give_one(tmp_path):
    cutout_folder(tmp_path / "cutouts", n=4)
    config = load_config(None, document={"task": "morphology", "out": str(tmp_path / "run"),
                                         "data": {"path": str(tmp_path / "cutouts"), "bands": "g,r,i", "hdus": 0,
                                                  "labels": "labels.csv"}})
    with pytest.raises(DeepfieldError, match=r"labels: \{table: labels.csv, id: ID_COLUMN, column: LABEL_COLUMN\}"):
        train(config, verbose=0)
    with pytest.raises(DeepfieldError, match=r"^config: data\.labels\.id: Field required$"):
        load_config(None, document={"task": "morphology", "data": {"path": "cutouts", "labels": {"table": "t.csv"}}})


def test_another_layout_of_the_same_stamps_predicts_the_same(folder_run, tmp_path):
    run, root, table = folder_run
    reference = Table.read(predict_run(run, root / "cutouts", tmp_path / "a.csv"), format="ascii.csv")
    images = np.stack([fits.getdata(root / "cutouts" / f"{k}.fits") for k in table["objid"]])  # (N, 3, H, W) g, r, i
    with h5py.File(tmp_path / "last.h5", "w") as f:  # Galaxy10 style: channels last, no names, bands i, r, g
        f["images"] = np.moveaxis(images[:, ::-1], 1, -1)
    with pytest.raises(DeepfieldError, match="say channels='first'"):
        predict_run(run, tmp_path / "last.h5", tmp_path / "b.csv")
    other = Table.read(predict_run(run, tmp_path / "last.h5", tmp_path / "b.csv",
                                   reading={"channels": "last", "bands": ["i", "r", "g"]}), format="ascii.csv")
    for name in ("p_elliptical", "p_spiral"):
        np.testing.assert_allclose(other[name], reference[name], rtol=1e-5, atol=1e-6)
    assert list(other["predicted"]) == list(reference["predicted"])
    np.save(tmp_path / "first.npy", images[:, [1, 0, 2]])  # r, g, i channels first
    npy = Table.read(predict_run(run, tmp_path / "first.npy", tmp_path / "c.csv",
                                 reading={"channels": "first", "bands": "r,g,i"}), format="ascii.csv")
    np.testing.assert_allclose(npy["p_spiral"], reference["p_spiral"], rtol=1e-5, atol=1e-6)
    with pytest.raises(DeepfieldError, match=r"the run needs bands g, r, i; this file's are r, g, z"):
        predict_run(run, tmp_path / "first.npy", tmp_path / "d.csv", reading={"channels": "first", "bands": "r,g,z"})
    with pytest.raises(DeepfieldError, match=r"reading options: channels"):
        predict_run(run, tmp_path / "first.npy", tmp_path / "d.csv", reading={"channels": "sideways"})


def test_catalogue_tasks_carry_their_id_column_positions_and_kept_columns(tmp_path):
    rng = np.random.default_rng(1)
    n = 200
    z = rng.uniform(0.1, 1.5, n)
    table = Table({"objid": [f"obj{k:04d}" for k in range(n)], "RA": rng.uniform(0, 360, n),
                   "Dec": rng.uniform(-30, 30, n), "field": [f"f{k % 3}" for k in range(n)], "redshift": z})
    for k, band in enumerate("griz"):
        table[f"mag_{band}"] = 22.0 + z * (k - 1.5) + rng.normal(0, 0.05, n)
        table[f"mag_err_{band}"] = np.full(n, 0.05)
    table.write(tmp_path / "cat.fits")
    config = load_config(None, document={
        "task": "photoz", "out": str(tmp_path / "run"), "data": {"path": str(tmp_path / "cat.fits"), "ids": "objid"},
        "model": {"preset": "mlp", "options": {"hidden": [8]}}, "training": {"epochs": 1}})
    run = train(config, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        written = Table.read(predict_run(run, tmp_path / "cat.fits", tmp_path / "z.fits", keep=["field"]))
    assert written.colnames[:4] == ["id", "ra", "dec", "field"]
    assert list(written["id"][:2]) == ["obj0000", "obj0001"] and list(written["field"][:2]) == ["f0", "f1"]
    np.testing.assert_allclose(written["ra"], table["RA"])

    table["y"] = 2.0 * table["mag_g"] - table["mag_r"]
    table.write(tmp_path / "rows.csv")
    config = load_config(None, document={
        "task": "tabular", "out": str(tmp_path / "tab"),
        "data": {"path": str(tmp_path / "rows.csv"), "target": "y", "features": ["mag_g", "mag_r"], "ids": "objid"},
        "model": {"preset": "mlp", "options": {"hidden": [8]}}, "training": {"epochs": 1}})
    tab = train(config, verbose=0)
    written = Table.read(predict_run(tab, tmp_path / "rows.csv", tmp_path / "y.h5", keep=["field", "redshift"]))
    assert written.colnames[:5] == ["id", "ra", "dec", "field", "redshift"]
    assert written["id"][5] == "obj0005" and written["field"][5] == "f2"
    np.testing.assert_allclose(written["redshift"], z)


def test_a_moved_run_finds_its_label_table_beside_it(folder_run, tmp_path):
    run, root, _ = folder_run
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)
    hidden = root.with_name(root.name + "-hidden")
    root.rename(hidden)  # the data and table where the run was trained are gone
    try:
        metrics = evaluate_run(moved / "run")  # its own test part: cutouts and labels.csv beside the run
        assert set(metrics["per_class"]) == {"elliptical", "spiral"}
    finally:
        hidden.rename(root)
