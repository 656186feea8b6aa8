"""Tiled prediction: no seams, exact where the receptive field allows, the same as one pass on small images."""
import numpy as np
import pytest
import torch
from torch import nn

from deepfield.analysis.tiling import mirrored, predict_tiled, stream_blocks, stream_tiles, tile_starts, window
from deepfield.errors import DeepfieldError
from deepfield.models import zoo


class Constant(nn.Module):
    """Outputs ``value`` everywhere, in ``channels`` channels, whatever the input."""

    def __init__(self, value: float, channels: int = 2):
        super().__init__()
        self.value, self.channels = value, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], self.channels, *x.shape[2:]), self.value)


def conv_net(layers: int, channels: int = 2, out: int = 3, seed: int = 0) -> nn.Sequential:
    """``layers`` 3x3 'same' convolutions (zero padding): receptive-field radius ``layers``."""
    torch.manual_seed(seed)
    widths = [channels] + [6] * (layers - 1) + [out]
    parts: list[nn.Module] = []
    for k in range(layers):
        parts += [nn.Conv2d(widths[k], widths[k + 1], 3, padding=1), nn.Tanh()]
    return nn.Sequential(*parts[:-1])


def one_pass(network: nn.Module, image: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return network.eval()(torch.from_numpy(image)[None])[0].numpy()


def image(channels: int, height: int, width: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(channels, height, width)).astype(np.float32)


def test_layout_anchors_the_last_tile_at_the_edge():
    assert tile_starts(100, 32, 8) == [0, 24, 48, 68]
    assert tile_starts(32, 32, 8) == [0]
    assert tile_starts(20, 32, 8) == [0]
    assert tile_starts(57, 32, 8) == [0, 24, 25]


def test_windows_of_regular_neighbours_sum_to_one():
    overlap, margin = 16, 4
    left = window(40, False, True, overlap, margin)
    right = window(40, True, False, overlap, margin)
    assert left[0] == 1 and right[-1] == 1 and left[-margin:].max() == 0 and right[:margin].max() == 0
    shared = left[-overlap:] + right[:overlap]
    np.testing.assert_allclose(shared, 1.0, atol=1e-15)
    assert np.all(np.diff(right[:overlap]) >= 0)


@pytest.mark.parametrize("shape", [(67, 45), (64, 64), (33, 100), (129, 31)])
def test_a_constant_output_stays_exactly_constant(shape):
    out = predict_tiled(Constant(0.7316), image(1, *shape), tile=24, overlap=12, margin=3)
    assert out.shape == (2, *shape) and out.dtype == np.float32
    assert np.all(out == np.float32(0.7316))


def test_identity_gives_the_input_exactly():
    picture = image(3, 53, 71)
    np.testing.assert_array_equal(predict_tiled(nn.Identity(), picture, tile=(16, 20), overlap=(8, 6)), picture)


def test_an_image_within_one_tile_is_one_forward_pass():
    network, picture = conv_net(3), image(2, 30, 27)
    np.testing.assert_allclose(predict_tiled(network, picture, tile=32, overlap=8), one_pass(network, picture),
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(97, 83), (64, 64), (40, 130)])
def test_tiled_equals_one_pass_when_margin_covers_the_receptive_field(shape):
    network, picture = conv_net(4), image(2, *shape)  # receptive-field radius 4
    expected = one_pass(network, picture)
    tiled = predict_tiled(network, picture, tile=(24, 20), overlap=(12, 10), margin=4, batch_size=3)
    np.testing.assert_allclose(tiled, expected, atol=1e-5, rtol=0)  # everywhere, borders included
    default = predict_tiled(network, picture, tile=32, overlap=16)  # margin 4 = 16 // 4
    np.testing.assert_allclose(default, expected, atol=1e-5, rtol=0)


def test_a_down_and_up_network_is_exact_when_tiles_start_on_even_pixels():
    torch.manual_seed(2)
    network = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1),
                            nn.ReLU(), nn.Upsample(scale_factor=2), nn.Conv2d(4, 1, 3, padding=1))  # radius < 8
    picture = image(1, 96, 80)  # starts 0, 24, 48 and 0, 24, 32: all even
    np.testing.assert_allclose(predict_tiled(network, picture, tile=48, overlap=24, margin=8),
                               one_pass(network, picture), atol=1e-5, rtol=0)


def small_unet() -> nn.Module:
    """The preset at depth 2 (it needs sizes that divide by 4; receptive-field radius 8 * 4 - 6 = 26)."""
    torch.manual_seed(3)
    network = zoo.get("unet", input_shape=(1, 16, 16), depth=2, filters=4).eval()
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for name, tensor in network.state_dict().items():
            if name.endswith(("moving_mean", "beta")):
                tensor.copy_(0.2 * torch.randn(tensor.shape, generator=generator))
    return network


def extended(picture: np.ndarray, multiple: int) -> np.ndarray:
    """``picture`` mirrored beyond its bottom and right edges to sizes that divide by ``multiple``."""
    pads = [(0, -n % multiple) for n in picture.shape[1:]]
    return np.pad(picture, [(0, 0), *pads], mode="reflect")


@pytest.mark.parametrize("shape", [(37, 251), (37, 53), (3, 5)])
def test_any_size_is_mirrored_to_a_multiple_at_the_far_edges_then_cropped(shape):
    """A U-Net takes sizes that divide by 2**depth: an axis of any length (shorter than the tile, or long and
    a multiple of nothing) is extended, and the output equals one pass over the extended image, cropped."""
    network, picture = small_unet(), image(1, *shape)
    with pytest.raises(RuntimeError, match="size"):  # poolings of odd sizes: no longer the network's size
        predict_tiled(network, picture, tile=104, overlap=52, margin=26)
    expected = one_pass(network, extended(picture, 4))[:, :shape[0], :shape[1]]
    tiled = predict_tiled(network, picture, tile=104, overlap=52, margin=26, multiple=4, batch_size=2)
    assert tiled.shape == (1, *shape)
    np.testing.assert_allclose(tiled, expected, atol=1e-5 * np.abs(expected).max(), rtol=0)


def test_a_margin_below_the_receptive_field_is_not_exact():
    network, picture = conv_net(4), image(2, 60, 60)
    tiled = predict_tiled(network, picture, tile=24, overlap=8, margin=2)
    assert np.abs(tiled - one_pass(network, picture)).max() > 1e-4


def test_the_network_runs_in_eval_mode_without_grad_and_keeps_its_modes():
    network = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Dropout(0.5))
    network.train()
    network[0].eval()
    picture = image(1, 40, 40)
    first = predict_tiled(network, picture, tile=16, overlap=8)
    np.testing.assert_array_equal(first, predict_tiled(network, picture, tile=16, overlap=8))  # no dropout
    assert network.training and not network[0].training and network[1].training
    assert network[0].weight.grad is None


def test_stream_reads_bands_of_at_most_tile_rows_and_writes_rows_in_order():
    network, picture = conv_net(2), image(2, 301, 40)
    reads, writes = [], []
    out = np.empty((3, 301, 40), np.float32)

    def read(start, stop):
        reads.append((start, stop))
        return picture[:, start:stop]

    def write(start, rows):
        writes.append((start, rows.shape[1]))
        out[:, start:start + rows.shape[1]] = rows

    progress = []
    stream_tiles(network, read, 301, 40, write, tile=32, overlap=8,
                 progress=lambda done, of: progress.append((done, of)))
    assert progress == [(start + n, 301) for start, n in writes]
    assert max(stop - start for start, stop in reads) == 32 and len(reads) == len(tile_starts(301, 32, 8))
    assert [start for start, _ in writes] == list(np.cumsum([0] + [n for _, n in writes])[:-1])
    assert sum(n for _, n in writes) == 301
    np.testing.assert_allclose(out, one_pass(network, picture), atol=1e-5, rtol=0)


def test_stream_blocks_reads_a_batch_of_tiles_at_a_time_and_writes_every_pixel_once(tmp_path):
    network, picture = conv_net(3, channels=2, out=2), image(2, 70, 203)
    reads, order = [], []
    out, written = np.zeros((2, 70, 203), np.float32), np.zeros((70, 203), int)

    def read(top, bottom, left, right):
        reads.append((bottom - top, right - left))
        return picture[:, top:bottom, left:right]

    def write(top, left, block):
        order.append((top, left))
        out[:, top:top + block.shape[1], left:left + block.shape[2]] = block
        written[top:top + block.shape[1], left:left + block.shape[2]] += 1

    stream_blocks(network, read, 70, 203, write, tile=24, overlap=8, margin=3, batch_size=3, scratch=tmp_path)
    assert max(rows for rows, _ in reads) == 24 and max(columns for _, columns in reads) == 2 * 16 + 24
    assert np.all(written == 1) and order == sorted(order)  # band after band, left to right
    assert list(tmp_path.iterdir()) == []  # the sums' file is gone
    np.testing.assert_array_equal(out, predict_tiled(network, picture, tile=24, overlap=8, margin=3, batch_size=3))
    np.testing.assert_allclose(out, one_pass(network, picture), atol=1e-5, rtol=0)


def test_the_mirror_is_the_whole_images_even_where_a_band_holds_fewer_rows_than_it():
    """9 x 13 pixels to multiples of 8 with 8-pixel tiles: the last band is row 8 and 7 mirrored rows 7..1
    that earlier bands read; columns likewise."""
    for length, extra in [(9, 7), (1, 3), (3, 9), (5, 0)]:
        np.testing.assert_array_equal(mirrored(0, length + extra, length),
                                      np.pad(np.arange(length), (0, extra), mode="reflect"))
    network, picture = conv_net(1, channels=1, out=1), image(1, 9, 13)
    expected = one_pass(network, extended(picture, 8))[:, :9, :13]
    tiled = predict_tiled(network, picture, tile=8, overlap=4, margin=1, multiple=8)
    np.testing.assert_allclose(tiled, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arguments, words", [
    ({"tile": 0}, "tile must be a positive integer"),
    ({"tile": 16, "overlap": 9}, "overlap must be an integer from 0 to tile // 2"),
    ({"tile": 16, "overlap": 8, "margin": 5}, "margin must be an integer from 0 to overlap // 2"),
    ({"tile": (16, 16, 16)}, "tile must be one integer or (rows, columns)"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"multiple": 0}, "multiple must be a positive integer"),
    ({"tile": (16, 20), "overlap": 8, "multiple": 8}, "tile must divide by multiple; got 20 columns, multiple 8"),
])
def test_bad_settings_are_named(arguments, words):
    with pytest.raises(DeepfieldError, match=words.replace("(", r"\(").replace(")", r"\)")):
        predict_tiled(nn.Identity(), image(1, 40, 40), **arguments)


def test_an_empty_image_is_refused():
    with pytest.raises(DeepfieldError, match="the image is 0x5 pixels"):
        predict_tiled(nn.Identity(), np.zeros((1, 0, 5), np.float32))


def test_a_network_that_changes_the_size_is_refused():
    with pytest.raises(DeepfieldError, match="must keep"):
        predict_tiled(nn.MaxPool2d(2), image(1, 40, 40), tile=16, overlap=4)
