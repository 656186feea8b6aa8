"""In-painting masks: the quality simulator's defects as seeded boolean masks, and a user's mask file."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
from astropy.io import fits

from deepfield.data.masks import read_mask
from deepfield.data.simulate.masks import MASK_KINDS, artefact_masks
from deepfield.errors import DeepfieldError


def test_each_kind_gives_its_defect():
    for kind in MASK_KINDS:
        masks = artefact_masks(8, (24, 32), [kind], seed=1)
        assert masks.shape == (8, 24, 32) and masks.dtype == bool, kind
        assert np.all(masks.sum(axis=(1, 2)) > 0) and masks.mean() < 0.5, kind
    columns = artefact_masks(8, (24, 32), ["bad_column"], seed=1)
    for mask in columns:  # one column, from an edge or across the whole height
        rows, cols = np.nonzero(mask)
        assert len(set(cols)) == 1 and (rows.min() == 0 or rows.max() == 23) and np.all(np.diff(rows) == 1)
    hot = artefact_masks(8, 16, ["hot_pixels"], seed=1).sum(axis=(1, 2))
    assert np.all((hot >= 1) & (hot <= 10))
    trails = artefact_masks(8, 32, ["satellite_trail"], seed=1)
    assert np.all(trails.any(axis=1).sum(axis=1) + trails.any(axis=2).sum(axis=1) >= 32)  # it crosses the stamp


def test_masks_of_several_kinds_are_reproducible_by_seed():
    kinds = ["cosmic_rays", "satellite_trail", "bad_column", "saturation"]
    one, two = artefact_masks(5, 32, kinds, seed=7), artefact_masks(5, 32, kinds, seed=7)
    np.testing.assert_array_equal(one, two)
    assert not np.array_equal(one, artefact_masks(5, 32, kinds, seed=8))
    np.testing.assert_array_equal(artefact_masks(3, 32, kinds, seed=7), one[:3])  # mask i depends on (seed, i)
    assert (one.mean() > artefact_masks(5, 32, ["cosmic_rays"], seed=7).mean())


def test_mask_refusals():
    with pytest.raises(DeepfieldError, match="unknown mask kind 'ghost'; expected one of: bad_column, cosmic_rays"):
        artefact_masks(2, 16, ["ghost"])
    with pytest.raises(DeepfieldError, match="n must be an integer >= 1, got 0"):
        artefact_masks(0, 16)


def test_read_mask_fits_and_hdf5_broadcast_to_the_images(tmp_path):
    plane = np.zeros((8, 10), dtype=np.int16)
    plane[2, 3] = 5
    fits.PrimaryHDU(plane).writeto(tmp_path / "mask.fits")
    mask = read_mask(tmp_path / "mask.fits", (4, 3, 8, 10))
    assert mask.shape == (4, 3, 8, 10) and mask.dtype == bool
    assert mask.sum() == 12 and mask[:, :, 2, 3].all()
    per_image = np.zeros((4, 8, 10))
    per_image[1, 0, 0] = np.nan  # NaN is bad
    per_image[3, 7, 9] = -1.0
    with h5py.File(tmp_path / "mask.h5", "w") as h5:
        h5["bad"] = per_image
    mask = read_mask(tmp_path / "mask.h5", (4, 3, 8, 10), dataset="bad")
    assert mask.sum() == 6 and mask[1, :, 0, 0].all() and mask[3, :, 7, 9].all()
    np.testing.assert_array_equal(read_mask(tmp_path / "mask.h5", (4, 8, 10), dataset="bad"), per_image != 0)


def test_read_mask_refusals(tmp_path):
    fits.PrimaryHDU(np.zeros((8, 10))).writeto(tmp_path / "mask.fits")
    with pytest.raises(DeepfieldError, match=r"mask.fits: mask of shape \(8, 10\) does not fit images of shape "
                                             r"\(4, 3, 9, 10\); expected \(9, 10\), \(4, 9, 10\) or \(4, 3, 9, 10\)"):
        read_mask(tmp_path / "mask.fits", (4, 3, 9, 10))
    with h5py.File(tmp_path / "mask.h5", "w") as h5:
        h5["images"] = np.zeros((2, 8, 10))
    with pytest.raises(DeepfieldError, match=r"mask.h5: no dataset 'mask' \(datasets: 'images'\)"):
        read_mask(tmp_path / "mask.h5", (2, 8, 10))
    with pytest.raises(DeepfieldError, match=r"nope.fits: no such file"):
        read_mask(tmp_path / "nope.fits", (2, 8, 10))
    with pytest.raises(DeepfieldError, match=r"mask.fits: no HDU 3 \(the file has 1\)"):
        read_mask(tmp_path / "mask.fits", (2, 8, 10), hdu=3)
