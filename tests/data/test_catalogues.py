"""Reading catalogue tables: every format gives the same values; every bad input one clear error."""
from __future__ import annotations

import gzip

import astropy.units as u
import h5py
import numpy as np
import pytest
from astropy.table import Table

from deepfield.data.catalogues import SOURCE_KEY, numeric_column, read_catalogue, require_columns, source_of
from deepfield.errors import DeepfieldError

NUMERIC = ["id", "mag_g_lsst", "mag_err_g_lsst", "mag_r_lsst", "mag_err_r_lsst", "redshift"]


@pytest.fixture
def reference() -> Table:
    """Four rows with a NaN, a sentinel, an integer and a text column; magnitudes in mag."""
    table = Table(
        {
            "id": np.array([1, 2, 3, 4], dtype=np.int64),
            "mag_g_lsst": [22.5, np.nan, 24.0, 99.0],
            "mag_err_g_lsst": [0.05, 99.0, 0.2, 99.0],
            "mag_r_lsst": [21.75, 23.0, 23.5, 25.25],
            "mag_err_r_lsst": [0.03, 0.1, 0.15, 0.5],
            "redshift": [0.1, 0.5, 1.25, 2.0],
            "name": ["a", "bb", "ccc", "d"],
        }
    )
    for band in "gr":
        table[f"mag_{band}_lsst"].unit = u.mag
        table[f"mag_err_{band}_lsst"].unit = u.mag
    table["mag_g_lsst"].description = "g-band AB magnitude"
    return table


def write_column_group(path, table: Table, group: str = "photometry") -> None:
    """The grouped-datasets layout: one 1-D dataset per column, units as attributes."""
    with h5py.File(path, "w") as f:
        target = f.create_group(group)
        for name in table.colnames:
            values = table[name]
            data = values.astype("S") if values.dtype.kind == "U" else np.asarray(values)
            dataset = target.create_dataset(name, data=data)
            if values.unit is not None:
                dataset.attrs["unit"] = str(values.unit)
            if values.description:
                dataset.attrs["description"] = values.description


def write(table: Table, tmp_path, kind: str):
    """``table`` written as ``kind``; returns the path."""
    if kind == "hdf5-groups":
        path = tmp_path / "cat_groups.h5"
        write_column_group(path, table)
        return path
    suffix = {"fits": ".fits", "csv": ".csv", "ecsv": ".ecsv", "parquet": ".parquet", "hdf5": ".hdf5"}[kind]
    path = tmp_path / f"cat{suffix}"
    options = {"path": "catalogue", "serialize_meta": True} if kind == "hdf5" else {}
    table.write(path, **options)
    return path


KINDS = ["fits", "csv", "ecsv", "parquet", "hdf5", "hdf5-groups"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_format_reads_back_the_same_values(reference, tmp_path, kind):
    path = write(reference, tmp_path, kind)
    table = read_catalogue(path)
    assert table.colnames == reference.colnames or kind == "hdf5-groups"  # h5py lists names sorted
    assert sorted(table.colnames) == sorted(reference.colnames)
    for name in NUMERIC:
        np.testing.assert_array_equal(numeric_column(table, name), np.asarray(reference[name], dtype=float))
    assert list(table["name"]) == ["a", "bb", "ccc", "d"]
    assert not np.ma.getmaskarray(table["mag_g_lsst"]).any()  # NaN stays NaN, it is not a blank cell
    assert table.meta[SOURCE_KEY] == str(path)
    assert source_of(table) == str(path)


@pytest.mark.parametrize("kind", ["fits", "ecsv", "parquet", "hdf5", "hdf5-groups"])
def test_units_and_descriptions_are_kept(reference, tmp_path, kind):
    table = read_catalogue(write(reference, tmp_path, kind))
    assert table["mag_r_lsst"].unit == u.mag
    assert table["mag_err_g_lsst"].unit == u.mag
    if kind != "fits":  # FITS has no column descriptions
        assert table["mag_g_lsst"].description == "g-band AB magnitude"


def test_columns_selects_and_orders(reference, tmp_path):
    table = read_catalogue(write(reference, tmp_path, "fits"), columns=["redshift", "mag_g_lsst"])
    assert table.colnames == ["redshift", "mag_g_lsst"]


def test_explicit_format_and_compressed_fits(reference, tmp_path):
    path = tmp_path / "cat.fits"
    reference.write(path)
    packed = tmp_path / "cat.fits.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    assert read_catalogue(packed)["redshift"][2] == 1.25
    renamed = tmp_path / "catalogue.dat"
    renamed.write_bytes(path.read_bytes())
    assert len(read_catalogue(renamed, format="fits")) == 4


def test_fits_table_chosen_by_hdu(reference, tmp_path):
    from astropy.io import fits

    path = tmp_path / "two.fits"
    second = fits.table_to_hdu(reference[:2])
    second.name = "BRIGHT"
    fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(reference), second]).writeto(path)
    assert len(read_catalogue(path, hdu="BRIGHT")) == 2
    assert len(read_catalogue(path, hdu=1)) == 4


def test_blank_cells_and_nulls_are_masked(tmp_path):
    csv = tmp_path / "blank.csv"
    csv.write_text("mag_g,mag_r\n22.0,\n,nan\n")
    table = read_catalogue(csv)
    assert list(np.ma.getmaskarray(table["mag_g"])) == [False, True]
    assert list(np.ma.getmaskarray(table["mag_r"])) == [True, False]
    np.testing.assert_array_equal(numeric_column(table, "mag_r"), [np.nan, np.nan])

    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"mag_g": [22.0, None], "name": ["x", None]}), parquet)
    table = read_catalogue(parquet)
    assert list(np.ma.getmaskarray(table["mag_g"])) == [False, True]
    assert list(np.ma.getmaskarray(table["name"])) == [False, True]
    np.testing.assert_array_equal(numeric_column(table, "mag_g"), [22.0, np.nan])


def test_hdf5_group_found_inside_nested_groups_or_given(reference, tmp_path):
    path = tmp_path / "nested.h5"
    write_column_group(path, reference, group="survey/photometry")
    assert len(read_catalogue(path)) == 4
    assert len(read_catalogue(path, group="survey/photometry")) == 4


def test_hdf5_with_two_tables_needs_group(reference, tmp_path):
    path = tmp_path / "two.h5"
    write_column_group(path, reference)
    reference.write(path, path="astro", append=True, serialize_meta=True)
    found = r"astro \(astropy table\), photometry \(column group\)"
    with pytest.raises(DeepfieldError, match=rf"two\.h5: several tables \({found}\); pass group="):
        read_catalogue(path)
    assert len(read_catalogue(path, group="astro")) == 4
    assert len(read_catalogue(path, group="photometry")) == 4


def test_hdf5_group_that_is_not_a_table(tmp_path):
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as f:
        f["cols/mag_g"] = np.zeros(5)
        f["cols/redshift"] = np.zeros(4)
        f["images"] = np.zeros((5, 2, 2))
    with pytest.raises(DeepfieldError, match=r"odd\.h5: no table found"):
        read_catalogue(path)
    with pytest.raises(DeepfieldError, match=r"odd\.h5: group 'cols' is not a table: .*'/cols/redshift' has 4 rows"):
        read_catalogue(path, group="cols")
    with pytest.raises(DeepfieldError, match=r"odd\.h5: 'images' is a plain dataset of shape \(5, 2, 2\)"):
        read_catalogue(path, group="images")
    with pytest.raises(DeepfieldError, match=r"odd\.h5: no group or dataset 'photometry'"):
        read_catalogue(path, group="photometry")


def test_missing_file_unknown_format_and_misplaced_options(tmp_path):
    with pytest.raises(DeepfieldError, match=r"nowhere\.fits: no such file"):
        read_catalogue(tmp_path / "nowhere.fits")
    with pytest.raises(DeepfieldError, match=r"cat\.txt: unknown catalogue file ending '\.txt'.*format="):
        read_catalogue(tmp_path / "cat.txt")
    with pytest.raises(DeepfieldError, match=r"cat\.fits: unknown catalogue format 'votable'"):
        read_catalogue(tmp_path / "cat.fits", format="votable")
    with pytest.raises(DeepfieldError, match=r"cat\.fits: group= applies to HDF5"):
        read_catalogue(tmp_path / "cat.fits", group="photometry")
    with pytest.raises(DeepfieldError, match=r"cat\.csv: hdu= applies to FITS"):
        read_catalogue(tmp_path / "cat.csv", hdu=1)


@pytest.mark.parametrize("name", ["broken.fits", "broken.parquet", "broken.h5"])
def test_corrupt_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"this is not a catalogue\n" * 50)
    with pytest.raises(DeepfieldError, match=rf"{name.replace('.', '[.]')}: cannot read as \w+: ") as error:
        read_catalogue(path)
    assert "\n" not in str(error.value)


def test_missing_column_lists_near_matches_and_columns(reference, tmp_path):
    table = read_catalogue(write(reference, tmp_path, "fits"))
    with pytest.raises(DeepfieldError) as error:
        require_columns(table, ["mag_i_lsst", "mag_g_lsst"])
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'cat.fits'}: no column 'mag_i_lsst' (near: ")
    assert "mag_g_lsst" in message.split("columns are:")[0]
    assert "columns are: id, mag_g_lsst" in message
    with pytest.raises(DeepfieldError, match=r"cat\.fits: no column 'magnitude'"):
        read_catalogue(tmp_path / "cat.fits", columns=["magnitude"])


def test_non_numeric_value_names_file_column_row_and_value(tmp_path):
    path = tmp_path / "typo.csv"
    path.write_text("mag_g,flag\n22.1,True\n23.4,False\n2x.5,True\n,False\n")
    table = read_catalogue(path)
    with pytest.raises(DeepfieldError,
                       match=r"typo\.csv: column 'mag_g' line 4 \(data row 3\) is '2x\.5', not a number"):
        numeric_column(table, "mag_g")
    with pytest.raises(DeepfieldError, match=r"typo\.csv: column 'flag' line 2 \(data row 1\) is 'True', not a number"):
        numeric_column(table, "flag")
    flags = Table({"flag": [True, False]})
    with pytest.raises(DeepfieldError, match=r"<table>: column 'flag' holds bool values \(row 0: True\), not numbers"):
        numeric_column(flags, "flag")
    text_numbers = Table({"m": ["21.5", " nan", "99"]})
    np.testing.assert_array_equal(numeric_column(text_numbers, "m"), [21.5, np.nan, 99.0])
    with pytest.raises(DeepfieldError, match=r"<table>: no column 'x'"):
        numeric_column(text_numbers, "x")
