"""Data-parallel training over processes and machines, on plain ``torch.distributed``.

One process per device (a GPU, or a share of the CPU cores); every process holds the
whole model, trains on its shard of every global batch, and DistributedDataParallel
averages the gradients, so the weights stay equal everywhere. With the same seed and
global batch size the losses and weights equal a single-process run's (up to float
rounding; see :class:`~deepfield.training.engine.Engine` and ``DESIGN`` below).

On one machine::

    deepfield train run.yaml --devices 4          # 4 processes (GPUs, or CPU with gloo)

or from Python: ``launch(4, fn, *args)`` runs ``fn(*args)`` in 4 processes with the group set up.

The engine asks :func:`current_strategy` how the processes share its work: a
:class:`SingleProcess` (no process group, or one suspended by :func:`local_only`) or a
:class:`DataParallel` over the group. Both answer the same few questions (:class:`Strategy`):
which batches this process runs, what the training model is wrapped in, how one step of
this process's rows is weighted, how logs are reduced, whether a stop anywhere stops every
process, and which process shows progress.

On several machines, start the same command on every machine with ``torchrun``
(it sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT)::

    torchrun --nnodes 2 --nproc-per-node 4 --node-rank 0 \\
             --master-addr HOST0 --master-port 29500 $(which deepfield) train run.yaml
    # on the second machine the same with --node-rank 1

(or ``--rdzv-backend c10d --rdzv-endpoint HOST0:29500 --rdzv-id RUN``). The data must be
readable on every machine; only rank 0 writes the run folder, and on a resume rank 0
reads the backup and hands it to the others, so the run folder need not be shared.

DESIGN
------
* Sharding: every rank computes the same seeded ``epoch_order``, cuts it into the global
  batches the single process would take, and takes its contiguous part of each
  (``tensor_split``: sizes differ by at most one). The training loss of rank ``r`` is
  scaled by ``n_r * W / B`` before ``backward`` (1 when ``W`` divides ``B``), so DDP's
  average of the ranks' mean-loss gradients is the gradient of the global batch's mean.
* Batch norm: deepfield's ``BatchNormalization`` becomes :class:`SyncBatchNormalization`
  for the duration of ``fit`` (its batch statistics summed over ranks by a differentiable
  all-reduce; Keras semantics kept: momentum, biased moving variance); torch's own
  ``BatchNorm*d`` become ``nn.SyncBatchNorm`` on CUDA (torch syncs on GPUs only).
* Logs: the running loss and every metric are all-reduced at the end of an epoch (and of
  evaluate), so every rank logs, and every callback decides, on the same numbers.
* Files: callbacks with ``writes_files = True`` (CSVLogger, ModelCheckpoint) exist on
  rank 0 only; BackupAndRestore runs everywhere (the state gathers every rank's RNG) and
  writes on rank 0. ``tasks.pipeline.train`` writes the run folder from rank 0 only.
* Dropout and other per-sample noise (SpatialDropout, the Bayesian layers), on the CPU:
  every rank draws the noise of the whole global batch from one shared stream (rank 0's
  global generator after the model is built, the one a single process draws from) and
  keeps its rows (:mod:`deepfield.models.batch_noise`), so with arrays as data a run with
  dropout equals the single-process run too. On GPUs each rank draws its own masks from its
  CUDA generator (the global RNG is seeded with the run's seed on rank 0, with seeds derived
  from it elsewhere): statistically, not bitwise, the single-process run. So does noise that
  a layer of yours draws from the global RNG itself, and a Dataset input (whose DataLoader
  takes a seed from the global stream every epoch).
"""
from __future__ import annotations

import contextlib
import os
import socket
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ContextManager, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.models import batch_noise
from deepfield.models.normalization import BatchNormalization
from deepfield.training.batches import Batches, ShardedBatches, shard_evaluation, shard_training
from deepfield.training.device import Placement, set_rng_state

if TYPE_CHECKING:
    from deepfield.training.engine import RunningMean

Logs = dict[str, float]
Step = Callable[..., tuple[torch.Tensor, torch.Tensor]]  # (x, y[, weight]) -> (pred, loss)

_local_only = False


# -- where this process stands ---------------------------------------------------------------

def is_distributed() -> bool:
    """A process group of more than one process is initialised (and not suspended by :func:`local_only`)."""
    return (not _local_only and dist.is_available() and dist.is_initialized()
            and dist.get_world_size() > 1)


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """The number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    """This process's rank on its machine (``LOCAL_RANK``; 0 when not distributed)."""
    return int(os.environ.get("LOCAL_RANK", "0")) if is_distributed() else 0


def is_main() -> bool:
    """Whether this process writes files and prints: rank 0, or the only process."""
    return rank() == 0


def under_launcher() -> bool:
    """Started by torchrun (or :func:`launch`) as one of several processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


@contextlib.contextmanager
def local_only() -> Iterator[None]:
    """Within: this process acts alone (no collectives), e.g. rank 0's analysis after training."""
    global _local_only
    before, _local_only = _local_only, True
    try:
        yield
    finally:
        _local_only = before


# -- setup and teardown -----------------------------------------------------------------------

def default_backend() -> str:
    """``nccl`` with CUDA GPUs, ``gloo`` otherwise."""
    return "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"


def setup(backend: str | None = None) -> bool:
    """Join the process group that torchrun's environment describes; ``False`` when alone.

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``.
    With ``nccl`` each process takes GPU ``LOCAL_RANK``.
    """
    if not under_launcher():
        return False
    if not dist.is_available():
        raise DeepfieldError("this PyTorch build has no torch.distributed; train with --devices 1")
    if dist.is_initialized():
        return True
    backend = backend or default_backend()
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, init_method="env://")
    return True


def teardown() -> None:
    """Leave the process group (if any)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_device(device: torch.device) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` for CUDA, the CPU for MPS (gloo cannot carry MPS tensors)."""
    if not is_distributed():
        return device
    if device.type == "cuda":
        return torch.device("cuda", local_rank() if device.index is None else device.index)
    if device.type == "mps":
        warnings.warn("distributed training runs on the CPU here (gloo does not carry MPS tensors)", stacklevel=3)
        return torch.device("cpu")
    return device


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _worker(index: int, nprocs: int, port: int, threads: int, queue: Any, fn: Callable[..., Any],
            args: tuple[Any, ...]) -> None:
    os.environ.update(RANK=str(index), LOCAL_RANK=str(index), WORLD_SIZE=str(nprocs),
                      LOCAL_WORLD_SIZE=str(nprocs), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if threads:
        torch.set_num_threads(threads)
    setup()
    try:
        result = fn(*args)
        queue.put((index, result))  # handed back before teardown (see launch)
        dist.barrier()  # leave together: a rank tearing gloo down while another still talks aborts the process
    finally:
        teardown()


def launch(nprocs: int, fn: Callable[..., Any], *args: Any, threads: int | None = None) -> list[Any]:
    """Run ``fn(*args)`` in ``nprocs`` processes on this machine, the process group set up in each.

    ``fn`` must be importable (a module-level function): the processes are spawned.
    Returns the ranks' return values (picklable), in rank order; an exception in any
    process is raised here. ``threads``: torch threads per process (default: the CPU
    cores shared out when training on the CPU). For several machines use torchrun (see
    the module doc).
    """
    import torch.multiprocessing as mp

    if not arguments.is_integer(nprocs):
        raise DeepfieldError(f"launch needs at least one process, got {nprocs}")
    if threads is None:
        threads = 0 if torch.cuda.is_available() else max(1, (os.cpu_count() or 1) // nprocs)
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    port = free_port()
    processes = mp.start_processes(_worker, args=(nprocs, port, threads, queue, fn, args), nprocs=nprocs,
                                   join=False, start_method="spawn")
    results: dict[int, Any] = {}

    def drain() -> None:
        while not queue.empty():
            index, value = queue.get()
            results[index] = value

    try:
        while not processes.join(timeout=0.1):
            drain()
    except mp.ProcessExitedException as exc:
        drain()
        # gloo's threads can abort a process at interpreter exit ("terminate called without an
        # active exception") after every rank has handed back its result: the work is done
        if len(results) < nprocs:
            raise
        warnings.warn(f"distributed.launch: a process died at exit after finishing ({exc})", stacklevel=2)
    drain()
    return [results.get(i) for i in range(nprocs)]


# -- collectives on Python values -----------------------------------------------------------

def broadcast_object(value: Any, source: int = 0) -> Any:
    """``value`` from rank ``source`` on every rank (as is when not distributed)."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=source)
    return box[0]


def all_gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order."""
    if not is_distributed():
        return [value]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on at least one."""
    if not is_distributed():
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value)
    return bool(value.item() > 0)


def sum_values(values: list[Any], device: torch.device) -> list[float]:
    """Element-wise sum over ranks of numbers / 0-d tensors (float64 where the device has it)."""
    dtype = torch.float32 if device.type == "mps" else torch.float64
    tensor = torch.stack([torch.as_tensor(v, dtype=dtype).to(device).reshape(()) for v in values])
    dist.all_reduce(tensor)
    return tensor.tolist()


def reduced_metric(metric: Any, device: torch.device) -> float:
    """``metric.compute()`` over every rank's samples (the metric's own state is left as it is)."""
    from deepfield.training.metrics import AUC, SummedMetric, _Mean

    if isinstance(metric, SummedMetric):  # Precision, F1Score, R2Score, MeanIoU...: a tensor of sums
        state = metric.empty_state(device) if metric._state is None else metric._state.clone()
        dist.all_reduce(state)
        return metric.result(state)
    if isinstance(metric, _Mean):
        total, count = sum_values([metric._total, metric._count], device)
        return total / count if count else float("nan")
    if isinstance(metric, AUC):
        counts = metric._counts
        if counts is None:
            counts = torch.zeros(2 * (metric.num_thresholds + 1), dtype=torch.int64, device=device)
        counts = counts.clone()
        dist.all_reduce(counts)
        kept = metric._counts
        metric._counts, metric._thresholds = counts, metric._cpu_thresholds.to(counts.device)
        try:
            return float(metric.compute())
        finally:
            metric._counts = kept
    warnings.warn(f"metric {metric.name!r}: unknown to deepfield's distributed reduction; "
                  "logging the mean of the ranks' values", stacklevel=2)
    value = metric.compute()
    return sum_values([value], device)[0] / world_size()


def gather_rows(local: np.ndarray | None) -> np.ndarray | None:
    """Every rank's rows, concatenated in rank order (``None``: this rank had none)."""
    parts = [p for p in all_gather_objects(local) if p is not None]
    return np.concatenate(parts) if parts else None


# -- the model ----------------------------------------------------------------------------------

class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose gradient is the all-reduced gradient: d(sum_r f_r)/dx on every rank."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out


class SyncBatchNormalization(BatchNormalization):
    """deepfield's BatchNormalization with its batch statistics taken over every rank.

    The per-channel sum, sum of squares and count are summed over ranks in float64 with a
    differentiable all-reduce, so the gradient flows to every rank's samples as in one
    batch. The moving statistics follow Keras: ``moving = moving * momentum + batch * (1 - momentum)``
    with the biased batch variance. Outside a process group it is the plain layer.
    """

    def _normalise_batch(self, x: torch.Tensor) -> torch.Tensor:
        if not is_distributed():
            return super()._normalise_batch(x)
        channels = x.shape[1]
        flat = x.transpose(0, 1).reshape(channels, -1)
        acc = torch.float32 if x.device.type == "mps" else torch.float64
        wide = flat.to(acc)
        count = torch.full((1,), float(flat.shape[1]), dtype=acc, device=x.device)
        stats = _SumOverRanks.apply(torch.cat([wide.sum(1), (wide * wide).sum(1), count]))
        total = stats[-1]
        mean = stats[:channels] / total
        var = (stats[channels:2 * channels] / total - mean * mean).clamp_min(0.0)
        shape = (1, channels) + (1,) * (x.dim() - 2)
        scale = torch.rsqrt(var + self.epsilon)
        if self.gamma is not None:
            scale = scale * self.gamma.to(acc)
        shift = -mean * scale
        if self.beta is not None:
            shift = shift + self.beta.to(acc)
        y = x * scale.to(x.dtype).view(shape) + shift.to(x.dtype).view(shape)
        with torch.no_grad():
            m = self.momentum
            self.moving_mean.mul_(m).add_(mean.detach().to(self.moving_mean.dtype), alpha=1.0 - m)
            self.moving_variance.mul_(m).add_(var.detach().to(self.moving_variance.dtype), alpha=1.0 - m)
        return y


# Saved as the layer it stands in for: model.json written during a distributed fit (ModelCheckpoint)
# names BatchNormalization, and the class is not registered as a layer of its own.
SyncBatchNormalization.__name__ = "BatchNormalization"


def convert_sync_batchnorm(model: nn.Module) -> list[nn.Module]:
    """Make the batch-norm layers of ``model`` synchronise over ranks; returns the deepfield ones converted.

    deepfield's BatchNormalization changes class in place (same parameters, buffers and
    ``state_dict``; :func:`restore_batchnorm` changes it back). torch's ``BatchNorm*d``
    become ``nn.SyncBatchNorm`` on CUDA only: torch cannot sync them on the CPU, where
    each process then normalises with its own shard's statistics (a warning says so).
    """
    converted = []
    for module in model.modules():
        if type(module) is BatchNormalization:
            module.__class__ = SyncBatchNormalization
            converted.append(module)
    torch_bn = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                and not isinstance(m, nn.SyncBatchNorm)]
    if torch_bn:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        if device.type == "cuda":
            for name, child in list(model.named_children()):
                setattr(model, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
        else:
            warnings.warn(f"{len(torch_bn)} torch BatchNorm layers are not synchronised over processes on "
                          f"{device.type} (torch syncs them on GPUs only); deepfield's BatchNormalization is",
                          stacklevel=3)
    return converted


def restore_batchnorm(converted: list[nn.Module]) -> None:
    for module in converted:
        module.__class__ = BatchNormalization


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel (rank 0's weights broadcast to every rank)."""
    from torch.nn.parallel import DistributedDataParallel

    if not any(p.requires_grad for p in model.parameters()):
        raise DeepfieldError("distributed training needs trainable parameters; this model has none")
    ids = [device.index if device.index is not None else local_rank()] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def rank_seed(seed: int) -> int:
    """The global RNG seed of this rank: ``seed`` itself on rank 0, one derived from it elsewhere."""
    r = rank()
    if r == 0:
        return seed
    return int(np.random.SeedSequence([seed, r]).generate_state(1, np.uint64)[0] >> 1)


# -- strategies: how the processes share the engine's work ------------------------------------

def local_logs(tracker: RunningMean, metrics: list[Any]) -> Logs:
    """The loss and metric values of this process's samples (host syncs)."""
    return {"loss": tracker.result(), **{m.name: float(m.compute()) for m in metrics}}


class Strategy(Protocol):
    """What the engine asks of the processes that share its work (one, or a data-parallel group).

    ``rank`` and ``world``: this process and the number of them; ``is_main``: this process
    shows progress (and, in :class:`~deepfield.training.callbacks.CallbackList`, runs the
    callbacks that write files).
    """

    rank: int
    world: int

    @property
    def is_main(self) -> bool: ...

    def local_device(self, device: torch.device) -> torch.device:
        """The device this process trains on, given the one asked for."""

    def seed_rng(self, seed: int) -> None:
        """Seed the global torch RNG of this process for a fit seeded ``seed``."""

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every process."""

    def any_rank(self, flag: Any, device: torch.device) -> Any:
        """``flag`` when alone; true on every process when true on one (collective)."""

    def fit_batches(self, train: Batches, val: Batches | None) -> tuple[Batches, Batches | None]:
        """This process's training and validation batches."""

    def evaluation_batches(self, batches: Batches) -> tuple[Batches, Strategy]:
        """This process's batches to evaluate or predict, and the strategy whose processes
        their logs are reduced over (and their outputs gathered from)."""

    def training(self, model: nn.Module, optimizer: Any, placement: Placement) -> ContextManager[nn.Module]:
        """Within: ``model`` ready to train; yields what the training steps call."""

    def part(self, batches: Batches, step: int) -> tuple[int, int] | None:
        """(offset, total) of this process's rows in the global batch ``step``; ``None``: it has the whole batch."""

    def step(self, train_step: Step, batches: Batches, step: int, x: torch.Tensor,
             y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """``train_step`` on this process's rows ``(x, y)`` of batch ``step``: ``(pred, loss, samples)``,
        ``samples`` being the rows that count (the weight of ``loss`` in the epoch's mean)."""

    def logs(self, tracker: RunningMean, metrics: list[Any], device: torch.device) -> Logs:
        """The loss and metric values over every process's samples (collective: call at the same point)."""

    def gather_rows(self, local: np.ndarray | None) -> np.ndarray | None:
        """Every process's output rows, in order."""

    def noise_state(self) -> torch.Tensor:
        """The state of the stream the per-sample noise is drawn from (:mod:`deepfield.models.batch_noise`)."""

    def gather_state(self, state: dict[str, Any], tracker: RunningMean, device: torch.device) -> dict[str, Any]:
        """``state`` of :meth:`Engine.training_state` completed with every process's part (collective)."""

    def restore_rng(self, state: dict[str, Any]) -> None:
        """Restore this process's global RNG and noise stream from a training state."""


class SingleProcess:
    """One process does all the work: its batches are the global batches, its logs the logs."""

    rank, world, is_main = 0, 1, True

    def local_device(self, device: torch.device) -> torch.device:
        return device

    def seed_rng(self, seed: int) -> None:
        torch.manual_seed(seed)

    def broadcast(self, value: Any) -> Any:
        return value

    def any_rank(self, flag: Any, device: torch.device) -> Any:
        return flag

    def fit_batches(self, train: Batches, val: Batches | None) -> tuple[Batches, Batches | None]:
        return train, val

    def evaluation_batches(self, batches: Batches) -> tuple[Batches, Strategy]:
        return batches, self

    @contextlib.contextmanager
    def training(self, model: nn.Module, optimizer: Any, placement: Placement) -> Iterator[nn.Module]:
        yield placement.net(model)

    def part(self, batches: Batches, step: int) -> tuple[int, int] | None:
        return None

    def step(self, train_step: Step, batches: Batches, step: int, x: torch.Tensor,
             y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        pred, loss = train_step(x, y)
        return pred, loss, x.shape[0]

    def logs(self, tracker: RunningMean, metrics: list[Any], device: torch.device) -> Logs:
        return local_logs(tracker, metrics)

    def gather_rows(self, local: np.ndarray | None) -> np.ndarray | None:
        return local

    def noise_state(self) -> torch.Tensor:
        return torch.get_rng_state()  # per-sample noise is drawn from the global CPU generator

    def gather_state(self, state: dict[str, Any], tracker: RunningMean, device: torch.device) -> dict[str, Any]:
        return state

    def restore_rng(self, state: dict[str, Any]) -> None:
        set_rng_state(state["rng"])
        torch.set_rng_state(state.get("batch_noise", state["rng"]["cpu"]))


class DataParallel:
    """Rank ``rank`` of ``world`` processes training one model in DistributedDataParallel (module doc).

    Each process runs its part of every global batch (:func:`~deepfield.training.batches.shard_training`),
    its loss weighted so that DDP's gradient average is the global batch's gradient, its per-sample
    noise drawn from a stream every rank holds alike (:attr:`noise`, during :meth:`training`).
    """

    def __init__(self, rank: int, world: int):
        self.rank, self.world = rank, world
        self.noise: torch.Generator | None = None  # the shared per-sample noise stream of the fit under way

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local_device(self, device: torch.device) -> torch.device:
        return local_device(device)

    def seed_rng(self, seed: int) -> None:
        torch.manual_seed(rank_seed(seed))

    def broadcast(self, value: Any) -> Any:
        return broadcast_object(value)

    def any_rank(self, flag: Any, device: torch.device) -> bool:
        return any_rank(bool(flag), device)

    def fit_batches(self, train: Batches, val: Batches | None) -> tuple[Batches, Batches | None]:
        train = shard_training(train, self.rank, self.world)
        if val is not None:
            val, sharded = shard_evaluation(val, self.rank, self.world)
            if not sharded:  # every rank runs the whole loader: nothing to sum over ranks
                raise DeepfieldError("distributed fit: pass validation data as arrays or a Dataset, not a DataLoader")
        return train, val

    def evaluation_batches(self, batches: Batches) -> tuple[Batches, Strategy]:
        batches, sharded = shard_evaluation(batches, self.rank, self.world)
        return batches, (self if sharded else SingleProcess())  # a DataLoader runs whole on every rank

    @contextlib.contextmanager
    def training(self, model: nn.Module, optimizer: Any, placement: Placement) -> Iterator[nn.Module]:
        """Synchronised batch norm, the model in DDP (compiled when ``jit_compile``), the shared noise stream."""
        if getattr(optimizer, "requires_closure", False):
            raise DeepfieldError(f"{type(optimizer).__name__} evaluates the loss itself (a closure) and "
                                 "cannot train data-parallel; use one process (--devices 1)")
        converted = convert_sync_batchnorm(model)
        try:
            net = placement.compile(wrap(model, placement.device))
            # Per-sample noise (dropout on the CPU) continues rank 0's global stream, the one a single
            # process would draw from, on every rank alike (deepfield.models.batch_noise)
            self.noise = torch.Generator()
            self.noise.set_state(broadcast_object(torch.get_rng_state()))
            yield net
        finally:
            self.noise = None
            restore_batchnorm(converted)

    def part(self, batches: Batches, step: int) -> tuple[int, int] | None:
        if not isinstance(batches, ShardedBatches):  # a DataLoader's batches: each rank has whole batches
            return None
        return batches.offset(step), batches.counts(step)[1]

    def step(self, train_step: Step, batches: Batches, step: int, x: torch.Tensor,
             y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        if not isinstance(batches, ShardedBatches):
            pred, loss = train_step(x, y)
            return pred, loss, x.shape[0]
        n, total = batches.counts(step)
        with batch_noise.global_batch(batches.offset(step), x.shape[0], total, self.noise):
            pred, loss = train_step(x, y, n * self.world / total)
        return pred, loss, n

    def logs(self, tracker: RunningMean, metrics: list[Any], device: torch.device) -> Logs:
        total, count = sum_values(list(tracker.totals()), device)
        return {"loss": total / count if count else float("nan"),
                **{m.name: reduced_metric(m, device) for m in metrics}}

    def gather_rows(self, local: np.ndarray | None) -> np.ndarray | None:
        return gather_rows(local)

    def noise_state(self) -> torch.Tensor:
        return torch.get_rng_state() if self.noise is None else self.noise.get_state()

    def gather_state(self, state: dict[str, Any], tracker: RunningMean, device: torch.device) -> dict[str, Any]:
        """Every rank's RNG (``rng_ranks``) and, mid-epoch, the loss so far over every rank; rank 0 writes it."""
        state["rng_ranks"] = all_gather_objects(state["rng"])
        if state["epoch_loss"] is not None:
            total, count = sum_values(list(tracker.totals()), device)
            state["epoch_loss"] = {"total": torch.tensor(total, dtype=torch.float64), "count": int(count)}
        return state

    def restore_rng(self, state: dict[str, Any]) -> None:
        """This rank's RNG from ``rng_ranks``; from a backup of another world size, rank 0's and fresh
        streams elsewhere. The noise stream continues alike on every rank."""
        ranks = state.get("rng_ranks")
        if ranks is not None and len(ranks) == self.world:
            set_rng_state(ranks[self.rank])
        else:
            set_rng_state(state["rng"])
            if self.rank:
                torch.manual_seed(rank_seed(int(state["seed"]) + int(state["epoch"])))
        noise = state.get("batch_noise", state["rng"]["cpu"])
        if self.noise is None:
            torch.set_rng_state(noise)
        else:
            self.noise.set_state(noise)


def current_strategy() -> Strategy:
    """How this process shares work now: :class:`DataParallel` under a process group, else :class:`SingleProcess`."""
    return DataParallel(rank(), world_size()) if is_distributed() else SingleProcess()


__all__ = [
    "DataParallel", "SingleProcess", "Strategy", "SyncBatchNormalization", "all_gather_objects", "any_rank",
    "broadcast_object", "convert_sync_batchnorm", "current_strategy", "gather_rows", "is_distributed", "is_main",
    "launch", "local_only", "local_rank", "rank", "setup", "teardown", "world_size", "wrap",
]
