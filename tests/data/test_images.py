"""Image readers: each file layout, the label join, bad input, and skip mode with its report."""
from __future__ import annotations

import csv

import h5py
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import MaskedColumn, Table

from deepfield.data.images import (
    CatalogueLabels,
    FitsCube,
    FitsFolder,
    Hdf5Images,
    NumpyImages,
    Skipped,
    write_skip_report,
)
from deepfield.errors import DeepfieldError
from helpers import stamps

RNG = np.random.default_rng(0)


def write_extname_file(path, stamp: np.ndarray, names=("G", "R", "I")) -> None:
    """One object: an empty primary HDU then one image HDU per band, named by EXTNAME."""
    hdus = [fits.PrimaryHDU()] + [fits.ImageHDU(plane, name=name) for plane, name in zip(stamp, names)]
    fits.HDUList(hdus).writeto(path)


def extname_folder(tmp_path, n: int = 3):
    """A folder of ``n`` files ``<id>.fits`` (ids 100, 101, ...) with HDUs G, R, I; and the stamps."""
    data = stamps(n, bands=3, rng=RNG)
    for k, stamp in enumerate(data):
        write_extname_file(tmp_path / f"{100 + k}.fits", stamp)
    return tmp_path, data


# -- layouts --------------------------------------------------------------------------------------

def test_fits_folder_reads_bands_from_hdus_named_by_extname_in_the_named_order(tmp_path):
    folder, data = extname_folder(tmp_path)
    (folder / "notes.txt").write_text("ignored: does not match the pattern")
    reader = FitsFolder(folder, ["i", "g"])
    assert len(reader) == 3 and reader.bands == ("i", "g") and reader.shape == (2, 8, 8)
    assert list(reader.ids) == ["100", "101", "102"] and reader.labels is None
    stamp = reader.read(1)
    assert stamp.dtype == np.float32
    np.testing.assert_array_equal(stamp, data[1][[2, 0]])


def test_fits_folder_reads_hdus_listed_by_index(tmp_path):
    folder, data = extname_folder(tmp_path)
    reader = FitsFolder(folder, ["r", "g"], hdus=[2, 1])
    np.testing.assert_array_equal(reader.read(0), data[0][[1, 0]])


def test_fits_folder_reads_a_cube_in_one_hdu_and_a_single_band_image(tmp_path):
    data = stamps(2, bands=3, rng=RNG)
    for k, stamp in enumerate(data):
        fits.PrimaryHDU(stamp).writeto(tmp_path / f"obj{k}.fits")
        fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(stamp[0], name="SCI")]).writeto(tmp_path / f"one{k}.fits")
    cube = FitsFolder(tmp_path, ["g", "r", "i"], pattern="obj{id}.fits", hdus=0)
    np.testing.assert_array_equal(cube.load()[0], data)
    single = FitsFolder(tmp_path, ["g"], pattern="one{id}.fits", hdus="SCI")
    np.testing.assert_array_equal(single.load()[0], data[:, :1])


def test_fits_folder_reads_one_file_per_band_matched_by_pattern(tmp_path):
    data = stamps(2, bands=2, rng=RNG)
    for oid, stamp in zip(["a_1", "b_2"], data):
        for band, plane in zip("gr", stamp):
            fits.PrimaryHDU(plane).writeto(tmp_path / f"{oid}_{band}.fits")
        fits.PrimaryHDU(stamp[0] * 0).writeto(tmp_path / f"{oid}_z.fits")  # a band nobody asked for
    reader = FitsFolder(tmp_path, ["r", "g"], pattern="{id}_{band}.fits")
    assert list(reader.ids) == ["a_1", "b_2"]
    np.testing.assert_array_equal(reader.load()[0], data[:, ::-1])


def test_fits_cube_file_of_one_band_and_of_several(tmp_path):
    data = stamps(4, bands=3, rng=RNG)
    fits.PrimaryHDU(data).writeto(tmp_path / "cube4.fits")
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data[:, 0], name="R")]).writeto(tmp_path / "cube3.fits")
    several = FitsCube(tmp_path / "cube4.fits", ["g", "r", "i"], labels=np.arange(4) % 2)
    np.testing.assert_array_equal(several.read(3), data[3])
    assert several.labels.dtype == np.int64
    one = FitsCube(tmp_path / "cube3.fits", ["r"], hdu="R")
    np.testing.assert_array_equal(one.load()[0], data[:, :1])


def test_galaxy10_uint8_channels_last_becomes_float32_channels_first(tmp_path):
    images = RNG.integers(0, 256, (5, 6, 6, 3), dtype=np.uint8)
    with h5py.File(tmp_path / "galaxy10.h5", "w") as f:
        f["images"], f["ans"] = images, np.arange(5, dtype=np.uint8)
    reader = Hdf5Images(tmp_path / "galaxy10.h5", ["g", "r", "z"], channels="last", labels="ans")
    loaded, labels = reader.load()
    assert loaded.shape == (5, 3, 6, 6) and loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, images.transpose(0, 3, 1, 2).astype(np.float32))
    assert labels.dtype == np.int64 and list(labels) == [0, 1, 2, 3, 4]
    with pytest.raises(DeepfieldError, match=r"galaxy10\.h5:images has shape \(5, 6, 6, 3\): say channels="):
        Hdf5Images(tmp_path / "galaxy10.h5", ["g", "r", "z"], labels="ans")
    with pytest.raises(DeepfieldError, match="holds 3 band.*but 2 were named: g, r"):
        Hdf5Images(tmp_path / "galaxy10.h5", ["g", "r"], channels="last")


def test_deepfield_simulator_layout_names_its_bands_classes_and_truth(tmp_path):
    images = stamps(4, bands=3, rng=RNG)
    with h5py.File(tmp_path / "sky.h5", "w") as f:
        f["images"] = images
        f["images"].attrs["bands"] = ["g", "r", "i"]
        f["labels"] = np.array([0, 1, 1, 0], dtype=np.int64)
        f["labels"].attrs["classes"] = ["spheroid", "disk"]
        f["truth/redshift"] = np.linspace(0.1, 0.4, 4)
        f["truth/mass"] = np.arange(4.0)
    reader = Hdf5Images(tmp_path / "sky.h5", labels="labels")
    assert reader.bands == ("g", "r", "i") and reader.classes == ("spheroid", "disk")
    assert list(reader.labels) == [0, 1, 1, 0]
    picked = Hdf5Images(tmp_path / "sky.h5", ["i", "g"], labels=["truth/redshift", "truth/mass"])
    np.testing.assert_array_equal(picked.read(2), images[2][[2, 0]])
    assert picked.labels.shape == (4, 2) and picked.labels.dtype == np.float32
    with pytest.raises(DeepfieldError, match=r"sky\.h5:images has no band 'u'; its bands are g, r, i"):
        Hdf5Images(tmp_path / "sky.h5", ["u"])
    with pytest.raises(DeepfieldError, match=r"sky\.h5 has no array 'answers'; it has: images, labels, truth"):
        Hdf5Images(tmp_path / "sky.h5", labels="answers")


def test_numpy_npy_is_memory_mapped_and_npz_names_its_arrays(tmp_path):
    images = stamps(3, bands=2, rng=RNG)
    np.save(tmp_path / "first.npy", images)
    np.save(tmp_path / "last.npy", images.transpose(0, 2, 3, 1))
    np.savez(tmp_path / "set.npz", x=images, y=np.array([0.5, 1.5, 2.5]))
    first = NumpyImages(tmp_path / "first.npy", ["g", "r"], channels="first", labels=[1, 0, 1])
    last = NumpyImages(tmp_path / "last.npy", ["g", "r"], channels="last")
    archive = NumpyImages(tmp_path / "set.npz", ["g", "r"], channels="first", key="x", labels="y")
    for reader in (first, last, archive):
        np.testing.assert_array_equal(reader.load()[0], images)
    assert archive.labels.dtype == np.float32 and list(first.labels) == [1, 0, 1]
    with pytest.raises(DeepfieldError, match=r"set\.npz has no array 'images'; it has: x, y"):
        NumpyImages(tmp_path / "set.npz", ["g", "r"], channels="first")
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(DeepfieldError, match=r"junk\.npy: not a readable NumPy \.npy file"):
        NumpyImages(tmp_path / "junk.npy", ["g"])


def test_label_counts_name_integer_labels_by_class_and_write_other_values_as_they_are(tmp_path):
    images = stamps(4, bands=1)
    np.save(tmp_path / "set.npy", images)
    plain = NumpyImages(tmp_path / "set.npy", ["g"], channels="first", labels=[1, 0, 1, 1])
    assert plain.label_counts() == [("0", 1), ("1", 3)]
    plain.classes = ("elliptical", "spiral")
    assert plain.label_counts() == [("elliptical", 1), ("spiral", 3)]
    assert NumpyImages(tmp_path / "set.npy", ["g"], channels="first", labels=[0.5, 2.5, 0.5, 0.5]).label_counts() \
        == [("0.5", 3), ("2.5", 1)]
    assert NumpyImages(tmp_path / "set.npy", ["g"], channels="first").label_counts() == []


# -- labels from a catalogue ------------------------------------------------------------------------

def test_catalogue_labels_are_joined_by_id_whatever_the_row_order(tmp_path):
    folder, _ = extname_folder(tmp_path)
    table = Table({"objid": [102, 100, 101], "morph": [2, 0, 1], "z": [0.3, 0.1, 0.2]})
    reader = FitsFolder(folder, ["g"], labels=CatalogueLabels(table, "objid", "morph"))
    assert list(reader.labels) == [0, 1, 2] and reader.labels.dtype == np.int64
    both = FitsFolder(folder, ["g"], labels=CatalogueLabels(dict(table), "objid", ["z", "morph"]))
    np.testing.assert_allclose(both.labels, [[0.1, 0], [0.2, 1], [0.3, 2]])
    assert both.labels.dtype == np.float32


def test_ids_missing_on_either_side_are_listed_or_skipped(tmp_path):
    folder, _ = extname_folder(tmp_path)
    table = Table({"objid": [100, 101, 555], "morph": [0, 1, 1]})
    with pytest.raises(DeepfieldError) as info:
        FitsFolder(folder, ["g"], labels=CatalogueLabels(table, "objid", "morph"))
    message = str(info.value)
    assert "102.fits (id '102')" in message and "row 2 (id '555')" in message and "\n" not in message
    reader = FitsFolder(folder, ["g"], labels=CatalogueLabels(table, "objid", "morph"), on_error="skip")
    assert list(reader.ids) == ["100", "101"] and list(reader.labels) == [0, 1]
    assert [s.where for s in reader.skipped] == [str(folder / "102.fits"), "catalogue row 2"]


def test_an_absent_label_column_and_a_missing_label_are_named(tmp_path):
    folder, _ = extname_folder(tmp_path)
    table = Table({"objid": [100, 101, 102], "z": MaskedColumn([0.1, 0.2, 0.3], mask=[False, True, False])})
    with pytest.raises(DeepfieldError, match="catalogue has no column 'class'; its columns are objid, z"):
        FitsFolder(folder, ["g"], labels=CatalogueLabels(table, "objid", "class"))
    with pytest.raises(DeepfieldError, match=r"101\.fits: its label is missing"):
        FitsFolder(folder, ["g"], labels=CatalogueLabels(table, "objid", "z"))
    reader = FitsFolder(folder, ["g"], labels=CatalogueLabels(table, "objid", "z"), on_error="skip")
    assert list(reader.ids) == ["100", "102"]


# -- bad input ----------------------------------------------------------------------------------------

def test_truncated_and_non_fits_files_are_named(tmp_path):
    folder, _ = extname_folder(tmp_path, n=1)
    whole = (folder / "100.fits").read_bytes()
    (folder / "200.fits").write_bytes(whole[:-2880])  # a whole block short: only the data check sees it
    (folder / "300.fits").write_bytes(whole[:5000])
    (folder / "400.fits").write_bytes(b"not FITS".ljust(2880, b"."))  # one block of junk
    reader = FitsFolder(folder, ["g", "r", "i"])
    with pytest.raises(DeepfieldError, match=r"200\.fits: is truncated: HDU 'I' needs"):
        reader.read(1)
    with pytest.raises(DeepfieldError, match=r"300\.fits: file is 5000 bytes, not a whole number of 2880-byte"):
        reader.read(2)
    with pytest.raises(DeepfieldError, match=r"400\.fits: not a readable FITS file"):
        reader.read(3)


def test_a_missing_hdu_or_band_file_is_named_with_the_band(tmp_path):
    folder, _ = extname_folder(tmp_path, n=1)
    with pytest.raises(DeepfieldError, match=r"100\.fits: has no HDU 'z' for band 'z'; its HDUs are 0:PRIMARY, 1:G"):
        FitsFolder(folder, ["g", "z"])
    with pytest.raises(DeepfieldError, match=r"100\.fits: has no HDU 7 for band 'r'"):
        FitsFolder(folder, ["g", "r"], hdus=[1, 7])
    fits.PrimaryHDU(np.ones((4, 4))).writeto(folder / "x_g.fits")
    with pytest.raises(DeepfieldError, match=r"x_\{band\}\.fits: no file for band 'r' \(expected .*x_r\.fits\)"):
        FitsFolder(folder, ["g", "r"], pattern="{id}_{band}.fits")


def test_stamps_of_different_shapes_and_all_nan_stamps_are_named(tmp_path):
    folder, data = extname_folder(tmp_path, n=2)
    write_extname_file(folder / "300.fits", stamps(1, bands=3, size=6, rng=RNG)[0])
    nan = data[0].copy()
    nan[1] = np.nan
    write_extname_file(folder / "400.fits", nan)
    reader = FitsFolder(folder, ["g", "r", "i"])
    with pytest.raises(DeepfieldError, match=r"300\.fits: stamp has shape \(3, 6, 6\) but the others have \(3, 8, 8\)"):
        reader.load()
    with pytest.raises(DeepfieldError, match=r"400\.fits: band 'r' has no finite pixel"):
        reader.read(3)
    with h5py.File(tmp_path / "nan.h5", "w") as f:
        f["images"] = np.stack([data[0], nan])
    with pytest.raises(DeepfieldError, match=r"nan\.h5:images\[1\]: band 'r' has no finite pixel"):
        Hdf5Images(tmp_path / "nan.h5", ["g", "r", "i"], channels="first").load()


def test_bad_files_and_arguments_at_construction(tmp_path):
    (tmp_path / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(DeepfieldError, match=r"broken\.h5: not a readable HDF5 file"):
        Hdf5Images(tmp_path / "broken.h5", ["g"])
    with pytest.raises(DeepfieldError, match=r"absent\.h5: no such file"):
        Hdf5Images(tmp_path / "absent.h5", ["g"])
    with pytest.raises(DeepfieldError, match="no file matches the pattern '{id}.fits'"):
        FitsFolder(tmp_path, ["g"])
    with pytest.raises(DeepfieldError, match="bands must be a list of names"):
        FitsFolder(tmp_path, "gri")
    with pytest.raises(DeepfieldError, match="pattern '{band}.fits' must be a file name with {id} once"):
        FitsFolder(tmp_path, ["g"], pattern="{band}.fits")
    with pytest.raises(DeepfieldError, match="on_error must be 'raise' or 'skip'"):
        FitsFolder(tmp_path, ["g"], on_error="ignore")


# -- skip mode ----------------------------------------------------------------------------------------

def test_skip_mode_leaves_out_bad_objects_and_reports_them(tmp_path):
    folder, data = extname_folder(tmp_path, n=3)
    (folder / "200.fits").write_bytes((folder / "100.fits").read_bytes()[:5000])
    (folder / "300.fits").write_text("hello")
    write_extname_file(folder / "400.fits", stamps(1, bands=3, size=6, rng=RNG)[0])
    write_extname_file(folder / "500.fits", np.full((3, 8, 8), np.nan, np.float32))
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data[0][0], name="G")]).writeto(folder / "600.fits")

    reader = FitsFolder(folder, ["g", "r", "i"], on_error="skip")
    assert list(reader.ids) == ["100", "101", "102"]
    np.testing.assert_array_equal(reader.load()[0], data)
    reasons = {s.where.rsplit("/", 1)[1]: s.reason for s in reader.skipped}
    assert set(reasons) == {"200.fits", "300.fits", "400.fits", "500.fits", "600.fits"}
    assert "not a whole number" in reasons["300.fits"] and "most have (3, 8, 8)" in reasons["400.fits"]
    assert "no finite pixel" in reasons["500.fits"] and "no HDU 'r'" in reasons["600.fits"]

    report = write_skip_report(reader.skipped, tmp_path / "out" / "predictions")
    assert report == tmp_path / "out" / "predictions.skipped.csv"
    lines = report.read_text().splitlines()
    assert lines[0] == "# 5 objects skipped"
    rows = list(csv.DictReader(lines[1:]))
    assert [Skipped(r["where"], r["reason"]) for r in rows] == reader.skipped
    assert sorted(p.name for p in report.parent.iterdir()) == ["predictions.skipped.csv"]  # no temp file left


def test_skip_mode_with_nothing_left_says_so(tmp_path):
    (tmp_path / "1.fits").write_text("junk")
    with pytest.raises(DeepfieldError, match=r"no objects left to read; first: .*1\.fits: file is 4 bytes"):
        FitsFolder(tmp_path, ["g"], on_error="skip")


def test_skip_report_sits_beside_an_output_with_an_extension(tmp_path):
    report = write_skip_report([], tmp_path / "predictions.csv")
    assert report == tmp_path / "predictions.skipped.csv"
    assert report.read_text().splitlines()[0] == "# 0 objects skipped"
