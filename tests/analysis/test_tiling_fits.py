"""Tiled prediction through FITS files: header and WCS kept, same numbers as in memory, bounded reads."""
import tracemalloc

import numpy as np
import pytest
from astropy.io import fits
from astropy.io.fits.hdu.image import _ImageBaseHDU
from astropy.wcs import WCS
from torch import nn

from deepfield.analysis.tiling import predict_tiled
from deepfield.analysis.tiling_fits import predict_fits_tiled
from deepfield.errors import DeepfieldError

from test_tiling import conv_net, extended, image, one_pass, small_unet


def sky_header(naxis: int = 2) -> fits.Header:
    """A TAN projection with a CD matrix, a unit and a history: what a survey image carries."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.1, 2.2]
    wcs.wcs.crpix = [20.5, 40.5]
    wcs.wcs.cd = [[-7.3e-5, 1.0e-6], [1.2e-6, 7.3e-5]]
    header = wcs.to_header()
    header["BUNIT"] = "nJy"
    header["OBJECT"] = "COSMOS"
    header["HISTORY"] = "stacked"
    return header


def wcs_cards(header: fits.Header) -> dict:
    return dict(WCS(header).to_header())


def test_a_2d_image_round_trip_keeps_the_header_and_equals_the_in_memory_result(tmp_path):
    network, data = conv_net(3, channels=1, out=1), image(1, 97, 61)[0]
    source = tmp_path / "field.fits"
    fits.PrimaryHDU(data, header=sky_header()).writeto(source)
    out = predict_fits_tiled(network, source, tmp_path / "out.fits", tile=32, overlap=16)
    with fits.open(out) as hdul:
        hdul.verify("exception")
        header, result = hdul[0].header, hdul[0].data
        assert len(hdul) == 1 and header["BITPIX"] == -32 and result.shape == (97, 61)
        assert header["BUNIT"] == "nJy" and header["OBJECT"] == "COSMOS" and "stacked" in str(header["HISTORY"])
        assert wcs_cards(header) == wcs_cards(fits.getheader(source))
        assert WCS(header).wcs.compare(WCS(fits.getheader(source)).wcs)
        np.testing.assert_array_equal(result, predict_tiled(network, data, tile=32, overlap=16)[0])


def test_an_odd_sized_image_shorter_than_the_tile_is_mirrored_to_the_network_multiple(tmp_path):
    network, data = small_unet(), image(1, 37, 53)[0]
    fits.PrimaryHDU(data, header=sky_header()).writeto(tmp_path / "odd.fits")
    out = predict_fits_tiled(network, tmp_path / "odd.fits", tmp_path / "out.fits", tile=104, overlap=52,
                             margin=26, multiple=4)
    with fits.open(out) as hdul:
        result = hdul[0].data
        assert result.shape == (37, 53) and wcs_cards(hdul[0].header) == wcs_cards(sky_header())
    expected = one_pass(network, extended(data[None], 4))[0, :37, :53]
    np.testing.assert_allclose(result, expected, atol=1e-5 * np.abs(expected).max(), rtol=0)


def test_a_cube_in_an_extension_gives_a_cube_of_the_network_channels(tmp_path):
    network, data = conv_net(2, channels=3, out=2), image(3, 70, 50)
    source = tmp_path / "cube.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, header=sky_header(), name="SCI")]).writeto(source)
    out = predict_fits_tiled(network, source, tmp_path / "out.fits", hdu="SCI", tile=(24, 32), overlap=8,
                             batch_size=2)
    with fits.open(out) as hdul:
        assert hdul[0].data.shape == (2, 70, 50) and hdul[0].header["EXTNAME"] == "SCI"
        assert "XTENSION" not in hdul[0].header and hdul[0].header["SIMPLE"]
        assert wcs_cards(hdul[0].header) == wcs_cards(fits.getheader(source, "SCI"))
        np.testing.assert_array_equal(hdul[0].data, predict_tiled(network, data, tile=(24, 32), overlap=8))


def test_scaled_integers_are_read_as_their_values(tmp_path):
    network = conv_net(2, channels=1, out=1)
    hdu = fits.PrimaryHDU(np.arange(40 * 30, dtype=np.float32).reshape(40, 30) * 3.0 - 100.0)
    hdu.scale("int16", bzero=1000.0, bscale=3.0)
    hdu.writeto(tmp_path / "scaled.fits")
    values = fits.getdata(tmp_path / "scaled.fits").astype(np.float32)
    out = predict_fits_tiled(network, tmp_path / "scaled.fits", tmp_path / "out.fits", tile=16, overlap=8)
    header = fits.getheader(out)
    assert header["BITPIX"] == -32 and "BZERO" not in header and "BSCALE" not in header
    np.testing.assert_array_equal(fits.getdata(out), predict_tiled(network, values, tile=16, overlap=8)[0])


def test_reads_never_exceed_one_band_of_tile_rows_however_tall_the_image(tmp_path, monkeypatch):
    network, data = conv_net(2, channels=2, out=1), image(2, 2000, 40)
    fits.PrimaryHDU(data).writeto(tmp_path / "tall.fits")
    reads = []
    raw = _ImageBaseHDU._get_raw_data  # every read of image bytes, by .data or by .section, goes through it

    def counted(self, shape, code, offset):
        reads.append(tuple(np.atleast_1d(shape)))
        return raw(self, shape, code, offset)

    monkeypatch.setattr(_ImageBaseHDU, "_get_raw_data", counted)
    out = predict_fits_tiled(network, tmp_path / "tall.fits", tmp_path / "out.fits", tile=32, overlap=8)
    assert reads and max(shape[-2] for shape in reads) == 32
    assert all(shape == (32, 40) for shape in reads)  # one channel's band at a time
    monkeypatch.undo()
    np.testing.assert_array_equal(fits.getdata(out)[0], predict_tiled(network, data, tile=32, overlap=8)[0])


def test_a_wide_image_is_read_by_blocks_of_a_batch_of_tiles(tmp_path, monkeypatch):
    network, data = conv_net(2, channels=1, out=1), image(1, 40, 600)[0]
    fits.PrimaryHDU(data).writeto(tmp_path / "wide.fits")
    reads = []
    raw = _ImageBaseHDU._get_raw_data

    def counted(self, shape, code, offset):
        reads.append(tuple(np.atleast_1d(shape)))
        return raw(self, shape, code, offset)

    monkeypatch.setattr(_ImageBaseHDU, "_get_raw_data", counted)
    out = predict_fits_tiled(network, tmp_path / "wide.fits", tmp_path / "out.fits", tile=32, overlap=8, batch_size=4)
    assert reads and max(np.prod(shape) for shape in reads) <= 32 * (3 * 24 + 32)  # no more than one block
    monkeypatch.undo()
    np.testing.assert_array_equal(fits.getdata(out), predict_tiled(network, data, tile=32, overlap=8)[0])


def numpy_peak(network, source, out, **settings) -> int:
    """The peak bytes of Python and numpy buffers (``tracemalloc``) while ``source`` is predicted into ``out``."""
    tracemalloc.start()
    try:
        predict_fits_tiled(network, source, out, overwrite=True, **settings)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_width(tmp_path):
    """Bands go by blocks of a batch of tiles and the sums they share with the next band wait on disk: the
    buffers of a 1024-pixel-wide image peak no higher than those of a 256-pixel one (whole bands of 32 rows
    were 24 * 32 bytes a column: +0.56 MiB, nine times the margin), but for Python's own churn (free lists, the FITS reader's cyclic
    garbage until a collection: tens of KiB, growing with the number of reads)."""
    network, settings = conv_net(2, channels=1, out=2), {"tile": 32, "overlap": 8, "batch_size": 2}
    for width in (256, 1024):
        fits.PrimaryHDU(image(1, 80, width, seed=width)[0], header=sky_header()).writeto(tmp_path / f"{width}.fits")
    numpy_peak(network, tmp_path / "256.fits", tmp_path / "out.fits", **settings)  # warm-up: first-call caches
    narrow = numpy_peak(network, tmp_path / "256.fits", tmp_path / "out.fits", **settings)
    wide = numpy_peak(network, tmp_path / "1024.fits", tmp_path / "out.fits", **settings)
    assert wide <= narrow + 64 * 1024, (narrow, wide)
    data = fits.getdata(tmp_path / "1024.fits")
    np.testing.assert_array_equal(fits.getdata(tmp_path / "out.fits"), predict_tiled(network, data, **settings))


def test_the_input_is_never_overwritten_and_an_output_only_with_overwrite(tmp_path):
    network, source, out = nn.Identity(), tmp_path / "in.fits", tmp_path / "out.fits"
    fits.PrimaryHDU(image(1, 20, 20)[0]).writeto(source)
    before = source.read_bytes()
    with pytest.raises(DeepfieldError, match="this is an input of the command"):
        predict_fits_tiled(network, source, source, overwrite=True)
    out.write_text("old")
    with pytest.raises(DeepfieldError, match="this file exists; pass --overwrite"):
        predict_fits_tiled(network, source, out)
    assert out.read_text() == "old"
    predict_fits_tiled(network, source, out, overwrite=True)
    assert source.read_bytes() == before
    np.testing.assert_array_equal(fits.getdata(out), fits.getdata(source))


def test_a_failed_prediction_leaves_no_output(tmp_path):
    fits.PrimaryHDU(image(1, 40, 40)[0]).writeto(tmp_path / "in.fits")
    with pytest.raises(DeepfieldError, match="must keep"):
        predict_fits_tiled(nn.MaxPool2d(2), tmp_path / "in.fits", tmp_path / "out.fits", tile=16, overlap=4)
    assert list(tmp_path.iterdir()) == [tmp_path / "in.fits"]


@pytest.mark.parametrize("data, hdu, words", [
    (np.zeros((2, 3, 8, 8), np.float32), None, r"has shape \(2, 3, 8, 8\); tiled prediction takes"),
    (np.zeros((8, 8), np.float32), "SCI", "has no HDU 'SCI'"),
])
def test_bad_inputs_are_named(tmp_path, data, hdu, words):
    fits.PrimaryHDU(data).writeto(tmp_path / "in.fits")
    with pytest.raises(DeepfieldError, match=words):
        predict_fits_tiled(nn.Identity(), tmp_path / "in.fits", tmp_path / "out.fits", hdu=hdu)


def test_a_tile_compressed_image_and_a_2d_image_into_two_channels(tmp_path):
    network, data = conv_net(2, channels=1, out=2), image(1, 90, 70)[0]
    hdu = fits.CompImageHDU(data, header=sky_header(), name="SCI", quantize_level=0.0, compression_type="GZIP_2")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp_path / "packed.fits")
    out = predict_fits_tiled(network, tmp_path / "packed.fits", tmp_path / "out.fits", tile=32, overlap=8)
    with fits.open(out) as hdul:
        assert hdul[0].data.shape == (2, 90, 70) and hdul[0].header["CTYPE1"] == "RA---TAN"
        assert not any(key.startswith("Z") for key in hdul[0].header)
        np.testing.assert_array_equal(hdul[0].data, predict_tiled(network, data, tile=32, overlap=8))
