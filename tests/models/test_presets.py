"""The zoo's presets: each builds by name at its default and at other shapes and band counts,
runs forward and backward, summarises, saves and reloads exactly, refuses inputs it cannot
take with one clear line; parameter counts against hand counts; Dieleman's invariance and
Pasquet's E(B-V) input."""
from __future__ import annotations

import pytest
import torch

from deepfield.errors import DeepfieldError
from deepfield.models import Inception, Maxout, PReLU, ResidualBlock, ViewPoints, zoo
from deepfield.models.sequential import Sequential
from deepfield.models.serialization import load_model, save_model
from deepfield.models.summary import summarize

# name -> (small non-default build, output shape for a batch of 2)
SMALL: dict[str, tuple[dict, tuple[int, ...]]] = {
    "lecture-cnn": ({"input_shape": (3, 16, 16), "n_outputs": 2}, (2, 2)),
    "euclid-quality": ({"input_shape": (2, 24, 30)}, (2, 1)),
    "dominguez-sanchez": ({"input_shape": (5, 12, 12), "n_outputs": 3, "output_activation": "softmax"}, (2, 3)),
    "dieleman": ({"input_shape": (1, 40, 40), "view_size": 37, "n_views": 8, "dense_units": 8, "n_outputs": 4},
                 (2, 4)),
    "pasquet": ({"input_shape": (3, 12, 12), "n_bins": 10, "dense_units": 16}, (2, 10)),
    "spectra1d": ({"input_shape": (2, 100), "filters": (4, 8), "hidden": (8,), "dropout": 0.1}, (2, 1)),
    "mlp": ({"input_shape": (6,), "hidden": (8, 8), "n_outputs": 3, "dropout": 0.2, "batch_norm": True}, (2, 3)),
    "resnet": ({"input_shape": (2, 9, 11), "filters": (4, 8), "blocks": 1, "n_outputs": 2}, (2, 2)),
    "unet": ({"input_shape": (2, 8, 12), "depth": 2, "filters": 4, "output_channels": 1}, (2, 1, 8, 12)),
    "diffusion": ({"input_shape": (2, 8, 12), "depth": 1, "filters": 4, "groups": 2, "timesteps": 50}, (2, 2, 8, 12)),
    "cvae": ({"input_shape": (2, 8, 12), "filters": (4, 8), "latent_dim": 3}, (2, 2, 8, 12)),
}

# name -> (parameters incl. BN moving statistics, output shape) at the default input shape
DEFAULT = {
    "lecture-cnn": (2_330_209, (1,)),
    "euclid-quality": (2_423_489, (1,)),
    "dominguez-sanchez": (2_602_849, (1,)),
    "dieleman": (42_303_237, (37,)),
    "pasquet": (27_595_276, (180,)),
    "spectra1d": (84_657, (1,)),
    "mlp": (4_929, (1,)),
    "resnet": (273_169, (1,)),
    "unet": (1_945_555, (3, 64, 64)),
    "diffusion": (136_115, (3, 32, 32)),  # the output: the noise estimate's error
    "cvae": (110_531, (3, 32, 32)),
}


def conv(k: int, c_in: int, c_out: int, bias: bool = True) -> int:
    """Parameters of a k×k convolution: (k*k*C_in + 1) * C_out, as the course counts them."""
    return (k * k * c_in + bias) * c_out


def dense(n_in: int, n_out: int) -> int:
    return (n_in + 1) * n_out


def small(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return zoo.get(name, **SMALL[name][0])


def batch(model: torch.nn.Module, n: int = 2) -> torch.Tensor:
    return torch.randn(n, *model.input_shape)


def test_every_preset_has_a_test_case():
    assert set(SMALL) == set(DEFAULT) == set(zoo.PRESETS)


@pytest.mark.parametrize("name", sorted(DEFAULT))
def test_default_build_has_the_documented_size_and_output(name):
    model = zoo.get(name)
    total, output = DEFAULT[name]
    assert summarize(model).total == total
    with torch.no_grad():
        assert tuple(model.eval()(torch.zeros(2, *model.input_shape)).shape) == (2, *output)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_other_shapes_and_bands_forward_and_backward(name):
    model = small(name).train()
    y = model(batch(model))
    assert tuple(y.shape) == SMALL[name][1]
    y.square().sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", sorted(SMALL))
def test_summary_rows_are_the_top_level_layers_and_totals_add_up(name):
    model = small(name)
    s = summarize(model)
    assert [r.name for r in s.rows if r.type != "InputLayer"] == [n for n, _ in model.named_children()]
    buffers = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    assert s.total == sum(p.numel() for p in model.parameters()) + buffers == sum(r.params for r in s.rows)
    assert s.rows[-1].output_shape == SMALL[name][1][1:]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_save_and_load_reproduce_the_outputs_exactly(name, tmp_path):
    model = small(name).eval()
    save_model(model, tmp_path / name)
    loaded = load_model(tmp_path / name).eval()
    x = batch(model)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


# -- parameter counts by hand -------------------------------------------------------


def test_cvae_hand_count():
    # two stride-2 convolutions leave 32×8×8 = 2048 features; the decoder mirrors them (transposed kernels 3×3)
    expected = (conv(3, 3, 16) + conv(3, 16, 32) + 2 * dense(2048, 16) + dense(16, 2048)
                + conv(3, 32, 16) + conv(3, 16, 3))
    assert expected == DEFAULT["cvae"][0]
    assert summarize(zoo.get("cvae", condition_size=4)).total == expected + 2 * 4 * 16 + 4 * 2048


def test_lecture_cnn_hand_count():
    # 'same' convolutions keep 64×64; two poolings leave 16×16×128 to flatten
    expected = (conv(6, 1, 32) + conv(5, 32, 64) + conv(2, 64, 128) + conv(3, 128, 128)
                + dense(16 * 16 * 128, 64) + dense(64, 1))
    assert expected == 2_330_209
    assert summarize(zoo.get("lecture-cnn")).total == expected


def test_euclid_quality_hand_count_on_150x150():
    # 150 -conv-> 148 -pool-> 74 -conv-> 72 -pool-> 36 -conv-> 34 -pool-> 17
    expected = conv(3, 1, 32) + conv(3, 32, 64) + conv(3, 64, 64) + dense(17 * 17 * 64, 128) + dense(128, 1)
    s = summarize(zoo.get("euclid-quality", input_shape=(1, 150, 150)))
    assert s.total == expected == 2_423_489
    assert s.rows[6].output_shape == (17 * 17 * 64,)


def test_dieleman_hand_count():
    # 45 -6-> 40 -pool-> 20 -5-> 16 -pool-> 8 -3-> 6 -3-> 4 -pool-> 2: 16 views × 128×2×2 features
    convs = conv(6, 3, 32) + conv(5, 32, 64) + conv(3, 64, 128) + conv(3, 128, 128)
    maxouts = dense(16 * 512, 2048 * 2) + dense(2048, 2048 * 2)
    assert summarize(zoo.get("dieleman")).total == convs + maxouts + dense(2048, 37)


def test_residual_block_hand_count_with_projection_and_identity():
    bn = 2 * 8  # gamma, beta (trainable) and as many moving statistics (not)
    s = summarize(Sequential([ResidualBlock(8, strides=2)]), (4, 16, 16))
    assert s.trainable == conv(3, 4, 8, bias=False) + conv(3, 8, 8, bias=False) + conv(1, 4, 8, bias=False) + 3 * bn
    assert s.non_trainable == 3 * bn
    assert s.rows[0].output_shape == (8, 8, 8)
    identity = summarize(Sequential([ResidualBlock(4)]), (4, 8, 8))
    assert identity.trainable == 2 * conv(3, 4, 4, bias=False) + 2 * 8


def test_inception_hand_count_and_channels():
    # every convolution is followed by a per-channel PReLU (one slope per output channel)
    def conv_prelu(k, c_in, c_out):
        return conv(k, c_in, c_out) + c_out

    expected = (conv_prelu(1, 64, 64) + conv_prelu(1, 64, 48) + conv_prelu(3, 48, 64)
                + conv_prelu(1, 64, 48) + conv_prelu(5, 48, 64) + conv_prelu(1, 64, 48))
    s = summarize(Sequential([Inception(64, 48)]), (64, 8, 8))
    assert s.total == expected
    assert s.rows[0].output_shape == (3 * 64 + 48, 8, 8)


# -- too-small or wrong inputs, names -----------------------------------------------


def test_too_small_stamps_name_the_smallest_size():
    with pytest.raises(DeepfieldError) as err:
        zoo.get("euclid-quality", input_shape=(1, 16, 16))
    assert str(err.value) == ("preset 'euclid-quality' needs stamps of at least 22×22 pixels "
                              "(three 3×3 convolutions and 2×2 poolings); got 16×16")
    zoo.get("euclid-quality", input_shape=(1, 22, 22))
    with pytest.raises(DeepfieldError, match=r"'lecture-cnn' needs stamps of at least 4×4 pixels .*; got 3×8"):
        zoo.get("lecture-cnn", input_shape=(1, 3, 8))
    with pytest.raises(DeepfieldError,
                       match=r"'spectra1d' needs spectra of at least 16 pixels \(4 max-poolings of 2\); got 10"):
        zoo.get("spectra1d", input_shape=(1, 10))


def test_dieleman_views_must_fit_the_stamp_and_the_stack():
    with pytest.raises(DeepfieldError, match=r"needs stamps of at least 45×45 pixels .*view_size.*; got 40×40"):
        zoo.get("dieleman", input_shape=(3, 40, 40))
    with pytest.raises(DeepfieldError, match=r"needs views of at least 37×37 pixels .*; got 30×30"):
        zoo.get("dieleman", input_shape=(3, 40, 40), view_size=30)
    with pytest.raises(DeepfieldError, match="16 views needs square stamps"):
        zoo.get("dieleman", input_shape=(3, 69, 80))
    with pytest.raises(DeepfieldError, match="n_views must be 8"):
        zoo.get("dieleman", n_views=4)


def test_wrong_rank_says_what_the_preset_takes():
    with pytest.raises(DeepfieldError, match=r"preset 'resnet' takes \(C, H, W\) stamps; got input_shape \(64, 64\)"):
        zoo.get("resnet", input_shape=(64, 64))
    with pytest.raises(DeepfieldError, match=r"preset 'mlp' takes \(features,\) rows"):
        zoo.get("mlp", input_shape=(1, 8, 8))
    with pytest.raises(DeepfieldError, match=r"preset 'spectra1d' takes \(C, L\) spectra"):
        zoo.get("spectra1d", input_shape=(1, 8, 8))


def test_unknown_preset_lists_every_known_name():
    with pytest.raises(DeepfieldError) as err:
        zoo.get("alexnet")
    assert str(err.value).startswith("unknown model preset 'alexnet'; expected one of: ")
    assert all(name in str(err.value) for name in zoo.PRESETS)


def test_unknown_option_lists_the_preset_parameters():
    with pytest.raises(DeepfieldError, match=r"preset 'mlp' has no parameter 'layers'; it takes: input_shape, hidden"):
        zoo.get("mlp", layers=3)


def test_old_quality_cnn_name_still_works():
    assert summarize(zoo.get("quality-cnn")).total == 2_423_489


# -- Dieleman+15: viewpoints and rotation invariance --------------------------------


def dihedral(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 rotations and flips of square stamps ``(N, C, H, H)``."""
    return [torch.rot90(image, k, dims=(-2, -1)) for image in (x, x.flip(-1)) for k in range(4)]


def test_views_of_a_transformed_stamp_are_the_same_views_reordered():
    x = torch.randn(1, 2, 9, 9)
    layer = ViewPoints(6)
    views = layer(x)[0]
    assert views.shape == (8, 2, 6, 6)
    torch.testing.assert_close(views[0], x[0, :, :6, :6], rtol=0, atol=0)
    for t_x in dihedral(x):
        t_views = layer(t_x)[0]
        assert sorted(t_views.sum((1, 2, 3)).tolist()) == sorted(views.sum((1, 2, 3)).tolist())
        assert all(any(torch.equal(v, w) for w in views) for v in t_views)


@pytest.mark.parametrize(("n_views", "merge"), [(8, "mean"), (8, "max"), (16, "mean")])
def test_dieleman_is_invariant_to_the_eight_rotations_and_flips(n_views, merge):
    torch.manual_seed(0)
    model = zoo.get("dieleman", input_shape=(2, 41, 41), view_size=37, n_views=n_views, merge=merge,
                    dense_units=8, n_outputs=3).eval()
    x = torch.randn(2, 2, 41, 41)
    with torch.no_grad():
        reference = model(x)
        for t_x in dihedral(x):
            torch.testing.assert_close(model(t_x), reference, rtol=0, atol=1e-5)


def test_maxout_is_the_max_over_pieces_of_one_dense_layer():
    layer = Maxout(3, pieces=2)
    x = torch.randn(4, 5)
    y = layer(x)
    pieces = layer.dense(x).reshape(4, 3, 2)
    assert torch.equal(y, pieces.amax(-1))


def test_prelu_has_one_slope_per_channel():
    layer = PReLU(input_shape=(2, 3, 3))
    x = -torch.ones(1, 2, 3, 3)
    layer(x)
    with torch.no_grad():
        layer.alpha.copy_(torch.tensor([0.0, 0.5]))
    y = layer(x)
    assert torch.equal(y[0, 0], torch.zeros(3, 3)) and torch.equal(y[0, 1], torch.full((3, 3), -0.5))


# -- Pasquet+19: images and E(B-V) ---------------------------------------------------


def test_pasquet_with_ebv_needs_it_and_uses_it():
    torch.manual_seed(0)
    model = zoo.get("pasquet", input_shape=(5, 8, 8), n_bins=6, dense_units=8, use_ebv=True).eval()
    x = torch.randn(2, 5, 8, 8)
    with pytest.raises(DeepfieldError, match=r"built with use_ebv=True: call model\(x, ebv\)"):
        model(x)
    with pytest.raises(DeepfieldError, match=r"ebv must have shape \(2, 1\) for 2 images; got \(3, 1\)"):
        model(x, torch.zeros(3, 1))
    with torch.no_grad():
        p = model(x, torch.zeros(2, 1))
        assert p.shape == (2, 6)
        torch.testing.assert_close(p.sum(1), torch.ones(2))
        assert not torch.equal(model(x, torch.full((2, 1), 5.0)), p)
    # 8 -pool-> 4 -pool-> 2 -pool-> 1: 348 inception channels, plus the E(B-V) column
    assert sum(q.numel() for q in model.dense1.parameters()) == dense(348 + 1, 8)


def test_pasquet_without_ebv_refuses_one():
    model = zoo.get("pasquet", input_shape=(5, 8, 8), n_bins=6, dense_units=8)
    x = torch.randn(2, 5, 8, 8)
    assert model(x).shape == (2, 6)
    with pytest.raises(DeepfieldError, match="built with use_ebv=False"):
        model(x, torch.zeros(2, 1))


def test_pasquet_redshift_bins():
    model = zoo.get("pasquet", input_shape=(1, 4, 4), n_bins=4, z_min=0.0, z_max=0.4, dense_units=4)
    torch.testing.assert_close(model.bin_centres, torch.tensor([0.05, 0.15, 0.25, 0.35]))
    p = torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.5, 0.5, 0.0, 0.0]])
    torch.testing.assert_close(model.mean_redshift(p), torch.tensor([0.25, 0.10]))
    with pytest.raises(DeepfieldError, match="z_max > z_min"):
        zoo.get("pasquet", z_min=0.4, z_max=0.1)


def test_resnet_dropout_sits_before_its_dense_head_and_adds_no_parameters():
    plain = zoo.get("resnet", input_shape=(1, 16, 16), filters=(4,), blocks=1)
    dropped = zoo.get("resnet", input_shape=(1, 16, 16), filters=(4,), blocks=1, dropout=0.3)
    kinds = [type(layer).__name__ for layer in dropped.children()]
    assert kinds[-3:] == ["GlobalAveragePooling2D", "Dropout", "Dense"] and dropped[-2].rate == 0.3
    assert "Dropout" not in [type(layer).__name__ for layer in plain.children()]
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in dropped.parameters())


def test_spectra1d_global_pooling_forgets_where_a_line_is_and_flatten_keeps_it():
    torch.manual_seed(0)
    line, shifted = torch.zeros(1, 1, 64), torch.zeros(1, 1, 64)
    line[0, 0, 20], shifted[0, 0, 36] = 1.0, 1.0  # the same line 16 pixels (a multiple of the pooling) further
    options = {"input_shape": (1, 64), "filters": (4, 8), "hidden": (), "batch_norm": False}
    pooled = zoo.get("spectra1d", **options).eval()
    flat = zoo.get("spectra1d", global_pool=False, **options).eval()
    with torch.no_grad():
        assert torch.allclose(pooled(line), pooled(shifted), atol=1e-6)  # a class does not depend on the shift
        assert not torch.allclose(flat(line), flat(shifted), atol=1e-4)  # a redshift does
    assert sum(p.numel() for p in flat.parameters()) == 4 * 7 + 4 + 8 * 4 * 7 + 8 + 8 * 16 + 1
