"""Per-sample training noise split over processes: each process's rows of the global batch's draw,
the values one process draws for those samples (simulated here in one process, rank by rank)."""
import pytest
import torch

from deepfield.models import Dropout, SpatialDropout
from deepfield.models.batch_noise import draw, global_batch
from deepfield.models.bayesian import BayesianDense
from deepfield.training.batches import ShardedBatches, TensorBatches


def sharded_outputs(layer, x: torch.Tensor, world: int, seed: int) -> torch.Tensor:
    """The layer's training output rank by rank (each rank's rows as ShardedBatches cuts them, drawing from
    a generator in the same state on every rank), stacked back in order."""
    shards = ShardedBatches(TensorBatches(x, None, len(x), shuffle=False), 0, world)
    outputs = []
    for rank in range(world):
        shards.rank = rank
        rows, total = shards.counts(0)
        start = shards.offset(0)
        generator = torch.Generator().manual_seed(seed)
        with global_batch(start, rows, total, generator):
            outputs.append(layer(x[start:start + rows]))
    return torch.cat(outputs)


@pytest.mark.parametrize("make, shape", [
    (lambda: Dropout(0.4), (11, 7)),
    (lambda: SpatialDropout(0.5), (11, 6, 4, 4)),
    (lambda: BayesianDense(5), (11, 3)),
])
@pytest.mark.parametrize("world", [2, 3])
def test_each_rank_gets_the_noise_one_process_gives_its_samples(make, shape, world):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    layer = make()
    layer(x)  # build (weights drawn now, not inside the comparison)
    layer.train()
    torch.manual_seed(5)
    alone = layer(x)
    assert not torch.equal(alone, layer.eval()(x))  # the layer does draw noise
    layer.train()
    # the same noise: equal to float32 rounding (a shard's matmul of fewer rows may round the last bit otherwise)
    torch.testing.assert_close(sharded_outputs(layer, x, world, seed=5), alone, rtol=1e-6, atol=1e-6)


def test_a_tensor_whose_first_axis_is_not_the_rank_s_rows_draws_from_the_process_s_own_generator():
    shared = torch.Generator().manual_seed(0)
    before = shared.get_state()

    def uniform(shape, generator):
        return torch.rand(shape, generator=generator)

    with global_batch(offset=4, rows=4, total=8, generator=shared):
        torch.manual_seed(3)
        other = draw((5, 2), uniform, torch.device("cpu"))  # 5 rows: not this rank's 4
        assert torch.equal(shared.get_state(), before)  # the shared stream was not touched
        own = draw((4, 2), uniform, torch.device("cpu"))
    torch.manual_seed(3)
    assert torch.equal(other, torch.rand(5, 2))
    assert torch.equal(own, torch.rand((8, 2), generator=torch.Generator().manual_seed(0))[4:])
