"""Photometry cleaning: exact counts of every rule, fills, colours, extinction, row dropping, errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.table import MaskedColumn, Table

from deepfield.data.catalogues import read_catalogue
from deepfield.data.photometry import Cleaning, Photometry, RuleCount, band_columns, load_photometry
from deepfield.errors import DeepfieldError

NAN = np.nan
MAG = "mag_{band}_lsst"
ERR = "mag_err_{band}_lsst"
LIMITS = {"u": 25.0, "g": 24.5, "r": 24.0}

#  row:          0      1      2      3      4      5      6      7
U = [22.0, NAN, 99.0, 23.0, NAN, 24.0, 22.5, -99.0]
U_ERR = [0.1, 99.0, 99.0, 0.2, 99.0, 0.3, 0.1, 99.0]
G = [21.0, 22.0, 21.5, -9999.0, 22.5, 23.0, 21.2, 99.0]
G_ERR = [0.05, 0.06, 0.05, -9999.0, NAN, 0.1, 0.05, 99.0]
R = [20.5, 21.5, 21.0, 22.0, 22.0, 22.5, 20.8, 21.9]
R_ERR = [0.02, 0.03, 0.02, 0.04, 0.03, 5.0, 0.02, 0.1]
# unmeasured, with max_error=1:  u: rows 1, 4 (NaN), 2 (99), 7 (-99);  g: row 3 (-9999), 7 (99),
# 4 (NaN error);  r: row 5 (error 5 > 1).  Measured bands per row: 3 2 2 2 1 2 3 1.


@pytest.fixture
def catalogue() -> Table:
    return Table(
        {
            "id": np.arange(8),
            "mag_u_lsst": U,
            "mag_err_u_lsst": U_ERR,
            "mag_g_lsst": G,
            "mag_err_g_lsst": G_ERR,
            "mag_r_lsst": R,
            "mag_err_r_lsst": R_ERR,
            "ebv": [0.1, 0.0, 0.2, 0.05, 0.3, 0.1, 0.0, 0.4],
            "a_u": np.full(8, 0.5),
            "a_g": np.full(8, 0.4),
            "a_r": np.full(8, 0.3),
        }
    )


def cleaned(table: Table, **options) -> Photometry:
    cleaning = Cleaning(max_error=1.0, limits=LIMITS, fill_error=2.0, **options.pop("cleaning", {}))
    return load_photometry(table, mag=MAG, err=ERR, cleaning=cleaning, **options)


def test_rules_are_counted_exactly(catalogue):
    report = cleaned(catalogue).report
    assert report.counts == (
        RuleCount("NaN", "mag_u_lsst", 2),
        RuleCount("sentinel 99", "mag_u_lsst", 1),
        RuleCount("sentinel -99", "mag_u_lsst", 1),
        RuleCount("sentinel 99", "mag_g_lsst", 1),
        RuleCount("sentinel -9999", "mag_g_lsst", 1),
        RuleCount("NaN", "mag_err_g_lsst", 1),
        RuleCount("error > 1", "mag_err_r_lsst", 1),
    )
    assert report.rule_rows == {"NaN": 2, "sentinel 99": 2, "sentinel -99": 1, "sentinel -9999": 1, "error > 1": 1}
    assert report.values_unmeasured == 8
    assert report.rows_with_missing == 6
    assert (report.rows_in, report.rows_dropped, report.rows_out) == (8, 0, 8)
    text = str(report)
    assert "NaN in mag_u_lsst: 2 values" in text
    assert "sentinel 99 in mag_g_lsst: 1 values" in text
    assert "rows with any non-detection: 6" in text
    assert "filled u: 4 values with 25.000 mag (limiting magnitude), error 2 mag" in text
    as_dict = json.loads(json.dumps(report.to_dict()))
    assert as_dict["counts"][0] == {"rule": "NaN", "column": "mag_u_lsst", "values": 2}
    assert as_dict["rows_out"] == 8


def test_mask_and_limit_fill(catalogue):
    phot = cleaned(catalogue)
    expected_mask = np.array(
        [[1, 1, 1], [0, 1, 1], [0, 1, 1], [1, 0, 1], [0, 0, 1], [1, 1, 0], [1, 1, 1], [0, 0, 1]], dtype=bool
    )
    np.testing.assert_array_equal(phot.mask, expected_mask)
    assert phot.magnitudes.dtype == phot.errors.dtype == np.float32
    assert phot.magnitudes.shape == phot.errors.shape == (8, 3)
    for j, band in enumerate(phot.bands):
        missing = ~phot.mask[:, j]
        assert np.all(phot.magnitudes[missing, j] == LIMITS[band])
        assert np.all(phot.errors[missing, j] == 2.0)
    measured = np.array([U, G, R]).T
    np.testing.assert_array_equal(phot.magnitudes[phot.mask], measured[expected_mask].astype(np.float32))
    assert np.isfinite(phot.features(errors=True)).all()


def test_blank_cells_are_their_own_rule(catalogue):
    catalogue["mag_r_lsst"] = MaskedColumn(R, mask=[0, 0, 1, 0, 0, 0, 1, 0])
    report = cleaned(catalogue).report
    assert RuleCount("blank", "mag_r_lsst", 2) in report.counts
    assert report.values_unmeasured == 10


def test_percentile_fill_uses_measured_values_of_kept_rows(catalogue):
    phot = load_photometry(
        catalogue, mag=MAG, err=ERR, cleaning=Cleaning(percentile=50.0, fill_error=1.5, min_bands=2)
    )
    # without max_error, r row 5 is measured; rows 4 and 7 have one band and are dropped
    measured_g = [21.0, 22.0, 21.5, 23.0, 21.2]  # kept rows 0, 1, 2, 5, 6
    g = phot.bands.index("g")
    assert phot.magnitudes[~phot.mask[:, g], g].tolist() == [np.float32(np.median(measured_g))]
    fill_g = [fill for fill in phot.report.fills if fill.band == "g"][0]
    assert (fill_g.values, fill_g.how, fill_g.error) == (1, "50th percentile", 1.5)


def test_rows_with_too_few_bands_are_dropped(catalogue):
    phot = cleaned(catalogue, cleaning={"min_bands": 2})
    np.testing.assert_array_equal(phot.rows, [0, 1, 2, 3, 5, 6])
    assert len(phot) == 6 and phot.mask.sum(axis=1).min() >= 2
    np.testing.assert_array_equal(catalogue["id"][phot.rows], phot.rows)
    report = phot.report
    assert (report.rows_in, report.rows_dropped, report.rows_out, report.rows_with_missing) == (8, 2, 6, 6)
    assert "rows dropped with fewer than 2 measured bands: 2" in str(report)
    assert {fill.band: fill.values for fill in report.fills} == {"u": 2, "g": 1, "r": 1}
    assert len(cleaned(catalogue, cleaning={"min_bands": 3})) == 2


def test_colours_are_magnitude_differences(catalogue):
    phot = cleaned(catalogue)
    assert phot.colour_names == ("u-g", "g-r")
    assert phot.colours.shape == (8, 2) and phot.colours.dtype == np.float32
    np.testing.assert_allclose(phot.colours, phot.magnitudes[:, :-1] - phot.magnitudes[:, 1:], atol=1e-5)
    np.testing.assert_array_equal(phot.colour_mask, phot.mask[:, :-1] & phot.mask[:, 1:])

    chosen = cleaned(catalogue, colours=[("u", "r"), ("r", "g")])
    np.testing.assert_allclose(
        chosen.colours, np.stack([chosen.magnitudes[:, 0] - chosen.magnitudes[:, 2],
                                  chosen.magnitudes[:, 2] - chosen.magnitudes[:, 1]], axis=1), atol=1e-5
    )
    with pytest.raises(DeepfieldError, match=r"<table>: colour \('g', 'z'\) must be two different bands among: u, g"):
        cleaned(catalogue, colours=[("g", "z")])


def test_features(catalogue):
    phot = cleaned(catalogue)
    features = phot.features()
    assert features.shape == (8, 5) and features.dtype == np.float32
    np.testing.assert_array_equal(features[:, :3], phot.magnitudes)
    np.testing.assert_array_equal(features[:, 3:], phot.colours)
    with_errors = phot.features(errors=True)
    assert with_errors.shape == (8, 8)
    np.testing.assert_array_equal(with_errors[:, 5:], phot.errors)
    assert phot.feature_names(errors=True) == ["u", "g", "r", "u-g", "g-r", "u_err", "g_err", "r_err"]


def test_extinction_per_band_columns_and_from_ebv(catalogue):
    plain = cleaned(catalogue)
    per_band = cleaned(catalogue, extinction="a_{band}")
    shift = np.array([0.5, 0.4, 0.3], dtype=np.float32)
    np.testing.assert_allclose(plain.magnitudes[plain.mask] - per_band.magnitudes[per_band.mask],
                               np.broadcast_to(shift, plain.mask.shape)[plain.mask], atol=1e-5)
    np.testing.assert_array_equal(plain.magnitudes[~plain.mask], per_band.magnitudes[~per_band.mask])

    coefficients = {"u": 4.0, "g": 3.0, "r": 2.0}
    reddened = cleaned(catalogue, ebv="ebv", coefficients=coefficients)
    expected = np.asarray(catalogue["ebv"])[:, None] * np.array([4.0, 3.0, 2.0])
    np.testing.assert_allclose((plain.magnitudes - reddened.magnitudes)[plain.mask], expected[plain.mask], atol=1e-5)


def test_extinction_errors(catalogue):
    with pytest.raises(DeepfieldError, match=r"not both"):
        cleaned(catalogue, extinction="a_{band}", ebv="ebv", coefficients={"u": 1, "g": 1, "r": 1})
    with pytest.raises(DeepfieldError, match=r"ebv='ebv' needs coefficients= A_band/E\(B-V\) for band r"):
        cleaned(catalogue, ebv="ebv", coefficients={"u": 4.0, "g": 3.0})
    with pytest.raises(DeepfieldError, match=r"coefficients= given without ebv="):
        cleaned(catalogue, coefficients={"u": 4.0})
    catalogue["ebv"][5] = NAN
    with pytest.raises(DeepfieldError, match=r"<table>: column 'ebv' row 5 is nan; extinction must be a finite value"):
        cleaned(catalogue, ebv="ebv", coefficients={"u": 4.0, "g": 3.0, "r": 2.0})
    with pytest.raises(DeepfieldError, match=r"<table>: no column 'ext_u', 'ext_g', 'ext_r'; columns are: id, "):
        cleaned(catalogue, extinction="ext_{band}")


def test_band_selection_by_pattern_name_and_mapping(catalogue):
    found = band_columns(catalogue, mag=MAG, err=ERR)
    assert found.bands == ("u", "g", "r")  # catalogue column order; error columns are not bands
    assert found.magnitudes == ("mag_u_lsst", "mag_g_lsst", "mag_r_lsst")
    assert band_columns(catalogue, "r,g", mag=MAG, err=ERR).errors == ("mag_err_r_lsst", "mag_err_g_lsst")
    mapped = band_columns(
        catalogue, mag={"G": "mag_g_lsst", "R": "mag_r_lsst"}, err={"G": "mag_err_g_lsst", "R": "mag_err_r_lsst"}
    )
    assert mapped.bands == ("G", "R")
    phot = load_photometry(catalogue, ["g", "r"], mag=MAG, err=ERR)
    assert phot.bands == ("g", "r") and phot.colours.shape == (8, 1)


def test_band_selection_errors(catalogue):
    with pytest.raises(DeepfieldError, match=r"<table>: no column matches the magnitude pattern 'mag_\{band\}_sdss'"):
        band_columns(catalogue, mag="mag_{band}_sdss", err="err_{band}")
    with pytest.raises(DeepfieldError, match=r"<table>: no column 'mag_i_lsst' \(near: .*\), 'mag_err_i_lsst'"):
        band_columns(catalogue, ["g", "i"], mag=MAG, err=ERR)
    with pytest.raises(DeepfieldError, match=r"magnitude pattern 'mag_g_lsst' must contain '\{band\}' once"):
        band_columns(catalogue, mag="mag_g_lsst")
    with pytest.raises(DeepfieldError, match=r"no error column given for band 'R'"):
        band_columns(catalogue, mag={"R": "mag_r_lsst"}, err={"G": "mag_err_g_lsst"})
    with pytest.raises(DeepfieldError, match=r"bands must be distinct"):
        band_columns(catalogue, ["g", "g"], mag=MAG, err=ERR)


def test_cleaning_options_are_checked(catalogue):
    with pytest.raises(DeepfieldError, match=r"Cleaning.percentile must be in \[0, 100\], got 120"):
        Cleaning(percentile=120)
    with pytest.raises(DeepfieldError, match=r"Cleaning.fill_error must be a positive"):
        Cleaning(fill_error=0.0)
    with pytest.raises(DeepfieldError, match=r"Cleaning.min_bands must be an integer >= 0"):
        Cleaning(min_bands=-1)
    with pytest.raises(DeepfieldError, match=r"<table>: Cleaning.min_bands=4 but only 3 bands"):
        load_photometry(catalogue, mag=MAG, err=ERR, cleaning=Cleaning(min_bands=4))
    with pytest.raises(DeepfieldError, match=r"<table>: Cleaning.limits has no limiting magnitude for band r"):
        load_photometry(catalogue, mag=MAG, err=ERR, cleaning=Cleaning(limits={"u": 25.0, "g": 24.0}))
    catalogue["mag_u_lsst"] = np.full(8, 99.0)
    with pytest.raises(DeepfieldError, match=r"<table>: mag_u_lsst has no measured values .* 99th percentile"):
        load_photometry(catalogue, mag=MAG, err=ERR)


def test_reading_from_a_file_gives_the_same_photometry_and_names_it(catalogue, tmp_path):
    path = tmp_path / "cat.parquet"
    catalogue.write(path)
    from_file = cleaned(read_catalogue(path))
    from_path = load_photometry(path, mag=MAG, err=ERR, cleaning=Cleaning(max_error=1.0, limits=LIMITS, fill_error=2.0))
    in_memory = cleaned(catalogue)
    for phot in (from_file, from_path):
        np.testing.assert_array_equal(phot.magnitudes, in_memory.magnitudes)
        np.testing.assert_array_equal(phot.mask, in_memory.mask)
        assert phot.report.counts == in_memory.report.counts
        assert str(phot.report).startswith(f"photometry of {path}: 8 rows read, 8 kept")


def test_non_numeric_magnitude_names_file_column_and_row(tmp_path):
    path = tmp_path / "typo.csv"
    path.write_text("mag_g,mag_err_g\n22.1,0.1\n23.4,0.2\n22.x,0.1\n")
    with pytest.raises(DeepfieldError) as error:
        load_photometry(path, ["g"])
    assert str(error.value) == f"{path}: column 'mag_g' line 4 (data row 3) is '22.x', not a number"
