"""multiscale_mae: the per-pixel MAE plus block sums, against hand-computed values."""
import numpy as np
import pytest
import torch

from deepfield.errors import DeepfieldError
from deepfield.training import losses
from deepfield.training.image_losses import MultiScaleMAE


def test_scale_one_is_the_mae():
    rng = np.random.default_rng(0)
    pred, true = (torch.from_numpy(rng.normal(size=(3, 2, 8, 8)).astype(np.float32)) for _ in range(2))
    assert float(MultiScaleMAE(scales=[1])(pred, true)) == pytest.approx(float(losses.get("mae")(pred, true)))


def test_block_sums_weigh_a_coherent_error_more_than_white_noise():
    """An error of 0.1 over an 8×8 block of a 16×16 stamp: block means 0.1 on 16 pixels of 256 (s 1: 0.025),
    0.2 on 16 of 64 (s 2: 0.05), 0.4 on 4 of 16 (s 4: 0.1), 0.2 on all 4 blocks of 8 (s 8: 0.2); mean 0.09375."""
    true = torch.zeros(2, 3, 16, 16)
    pred = true.clone()
    pred[:, :, 4:12, 4:12] = 0.1
    loss = losses.get("multiscale_mae")
    assert float(loss(pred, true)) == pytest.approx(0.09375)
    assert loss.values(pred, true).shape == (2,)
    # white noise keeps its σ at every scale: the loss of N(0, 1) pixels stays near E|z| = 0.798
    noise = torch.from_numpy(np.random.default_rng(1).normal(size=(64, 1, 32, 32)).astype(np.float32))
    assert float(loss(noise, torch.zeros_like(noise))) == pytest.approx(np.sqrt(2 / np.pi), rel=0.03)


def test_config_round_trip_and_errors():
    loss = losses.get({"class_name": "MultiScaleMAE", "config": {"scales": [1, 4]}})
    assert loss.get_config() == {"scales": [1, 4]}
    with pytest.raises(DeepfieldError, match="at least 8 pixels a side"):
        MultiScaleMAE()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))
    with pytest.raises(DeepfieldError, match="scales must be block sides >= 1"):
        MultiScaleMAE(scales=[0])
