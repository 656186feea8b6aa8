"""Receptive fields by hand and by perturbing pixels; strongest patches on planted crosses of known contrast."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from deepfield.analysis.explain.filters import feature_maps
from deepfield.analysis.explain.patches import ReceptiveField, default_map_layer, receptive_field, strongest_patches
from deepfield.errors import DeepfieldError
from deepfield.models import zoo
from deepfield.models.blocks import Inception
from deepfield.models.conv import Conv2D
from deepfield.models.core import Activation, Flatten
from deepfield.models.pooling import AveragePooling2D, MaxPooling2D
from deepfield.models.presets.pasquet import Pasquet
from deepfield.models.sequential import Sequential
from helpers import small_resnet


def dilated_chain(size: int) -> Sequential:
    """c1 Conv 3 'same' → r ReLU → p1 MaxPool 2 → c2 Conv 3 valid, dilation 2 → c3 Conv 3 stride 2 'same'."""
    torch.manual_seed(0)
    return Sequential([Conv2D(2, 3, padding="same", name="c1"), Activation("relu", name="r"),
                       MaxPooling2D(2, name="p1"), Conv2D(2, 3, dilation_rate=2, name="c2"),
                       Conv2D(2, 3, strides=2, padding="same", name="c3")], input_shape=(1, size, size)).build()


def strided_chain() -> Sequential:
    """k1 Conv (3, 5), strides (1, 2), padding (1, 0) → a1 AveragePool 3, stride 2, 'same', on (1, 15, 21)."""
    torch.manual_seed(0)
    return Sequential([Conv2D(2, (3, 5), strides=(1, 2), padding=(1, 0), name="k1"),
                       AveragePooling2D(3, strides=2, padding="same", name="a1")], input_shape=(1, 15, 21)).build()


# size ← size + (e − 1)·jump, start ← start − p·jump, jump ← jump·s
# (e: the span (k − 1)·d + 1, p: the padding before)
# dilated chain, both axes, 16×16 input:
#   c1 k3 'same' s1 → p = 1:           size 1 + 2·1 = 3,   start 0 − 1 = −1,   jump 1; 16 px out
#   p1 pool 2:                         size 3 + 1·1 = 4,   start −1,           jump 2;  8 px
#   c2 k3 d2 valid → e = 5:            size 4 + 4·2 = 12,  start −1,           jump 2;  4 px
#   c3 k3 s2 'same' on 4 px: out 2, total max(1·2 + 3 − 4, 0) = 1 → p = 0 (the extra pixel after):
#                                      size 12 + 2·2 = 16, start −1,           jump 4
#   on 18×18 (9 then 5 px): out 3, total max(2·2 + 3 − 5, 0) = 2 → p = 1: start −1 − 1·2 = −3
# strided chain on 15×21:
#   k1 rows k3 p1:       size 3, start −1, jump 1; 15 out
#      columns k5 s2 p0: size 5, start 0,  jump 2; (21 − 5)//2 + 1 = 9 out
#   a1 rows on 15: out 8, total max(7·2 + 3 − 15, 0) = 2 → p = 1: size 3 + 2·1 = 5, start −1 − 1 = −2, jump 2
#      columns on 9: out 5, total max(4·2 + 3 − 9, 0) = 2 → p = 1: size 5 + 2·2 = 9, start 0 − 2 = −2, jump 4
HAND = [
    (dilated_chain, 16, "c1", ReceptiveField((3, 3), (1, 1), (-1, -1))),
    (dilated_chain, 16, "r", ReceptiveField((3, 3), (1, 1), (-1, -1))),
    (dilated_chain, 16, "p1", ReceptiveField((4, 4), (2, 2), (-1, -1))),
    (dilated_chain, 16, "c2", ReceptiveField((12, 12), (2, 2), (-1, -1))),
    (dilated_chain, 16, "c3", ReceptiveField((16, 16), (4, 4), (-1, -1))),
    (dilated_chain, 18, "c3", ReceptiveField((16, 16), (4, 4), (-3, -3))),
    (lambda _: strided_chain(), 0, "a1", ReceptiveField((5, 9), (2, 4), (-2, -2))),
]


@pytest.mark.parametrize(("build", "size", "layer", "expected"), HAND)
def test_receptive_fields_by_hand(build, size: int, layer: str, expected: ReceptiveField) -> None:
    assert receptive_field(build(size), layer) == expected


def test_the_course_cnn_sees_23_pixels_every_4th_after_its_fourth_convolution() -> None:
    # conv2d 6 'same' (2 before): 6, −2 | conv2d_1 5 'same' (2): 10, −4 | pool 2: 11, jump 2
    # conv2d_2 2 'same' (0 before): 13 | pool 2: 15, jump 4 | conv2d_3 3 'same' (1): 15 + 2·4 = 23, −4 − 4 = −8
    model = zoo.get("lecture-cnn", input_shape=(1, 32, 32))
    assert receptive_field(model, "conv2d_3") == ReceptiveField((23, 23), (4, 4), (-8, -8))
    assert receptive_field(model, "dropout_3") == receptive_field(model, "conv2d_3")
    assert receptive_field(model, "conv2d_3").window((2, 5)) == ((0, 23), (12, 35))


def _changed(model: nn.Sequential, layer: str, shape: tuple[int, ...]) -> np.ndarray:
    """``changed[u, v, i, j]``: output ``(i, j)`` of ``layer`` moves when input pixel ``(u, v)`` moves by ±1000."""
    height, width = shape[1:]
    eye = torch.zeros(height * width, *shape, dtype=torch.float64)
    eye.view(height * width, -1)[:, :height * width].copy_(torch.eye(height * width))
    base = torch.randn(1, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x = torch.cat([base, base + 1e3 * eye, base - 1e3 * eye])
    model = model.double()
    with torch.no_grad():
        for name, module in model.named_children():
            x = module(x)
            if name == layer:
                break
    moved = ((x[1:] - x[:1]).abs() > 1e-9).any(dim=1)
    both = moved[:height * width] | moved[height * width:]
    return both.reshape(height, width, *both.shape[1:]).numpy()


@pytest.mark.parametrize(("build", "size", "layer", "expected"), [case for case in HAND if case[2] != "r"])
def test_perturbing_one_pixel_moves_exactly_the_outputs_whose_field_holds_it(build, size, layer, expected) -> None:
    model = build(size)
    shape = tuple(model.input_shape)
    field = receptive_field(model, layer)
    changed = _changed(model, layer, shape)
    for position in np.ndindex(*changed.shape[2:]):
        rows, cols = np.nonzero(changed[(..., *position)])
        window = field.window(position)
        seen = ((rows.min(), rows.max() + 1), (cols.min(), cols.max() + 1))
        clipped = tuple((max(lo, 0), min(hi, n)) for (lo, hi), n in zip(window, shape[1:]))
        assert seen == clipped, (layer, position)


def test_a_torch_chain_with_nested_sequentials() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Sequential(nn.Conv2d(2, 2, 3, dilation=2), nn.BatchNorm2d(2)))
    expected = ReceptiveField((12, 12), (2, 2), (-1, -1))  # the dilated chain's c2
    assert receptive_field(net, "3.0", input_shape=(1, 16, 16)) == expected
    assert receptive_field(net, "3", input_shape=(1, 16, 16)) == expected
    with pytest.raises(DeepfieldError, match="pass input_shape"):
        receptive_field(net, "0")


def test_layers_that_see_the_whole_input_or_break_the_chain_are_named() -> None:
    cnn = zoo.get("lecture-cnn", input_shape=(1, 16, 16))
    with pytest.raises(DeepfieldError, match="layer 'flatten' .* is a Flatten, which sees the whole input"):
        receptive_field(cnn, "flatten")
    with pytest.raises(DeepfieldError, match="layer 'dense' .* comes after 'flatten', a Flatten, which sees the "
                                             "whole input.*choose a layer before 'flatten'"):
        receptive_field(cnn, "dense")
    with pytest.raises(DeepfieldError, match="has no layer 'conv9'"):
        receptive_field(cnn, "conv9")
    dieleman = zoo.get("dieleman", input_shape=(3, 48, 48), n_views=8, view_size=40, dense_units=4)
    with pytest.raises(DeepfieldError, match="'conv1' .* comes after 'view_points', a ViewPoints, not a convolution, "
                                             "pooling or element-wise layer"):
        receptive_field(dieleman, "conv1")
    with pytest.raises(DeepfieldError, match="model 'pasquet' is a Pasquet with its own forward"):
        receptive_field(Pasquet((1, 16, 16), n_bins=4, dense_units=8), "conv1")


# --- strongest patches -------------------------------------------------------------------------

CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=np.float32)
# (image, row, column, contrast); a cross centred at (r, c) gives the cross filter 5·contrast
# there (4· at the edge, (0, 5): its top arm is off the image), 2· at the 8 neighbours.
PLANTED = [(0, 5, 6, 2.0), (2, 3, 3, 6.0), (3, 4, 4, 9.0), (3, 8, 8, 8.0), (5, 0, 5, 7.0), (6, 9, 2, 4.0),
           (8, 6, 9, 5.0)]


def crosses() -> np.ndarray:
    """10 blank 12×12 stamps with the PLANTED crosses."""
    x = np.zeros((10, 1, 12, 12), dtype=np.float32)
    for image, row, col, contrast in PLANTED:
        for dr, dc in zip(*np.nonzero(CROSS)):
            if 0 <= row + dr - 1 < 12:
                x[image, 0, row + dr - 1, col + dc - 1] = contrast
    return x


def detector() -> Sequential:
    """One 'same' 3×3 convolution, no bias: filter 0 the cross, filter 1 minus the cross (0 or less everywhere)."""
    model = Sequential([Conv2D(2, 3, padding="same", use_bias=False, name="cross")], input_shape=(1, 12, 12)).build()
    with torch.no_grad():
        model.cross.weight.copy_(torch.from_numpy(np.stack([CROSS, -CROSS])[:, None]))
    return model


def test_the_cross_filter_finds_the_planted_crosses_in_order_of_contrast() -> None:
    top = strongest_patches(detector(), crosses(), "cross", k=9, device="cpu")
    # one per image: 45 (image 3, its 9-cross), 30, 28 (the edge cross: 4·7), 25, 20, 10, then blank images at 0
    np.testing.assert_array_equal(top.images[0], [3, 2, 5, 8, 6, 0, 1, 4, 7])
    np.testing.assert_allclose(top.values[0], [45, 30, 28, 25, 20, 10, 0, 0, 0])
    np.testing.assert_array_equal(top.positions[0, :6], [[4, 4], [3, 3], [0, 5], [6, 9], [9, 2], [5, 6]])
    assert top.patches.shape == (2, 9, 1, 3, 3) and top.field == ReceptiveField((3, 3), (1, 1), (-1, -1))
    for patch, contrast in zip(top.patches[0, :6, 0], [9, 6, 7, 5, 4, 2]):
        expected = contrast * CROSS
        if contrast == 7:  # the row above the image is zero padding
            expected[0] = 0
        np.testing.assert_array_equal(patch, expected)
    # minus the cross is at most 0: equal zeros, the first images at their first position
    np.testing.assert_array_equal(top.images[1], np.arange(9))
    np.testing.assert_array_equal(top.positions[1], np.zeros((9, 2)))


def test_several_per_image_when_asked() -> None:
    top = strongest_patches(detector(), crosses(), "cross", k=9, one_per_image=False, device="cpu")
    # image 3 twice (45, 40), then 30, 28, 25, 20, then the neighbours of image 3's 9-cross at 2·9 = 18,
    # the first three of its 8 neighbours in row-major order
    np.testing.assert_array_equal(top.images[0], [3, 3, 2, 5, 8, 6, 3, 3, 3])
    np.testing.assert_allclose(top.values[0], [45, 40, 30, 28, 25, 20, 18, 18, 18])
    np.testing.assert_array_equal(top.positions[0, [1, 6, 7, 8]], [[8, 8], [3, 3], [3, 4], [3, 5]])
    np.testing.assert_array_equal(top.images[1], np.zeros(9))  # 0s of image 0 at (0, 0), (0, 1)...
    np.testing.assert_array_equal(top.positions[1], [[0, c] for c in range(9)])


@pytest.mark.parametrize("one_per_image", [True, False])
def test_streaming_over_batches_gives_the_one_batch_answer(one_per_image: bool) -> None:
    model, x = detector(), crosses()
    whole = strongest_patches(model, x, "cross", k=9, batch_size=len(x), one_per_image=one_per_image, device="cpu")
    for batch_size in (1, 3, 4):
        part = strongest_patches(model, x, "cross", k=9, batch_size=batch_size, one_per_image=one_per_image,
                                 device="cpu")
        for name in ("values", "images", "positions", "patches"):
            np.testing.assert_array_equal(getattr(part, name), getattr(whole, name))


def test_fewer_images_than_k_give_one_each() -> None:
    top = strongest_patches(detector(), crosses()[:4], "cross", k=9, device="cpu")
    assert top.values.shape == (2, 4)
    np.testing.assert_array_equal(np.sort(top.images[0]), np.arange(4))


def test_patches_are_the_field_of_the_activation_in_a_deeper_multi_band_layer() -> None:
    model = zoo.get("lecture-cnn", input_shape=(3, 16, 16))
    x = np.random.default_rng(3).normal(size=(6, 3, 16, 16)).astype(np.float32)
    top = strongest_patches(model, x, "conv2d_3", k=4, batch_size=4, device="cpu")
    assert top.patches.shape == (128, 4, 3, 23, 23)
    maps = feature_maps(model, x, "conv2d_3", device="cpu")
    padded = np.pad(x, ((0, 0), (0, 0), (8, 23), (8, 23)))  # the field starts 8 pixels before the image
    for f, j in [(0, 0), (5, 3), (127, 1)]:
        image, (row, col) = top.images[f, j], top.positions[f, j]
        assert top.values[f, j] == pytest.approx(maps[image, f, row, col], rel=1e-5)
        assert top.values[f, j] == pytest.approx(np.sort(maps[:, f].reshape(6, -1).max(1))[::-1][j], rel=1e-5)
        np.testing.assert_array_equal(top.patches[f, j], padded[image, :, 4 * row:4 * row + 23, 4 * col:4 * col + 23])


def test_bad_arguments_are_named() -> None:
    with pytest.raises(DeepfieldError, match="k must be a positive integer, got 0"):
        strongest_patches(detector(), crosses(), "cross", k=0)
    with pytest.raises(DeepfieldError, match=r"expected x of shape \(N, C, H, W\), got \(12, 12\)"):
        strongest_patches(detector(), crosses()[0, 0], "cross")


# --- through residual blocks, and the default layer ---------------------------------------------

# resnet on 32×32, every convolution 3×3 'same' but the 1×1 projection:
#   conv2d                         size 3,            start −1,           jump 1
#   stage1_block1.conv1, .conv2    5, 7               −2, −3
#   stage1_block2.conv1, .conv2    9, 11              −4, −5
#   stage2_block1.conv1 s2 on 32: out 16, total max(15·2 + 3 − 32, 0) = 1 → p = 0 (the extra pixel after):
#                                  11 + 2·1 = 13,     −5,                 jump 2
#   stage2_block1.conv2 p = 1:     13 + 2·2 = 17,     −5 − 1·2 = −7
#   stage2_block1.projection.conv2d 1×1 s2, total max(15·2 + 1 − 32, 0) = 0: 11 + 0 = 11, −5, jump 2
#   stage2_block1 = main ∪ skip: [−7, 10) ∪ [−5, 6) = [−7, 10): 17, −7 (the skip does not grow it)
#   stage2_block2.conv1, .conv2    21, 25             −9, −11
RESNET = [
    ("conv2d", ReceptiveField((3, 3), (1, 1), (-1, -1))),
    ("stage1_block1.conv1", ReceptiveField((5, 5), (1, 1), (-2, -2))),
    ("stage1_block1.bn1", ReceptiveField((5, 5), (1, 1), (-2, -2))),
    ("stage1_block1", ReceptiveField((7, 7), (1, 1), (-3, -3))),
    ("stage1_block2", ReceptiveField((11, 11), (1, 1), (-5, -5))),
    ("stage2_block1.conv1", ReceptiveField((13, 13), (2, 2), (-5, -5))),
    ("stage2_block1.conv2", ReceptiveField((17, 17), (2, 2), (-7, -7))),
    ("stage2_block1.projection.conv2d", ReceptiveField((11, 11), (2, 2), (-5, -5))),
    ("stage2_block1", ReceptiveField((17, 17), (2, 2), (-7, -7))),
    ("stage2_block2.conv1", ReceptiveField((21, 21), (2, 2), (-9, -9))),
    ("stage2_block2", ReceptiveField((25, 25), (2, 2), (-11, -11))),
]


@pytest.mark.parametrize(("layer", "expected"), RESNET)
def test_receptive_fields_through_residual_blocks_by_hand(layer: str, expected: ReceptiveField) -> None:
    assert receptive_field(small_resnet(bands=1, blocks=2), layer) == expected


def _gradient_supports(model: nn.Module, x: torch.Tensor, asked: dict[str, list[tuple[int, int]]]) -> dict:
    """``{(layer, position): ((first row, last + 1), (first column, last + 1))}``: the input pixels with a nonzero
    gradient of ``layer``'s output (filter 0) at ``position``, for each layer and position ``asked``; one forward."""
    outputs = {}

    def keep(layer: str):
        def hook(_module, _inputs, output) -> None:
            outputs[layer] = output
        return hook

    hooks = [model.get_submodule(layer).register_forward_hook(keep(layer)) for layer in asked]
    try:
        model(x)
    finally:
        for hook in hooks:
            hook.remove()
    supports = {}
    for layer, positions in asked.items():
        for position in positions:
            (gradient,) = torch.autograd.grad(outputs[layer][0, 0][position], x, retain_graph=True)
            rows, cols = np.nonzero(gradient[0].abs().sum(0).numpy())
            supports[layer, position] = ((rows.min(), rows.max() + 1), (cols.min(), cols.max() + 1))
    return supports


@pytest.mark.parametrize("size", [32, 15])
def test_the_gradient_of_one_output_reaches_exactly_its_field_when_every_weight_is_positive(size: int) -> None:
    # positive kernels, batch norm at its start (identity) and a positive input: every ReLU passes,
    # so each input pixel with a path to the output has a positive gradient, all others zero
    model = small_resnet(bands=1, size=size, blocks=2).double().eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("weight") and parameter.dim() == 4:
                parameter.copy_(parameter.abs() + 0.01)
    x = torch.from_numpy(np.random.default_rng(0).uniform(0.5, 1.5, (1, 1, size, size))).requires_grad_(True)
    fields = {layer: receptive_field(model, layer, (1, size, size)) for layer, _ in RESNET}
    asked = {}
    for layer, field in fields.items():
        last = (size - 1) // field.jump[0]
        asked[layer] = [(0, 0), (last, last), (last // 2, 0), (1, last)]
    supports = _gradient_supports(model, x, asked)
    for (layer, position), seen in supports.items():
        window = fields[layer].window(position)
        assert seen == tuple((max(lo, 0), min(hi, size)) for lo, hi in window), (layer, position)


def test_an_inception_block_sees_as_far_as_its_widest_branch() -> None:
    torch.manual_seed(0)
    model = Sequential([Inception(2, 2, kernel_sizes=(3, 5), name="inc")], input_shape=(1, 12, 12)).build()
    # branches 1×1: [0, 1); 1×1 → 3×3: [−1, 2); 1×1 → 5×5: [−2, 3);
    # 1×1 → 2×2 average 'same' (0 before): [0, 2)
    assert receptive_field(model, "inc") == ReceptiveField((5, 5), (1, 1), (-2, -2))
    assert receptive_field(model, "inc.branches.conv3x3.conv2d_1") == ReceptiveField((3, 3), (1, 1), (-1, -1))


@pytest.mark.parametrize(("preset", "options", "expected"), [
    # ResNet-20's depth (widths do not change the fields): stem 3; stage1 5 … 15; stage2 (jump 2) 17, 21, 25, 29, 33, 37
    ("resnet", {"input_shape": (3, 32, 32), "filters": (4, 8, 8)}, "stage2_block2"),  # 29 ≤ 32; the next sees 33
    # stage3 (jump 4) from 37: 41, 49, 57, 65, 73, 81
    ("resnet", {"input_shape": (3, 64, 64), "filters": (4, 8, 8)}, "stage3_block2.conv1"),  # 57 ≤ 64; the next 65
    ("lecture-cnn", {"input_shape": (1, 64, 64)}, "conv2d_3"),  # field 23 ≥ 64 / 4
    ("dieleman", {"input_shape": (3, 48, 48), "n_views": 8, "view_size": 40, "dense_units": 4}, "conv4"),
])
def test_the_default_layer_is_the_deepest_whose_field_is_a_sizeable_part_of_the_stamp(preset, options,
                                                                                        expected) -> None:
    model = zoo.get(preset, **options)
    assert default_map_layer(model, options["input_shape"]) == expected


def test_the_default_layer_of_a_net_of_small_fields_is_its_deepest_and_of_large_ones_its_first() -> None:
    small = dilated_chain(64)  # fields 3, 4, 12, 16 < 64 / 4
    assert default_map_layer(small, (1, 64, 64)) == "c3"
    wide = Sequential([Conv2D(2, 9, padding="same", name="k9"), Conv2D(2, 9, padding="same", name="k9b"), Flatten()],
                      input_shape=(1, 8, 8))
    assert default_map_layer(wide.build(), (1, 8, 8)) == "k9"  # fields 9 and 17, both wider than the stamp


def test_the_resnet_presets_default_patches_are_a_sizeable_part_of_the_stamp() -> None:
    model = zoo.get("resnet", input_shape=(3, 32, 32), filters=(4, 8, 8))
    x = np.random.default_rng(4).normal(size=(12, 3, 32, 32)).astype(np.float32)
    top = strongest_patches(model, x, default_map_layer(model, x.shape[1:]), k=9, device="cpu")
    assert top.layer == "stage2_block2" and top.patches.shape == (8, 9, 3, 29, 29)
    assert min(top.patches.shape[-2:]) >= 32 / 4
