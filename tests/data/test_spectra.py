"""Spectra readers (.npy/.npz, HDF5, FITS image and table), their normalisation and the simulator."""
import h5py
import numpy as np
import pytest
from astropy.io import fits

from deepfield.data.simulate.spectra import CLASSES, GALAXY_Z, QSO_Z, simulate_spectra
from deepfield.data.spectra import normalize_spectra, open_spectra
from deepfield.errors import DeepfieldError


def spectra(n=6, c=1, length=50, seed=0):
    return np.random.default_rng(seed).uniform(1.0, 2.0, (n, c, length)).astype(np.float32)


def test_an_npz_of_n_1_l_is_read_as_n_1_l_with_its_labels_and_wavelength(tmp_path):
    x = spectra()
    grid = np.linspace(400.0, 900.0, 50)
    np.savez(tmp_path / "s.npz", spectra=x, labels=np.arange(6) % 2, wavelength=grid)
    reader = open_spectra(tmp_path / "s.npz", labels="labels")
    loaded, labels = reader.load()
    assert loaded.shape == (6, 1, 50) and np.array_equal(loaded, x)
    assert reader.bands == ("flux",) and labels.tolist() == [0, 1, 0, 1, 0, 1]
    assert np.array_equal(reader.wavelength, grid)


def test_n_l_is_one_channel_and_flux_is_the_other_default_key(tmp_path):
    x = spectra()[:, 0]
    np.savez(tmp_path / "s.npz", flux=x)
    np.save(tmp_path / "s.npy", x)
    for name in ("s.npz", "s.npy"):
        reader = open_spectra(tmp_path / name)
        assert reader.shape == (1, 50) and np.array_equal(reader.load()[0][:, 0], x) and reader.wavelength is None


def test_several_channels_need_names_and_channels_last_is_understood(tmp_path):
    x = spectra(c=2)
    np.save(tmp_path / "s.npy", x)
    with pytest.raises(DeepfieldError, match=r"s.npy does not record its band names: name its 2 band"):
        open_spectra(tmp_path / "s.npy")
    assert open_spectra(tmp_path / "s.npy", ["flux", "ivar"]).bands == ("flux", "ivar")
    np.save(tmp_path / "last.npy", np.moveaxis(x, 1, 2))
    loaded = open_spectra(tmp_path / "last.npy", ["g", "r"], channels="last").load()[0]
    assert np.array_equal(loaded, x)


@pytest.mark.parametrize("shape", [(6,), (6, 2, 3, 50)])
def test_a_wrong_number_of_axes_is_one_line_naming_file_and_shape(tmp_path, shape):
    np.save(tmp_path / "bad.npy", np.ones(shape, np.float32))
    with pytest.raises(DeepfieldError) as error:
        open_spectra(tmp_path / "bad.npy")
    message = str(error.value)
    assert "bad.npy" in message and str(shape) in message and "expected (N, L) or (N, C, L) spectra" in message
    assert "\n" not in message


def test_a_missing_array_lists_what_the_file_has(tmp_path):
    np.savez(tmp_path / "s.npz", x=spectra())
    with pytest.raises(DeepfieldError, match=r"no array named 'spectra' or 'flux' or 'images'; it has: x"):
        open_spectra(tmp_path / "s.npz")


def test_a_wavelength_grid_of_the_wrong_length_is_refused(tmp_path):
    np.savez(tmp_path / "s.npz", spectra=spectra(), wavelength=np.arange(49.0))
    with pytest.raises(DeepfieldError, match=r"'wavelength' has shape \(49,\); expected \(50,\)"):
        open_spectra(tmp_path / "s.npz")


def test_skip_leaves_out_an_empty_spectrum_and_says_which(tmp_path):
    x = spectra()
    x[2] = np.nan
    np.savez(tmp_path / "s.npz", spectra=x, labels=np.arange(6))
    with pytest.raises(DeepfieldError, match=r"s.npz\[2\]: band 'flux' has no finite pixel"):
        open_spectra(tmp_path / "s.npz", labels="labels").load()
    reader = open_spectra(tmp_path / "s.npz", labels="labels", on_error="skip")
    assert len(reader) == 5 and reader.labels.tolist() == [0, 1, 3, 4, 5]
    assert [s.where for s in reader.skipped] == [f"{tmp_path / 's.npz'}[2]"]


def test_hdf5_reads_the_simulator_layout(tmp_path):
    path = simulate_spectra(30, tmp_path / "s.h5", length=64, seed=1)
    reader = open_spectra(path, labels="labels")
    x, y = reader.load()
    assert x.shape == (30, 1, 64) and x.dtype == np.float32 and reader.classes == CLASSES
    assert reader.wavelength.shape == (64,) and np.all(np.diff(reader.wavelength) > 0)
    with h5py.File(path) as h5:
        assert np.array_equal(x, h5["spectra"][:]) and np.array_equal(y, h5["labels"][:])


def test_fits_image_hdu_with_labels_in_a_table_and_a_wavelength_hdu(tmp_path):
    x = spectra(c=2)
    grid = np.linspace(400.0, 900.0, 50)
    fits.HDUList([fits.PrimaryHDU(x), fits.ImageHDU(grid, name="WAVELENGTH"),
                  fits.BinTableHDU.from_columns([fits.Column("class", "K", array=np.arange(6) % 3)])]
                 ).writeto(tmp_path / "s.fits")
    reader = open_spectra(tmp_path / "s.fits", ["flux", "ivar"], labels="class")
    loaded, labels = reader.load()
    assert np.array_equal(loaded, x) and labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert np.allclose(reader.wavelength, grid)


def test_fits_binary_table_with_an_array_column(tmp_path):
    x = spectra()[:, 0]
    grid = np.linspace(400.0, 900.0, 50)
    columns = [fits.Column("flux", "50E", array=x), fits.Column("z", "E", array=np.linspace(0, 1, 6)),
               fits.Column("wavelength", "50D", array=np.tile(grid, (6, 1)))]
    fits.BinTableHDU.from_columns(columns).writeto(tmp_path / "t.fits")
    reader = open_spectra(tmp_path / "t.fits", labels="z")
    loaded, z = reader.load()
    assert loaded.shape == (6, 1, 50) and np.array_equal(loaded[:, 0], x)
    assert np.allclose(z, np.linspace(0, 1, 6)) and np.allclose(reader.wavelength, grid)
    with pytest.raises(DeepfieldError, match=r"t.fits HDU 1 has no column 'class'; its columns are flux, z"):
        open_spectra(tmp_path / "t.fits", labels="class")


def test_normalisation_divides_each_spectrum_by_its_median_absolute_value():
    x = np.array([[[1.0, 2.0, 3.0, -4.0, 100.0]], [[0.0, 0.0, 0.0, 0.0, 0.0]]], np.float32)
    out = normalize_spectra(x)
    assert np.allclose(out[0, 0], [1 / 3, 2 / 3, 1.0, -4 / 3, 100 / 3]) and np.array_equal(out[1], x[1])
    bright = normalize_spectra(x[:1] * 1e4)  # brightness does not matter, shape does
    assert np.allclose(bright, out[:1], rtol=1e-6)
    masked = x[:1].copy()
    masked[0, 0, 4] = np.nan  # a masked sample is 0 and does not count in the median
    assert np.allclose(normalize_spectra(masked)[0, 0], [0.4, 0.8, 1.2, -1.6, 0.0])


def test_the_simulator_is_seeded_and_draws_redshifts_per_class(tmp_path):
    a = simulate_spectra(300, tmp_path / "a.h5", length=100, seed=4)
    b = simulate_spectra(300, tmp_path / "b.h5", length=100, seed=4)
    with h5py.File(a) as ha, h5py.File(b) as hb:
        assert np.array_equal(ha["spectra"][:], hb["spectra"][:])
        labels, z = ha["labels"][:], ha["truth/redshift"][:]
        assert list(ha["labels"].attrs["classes"]) == list(CLASSES)
        assert set(np.unique(labels)) == {0, 1, 2}
        galaxies = z[labels < 2]
        assert GALAXY_Z[0] <= galaxies.min() and galaxies.max() <= GALAXY_Z[1]
        assert QSO_Z[0] <= z[labels == 2].min() and z[labels == 2].max() <= QSO_Z[1]
        assert np.isfinite(ha["spectra"][:]).all()
    with pytest.raises(DeepfieldError, match="--snr"):
        simulate_spectra(10, tmp_path / "c.h5", snr=(5.0, 1.0))


def test_simulated_lines_sit_at_their_redshifted_wavelengths(tmp_path):
    from scipy.ndimage import median_filter

    from deepfield.data.simulate.spectra import EMISSION_LINES, QSO_LINES

    path = simulate_spectra(200, tmp_path / "s.h5", length=800, seed=5, snr=(1000.0, 1000.0))
    with h5py.File(path) as h5:
        flux, wavelength = normalize_spectra(h5["spectra"][:])[:, 0], h5["wavelength"][:]
        labels, z = h5["labels"][:], h5["truth/redshift"][:]
    for label, lines in ((0, EMISSION_LINES), (2, QSO_LINES)):
        rows = np.flatnonzero(labels == label)
        lines_only = flux[rows] - median_filter(flux[rows], size=(1, 151), mode="nearest")  # continuum removed
        peak_rest = wavelength[lines_only.argmax(axis=1)] / (1.0 + z[rows])  # the brightest line pixel, at rest
        nearest = np.min(np.abs(np.log(peak_rest[:, None] / np.array(list(lines.values())))), axis=1)
        assert np.mean(nearest < 0.01) > 0.95  # within 1 % (3000 km/s) of one of the class's lines
