"""The Keras augmentation layers as ``fit(augment=...)`` / ``training.augment`` entries."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from deepfield import layers
from deepfield.errors import DeepfieldError
from deepfield.training.augment import BatchAugment


def images(n: int = 400, size: int = 4) -> torch.Tensor:
    """(n, 1, size, size), every pixel of a sample distinct, so its symmetry can be read off."""
    return torch.arange(float(size * size)).view(1, 1, size, size).repeat(n, 1, 1, 1) + torch.arange(n).view(
        n, 1, 1, 1) * 1000.0


def d4_index(out: torch.Tensor, sample: torch.Tensor) -> int:
    group = [torch.rot90(sample.flip(-1) if k >= 4 else sample, k % 4, dims=(-2, -1)) for k in range(8)]
    return next((k for k, g in enumerate(group) if torch.equal(g, out)), -1)


def test_flip_then_quarter_turns_by_keras_names_draw_d4_uniformly_as_dihedral():
    x = images()
    for entries in (["dihedral"], [{"name": "RandomFlip", "mode": "horizontal"}, "RandomRotation90"]):
        out = BatchAugment(entries)(x, seed=3, epoch=0, step=0)
        found = [d4_index(o, s) for o, s in zip(out, x)]
        assert -1 not in found
        counts = np.bincount(found, minlength=8)
        assert counts.min() > 25 and counts.max() < 80, (entries, counts)  # 50 expected each


def test_keras_layer_entries_are_seeded_per_batch_and_round_trip():
    x = torch.rand(16, 2, 8, 8)
    augment = BatchAugment([{"name": "RandomRotation", "factor": 0.1, "fill_mode": "constant"},
                            {"name": "RandomZoom", "height_factor": [-0.2, 0.2]},
                            {"name": "RandomTranslation", "height_factor": 0.1, "width_factor": 0.1},
                            "RandomFlip", {"name": "gaussian_noise", "sigma": 0.01}])
    first = augment(x, seed=1, epoch=0, step=2)
    assert torch.equal(first, BatchAugment(augment.get_config())(x, seed=1, epoch=0, step=2))
    assert not torch.equal(first, augment(x, seed=1, epoch=0, step=3))
    assert augment.get_config()[0] == {"name": "RandomRotation", "factor": 0.1, "fill_mode": "constant",
                                       "interpolation": "bilinear", "fill_value": 0.0, "data_format": None}
    # a layer instance is an entry too
    assert BatchAugment([layers.RandomRotation90()])(x, seed=1, epoch=0, step=2).shape == x.shape


@pytest.mark.parametrize("entry, message", [
    ({"name": "RandomFlip", "mode": "diagonal"}, "augment: entry 1: RandomFlip mode 'diagonal'; expected one of"),
    ({"name": "RandomRotation"}, "augment: entry 1: layer RandomRotation: bad config .*factor"),
    ({"name": "RandomZoom", "height_factor": 0.1, "zoom": 2}, "augment: entry 1: layer RandomZoom: bad config .*zoom"),
])
def test_bad_layer_entries_name_the_entry(entry, message):
    with pytest.raises(DeepfieldError, match=f"^{message}"):
        BatchAugment([entry])


def test_layers_are_refused_on_spectra():
    with pytest.raises(DeepfieldError, match="RandomFlip turns and flips images"):
        BatchAugment(["RandomFlip"]).check(torch.zeros(1, 3, 20))
