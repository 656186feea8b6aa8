"""Test-time augmentation (model.tta: dihedral): the mean over the views of a stamp, outputs turned back."""
import pytest
import torch
from torch import nn

from deepfield.errors import DeepfieldError
from deepfield.models.test_time import DihedralMean, apply_view, undo_view, views, with_tta


def conv_net(out_channels=2):
    torch.manual_seed(0)
    return nn.Conv2d(3, out_channels, 3, padding=1).double().eval()  # not symmetric: its kernel is random


def test_views_are_the_eight_symmetries_of_a_square_and_four_of_a_rectangle_and_undo_inverts_them():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float64).reshape(2, 3, 4, 4)
    seen = {tuple(apply_view(x, k, f).flatten().tolist()) for k, f in views(4, 4)}
    assert len(views(4, 4)) == 8 and len(seen) == 8  # eight different views
    rectangle = torch.arange(2 * 5 * 3.0).reshape(1, 2, 5, 3)
    assert len(views(5, 3)) == 4 and all(apply_view(rectangle, k, f).shape == rectangle.shape for k, f in views(5, 3))
    for k, f in views(4, 4):
        assert torch.equal(undo_view(apply_view(x, k, f), k, f), x)


def test_an_image_network_becomes_equivariant_and_is_the_mean_of_its_turned_back_views():
    network = conv_net()
    tta = DihedralMean(network)
    x = torch.randn(5, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        expected = sum(undo_view(network(apply_view(x, k, f)), k, f) for k, f in views(8, 8)) / 8
        got = tta(x)
        torch.testing.assert_close(got, expected)
        for k, f in views(8, 8):  # turning the input turns the output
            torch.testing.assert_close(tta(apply_view(x, k, f)), apply_view(got, k, f))
        assert not torch.allclose(network(torch.rot90(x, 1, (2, 3))), torch.rot90(network(x), 1, (2, 3)))


def test_a_classifier_is_averaged_as_it_is_and_becomes_invariant():
    network = nn.Sequential(conv_net(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).double().eval()
    tta = DihedralMean(network)
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(tta(torch.flip(x, (2,))), tta(x))
        torch.testing.assert_close(tta(x), sum(network(apply_view(x, k, f)) for k, f in views(6, 6)) / 8)


def test_a_rectangle_takes_its_four_views():
    network = conv_net()
    x = torch.randn(2, 3, 6, 10, dtype=torch.float64)
    with torch.no_grad():
        got = DihedralMean(network)(x)
        torch.testing.assert_close(DihedralMean(network)(torch.flip(x, (2, 3))), torch.flip(got, (2, 3)))


def test_what_cannot_be_turned_back_is_refused_in_one_line():
    pooled = nn.Sequential(conv_net(), nn.MaxPool2d(2)).double().eval()
    with pytest.raises(DeepfieldError, match=r"output \(2, 4, 4\) is neither an image of its input's 8x8"):
        DihedralMean(pooled)(torch.randn(1, 3, 8, 8, dtype=torch.float64))
    with pytest.raises(DeepfieldError, match=r"takes images \(N, C, H, W\); got \(4, 3\)"):
        DihedralMean(nn.Identity())(torch.randn(4, 3))
    with pytest.raises(DeepfieldError, match="model.tta must be one of dihedral or null; got 'flips'"):
        with_tta(nn.Identity(), "flips")
    assert with_tta(pooled, None) is pooled
