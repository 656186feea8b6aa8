"""The ``unet`` preset: shapes for several depths and band counts, parameter counts by hand and against the same
network written in Keras 3 (same weights, same outputs), its skip connections in the summary, both upsamplings,
the heteroscedastic channels, the stamp-size errors, save and load, MC-dropout spread, and learning the identity."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from deepfield.errors import DeepfieldError
from deepfield.models import Functional, zoo
from deepfield.models.serialization import load_model, save_model
from deepfield.models.summary import summarize
from deepfield.training import Model, optimizers
from deepfield.training.mc_dropout import sample_outputs

os.environ.setdefault("KERAS_BACKEND", "torch")


def conv(k: int, c_in: int, c_out: int, bias: bool = True) -> int:
    """Parameters of a k×k convolution (a 2×2 transposed one has as many): (k·k·C_in + bias)·C_out."""
    return (k * k * c_in + bias) * c_out


def small(**options) -> Functional:
    torch.manual_seed(0)
    return zoo.get("unet", **{"input_shape": (3, 16, 16), "depth": 2, "filters": 4, **options})


@pytest.mark.parametrize("depth, shape, out, expected", [
    (1, (1, 8, 8), None, (1, 8, 8)),
    (2, (3, 16, 24), 2, (2, 16, 24)),
    (3, (5, 32, 16), 1, (1, 32, 16)),
    (4, (2, 64, 64), 6, (6, 64, 64)),
])
def test_output_keeps_height_and_width_for_any_depth_and_channels(depth, shape, out, expected):
    model = zoo.get("unet", input_shape=shape, depth=depth, filters=4, output_channels=out).train()
    y = model(torch.randn(2, *shape))
    assert tuple(y.shape) == (2, *expected) and model.output_shape == expected
    y.square().sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_parameter_count_equals_the_hand_count():
    # depth 2, filters 4, 3 bands in and out: blocks of 4, 8 and 16 channels, up-convolutions to 8 and 4
    blocks = conv(3, 3, 4) + conv(3, 4, 4) + conv(3, 4, 8) + conv(3, 8, 8) + conv(3, 8, 16) + conv(3, 16, 16)
    decoder = conv(2, 16, 8) + conv(3, 16, 8) + conv(3, 8, 8) + conv(2, 8, 4) + conv(3, 8, 4) + conv(3, 4, 4)
    plain = blocks + decoder + conv(1, 4, 3)
    assert summarize(small(normalization=None)).total == plain == 7_479
    assert summarize(small(normalization=None, upsampling="resize")).total == plain
    # batch norm: no conv bias, 4 numbers per channel (gamma, beta; moving mean and variance not trainable)
    widths = [4, 4, 8, 8, 16, 16, 8, 8, 4, 4]
    s = summarize(small())
    assert s.total == plain - sum(widths) + 4 * sum(widths) and s.non_trainable == 2 * sum(widths)
    # residual: a 1×1 projection (+ its BN) in each of the five blocks
    projections = conv(1, 3, 4, False) + conv(1, 4, 8, False) + conv(1, 8, 16, False) + conv(1, 16, 8, False) \
        + conv(1, 8, 4, False) + 4 * (4 + 8 + 16 + 8 + 4)
    assert summarize(small(residual=True)).total == s.total + projections


def test_default_build_size():
    s = summarize(zoo.get("unet"))
    assert (s.total, s.trainable) == (1_945_555, 1_942_611)
    assert sum(r.mult_adds for r in s.rows) == 189_661_184


def test_every_concatenation_reads_its_skip_and_the_up_convolution():
    model = small(depth=3, input_shape=(1, 32, 32))
    rows = {r.name: r for r in model.graph_summary().rows}
    for level in (1, 2, 3):
        assert rows[f"concat{level}"].connected == (f"down{level}_relu2[0][0]", f"up{level}[0][0]")
    assert rows["concat1"].output_shape == (8, 32, 32)
    lines: list[str] = []
    model.summary(print_fn=lines.append)
    assert "Connected to" in "\n".join(lines)
    residual = {r.name: r for r in small(residual=True).graph_summary().rows}
    assert residual["down1_add"].connected == ("down1_conv2_bn[0][0]", "down1_shortcut_bn[0][0]")


def test_resize_upsampling_uses_upsampling2d_then_a_convolution():
    model = small(upsampling="resize")
    kinds = {r.name: r.type for r in model.graph_summary().rows}
    assert kinds["up1_resize"] == "UpSampling2D" and kinds["up1"] == "Conv2D"
    assert kinds["up1"] == "Conv2D" and "Conv2DTranspose" not in kinds.values()
    assert "UpSampling2D" not in {r.type for r in small().graph_summary().rows}
    assert tuple(model.eval()(torch.randn(2, 3, 16, 16)).shape) == (2, 3, 16, 16)


def test_heteroscedastic_adds_one_log_variance_channel_per_output_starting_at_zero():
    model = small(output_channels=2, heteroscedastic=True).eval()
    with torch.no_grad():
        y = model(torch.randn(4, 3, 16, 16))
    assert tuple(y.shape) == (4, 4, 16, 16)
    assert torch.equal(y[:, 2:], torch.zeros(4, 2, 16, 16)) and y[:, :2].abs().sum() > 0
    assert summarize(model).total == summarize(small(output_channels=2)).total + conv(1, 4, 2)


def test_input_skip_adds_the_input_to_the_same_network_output():
    """The same weights with and without the skip: the outputs differ by the input exactly; a zeroed
    output convolution then passes the input through (and the log-variance channels stay apart)."""
    plain, skipped = small(normalization=None).eval(), small(normalization=None, input_skip=True).eval()
    assert summarize(skipped).total == summarize(plain).total
    skipped.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(skipped(x), plain(x) + x)
        noisy = small(normalization=None, input_skip=True, heteroscedastic=True).eval()
        noisy.get_layer("output").weight.zero_()
        noisy.get_layer("output").bias.zero_()
        y = noisy(x)
    torch.testing.assert_close(y[:, :3], x)
    assert tuple(y.shape) == (2, 6, 16, 16)
    with pytest.raises(DeepfieldError, match="input_skip adds the input to the output: it needs output_channels 3 "
                                             r"\(the input's\) and no output_activation; got 2 and None"):
        small(input_skip=True, output_channels=2)


def test_segmentation_softmax_sums_to_one_over_the_channels():
    model = small(output_channels=3, output_activation="softmax").eval()
    with torch.no_grad():
        y = model(torch.randn(2, 3, 16, 16))
    torch.testing.assert_close(y.sum(1), torch.ones(2, 16, 16))


def test_stamp_sizes_the_depth_cannot_halve_are_refused_with_what_would_work():
    with pytest.raises(DeepfieldError) as err:
        zoo.get("unet", input_shape=(3, 60, 60))
    assert str(err.value) == ("preset 'unet' depth 4 needs stamps whose height and width divide by 16; got 60×60: "
                              "crop to 48×48 or pad to 64×64, or use depth 2")
    with pytest.raises(DeepfieldError) as err:
        zoo.get("unet", input_shape=(1, 16, 16))
    assert str(err.value) == ("preset 'unet' depth 4 needs stamps of at least 32×32 pixels (4 2×2 poolings down "
                              "to 2×2); got 16×16, or use depth 3")
    with pytest.raises(DeepfieldError, match=r"divide by 4; got 9×16: crop to 8×16 or pad to 12×16$"):
        zoo.get("unet", input_shape=(1, 9, 16), depth=2)
    zoo.get("unet", input_shape=(1, 32, 32), filters=2)


@pytest.mark.parametrize("options, message", [
    ({"normalization": "layer"}, "normalization must be one of 'batch', 'group', null; got 'layer'"),
    ({"upsampling": "bilinear"}, "upsampling must be one of 'transpose', 'resize'; got 'bilinear'"),
    ({"normalization": "group", "groups": 3}, "with 3 groups needs filters that divide by 3; got filters 4"),
    ({"dropout": 1.0}, "dropout must be a rate in [0, 1); got 1.0"),
    ({"depth": 0}, "depth must be"),
    ({"residual": "yes"}, "residual must be one of False, True; got 'yes'"),
])
def test_bad_options_say_which_and_why(options, message):
    with pytest.raises(DeepfieldError) as err:
        small(**options)
    assert message in str(err.value)


def test_save_and_load_give_the_same_outputs(tmp_path):
    model = small(normalization="group", groups=2, residual=True, dropout=0.2, upsampling="resize",
                  heteroscedastic=True).eval()
    save_model(model, tmp_path / "unet")
    loaded = load_model(tmp_path / "unet").eval()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert [r.connected for r in loaded.graph_summary().rows] == [r.connected for r in model.graph_summary().rows]


def test_mc_dropout_draws_spread_every_pixel_and_no_dropout_means_no_draws():
    model = small(dropout=0.3)
    x = torch.randn(2, 3, 16, 16)
    draws = sample_outputs(model, [x], samples=6)
    assert tuple(draws.shape) == (6, 2, 3, 16, 16)
    assert bool((draws.std(0) > 0).all())
    with pytest.raises(DeepfieldError, match="no dropout"):
        sample_outputs(small(), [x], samples=2)


def test_a_depth_2_unet_learns_to_copy_noise_free_images():
    torch.manual_seed(0)
    x = np.random.default_rng(0).random((64, 1, 16, 16), dtype=np.float32)  # uniform: variance 1/12
    net = zoo.get("unet", input_shape=(1, 16, 16), depth=2, filters=8, normalization=None)
    model = Model(net).compile(optimizer=optimizers.Adam(learning_rate=3e-3), loss="mse")
    history = model.fit(x, x, batch_size=16, epochs=75, verbose=0)  # 300 steps
    assert history.history["loss"][0] > 0.1 and history.history["loss"][-1] < 2e-3  # < 2.5 % of the variance
    fresh = np.random.default_rng(1).random((64, 1, 16, 16), dtype=np.float32)
    assert model.evaluate(fresh, fresh, verbose=0)["loss"] < 2e-3  # the copy, not the 64 images, was learned


# -- the same network in Keras 3 (torch backend), channels first --------------------------------


def keras_unet(keras, bands: int, depth: int, filters: int, normalization, residual: bool, upsampling: str):
    """The U-Net as a Keras 3 user writes it, the preset's layer names, ``data_format='channels_first'``."""
    layers, cf = keras.layers, "channels_first"

    def conv(x, width, kernel, name):
        x = layers.Conv2D(width, kernel, padding="same", use_bias=normalization is None, data_format=cf, name=name)(x)
        if normalization == "batch":
            return layers.BatchNormalization(axis=1, name=f"{name}_bn")(x)
        return layers.GroupNormalization(2, axis=1, name=f"{name}_gn")(x) if normalization == "group" else x

    def block(x, width, name):
        y = conv(layers.Activation("relu")(conv(x, width, 3, f"{name}_conv1")), width, 3, f"{name}_conv2")
        return layers.Activation("relu")(layers.Add()([y, conv(x, width, 1, f"{name}_shortcut")]) if residual else y)

    image = keras.Input((bands, 16, 16))
    x, skips = image, []
    for level in range(1, depth + 1):
        skips.append(block(x, filters * 2 ** (level - 1), f"down{level}"))
        x = layers.MaxPooling2D(2, data_format=cf)(skips[-1])
    x = block(x, filters * 2**depth, "bottleneck")
    for level in range(depth, 0, -1):
        width = filters * 2 ** (level - 1)
        if upsampling == "transpose":
            up = layers.Conv2DTranspose(width, 2, strides=2, padding="same", data_format=cf, name=f"up{level}")(x)
        else:
            up = layers.Conv2D(width, 2, padding="same", data_format=cf, name=f"up{level}")(
                layers.UpSampling2D(2, data_format=cf)(x))
        x = block(layers.Concatenate(axis=1)([skips[level - 1], up]), width, f"up{level}_block")
    return keras.Model(image, layers.Conv2D(bands, 1, data_format=cf, name="output")(x))


@pytest.mark.parametrize("normalization, residual, upsampling", [("batch", False, "transpose"),
                                                                 ("group", True, "resize"),
                                                                 (None, False, "transpose")])
def test_same_outputs_and_parameter_count_as_the_network_written_in_keras(normalization, residual, upsampling):
    keras = pytest.importorskip("keras")
    ours = small(normalization=normalization, groups=2, residual=residual, upsampling=upsampling).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # batch-norm statistics and scales away from 0 and 1, so that they are tested too
        for name, tensor in ours.state_dict().items():
            if name.endswith(("gamma", "beta", "moving_mean", "moving_variance")):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
    theirs = keras_unet(keras, 3, 2, 4, normalization, residual, upsampling)
    assert theirs.count_params() == summarize(ours).total
    for layer in theirs.layers:
        if not layer.weights:
            continue
        module = ours.get_layer(layer.name)
        if hasattr(module, "weight"):  # Conv2D (out, in, kh, kw) and Conv2DTranspose (in, out, kh, kw) alike
            values = [module.weight.detach().permute(2, 3, 1, 0)] + ([module.bias.detach()] if module.use_bias else [])
        else:  # Keras's order: gamma, beta[, moving mean, moving variance]
            values = [getattr(module, n) for n in ("gamma", "beta", "moving_mean", "moving_variance")
                      if getattr(module, n, None) is not None]
        layer.set_weights([v.detach().numpy() for v in values])
    x = np.random.default_rng(2).normal(size=(4, 3, 16, 16)).astype("float32")
    with torch.no_grad():
        got = ours(torch.from_numpy(x)).numpy()
    assert got.std() > 0.1
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(theirs(x, training=False)), rtol=1e-4, atol=1e-5)
