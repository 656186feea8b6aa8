"""In a data-parallel fit the new metrics are summed over the processes: two gloo processes, each fed half of
the batches, log what one process fed all of them computes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from deepfield.training import distributed, metrics

pytestmark = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="needs torch.distributed with gloo")


def made() -> list:
    return [metrics.Precision(), metrics.Recall(top_k=2), metrics.F1Score(average="macro"),
            metrics.RootMeanSquaredError(), metrics.R2Score(),
            metrics.MeanIoU(3, sparse_y_true=False, sparse_y_pred=False),
            metrics.TopKCategoricalAccuracy(k=2)]


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(4)
    out = []
    for size in (10, 7, 12, 5):
        scores = torch.rand(size, 3, generator=gen)
        out.append((scores / scores.sum(1, keepdim=True), torch.eye(3)[torch.randint(0, 3, (size,), generator=gen)]))
    return out


def logs(rank: int | None = None) -> list[float]:
    """The metrics of every batch (one process) or of this rank's half, reduced over the ranks."""
    rank = torch.distributed.get_rank() if rank is None and torch.distributed.is_initialized() else rank
    chosen = made()
    for metric in chosen:
        metric.reset()
        for index, (pred, true) in enumerate(batches()):
            if rank is None or index % 2 == rank:
                metric.update(pred, true)
    if rank is None:
        return [float(m.compute()) for m in chosen]
    return [distributed.reduced_metric(m, torch.device("cpu")) for m in chosen]


def test_two_processes_log_what_one_computes():
    single = logs()
    ranks = distributed.launch(2, logs, threads=1)
    for got in ranks:
        np.testing.assert_allclose(got, single, rtol=1e-6)
