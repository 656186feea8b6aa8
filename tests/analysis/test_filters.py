"""Learned filters and feature maps: the kernels are the layers' own weights, the maps a hand forward pass."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepfield.analysis.explain.filters import conv_filters, conv_layer_names, feature_maps
from deepfield.errors import DeepfieldError
from deepfield.models import zoo
from deepfield.models.bayesian import bayesianize
from deepfield.models.conv import Conv2D
from deepfield.models.core import Activation, Dense, Flatten
from deepfield.models.pooling import MaxPooling2D
from deepfield.models.presets.course import lecture_cnn
from deepfield.models.sequential import Sequential
from helpers import stamps


def small_net() -> Sequential:
    """Conv(3, 3×3 'same') → ReLU → MaxPool 2 → Conv(2, 3×3 valid) → Flatten → Dense(2) on (2, 8, 8)."""
    torch.manual_seed(0)
    return Sequential([Conv2D(3, 3, padding="same"), Activation("relu"), MaxPooling2D(2), Conv2D(2, 3),
                       Flatten(), Dense(2)], input_shape=(2, 8, 8)).build()


@pytest.mark.parametrize("bands", [1, 3])
def test_the_course_cnn_first_filters_are_its_32_six_by_six_kernels(bands: int) -> None:
    model = lecture_cnn((bands, 16, 16)).build()
    assert conv_layer_names(model) == ["conv2d", "conv2d_1", "conv2d_2", "conv2d_3"]
    kernels = conv_filters(model)
    assert kernels.shape == (32, bands, 6, 6) and kernels.dtype == np.float32
    np.testing.assert_array_equal(kernels, model.conv2d.weight.detach().numpy())
    assert conv_filters(model, "conv2d_1").shape == (64, 32, 5, 5)


def test_the_filters_are_a_copy() -> None:
    model = lecture_cnn((1, 16, 16)).build()
    conv_filters(model)[:] = 0.0
    assert model.conv2d.weight.abs().sum() > 0


def test_a_bayesian_convolution_gives_its_posterior_mean() -> None:
    model = small_net()
    before = model.conv2d.weight.detach().clone()
    bayesianize(model, posterior_sigma=0.5)
    with torch.no_grad():
        model.conv2d.weight_mu.mul_(2.0)  # the mean, not a sample and not the old weight
    np.testing.assert_array_equal(conv_filters(model), 2.0 * before.numpy())


def test_torch_convolutions_are_found_by_their_dotted_names() -> None:
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Sequential(nn.Conv2d(3, 4, 1)))
    assert conv_layer_names(net) == ["0", "2.0"]
    np.testing.assert_array_equal(conv_filters(net), net[0].weight.detach().numpy())
    assert conv_filters(net, "2.0").shape == (4, 3, 1, 1)


def test_dieleman_views_share_the_wrapped_convolution() -> None:
    model = zoo.get("dieleman", input_shape=(3, 64, 64), n_views=8, dense_units=4)
    np.testing.assert_array_equal(conv_filters(model), model.conv1.layer.weight.detach().numpy())
    assert conv_filters(model).shape == (32, 3, 6, 6)


def test_a_layer_that_is_not_a_convolution_is_named_with_the_convolutions() -> None:
    model = lecture_cnn((1, 16, 16))
    with pytest.raises(DeepfieldError, match=r"'dense' .* is a Dense, not a convolution; its convolutions: "
                                             r"conv2d, conv2d_1, conv2d_2, conv2d_3"):
        conv_filters(model, "dense")
    with pytest.raises(DeepfieldError, match="has no layer 'conv9'"):
        conv_filters(model, "conv9")
    with pytest.raises(DeepfieldError, match="has no convolution layer"):
        conv_filters(zoo.get("mlp", input_shape=(4,)))
    with pytest.raises(DeepfieldError, match="'conv2d' .* is not built yet"):
        conv_filters(model)


def test_feature_maps_are_a_hand_forward_pass_through_the_first_layers() -> None:
    model, x = small_net(), stamps(5, bands=2)
    conv = model.conv2d
    with torch.no_grad():
        expected = F.max_pool2d(F.relu(F.conv2d(torch.from_numpy(x), conv.weight, conv.bias, padding=1)), 2).numpy()
    maps = feature_maps(model, x, "max_pooling2d", batch_size=2, device="cpu")
    assert maps.shape == (5, 3, 4, 4)
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-6)


def test_feature_maps_refuse_a_layer_without_spatial_axes() -> None:
    with pytest.raises(DeepfieldError, match="'dense' .* gives \\(2,\\) vectors, not feature maps"):
        feature_maps(small_net(), stamps(5, bands=2), "dense", device="cpu")


def test_the_convolutions_inside_residual_blocks_are_found_by_their_dotted_names() -> None:
    model = zoo.get("resnet", input_shape=(3, 32, 32), filters=(4, 8), blocks=1)
    assert conv_layer_names(model) == ["conv2d", "stage1_block1.conv1", "stage1_block1.conv2", "stage2_block1.conv1",
                                       "stage2_block1.conv2", "stage2_block1.projection.conv2d"]
    np.testing.assert_array_equal(conv_filters(model, "stage2_block1.conv2"),
                                  model.stage2_block1.conv2.weight.detach().numpy())
    assert conv_filters(model).shape == (4, 3, 3, 3)  # the first convolution: the one that sees the bands


def test_a_block_gives_feature_maps_and_names_its_convolutions_when_filters_are_asked() -> None:
    model = zoo.get("resnet", input_shape=(3, 32, 32), filters=(4, 8), blocks=1)
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    assert feature_maps(model, x, "stage2_block1", device="cpu").shape == (2, 8, 16, 16)
    with pytest.raises(DeepfieldError, match=r"'stage2_block1' of model 'resnet' is a ResidualBlock; its convolutions: "
                                             r"stage2_block1.conv1, stage2_block1.conv2, "
                                             r"stage2_block1.projection.conv2d$"):
        conv_filters(model, "stage2_block1")
