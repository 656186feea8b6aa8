"""From what the user hands to fit/evaluate/predict to batches on the training device.

Three kinds of input, one interface (:class:`Batches`):

* in-memory arrays (numpy arrays, torch tensors, nested lists): checked once
  (numeric dtype, equal lengths, no NaN/inf), converted (floating and bool → float32,
  integers → int64 for ``x``; integer labels stay int64), moved to the device ONCE,
  then sliced per step with a permutation tensor — no DataLoader, no per-sample collate;
* a map-style ``torch.utils.data.Dataset`` yielding ``(x, y)`` pairs: batched by one
  persistent loader (:func:`deepfield.data.memmap.loader`) following the same seeded
  permutation, with :func:`default_workers` worker processes and, on CUDA, pinned memory
  so that host-to-GPU copies overlap the step;
* a ``DataLoader``: used as given (its own batch size and order); batches are moved
  to the device as they come (a :func:`~deepfield.data.memmap.loader` is told the epoch,
  so its order follows ``fit``'s epochs and a resumed epoch starts at the right batch).

Shuffling never touches the global RNG: epoch ``e`` of a run seeded ``s`` is ordered
by ``torch.randperm`` under a private ``torch.Generator`` seeded from ``(s, e)``, so
the order of any epoch can be regenerated when training resumes mid-epoch.

Under a process group (:mod:`deepfield.training.distributed`), :func:`shard_training`
gives rank ``r`` of ``W`` its contiguous part of every global batch of that same order,
and :func:`shard_evaluation` its contiguous block of the (unshuffled) samples.
"""
from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator
from typing import Any, Protocol, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset, default_collate
from torch.utils.data.distributed import DistributedSampler

from deepfield import arguments
from deepfield.data.memmap import EpochBatchSampler, loader
from deepfield.data.splits import epoch_order
from deepfield.errors import DeepfieldError
from deepfield.models.packed import Packed

BatchSize = Union[int, str]
Batch = tuple[torch.Tensor, Union[torch.Tensor, None]]


class Batches(Protocol):
    """One epoch's batches on demand."""

    steps: int | None  # batches per epoch; None when the source has no length
    samples: int | None  # samples per epoch; None when the source has no length

    def epoch(self, epoch: int, seed: int, start: int = 0) -> Iterator[Batch]:
        """Batches of ``epoch`` in the order fixed by ``seed``, skipping the first ``start``."""
        ...

    def example(self) -> torch.Tensor:
        """A small ``x`` batch on the device, to build and check the model before training."""
        ...


def check_batch_size(batch_size: BatchSize | None) -> BatchSize:
    """``None`` → 32 (Keras's default); otherwise a positive int or ``"full"``."""
    if batch_size is None:
        return 32
    if batch_size == "full":
        return batch_size
    return arguments.integer("batch_size", batch_size, expected="a positive integer or 'full'")


# -- in-memory arrays ----------------------------------------------------------------------

def as_tensor(data: Any, name: str, *, labels: bool = False) -> torch.Tensor:
    """``data`` as a CPU-or-device tensor with a training dtype, or a one-line error naming it.

    Floating and bool arrays become float32; integer ``x`` becomes float32 and integer
    labels (``labels=True``) int64, as sparse class indices need.
    """
    if isinstance(data, torch.Tensor):
        tensor = data.detach()
    else:
        array = np.asarray(data)
        if array.dtype.kind not in "biuf":
            raise DeepfieldError(f"{name} has dtype {array.dtype}; expected numbers (bool, integer or float)")
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    if tensor.is_complex():
        raise DeepfieldError(f"{name} has dtype {tensor.dtype}; expected real numbers")
    if tensor.dim() == 0:
        raise DeepfieldError(f"{name} is a scalar; expected an array with one row per sample")
    if len(tensor) == 0:
        raise DeepfieldError(f"{name} is empty (0 samples); expected an array with one row per sample")
    if tensor.is_floating_point() or tensor.dtype == torch.bool:
        return tensor.float()
    return tensor.long() if labels else tensor.float()


def check_finite(tensor: torch.Tensor, name: str) -> None:
    """Raise naming ``name``, the count and the first bad sample if ``tensor`` has NaN or inf."""
    if not tensor.is_floating_point():
        return
    finite = torch.isfinite(tensor).reshape(len(tensor), -1)
    bad = int(finite.numel() - finite.sum())  # the one host sync of this check
    if bad:
        first = int((~finite.all(1)).nonzero()[0, 0])
        raise DeepfieldError(
            f"{name} contains {bad} NaN or infinite value{'s' * (bad != 1)} (first in sample {first}); "
            "remove or fill them before training"
        )


def check_lengths(x: torch.Tensor, y: torch.Tensor, x_name: str, y_name: str) -> None:
    if len(x) != len(y):
        raise DeepfieldError(f"{x_name} has {len(x)} samples but {y_name} has {len(y)}; they must match")


def resident_device(nbytes: int, device: torch.device, free_bytes: int | None = None) -> torch.device:
    """Where in-memory arrays of ``nbytes`` stay during a fit on ``device``.

    On the device when they take at most half its free memory (the other half is the
    network's); otherwise, on a CUDA GPU, in pinned host memory, each batch copied over as
    it is needed. ``free_bytes`` overrides the GPU's answer (for tests).
    """
    if device.type != "cuda":
        return device  # the CPU, or an accelerator sharing the host's memory
    if free_bytes is None:
        free_bytes = torch.cuda.mem_get_info(device)[0]
    return device if nbytes <= free_bytes // 2 else torch.device("cpu")


def prepare_arrays(x: Any, y: Any, device: torch.device, prefix: str = "") -> tuple[torch.Tensor, torch.Tensor | None]:
    """Check ``x`` (and ``y`` if given) and place them where they stay (:func:`resident_device`);
    names in errors get ``prefix``."""
    x_name, y_name = f"{prefix}x", f"{prefix}y"
    xt = as_tensor(x, x_name)
    yt = None if y is None else as_tensor(y, y_name, labels=True)
    home = device if xt.device.type == device.type else (  # data handed over on the GPU stay there
        resident_device(xt.nbytes + (yt.nbytes if yt is not None else 0), device))
    xt = _resident(xt, home, device)
    check_finite(xt, x_name)
    if yt is None:
        return xt, None
    yt = _resident(yt, home, device)
    check_lengths(xt, yt, x_name, y_name)
    check_finite(yt, y_name)
    return xt, yt


def prepare_packed(x: Packed, y: Packed | Any, device: torch.device,
                   prefix: str = "") -> tuple[Packed, Packed | torch.Tensor | None]:
    """:func:`prepare_arrays` for the inputs (and targets) of a model with several: each part checked and
    placed, every part with as many samples."""
    xs = [as_tensor(part, f"{prefix}{name}") for part, name in zip(x.parts, x.names)]
    ys = (None if y is None else [as_tensor(p, f"{prefix}{n}", labels=True) for p, n in zip(y.parts, y.names)]
          if isinstance(y, Packed) else [as_tensor(y, f"{prefix}y", labels=True)])
    named = list(zip(xs + (ys or []), x.names + (y.names if isinstance(y, Packed) else (f"{prefix}y",) * bool(ys))))
    home = resident_device(sum(t.nbytes for t, _ in named), device)
    placed = []
    for tensor, name in named:
        check_lengths(named[0][0], tensor, named[0][1], name)
        placed.append(_resident(tensor, home, device))
        check_finite(placed[-1], name)
    px = Packed(placed[:len(xs)], x.names)
    if ys is None:
        return px, None
    return px, Packed(placed[len(xs):], y.names) if isinstance(y, Packed) else placed[-1]


def _resident(tensor: torch.Tensor, home: torch.device, device: torch.device) -> torch.Tensor:
    if home == device:
        return tensor.to(device)
    tensor = tensor.cpu()
    return tensor.pin_memory() if device.type == "cuda" else tensor


class TensorBatches:
    """Batches sliced from tensors held in memory, on the device or (too big for it) on the host.

    ``x``: ``(N, ...)``; ``y``: ``(N, ...)`` or ``None`` (prediction). With
    ``batch_size="full"`` one batch is the whole set (never shuffled: order does not
    change a full-batch gradient); with ``shuffle=False`` batches are views, no copies.
    ``device``: where batches go (default: where ``x`` is); tensors kept on the host by
    :func:`resident_device` are sliced there and each batch is copied over (asynchronously
    from pinned memory).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None, batch_size: BatchSize, shuffle: bool,
                 device: torch.device | None = None):
        self.x, self.y = x, y
        # "cuda" names the current GPU, which a tensor's device names with its index ("cuda:0")
        self.device = x.device if device is None else torch.empty(0, device=device).device
        self.samples = len(x)
        self.batch_size = self.samples if batch_size == "full" else min(int(batch_size), max(self.samples, 1))
        self.shuffle = shuffle and batch_size != "full"
        self.steps = math.ceil(self.samples / self.batch_size)

    def example(self) -> torch.Tensor:
        return self.to_device(self.x[:1])

    def epoch(self, epoch: int, seed: int, start: int = 0) -> Iterator[Batch]:
        x, y, size, moved = self.x, self.y, self.batch_size, self.to_device
        if not self.shuffle:
            ys = y.split(size) if y is not None else itertools.repeat(None)
            for xb, yb in itertools.islice(zip(x.split(size), ys), start, None):
                yield moved(xb), (moved(yb) if yb is not None else None)
            return
        order = epoch_order(self.samples, seed, epoch).to(x.device)
        for index in order.split(size)[start:]:
            yield moved(x.index_select(0, index)), (moved(y.index_select(0, index)) if y is not None else None)

    def to_device(self, batch: torch.Tensor) -> torch.Tensor:
        """``batch`` on the device batches go to (a copy from the host when the data stay there)."""
        if batch.device == self.device:
            return batch
        if self.device.type == "cuda" and not batch.is_pinned():
            batch = batch.pin_memory()
        return batch.to(self.device, non_blocking=True)


# -- datasets and loaders --------------------------------------------------------------------

def _place(value: Any, device: torch.device) -> torch.Tensor:
    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    if tensor.dtype == torch.float64:
        tensor = tensor.float()
    return tensor.to(device, non_blocking=True)


def _split_batch(batch: Any, device: torch.device, with_y: bool, source: str) -> Batch:
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        x, y = batch[0], batch[1]
    elif with_y:
        raise DeepfieldError(f"each batch from the {source} must be an (x, y) pair, got {type(batch).__name__}")
    else:
        x, y = (batch[0] if isinstance(batch, (tuple, list)) else batch), None
    return _place(x, device), (_place(y, device) if with_y else None)


class LoaderBatches:
    """Batches from a ``DataLoader`` (or an iterable dataset), moved to the device one by one.

    The loader decides batch size and order; resuming mid-epoch draws and discards the
    first ``start`` batches, which reproduces the interrupted epoch only when the
    loader's order is deterministic.
    """

    def __init__(self, loader: Any, device: torch.device, with_y: bool, source: str = "DataLoader"):
        self.loader, self.device, self.with_y, self.source = loader, device, with_y, source
        try:
            self.steps: int | None = len(loader)
        except TypeError:
            self.steps = None
        dataset = getattr(loader, "dataset", None)
        try:
            self.samples: int | None = len(dataset) if dataset is not None else None
        except TypeError:
            self.samples = None

    def example(self) -> torch.Tensor:
        dataset = getattr(self.loader, "dataset", None)
        if isinstance(dataset, Dataset) and not isinstance(dataset, IterableDataset):
            batch = self.loader.collate_fn([dataset[0]])  # one sample, without drawing from the loader
        else:
            batch = next(iter(self.loader))
        return _split_batch(batch, self.device, False, self.source)[0]

    def epoch(self, epoch: int, seed: int, start: int = 0) -> Iterator[Batch]:
        sampler = getattr(self.loader, "batch_sampler", None)
        if isinstance(sampler, EpochBatchSampler):  # deepfield's loader: no batch read only to be skipped
            sampler.set_epoch(epoch, start)
            start = 0
        for batch in itertools.islice(iter(self.loader), start, None):
            yield _split_batch(batch, self.device, self.with_y, self.source)


def default_workers(device: torch.device) -> int:
    """Loader worker processes for a Dataset: none on the CPU (its cores train), and on an
    accelerator half the cores (at most 8) prepare the next batches while it computes."""
    if device.type == "cpu":
        return 0
    return min(8, (os.cpu_count() or 2) // 2)


class DatasetBatches:
    """Batches from a map-style ``Dataset`` in the seeded order (``shuffle``) or in index order.

    One persistent :func:`~deepfield.data.memmap.loader` serves every epoch: ``workers``
    processes (default :func:`default_workers`), memory pinned when the device is CUDA.
    """

    def __init__(self, dataset: Dataset, batch_size: BatchSize, shuffle: bool, device: torch.device, with_y: bool,
                 workers: int | None = None):
        self.dataset, self.device, self.with_y = dataset, device, with_y
        self.samples = len(dataset)  # type: ignore[arg-type]
        self.batch_size = self.samples if batch_size == "full" else int(batch_size)
        self.shuffle = shuffle and batch_size != "full"
        self.steps = math.ceil(self.samples / max(self.batch_size, 1))
        self.workers = default_workers(device) if workers is None else workers
        self._loader: DataLoader | None = None

    def example(self) -> torch.Tensor:
        return _split_batch(default_collate([self.dataset[0]]), self.device, False, "Dataset")[0]

    def epoch(self, epoch: int, seed: int, start: int = 0) -> Iterator[Batch]:
        if self._loader is None:
            self._loader = loader(self.dataset, max(self.batch_size, 1), shuffle=self.shuffle, seed=seed,
                                  workers=self.workers, pin_memory=self.device.type == "cuda")
        sampler = self._loader.batch_sampler
        sampler.seed = int(seed)  # type: ignore[union-attr]
        sampler.set_epoch(epoch, start)  # type: ignore[union-attr]
        for batch in self._loader:
            yield _split_batch(batch, self.device, self.with_y, "Dataset")


# -- shards of a process group -----------------------------------------------------------------

def global_batches(samples: int, batch_size: int, shuffle: bool, seed: int, epoch: int,
                   start: int = 0) -> Iterator[torch.Tensor]:
    """The sample indices of each global batch of ``epoch`` from batch ``start`` (what one process takes)."""
    order = epoch_order(samples, seed, epoch) if shuffle else torch.arange(samples)
    yield from order.split(batch_size)[start:]


class ShardedBatches:
    """Rank ``rank``'s part of every global batch of a :class:`TensorBatches` or :class:`DatasetBatches`.

    Every rank cuts the same seeded order into the same global batches and takes its
    contiguous part (``tensor_split``: the first ``B % W`` ranks get one sample more).
    :meth:`counts` gives this rank's and the global batch's sizes, from which the strategy
    (:meth:`~deepfield.training.distributed.DataParallel.step`) weights the rank's loss so
    that DDP's gradient average is the global batch's gradient.
    A global batch smaller than the number of ranks leaves some ranks without samples:
    they run one repeated sample with weight 0 (DDP needs every rank in every step).
    """

    def __init__(self, inner: TensorBatches | DatasetBatches, rank: int, world: int):
        self.inner, self.rank, self.world = inner, rank, world
        self.samples, self.steps, self.batch_size = inner.samples, inner.steps, inner.batch_size

    def example(self) -> torch.Tensor:
        return self.inner.example()

    def counts(self, step: int) -> tuple[int, int]:
        """(samples of this rank, samples of the global batch) at ``step``."""
        total = min(self.batch_size, self.samples - step * self.batch_size)
        return total // self.world + (self.rank < total % self.world), total

    def offset(self, step: int) -> int:
        """Where this rank's samples start in the global batch at ``step`` (``counts`` of the ranks before it)."""
        total = self.counts(step)[1]
        return self.rank * (total // self.world) + min(self.rank, total % self.world)

    def _parts(self, epoch: int, seed: int, start: int) -> Iterator[torch.Tensor]:
        inner = self.inner
        for index in global_batches(self.samples, self.batch_size, inner.shuffle, seed, epoch, start):
            part = index.tensor_split(self.world)[self.rank]
            yield part if len(part) else index[:1]

    def epoch(self, epoch: int, seed: int, start: int = 0) -> Iterator[Batch]:
        inner = self.inner
        if isinstance(inner, TensorBatches):
            x, y, moved = inner.x, inner.y, inner.to_device
            for part in self._parts(epoch, seed, start):
                part = part.to(x.device)
                yield moved(x.index_select(0, part)), (moved(y.index_select(0, part)) if y is not None else None)
            return
        loader = DataLoader(inner.dataset, batch_sampler=[p.tolist() for p in self._parts(epoch, seed, start)])
        for batch in loader:
            yield _split_batch(batch, inner.device, inner.with_y, "Dataset")


class RoundRobinBatches:
    """Rank ``rank``'s batches of a DataLoader without a DistributedSampler: batches r, r+W, r+2W...

    Every rank iterates the loader (so its order must be the same on every rank) and a last
    round with fewer than ``W`` batches is dropped, so that every rank takes as many steps.
    """

    def __init__(self, inner: LoaderBatches, rank: int, world: int):
        self.inner, self.rank, self.world = inner, rank, world
        self.samples = inner.samples
        self.steps = None if inner.steps is None else inner.steps // world

    def example(self) -> torch.Tensor:
        return self.inner.example()

    def epoch(self, epoch: int, seed: int, start: int = 0) -> Iterator[Batch]:
        rounds = itertools.islice(zip(*[iter(self.inner.loader)] * self.world), start, None)
        for batches in rounds:
            yield _split_batch(batches[self.rank], self.inner.device, self.inner.with_y, self.inner.source)


def _has_distributed_sampler(loader: Any) -> bool:
    sampler = getattr(loader, "sampler", None)
    batch_sampler = getattr(getattr(loader, "batch_sampler", None), "sampler", None)
    return isinstance(sampler, DistributedSampler) or isinstance(batch_sampler, DistributedSampler)


def shard_training(batches: Batches, rank: int, world: int) -> Batches:
    """This rank's training batches (see :class:`ShardedBatches`); a DataLoader with a
    DistributedSampler is already sharded and is used as given."""
    if isinstance(batches, (TensorBatches, DatasetBatches)):
        return ShardedBatches(batches, rank, world)
    if isinstance(batches, LoaderBatches) and _has_distributed_sampler(batches.loader):
        return batches
    if isinstance(batches, LoaderBatches):
        return RoundRobinBatches(batches, rank, world)
    return batches


def shard_evaluation(batches: Batches, rank: int, world: int) -> tuple[Batches, bool]:
    """This rank's contiguous block of the samples (in order) and ``True``; a DataLoader is
    not split (every rank runs all of it) and comes back with ``False``."""
    if isinstance(batches, TensorBatches):
        lo, hi = _block(batches.samples, rank, world)
        y = batches.y[lo:hi] if batches.y is not None else None
        return TensorBatches(batches.x[lo:hi], y, batches.batch_size, False, batches.device), True
    if isinstance(batches, DatasetBatches):
        lo, hi = _block(batches.samples, rank, world)
        return DatasetBatches(Subset(batches.dataset, range(lo, hi)), batches.batch_size, False, batches.device,
                              batches.with_y), True
    return batches, False


def _block(samples: int, rank: int, world: int) -> tuple[int, int]:
    size, extra = divmod(samples, world)
    lo = rank * size + min(rank, extra)
    return lo, lo + size + (rank < extra)


def make_batches(x: Any, y: Any, *, batch_size: BatchSize, shuffle: bool, device: torch.device,
                 with_y: bool, prefix: str = "") -> Batches:
    """The :class:`Batches` for one input, checked; ``with_y=False`` for prediction.

    ``x`` may be arrays (then ``y`` holds the targets), a ``Dataset`` of ``(x, y)`` pairs
    or a ``DataLoader`` (then ``y`` must be ``None``).
    """
    if isinstance(x, DataLoader):
        _no_separate_y(y, "DataLoader")
        return LoaderBatches(x, device, with_y)
    if isinstance(x, Dataset):
        _no_separate_y(y, "Dataset")
        if not hasattr(x, "__len__"):
            return LoaderBatches(DataLoader(x, batch_size=int(batch_size)), device, with_y, "Dataset")
        return DatasetBatches(x, batch_size, shuffle, device, with_y)
    if with_y and y is None:
        raise DeepfieldError(f"{prefix}y is missing: pass the targets with the arrays {prefix}x")
    prepare = prepare_packed if isinstance(x, Packed) else prepare_arrays  # a model with several inputs or outputs
    xt, yt = prepare(x, y if with_y else None, device, prefix)
    return TensorBatches(xt, yt, batch_size, shuffle, device)


def _no_separate_y(y: Any, kind: str) -> None:
    if y is not None:
        raise DeepfieldError(f"y must be None when x is a {kind}: the {kind} yields the (x, y) pairs")


def split_validation(x: Any, y: Any, fraction: float) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """Keras's ``validation_split``: the LAST ``fraction`` of the samples, taken before shuffling.

    Returns ``((x_train, y_train), (x_val, y_val))``; a Dataset is split with ``Subset``.
    """
    if not 0.0 <= float(fraction) < 1.0:
        raise DeepfieldError(f"validation_split must be in [0, 1), got {fraction}")
    if isinstance(x, DataLoader):
        raise DeepfieldError("validation_split cannot split a DataLoader; pass validation_data instead")
    if isinstance(x, Dataset):
        n = len(x)  # type: ignore[arg-type]
        cut = n - int(n * fraction)
        return (Subset(x, range(cut)), None), (Subset(x, range(cut, n)), None)
    xs = x if isinstance(x, (torch.Tensor, Packed)) else np.asarray(x)
    ys = y if isinstance(y, (torch.Tensor, Packed)) or y is None else np.asarray(y)
    if ys is not None and len(xs) != len(ys):
        raise DeepfieldError(f"x has {len(xs)} samples but y has {len(ys)}; they must match")
    cut = len(xs) - int(len(xs) * fraction)
    if cut == len(xs) or cut == 0:
        raise DeepfieldError(
            f"validation_split={fraction} of {len(xs)} samples leaves "
            f"{'no validation' if cut == len(xs) else 'no training'} samples"
        )
    return (xs[:cut], None if ys is None else ys[:cut]), (xs[cut:], None if ys is None else ys[cut:])
