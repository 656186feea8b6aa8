"""Your own files: label tables (class names too), cutout cubes in the primary HDU, and what a
reader knows of each object besides its pixels (a table's columns, the WCS centre of a cutout)."""
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import MaskedColumn, Table
from astropy.wcs import WCS

from deepfield.data.images import CatalogueLabels, FitsFolder
from deepfield.data.sources import catalogue_labels, open_images
from deepfield.errors import DeepfieldError


def write_cutout(path, data, centre=None):
    """A cutout (C, H, W) or (H, W) in the primary HDU; ``centre``: (ra, dec) of its middle pixel (TAN WCS)."""
    header = None
    if centre is not None:
        wcs = WCS(naxis=2)
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        wcs.wcs.crval = list(centre)
        wcs.wcs.crpix = [(data.shape[-1] + 1) / 2, (data.shape[-2] + 1) / 2]  # 1-based: the middle pixel
        wcs.wcs.cdelt = [-0.262 / 3600, 0.262 / 3600]
        header = wcs.to_header()
    fits.PrimaryHDU(np.asarray(data, np.float32), header=header).writeto(path)


def cube_folder(tmp_path, n=4, size=8, wcs=True):
    """``n`` cutout cubes (3, size, size) in the primary HDU, as a cutout service delivers them."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "cutouts"
    folder.mkdir()
    for k in range(n):
        write_cutout(folder / f"{100 + k}.fits", rng.normal(size=(3, size, size)) + k,
                     centre=(150.0 + k / 10, 2.0 - k / 10) if wcs else None)
    return folder


def test_cubes_in_the_primary_hdu_read_with_hdus_0(tmp_path):
    folder = cube_folder(tmp_path)
    with pytest.raises(DeepfieldError, match=r"has no HDU 'g' for band 'g'; its HDUs are 0:PRIMARY"):
        open_images(folder, ["g", "r", "i"])
    reader = open_images(folder, ["g", "r", "i"], hdus=0)
    assert len(reader) == 4 and reader.shape == (3, 8, 8)
    np.testing.assert_array_equal(reader.read(2), fits.getdata(folder / "102.fits"))


def test_the_wcs_centre_of_each_cutout_is_its_ra_dec(tmp_path):
    reader = open_images(cube_folder(tmp_path), ["g", "r", "i"], hdus=0)
    columns = reader.metadata()
    np.testing.assert_allclose(columns["ra"], [150.0, 150.1, 150.2, 150.3], atol=1e-9)
    np.testing.assert_allclose(columns["dec"], [2.0, 1.9, 1.8, 1.7], atol=1e-9)


def test_no_wcs_means_no_ra_dec_and_a_missing_one_is_nan(tmp_path):
    folder = cube_folder(tmp_path, wcs=False)
    assert "ra" not in open_images(folder, ["g", "r", "i"], hdus=0).metadata()
    (folder / "101.fits").unlink()
    write_cutout(folder / "101.fits", np.ones((3, 8, 8)), centre=(10.0, -5.0))
    columns = open_images(folder, ["g", "r", "i"], hdus=0).metadata()
    assert np.isnan(columns["ra"][[0, 2, 3]]).all() and columns["ra"][1] == pytest.approx(10.0)


def test_a_label_table_of_class_names_gives_the_classes(tmp_path):
    folder = cube_folder(tmp_path)
    (tmp_path / "labels.csv").write_text("objid,class,mag_r\n100,spiral,20.5\n101,elliptical,21.0\n"
                                         "102,spiral,19.2\n103,elliptical,22.4\n")
    labels = catalogue_labels(tmp_path / "labels.csv", "objid", "class")
    reader = open_images(folder, ["g", "r", "i"], hdus=0, labels=labels)
    assert reader.classes == ("elliptical", "spiral")
    assert list(reader.labels) == [1, 0, 1, 0] and reader.labels.dtype == np.int64
    columns = reader.metadata()  # the table's columns, joined by id, beside the WCS centre
    assert list(columns["mag_r"]) == [20.5, 21.0, 19.2, 22.4] and list(columns["class"])[0] == "spiral"
    assert list(columns["objid"]) == [100, 101, 102, 103] and "ra" in columns
    # a run's classes fix the indices; a name outside them is named with its table and column
    reader = open_images(folder, ["g", "r", "i"], hdus=0,
                         labels=catalogue_labels(tmp_path / "labels.csv", "objid", "class",
                                                 classes=["spiral", "elliptical", "merger"]))
    assert list(reader.labels) == [0, 1, 0, 1] and reader.classes == ("spiral", "elliptical", "merger")
    with pytest.raises(DeepfieldError, match=r"101\.fits: label 'elliptical' in .*labels\.csv column 'class' "
                                             r"is not one of the classes spiral, merger"):
        open_images(folder, ["g", "r", "i"], hdus=0,
                    labels=catalogue_labels(tmp_path / "labels.csv", "objid", "class", classes=["spiral", "merger"]))
    skipping = open_images(folder, ["g", "r", "i"], hdus=0, on_error="skip",
                           labels=catalogue_labels(tmp_path / "labels.csv", "objid", "class",
                                                   classes=["spiral", "merger"]))
    assert list(skipping.ids) == ["100", "102"] and len(skipping.skipped) == 2


def test_a_blank_class_name_is_a_missing_label_and_errors_name_the_table(tmp_path):
    folder = cube_folder(tmp_path, n=3)
    table = Table({"objid": [100, 101, 102], "class": MaskedColumn(["a", "b", "a"], mask=[False, True, False])})
    with pytest.raises(DeepfieldError, match=r"101\.fits: its label is missing"):
        FitsFolder(folder, ["g", "r", "i"], hdus=0, labels=CatalogueLabels(table, "objid", "class"))
    (tmp_path / "t.csv").write_text("name,class\n100,a\n")
    with pytest.raises(DeepfieldError, match=r"t\.csv has no column 'objid'; its columns are name, class"):
        open_images(folder, ["g", "r", "i"], hdus=0, labels=catalogue_labels(tmp_path / "t.csv", "objid", "class"))
    with pytest.raises(DeepfieldError, match=r"2 object\(s\) have no row in .*t\.csv with that 'name'"):
        open_images(folder, ["g", "r", "i"], hdus=0, labels=catalogue_labels(tmp_path / "t.csv", "name", "class"))


def test_a_table_without_a_label_column_lends_its_columns_only(tmp_path):
    folder = cube_folder(tmp_path, n=2)
    (tmp_path / "cat.fits").unlink(missing_ok=True)
    Table({"objid": [101, 100], "z": [0.3, 0.1]}).write(tmp_path / "cat.fits")
    reader = open_images(folder, ["g", "r", "i"], hdus=0, labels=catalogue_labels(tmp_path / "cat.fits", "objid",
                                                                                  None))
    assert reader.labels is None and list(reader.metadata()["z"]) == [0.1, 0.3]


def test_hdf5_ids_from_a_dataset_join_a_label_table(tmp_path):
    import h5py

    with h5py.File(tmp_path / "g10.h5", "w") as f:
        f["images"] = np.arange(3 * 4 * 4 * 3, dtype=np.uint8).reshape(3, 4, 4, 3)
        f["objid"] = np.array([b"x1", b"x2", b"x3"])
    (tmp_path / "labels.csv").write_text("objid,type\nx3,star\nx1,galaxy\nx2,star\n")
    reader = open_images(tmp_path / "g10.h5", ["g", "r", "z"], channels="last", ids="objid",
                         labels=catalogue_labels(tmp_path / "labels.csv", "objid", "type"))
    assert list(reader.ids) == ["x1", "x2", "x3"] and list(reader.labels) == [0, 1, 1]
    with pytest.raises(DeepfieldError, match="the ids of a folder are its file names"):
        open_images(cube_folder(tmp_path), ["g", "r", "i"], hdus=0, ids="objid")
    with pytest.raises(DeepfieldError, match=r"hdus=0 is for FITS files"):
        open_images(tmp_path / "g10.h5", ["g", "r", "z"], channels="last", hdus=0)


def test_hdf5_per_object_datasets_are_columns(tmp_path):
    import h5py

    with h5py.File(tmp_path / "g10.h5", "w") as f:  # Galaxy10 DECaLS keeps ra, dec, redshift beside the images
        f["images"] = np.zeros((3, 4, 4, 3), np.uint8)
        f["ans"] = np.array([0, 2, 1])
        f["ra"], f["dec"] = np.array([10.0, 11.0, 12.0]), np.array([-1.0, 0.0, 1.0])
        f["name"] = np.array([b"a", b"b", b"c"])
        f["pxscale"] = np.ones((3, 2))  # not one value per object: not a column
    reader = open_images(tmp_path / "g10.h5", ["g", "r", "z"], channels="last", labels="ans")
    columns = reader.metadata()
    assert sorted(columns) == ["ans", "dec", "name", "ra"]
    assert list(columns["ra"]) == [10.0, 11.0, 12.0] and list(columns["name"]) == ["a", "b", "c"]
