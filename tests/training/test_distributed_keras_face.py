"""In a data-parallel fit the new metrics are summed over the processes (two gloo processes, each fed half of
the batches, log what one process fed all of them computes), and sample weights travel with the labels (two
processes train as one)."""
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


def weighted_fit() -> list:
    """A small fit with sample weights and a validation split; its final weights and history."""
    from deepfield.models import Dense
    from deepfield.training import Sequential

    gen = torch.Generator().manual_seed(8)
    x, w = torch.randn(45, 4, generator=gen), torch.rand(45, generator=gen) * 2
    y = (x[:, :1] > 0).float()
    torch.manual_seed(0)
    model = Sequential([Dense(1, activation="sigmoid")], input_shape=(4,))
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["precision"], device="cpu")
    history = model.fit(x, y, sample_weight=w, batch_size=8, epochs=2, verbose=0, seed=0, validation_split=0.2)
    return [model[0].weight.detach().numpy(), history.history]


def test_sample_weights_train_in_two_processes_as_in_one():
    single = weighted_fit()
    for weights, history in distributed.launch(2, weighted_fit, threads=1):
        np.testing.assert_allclose(weights, single[0], rtol=1e-5, atol=1e-6)
        for key, values in single[1].items():
            np.testing.assert_allclose(history[key], values, rtol=1e-5, err_msg=key)
