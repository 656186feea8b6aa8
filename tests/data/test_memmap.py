"""Data larger than memory: memory-mapped datasets train without loading everything.

How "without loading everything" is measured. ``ru_maxrss`` (and ``VmRSS``) count the
pages of a memory-mapped file that a process has touched, so they grow by the size of
the data however lazily it is read; ``RLIMIT_AS`` counts the mapping itself (and torch
reserves gigabytes of address space). Neither can tell a memory map from a copy. Since
Linux 4.7 ``RLIMIT_DATA`` counts exactly the private writable memory (heap and
anonymous mappings; not read-only file mappings, not the shared memory that batches
travel in), i.e. what loading the data would take. So the training runs in a
subprocess whose data limit is its current size plus a margin smaller than the data
(``MAIN_MARGIN``), set after torch's lazy allocations (a warm-up fit on random tensors)
and before the dataset exists; each DataLoader worker sets its own limit to its size at
start plus ``WORKER_MARGIN``. glibc's dynamic mmap threshold is pinned
(``MALLOC_MMAP_THRESHOLD_``) so a freed buffer leaves at once and the size measures live
memory, and Python threads get 1 MiB stacks (a stack is private writable memory too).
After training, the same process must fail to load the data (``MemoryError``): the
limit really is below the data size.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.table import Table

from deepfield.data import transforms as T
from deepfield.data.memmap import (
    EpochBatchSampler,
    Fetch,
    MemmapImages,
    MemmapTable,
    loader,
    parquet_to_columns,
)
from deepfield.errors import DeepfieldError
from deepfield.models import Dense, Dropout
from deepfield.training import Sequential
from deepfield.training.batches import epoch_order

MiB = 1 << 20
ROWS = 1_000_000
FEATURES = [f"f{j}" for j in range(8)]
MAIN_MARGIN = 24 * MiB  # the catalogue is 36 MiB, the images 128 MiB
WORKER_MARGIN = 16 * MiB  # a worker holds a read (about 4 MiB, loader.FETCH_BYTES) at a time
IMAGES = 8192  # x 1 x 64 x 64 float32 = 128 MiB
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_DATA and /proc are Linux's")

TRAIN = textwrap.dedent('''
    import json, resource, sys, threading
    from functools import partial

    import numpy as np
    import torch
    from torch import nn

    from deepfield.data.memmap import MemmapImages, MemmapTable, loader
    from deepfield.training import Model
    from deepfield.training.callbacks import Callback

    spec = json.loads(sys.argv[1])

    def vmdata():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmData:"))

    def limit(margin, *_):
        resource.setrlimit(resource.RLIMIT_DATA, (vmdata() + margin, resource.getrlimit(resource.RLIMIT_DATA)[1]))

    class StopAfter(Callback):
        def __init__(self, steps):
            self.steps, self.done = steps, 0

        def on_train_batch_end(self, step, logs=None):
            self.done += 1
            if self.done >= self.steps:
                self.model.stop_training = True

    torch.set_num_threads(1)
    threading.stack_size(1 << 20)
    torch.manual_seed(0)
    if spec["kind"] == "table":
        net, shape = nn.Sequential(nn.Linear(len(spec["features"]), 32), nn.ReLU(), nn.Linear(32, 1)), (8,)
    else:
        net = nn.Sequential(nn.AvgPool2d(4), nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                            nn.Flatten(), nn.Linear(8, 1))
        shape = (1, 64, 64)
    model = Model(net).compile(optimizer="adam", loss="mse", device="cpu")
    b = spec["batch_size"]
    model.fit(torch.randn(4 * b, *shape), torch.randn(4 * b), batch_size=b, epochs=2, verbose=0)  # torch's lazy allocations
    limit(spec["main_margin"])
    if spec["kind"] == "table":
        dataset = MemmapTable(spec["path"], spec["features"], "target")
    else:
        dataset = MemmapImages(spec["path"], spec["labels"])
    batches = loader(dataset, b, seed=0, workers=2, timeout=120, worker_init_fn=partial(limit, spec["worker_margin"]))
    stop = StopAfter(spec["steps"])
    history = model.fit(batches, verbose=0, callbacks=[stop])
    try:
        np.stack([np.load(path) for path in spec["files"]])
        loaded = True
    except MemoryError:
        loaded = False
    print(json.dumps({"steps": stop.done, "batches": len(batches), "loss": history.history["loss"][-1],
                      "loaded": loaded}))
''')


def train_limited(spec: dict) -> dict:
    """Run ``TRAIN`` in a subprocess under the data limits; its JSON report."""
    spec = {**spec, "main_margin": MAIN_MARGIN, "worker_margin": WORKER_MARGIN}
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", TRAIN, json.dumps(spec)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_catalogue(folder, rows: int = ROWS, seed: int = 0) -> None:
    """``rows`` rows of 8 float32 feature columns and a float32 ``target``, one column in memory at a time."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    target = np.zeros(rows, np.float32)
    for j, name in enumerate(FEATURES):
        column = rng.standard_normal(rows, dtype=np.float32)
        target += column * (j - 3.5) / 4
        np.save(folder / f"{name}.npy", column)
    np.save(folder / "target.npy", target)


def write_images(path, n: int, seed: int = 0) -> None:
    """``n`` float32 stamps ``1x64x64`` into a ``.npy``, 512 at a time; labels in ``labels.npy`` beside it."""
    rng = np.random.default_rng(seed)
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, 1, 64, 64))
    for lo in range(0, n, 512):
        images[lo:lo + 512] = rng.standard_normal((min(512, n - lo), 1, 64, 64), dtype=np.float32)
    images.flush()
    del images
    np.save(path.parent / "labels.npy", rng.standard_normal(n).astype(np.float32))


# -- (1) a catalogue of a million rows ---------------------------------------------------------

@linux_only
def test_a_million_row_catalogue_trains_under_a_data_limit_smaller_than_the_catalogue(tmp_path):
    write_catalogue(tmp_path / "cat")
    files = [str(tmp_path / "cat" / f"{name}.npy") for name in FEATURES + ["target"]]
    assert sum(os.path.getsize(f) for f in files) > MAIN_MARGIN + 8 * MiB
    report = train_limited({"kind": "table", "path": str(tmp_path / "cat"), "features": FEATURES,
                            "batch_size": 1024, "steps": 300, "files": files})
    assert report["steps"] == 300 and report["batches"] == 977  # 30 % of an epoch
    assert np.isfinite(report["loss"])
    assert not report["loaded"], "the limit is not below the data size: the test would prove nothing"


def test_the_catalogue_batches_are_the_rows_of_the_file_in_the_seeded_epoch_order(tmp_path):
    write_catalogue(tmp_path / "cat")
    columns = [np.load(tmp_path / "cat" / f"{name}.npy", mmap_mode="r") for name in FEATURES + ["target"]]
    dataset = MemmapTable(tmp_path / "cat", FEATURES, "target")
    batches = loader(dataset, batch_size=1024, seed=7, workers=2)
    assert len(batches) == 977
    for epoch in range(2):
        order = epoch_order(ROWS, 7, epoch).numpy()
        xs, ys = zip(*batches)  # one whole epoch
        assert [len(x) for x in xs] == [1024] * 976 + [ROWS - 976 * 1024]
        x, y = torch.cat(xs).numpy(), torch.cat(ys).numpy()
        assert x.dtype == np.float32 and x.shape == (ROWS, 8) and y.shape == (ROWS,)
        np.testing.assert_array_equal(y, columns[-1][order])
        for j in (0, 7):
            np.testing.assert_array_equal(x[:, j], columns[j][order])


# -- (2) images larger than the memory allowed -------------------------------------------------

@linux_only
def test_an_image_set_larger_than_the_data_limit_trains_through_the_disk_loader(tmp_path):
    write_images(tmp_path / "images.npy", IMAGES)
    assert os.path.getsize(tmp_path / "images.npy") > 4 * MAIN_MARGIN
    report = train_limited({"kind": "images", "path": str(tmp_path / "images.npy"),
                            "labels": str(tmp_path / "labels.npy"), "batch_size": 128, "steps": 32,
                            "files": [str(tmp_path / "images.npy")]})
    assert report["steps"] == 32 and report["batches"] == 64  # half an epoch
    assert np.isfinite(report["loss"])
    assert not report["loaded"]


def test_image_batches_are_the_stamps_of_the_file_in_the_seeded_epoch_order(tmp_path):
    write_images(tmp_path / "images.npy", 1000)
    images = np.load(tmp_path / "images.npy", mmap_mode="r")
    labels = np.load(tmp_path / "labels.npy")
    batches = loader(MemmapImages(tmp_path / "images.npy", tmp_path / "labels.npy"), batch_size=64, seed=3,
                     workers=2, chunk=3)
    for epoch in range(2):
        order = epoch_order(1000, 3, epoch).numpy()
        got = list(batches)
        assert len(got) == len(batches) == 16
        for b in (0, 5, 15):
            x, y = got[b]
            rows = order[b * 64:(b + 1) * 64]
            np.testing.assert_array_equal(x.numpy(), images[rows])
            np.testing.assert_array_equal(y.numpy(), labels[rows])


def test_chunked_hdf5_images_read_per_batch_equal_the_numpy_ones(tmp_path):
    write_images(tmp_path / "images.npy", 300)
    images = np.load(tmp_path / "images.npy")
    classes = np.arange(300) % 4
    with h5py.File(tmp_path / "stamps.h5", "w") as f:
        f.create_dataset("images", data=images, chunks=(1, 1, 64, 64), compression="gzip")
        f.create_dataset("last", data=images.transpose(0, 2, 3, 1))  # contiguous: memory-mapped
        f["classes"] = classes
    chunked = MemmapImages(tmp_path / "stamps.h5", "classes")
    last = MemmapImages(tmp_path / "stamps.h5", classes, images="last", channels="last")
    index = [299, 0, 17, 18, 19, 17, 5]  # unsorted, a run, a repeat
    for dataset in (chunked, last):
        x, y = dataset.read(index)
        np.testing.assert_array_equal(x.numpy(), images[index])
        assert y.dtype == torch.int64 and y.tolist() == classes[index].tolist()
        x, y = dataset[-1]
        assert x.shape == (1, 64, 64) and int(y) == 3
    x, y = next(iter(loader(chunked, batch_size=50, seed=1, workers=2)))
    np.testing.assert_array_equal(x.numpy(), images[epoch_order(300, 1, 0)[:50].numpy()])


# -- (3) seeding and reproducibility -----------------------------------------------------------

@pytest.fixture
def small_table(tmp_path):
    write_catalogue(tmp_path / "small", rows=1000, seed=1)
    return MemmapTable(tmp_path / "small", FEATURES, "target")


def epochs(batches, n=2):
    return [[y.clone() for _, y in batches] for _ in range(n)]


def test_two_epochs_give_the_seeded_orders_with_zero_or_two_workers(small_table):
    target = small_table.read(range(1000))[1]
    runs = {workers: epochs(loader(small_table, batch_size=64, seed=5, workers=workers)) for workers in (0, 2)}
    again = epochs(loader(small_table, batch_size=64, seed=5, workers=2))
    for epoch in range(2):
        expected = target[epoch_order(1000, 5, epoch)]
        for workers in (0, 2):
            assert torch.equal(torch.cat(runs[workers][epoch]), expected)
        assert all(torch.equal(a, b) for a, b in zip(again[epoch], runs[0][epoch]))
    assert not torch.equal(torch.cat(runs[0][0]), torch.cat(runs[0][1]))  # reshuffled each epoch
    other = epochs(loader(small_table, batch_size=64, seed=6, workers=0), 1)[0]
    assert not torch.equal(torch.cat(other), torch.cat(runs[0][0]))


def test_random_transforms_draw_the_same_per_batch_whatever_the_workers_and_chunks(tmp_path):
    write_images(tmp_path / "images.npy", 200)
    augment = T.Compose([T.RandomDihedral(), T.GaussianNoise(0.1)])
    dataset = MemmapImages(tmp_path / "images.npy", tmp_path / "labels.npy", transform=augment)
    runs = [[[x.clone() for x, _ in batches] for _ in range(2)]
            for batches in (loader(dataset, 32, seed=2, workers=0, chunk=1),
                            loader(dataset, 32, seed=2, workers=2, chunk=3))]
    torch.manual_seed(123)
    state = torch.get_rng_state()
    next(iter(loader(dataset, 32, seed=2, workers=0)))
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is left alone
    for a, b in zip(runs[0], runs[1]):
        assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not torch.equal(runs[0][0][0], runs[0][1][0])
    plain = np.load(tmp_path / "images.npy")[epoch_order(200, 2, 0)[:32].numpy()]
    assert not np.allclose(runs[0][0][0].numpy(), plain)  # augmented


def test_set_epoch_resumes_mid_epoch(small_table):
    sampler_loader = loader(small_table, batch_size=100, seed=9, workers=0, chunk=4)
    full = [y for _, y in sampler_loader]
    sampler_loader.batch_sampler.set_epoch(0, start=6)
    assert all(torch.equal(a, b) for a, b in zip([y for _, y in sampler_loader], full[6:]))
    sampler = EpochBatchSampler(1000, 300, seed=9, drop_last=True, chunk=2)
    reads = list(sampler)
    assert len(sampler) == 3 and [len(r) for r in reads] == [600, 300]
    assert isinstance(reads[0], Fetch) and reads[1].key == (9, 0, 2)
    assert list(sampler)[0].key == (9, 1, 0)


def test_fit_on_the_disk_loader_equals_fit_on_the_arrays_with_the_same_seed(small_table):
    """Same batches, same dropout draws: the loader never touches the global RNG."""
    x, y = small_table.read(np.arange(1000))

    def trained(data, **kwargs):
        torch.manual_seed(0)
        model = Sequential([Dense(16, activation="relu"), Dropout(0.2), Dense(1)], input_shape=(8,))
        model.compile(optimizer="adam", loss="mse", device="cpu")
        history = model.fit(data, epochs=3, verbose=0, seed=4, **kwargs)
        return history.history["loss"], [p.detach().clone() for p in model.parameters()]

    losses, weights = trained(x, y=y, batch_size=64)
    for workers in (0, 2):
        disk_losses, disk_weights = trained(loader(small_table, batch_size=64, seed=4, workers=workers))
        assert disk_losses == losses
        assert all(torch.equal(a, b) for a, b in zip(disk_weights, weights))


def test_the_datasets_also_work_as_plain_datasets(small_table):
    """``fit(dataset)`` and a plain ``DataLoader`` stack samples with default_collate: same batches."""
    x, y = small_table.read(np.arange(1000))
    plain = next(iter(torch.utils.data.DataLoader(small_table, batch_size=10)))
    assert torch.equal(plain[0], x[:10]) and torch.equal(plain[1], y[:10])
    sample = small_table[3]
    assert torch.equal(sample[0], x[3]) and sample[1].shape == ()

    def trained(data, **kwargs):
        torch.manual_seed(0)
        model = Sequential([Dense(4), Dense(1)], input_shape=(8,)).compile(optimizer="sgd", loss="mse", device="cpu")
        return model.fit(data, batch_size=100, verbose=0, seed=1, **kwargs).history["loss"]

    assert trained(small_table) == trained(x, y=y)


# -- formats and errors ------------------------------------------------------------------------

def test_hdf5_fits_and_parquet_catalogues_read_the_same_rows(tmp_path):
    rng = np.random.default_rng(4)
    n = 500
    table = Table({"g": rng.random(n, dtype=np.float32), "r": rng.random(n), "cls": rng.integers(0, 3, n),
                   "z": rng.random(n, dtype=np.float32)})
    with h5py.File(tmp_path / "cols.h5", "w") as f:
        for name in table.colnames:
            f.create_dataset(f"photometry/{name}", data=table[name], chunks=(64,) if name == "r" else None)
    table.write(tmp_path / "compound.h5", path="catalogue")
    table.write(tmp_path / "cat.fits")
    table.write(tmp_path / "cat.parquet")
    parquet_to_columns(tmp_path / "cat.parquet", tmp_path / "from_parquet")
    index = [3, 499, 0, 3]
    expected_x = np.stack([table["g"], table["r"]], 1).astype(np.float32)[index]
    sources = [(tmp_path / "cols.h5", {"group": "photometry"}), (tmp_path / "compound.h5", {"group": "catalogue"}),
               (tmp_path / "cat.fits", {}), (tmp_path / "from_parquet", {})]
    for path, options in sources:
        x, y = MemmapTable(path, ["g", "r"], ["z", "cls"], **options).read(index)
        np.testing.assert_array_equal(x.numpy(), expected_x, err_msg=str(path))
        np.testing.assert_array_equal(y.numpy(), np.stack([table["z"], table["cls"]], 1)[index])
        _, cls = MemmapTable(path, ["g"], "cls", **options).read(index)
        assert cls.dtype == torch.int64 and cls.tolist() == list(table["cls"][index])
    shuffled = np.random.default_rng(0).permutation(n)  # dense: the chunked column is read by slices
    x, _ = MemmapTable(tmp_path / "cols.h5", ["r", "g"], "z", group="photometry").read(shuffled)
    np.testing.assert_array_equal(x[:, 0].numpy(), np.asarray(table["r"], np.float32)[shuffled])


def test_fits_scaled_columns_are_scaled_per_batch(tmp_path):
    columns = [fits.Column("mag", "I", array=np.arange(100, dtype=np.int16)),
               fits.Column("y", "E", array=np.ones(100, np.float32))]
    table = fits.BinTableHDU.from_columns(columns, name="CAT")
    table.header["TSCAL1"], table.header["TZERO1"] = 0.01, 20.0  # stored integers, physical magnitudes
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(tmp_path / "scaled.fits")
    with fits.open(tmp_path / "scaled.fits") as hdul:
        expected = hdul["CAT"].data["mag"][[0, 50, 99]]
    x, _ = MemmapTable(tmp_path / "scaled.fits", ["mag"], "y", hdu="CAT").read([0, 50, 99])
    np.testing.assert_allclose(x[:, 0].numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(expected, [20.0, 20.5, 20.99], rtol=1e-6)


def test_unlabelled_images_give_x_alone_for_predict(tmp_path):
    write_images(tmp_path / "images.npy", 40)
    batches = loader(MemmapImages(tmp_path / "images.npy"), batch_size=16, shuffle=False, workers=0)
    first = next(iter(batches))
    assert isinstance(first, torch.Tensor) and first.shape == (16, 1, 64, 64)
    assert torch.equal(torch.cat(list(batches)), torch.from_numpy(np.load(tmp_path / "images.npy")))


def test_errors_name_the_file_and_the_problem(tmp_path, small_table):
    write_catalogue(tmp_path / "cat", rows=10)
    with pytest.raises(DeepfieldError, match="no column 'mag_u'.*f0"):
        MemmapTable(tmp_path / "cat", ["mag_u"], "target")
    Table({"a": [1.0]}).write(tmp_path / "t.parquet")
    with pytest.raises(DeepfieldError, match="parquet_to_columns"):
        MemmapTable(tmp_path / "t.parquet", ["a"])
    np.save(tmp_path / "flat.npy", np.zeros((4, 5), np.float32))
    with pytest.raises(DeepfieldError, match=r"\(N, C, H, W\)"):
        MemmapImages(tmp_path / "flat.npy")
    np.save(tmp_path / "bad.npy", np.full((4, 1, 2, 2), np.nan, np.float32))
    with pytest.raises(DeepfieldError, match="row 2 holds NaN"):
        MemmapImages(tmp_path / "bad.npy").read([2])
    with pytest.raises(DeepfieldError, match="workers"):
        loader(small_table, workers=-1)
    with pytest.raises(IndexError):
        small_table[1000]
