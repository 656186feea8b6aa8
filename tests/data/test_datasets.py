"""Datasets: streaming from disk gives exactly the in-memory samples, in DataLoader workers too."""
from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.table import Table
from torch.utils.data import DataLoader

from deepfield.data.datasets import ArrayDataset, ImageDataset
from deepfield.data.images import CatalogueLabels, FitsCube, FitsFolder, Hdf5Images, NumpyImages
from deepfield.errors import DeepfieldError

N = 10


def fits_folder(tmp_path):
    """``N`` cutouts ``<id>.fits`` with HDUs G and R, labelled from a catalogue."""
    rng = np.random.default_rng(1)
    for k in range(N):
        planes = rng.normal(size=(2, 6, 6)).astype(np.float32)
        fits.HDUList([fits.PrimaryHDU()] + [fits.ImageHDU(p, name=b) for p, b in zip(planes, "GR")]).writeto(
            tmp_path / f"{k}.fits")
    table = Table({"id": np.arange(N)[::-1], "z": np.linspace(0, 1, N, dtype=np.float32)})
    return FitsFolder(tmp_path, ["g", "r"], labels=CatalogueLabels(table, "id", "z"))


def galaxy10(tmp_path):
    """A Galaxy10-like file: uint8 ``(N, 6, 6, 3)`` channels last, classes in ``ans``."""
    rng = np.random.default_rng(2)
    with h5py.File(tmp_path / "g10.h5", "w") as f:
        f.create_dataset("images", data=rng.integers(0, 256, (N, 6, 6, 3), dtype=np.uint8), chunks=(2, 6, 6, 3))
        f["ans"] = rng.integers(0, 10, N, dtype=np.uint8)
    return Hdf5Images(tmp_path / "g10.h5", ["g", "r", "z"], channels="last", labels="ans")


def npy(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(3).normal(size=(N, 1, 5, 5)).astype(np.float32))
    return NumpyImages(tmp_path / "x.npy", ["r"], channels="first", labels=np.arange(N) % 3)


def fits_cube(tmp_path):
    fits.PrimaryHDU(np.random.default_rng(4).normal(size=(N, 2, 5, 5))).writeto(tmp_path / "cube.fits")
    return FitsCube(tmp_path / "cube.fits", ["g", "r"])


def batches(dataset, num_workers: int = 0) -> list:
    return list(DataLoader(dataset, batch_size=3, num_workers=num_workers))


def assert_same(streamed: list, in_memory: list) -> None:
    assert len(streamed) == len(in_memory)
    for a, b in zip(streamed, in_memory):
        a, b = (a, b) if isinstance(a, (list, tuple)) else ((a,), (b,))
        for s, m in zip(a, b):
            assert s.dtype == m.dtype and s.shape == m.shape
            torch.testing.assert_close(s, m, rtol=0, atol=0)


@pytest.mark.parametrize("make", [fits_folder, galaxy10, npy, fits_cube])
def test_streaming_gives_exactly_the_in_memory_samples(tmp_path, make):
    reader = make(tmp_path)
    streamed, in_memory = ImageDataset(reader), ArrayDataset.from_reader(reader)
    assert len(streamed) == len(in_memory) == N
    assert_same(batches(streamed), batches(in_memory))
    x = streamed[0][0] if reader.labels is not None else streamed[0]
    assert x.dtype == torch.float32 and x.shape == reader.shape


@pytest.mark.parametrize("make", [fits_folder, galaxy10])
def test_streaming_in_two_worker_processes_gives_the_same_samples(tmp_path, make):
    reader = make(tmp_path)
    assert_same(batches(ImageDataset(reader), num_workers=2), batches(ArrayDataset.from_reader(reader)))


def test_labels_keep_their_kind(tmp_path):
    x, y = ImageDataset(galaxy10(tmp_path))[0]
    assert y.dtype == torch.int64 and y.shape == ()
    _, z = ImageDataset(fits_folder(tmp_path))[2]
    assert z.dtype == torch.float32 and float(z) == pytest.approx(1 - 2 / 9)  # id 2 is catalogue row 7


def test_a_used_hdf5_dataset_pickles_without_its_file_handle(tmp_path):
    dataset = ImageDataset(galaxy10(tmp_path))
    first = dataset[4]
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy.reader._file._value is None
    assert_same([copy[4]], [first])


def test_transform_is_applied_on_the_fly_to_each_image(tmp_path):
    reader = npy(tmp_path)
    double = lambda x: 2 * x  # noqa: E731
    (x, _), (raw, _) = ImageDataset(reader, transform=double)[1], ImageDataset(reader)[1]
    torch.testing.assert_close(x, 2 * raw)
    torch.testing.assert_close(ArrayDataset.from_reader(reader, transform=double)[1][0], 2 * raw)


def test_unlabelled_samples_are_the_image_alone(tmp_path):
    reader = fits_cube(tmp_path)
    assert isinstance(ImageDataset(reader)[0], torch.Tensor)
    assert isinstance(ArrayDataset(np.zeros((2, 1, 4, 4)))[1], torch.Tensor)


def test_array_dataset_converts_and_checks_its_arrays():
    dataset = ArrayDataset(np.ones((4, 1, 3, 3), np.float64), labels=np.array([0, 1, 0, 1], np.int32))
    x, y = dataset[3]
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    with pytest.raises(DeepfieldError, match=r"images must be \(N, C, H, W\), got shape \(4, 3, 3\)"):
        ArrayDataset(np.ones((4, 3, 3)))
    with pytest.raises(DeepfieldError, match="labels have 3 rows but images have 4"):
        ArrayDataset(np.ones((4, 1, 3, 3)), labels=[0, 1, 0])
