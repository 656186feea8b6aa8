"""The strategies the engine asks how processes share its work, checked without processes: what a
rank of a data-parallel fit runs and how its loss is weighted, and that one process changes nothing."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from deepfield.errors import DeepfieldError
from deepfield.training import distributed, optimizers
from deepfield.training.batches import LoaderBatches, TensorBatches
from deepfield.training.device import Placement
from deepfield.training.distributed import DataParallel, SingleProcess
from deepfield.training.engine import RunningMean

CPU = torch.device("cpu")


def mean_step(x: torch.Tensor, y: torch.Tensor, weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A stand-in training step: the loss is the rows' mean, returned times the weight it was given."""
    return x, x.mean() * weight


def test_alone_the_strategy_is_one_process_even_inside_local_only():
    assert isinstance(distributed.current_strategy(), SingleProcess)
    with distributed.local_only():
        assert isinstance(distributed.current_strategy(), SingleProcess)


def test_one_process_runs_whole_batches_and_its_own_numbers():
    alone = SingleProcess()
    batches = TensorBatches(torch.arange(10.0).reshape(10, 1), None, 4, shuffle=True)
    assert alone.fit_batches(batches, None) == (batches, None)
    assert alone.evaluation_batches(batches) == (batches, alone)
    x = torch.ones(4, 1)
    assert alone.part(batches, 0) is None and alone.step(mean_step, batches, 0, x, x)[2] == 4
    assert alone.any_rank(False, CPU) is False and alone.broadcast(7) == 7 and alone.is_main
    tracker = RunningMean()
    tracker.add(torch.tensor(2.0), 3)
    assert alone.logs(tracker, [], CPU) == {"loss": 2.0}
    rows = np.arange(6.0).reshape(3, 2)
    assert alone.gather_rows(rows) is rows


@pytest.mark.parametrize("samples, batch, world", [(45, 8, 3), (10, 4, 4), (9, 8, 2)])
def test_the_ranks_weighted_losses_average_to_the_global_batch_mean(samples, batch, world):
    """DDP averages the ranks' gradients: with rank r's mean loss weighted by n_r * W / B, that average
    is the gradient of the global batch's mean, also where B is not a multiple of W (and where a rank
    has no sample and runs a stand-in row of weight 0)."""
    x = torch.randn(samples, 3, generator=torch.Generator().manual_seed(0))
    whole = TensorBatches(x, None, batch, shuffle=True)
    ranks = [DataParallel(r, world) for r in range(world)]
    shards = [rank.fit_batches(whole, None)[0] for rank in ranks]
    epochs = [list(shard.epoch(2, 5)) for shard in shards]
    for step, (xb, _) in enumerate(whole.epoch(2, 5)):
        losses, counts = [], []
        for rank, shard, batches in zip(ranks, shards, epochs):
            part = batches[step][0]
            offset, total = rank.part(shard, step)
            _, loss, n = rank.step(mean_step, shard, step, part, part)
            if n:
                torch.testing.assert_close(part, xb[offset:offset + n])  # its rows of the global batch
            losses.append(loss)
            counts.append(n)
            assert total == len(xb)
        assert sum(counts) == len(xb)
        torch.testing.assert_close(sum(losses) / world, xb.mean(), rtol=1e-6, atol=1e-6)


def test_a_data_loader_runs_whole_batches_unweighted_and_evaluates_whole_on_every_rank():
    data = TensorDataset(torch.arange(12.0).reshape(12, 1), torch.zeros(12, 1))
    rank = DataParallel(1, 2)
    batches = LoaderBatches(DataLoader(data, batch_size=3), CPU, with_y=True)
    train, _ = rank.fit_batches(batches, None)
    assert [xb.reshape(-1).tolist() for xb, _ in train.epoch(0, 0)] == [[3.0, 4.0, 5.0], [9.0, 10.0, 11.0]]
    x = torch.ones(3, 1)
    assert rank.part(train, 0) is None and rank.step(mean_step, train, 0, x, x)[1:] == (torch.tensor(1.0), 3)
    same, over = rank.evaluation_batches(batches)
    assert same is batches and isinstance(over, SingleProcess)  # nothing to sum over ranks
    with pytest.raises(DeepfieldError, match="validation data as arrays or a Dataset, not a DataLoader"):
        rank.fit_batches(TensorBatches(torch.ones(4, 1), torch.ones(4, 1), 2, shuffle=True), batches)


def test_evaluation_blocks_are_reduced_over_the_ranks():
    rank = DataParallel(2, 3)
    block, over = rank.evaluation_batches(TensorBatches(torch.arange(10.0).reshape(10, 1), None, 4, shuffle=False))
    assert over is rank and block.x.reshape(-1).tolist() == [7.0, 8.0, 9.0]
    assert not rank.is_main and DataParallel(0, 3).is_main


def test_an_optimiser_with_a_closure_cannot_train_data_parallel():
    model = nn.Linear(2, 1)
    newton = optimizers.get("newton")
    with pytest.raises(DeepfieldError, match="Newton evaluates the loss itself"):
        with DataParallel(0, 2).training(model, newton, Placement(CPU)):
            pass
    with SingleProcess().training(model, newton, Placement(CPU)) as net:
        assert net is model
