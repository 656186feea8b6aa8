"""Occlusion sensitivity: the incremental method equals running every occluded copy, and finds what matters."""
import numpy as np
import pytest
import torch
from torch import nn

from deepfield.analysis.explain.occlusion import occlusion, positions
from deepfield.errors import DeepfieldError
from deepfield.layers import (Activation, BatchNormalization, Conv2D, Dense, Dropout, Flatten, MaxPooling2D,
                              SpatialDropout, SumPooling2D)
from deepfield.models import zoo
from deepfield.models.base import ensure_built
from deepfield.training import Sequential


def odd_chain() -> Sequential:
    """Every geometry the incremental method handles: 'same' with an even kernel (asymmetric padding),
    strides, dilation, explicit padding, max and sum pooling with 'same' padding, batch norm, dropout."""
    torch.manual_seed(0)
    model = Sequential([
        Conv2D(4, 4, padding="same", activation="relu"), BatchNormalization(), SpatialDropout(0.3),
        Conv2D(6, 3, strides=2, padding="same"), Activation("tanh"),
        Conv2D(6, 3, dilation_rate=2, padding=1), MaxPooling2D(3, strides=2, padding="same"), Dropout(0.2),
        SumPooling2D(2), Flatten(), Dense(3, activation="softmax")], input_shape=(2, 23, 21))
    ensure_built(model, torch.zeros(1, 2, 23, 21))
    with torch.no_grad():  # statistics unlike a fresh layer's, so batch norm in training mode would show
        model[1].moving_mean.uniform_(-0.5, 0.5)
        model[1].moving_variance.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("size, stride", [(5, 3), (4, 4), (1, 7), (21, 1)])
def test_incremental_equals_running_every_occluded_copy(size, stride):
    model = odd_chain()
    stamp = torch.randn(2, 23, 21, generator=torch.Generator().manual_seed(1))
    fast = occlusion(model, stamp, target=2, size=size, stride=stride, fill=[0.5, -1.0])
    slow = occlusion(model, stamp, target=2, size=size, stride=stride, fill=[0.5, -1.0], method="loop")
    assert fast.scores.shape == (len(positions(23, size, stride)), len(positions(21, size, stride)))
    assert np.allclose(fast.scores, slow.scores, atol=1e-5)
    assert fast.clean == pytest.approx(slow.clean)
    assert not np.allclose(fast.scores, fast.clean)  # the squares change the output


def test_incremental_on_the_course_network_and_small_batches():
    torch.manual_seed(0)
    model = zoo.get("lecture-cnn", input_shape=(1, 32, 32))
    stamp = torch.randn(1, 1, 32, 32)
    fast = occlusion(model, stamp, size=8, stride=4, batch_size=10)
    batched = occlusion(model, stamp, size=8, stride=4, method="batched")
    assert np.allclose(fast.scores, batched.scores, atol=1e-5)
    assert model.training  # the model's mode is given back


def test_models_that_are_not_a_chain_run_every_copy():
    torch.manual_seed(0)
    model = zoo.get("resnet", input_shape=(3, 16, 16), n_outputs=2, output_activation="softmax",
                    filters=[4], blocks=1)
    stamp = torch.randn(3, 16, 16)
    assert np.allclose(occlusion(model, stamp, target=1, size=4, stride=4).scores,
                       occlusion(model, stamp, target=1, size=4, stride=4, method="loop").scores, atol=1e-5)


class TopLeftSum(nn.Module):
    """A model whose output is the sum of the top-left 4x4 pixels: the answer is known."""

    def forward(self, x):
        return x[:, 0, :4, :4].sum(dim=(1, 2)).unsqueeze(1)


def test_scores_and_the_pixel_map_follow_their_definitions():
    stamp = torch.ones(1, 8, 8)
    result = occlusion(TopLeftSum(), stamp, size=2, stride=2, fill=0.0)
    expected = np.full((4, 4), 16.0)
    expected[:2, :2] = 12.0  # a square inside the top-left 4x4 hides 4 of its pixels
    assert np.array_equal(result.scores, expected) and result.clean == 16.0
    pixels = result.pixel_map()
    assert np.array_equal(pixels[:4, :4], np.full((4, 4), 4.0)) and not pixels[4:].any() and not pixels[:, 4:].any()


def test_bad_arguments_are_named():
    model = odd_chain()
    stamp = torch.randn(2, 23, 21)
    with pytest.raises(DeepfieldError, match="size must be between 1 and the stamp's side"):
        occlusion(model, stamp, target=0, size=30)
    with pytest.raises(DeepfieldError, match="fill must be one value or one per band"):
        occlusion(model, stamp, target=0, fill=[1, 2, 3])
    with pytest.raises(DeepfieldError, match="target 5 is not an output"):
        occlusion(model, stamp, target=5)
    with pytest.raises(DeepfieldError, match="choose one with target="):
        occlusion(model, stamp)
    with pytest.raises(DeepfieldError, match="method must be one of"):
        occlusion(model, stamp, target=0, method="fast")
    with pytest.raises(DeepfieldError, match="one stamp"):
        occlusion(model, torch.zeros(2, 2, 23, 21), target=0)


def test_occlusion_finds_the_quadrant_the_label_depends_on():
    """The known-answer network: class 1 means a source in the top-left quadrant, so hiding that
    quadrant is what lowers the class-1 probability."""
    from quadrant import SIZE, in_quadrant, quadrant_data, quadrant_model

    model = quadrant_model()
    x, y = quadrant_data(40, seed=11)
    stamps = x[y == 1][:6]
    maps = np.stack([occlusion(model, stamp, target=1, size=4, stride=2, fill=0.0).pixel_map().clip(min=0)
                     for stamp in stamps])
    assert maps.shape == (len(stamps), SIZE, SIZE)
    assert np.mean(in_quadrant(maps[:, None])) > 0.6  # chance: 0.25
