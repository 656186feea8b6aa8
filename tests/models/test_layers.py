"""Convolution, pooling and batch-normalisation layers, checked against math and
independent references (hand-padded torch ops, numpy sliding windows, the course's
worked examples, Keras's documented examples)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import sliding_window_view

from deepfield.errors import DeepfieldError
from deepfield.models import (
    AveragePooling1D,
    AveragePooling2D,
    AveragePooling3D,
    BatchNormalization,
    Conv1D,
    Conv2D,
    Conv3D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    L2Pooling1D,
    L2Pooling2D,
    Layer,
    MaxPooling1D,
    MaxPooling2D,
    MaxPooling3D,
    SumPooling1D,
    SumPooling2D,
    initializers,
)
from deepfield.models.conv import Window


def n_params(layer: torch.nn.Module) -> int:
    return sum(p.numel() for p in layer.parameters())


def tf_same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's documented 'same' rule, written out independently of the library."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


# -- convolution --------------------------------------------------------------------


def test_conv2d_same_output_is_ceil_of_input_over_stride():
    for size in (7, 8, 9):
        for kernel in (1, 2, 3, 4, 5):
            for stride in (1, 2, 3):
                for dilation in (1, 2):
                    conv = Conv2D(2, kernel, strides=stride, padding="same", dilation_rate=dilation)
                    y = conv(torch.zeros(1, 1, size, size + 1))
                    assert y.shape[2:] == (math.ceil(size / stride), math.ceil((size + 1) / stride)), (
                        size, kernel, stride, dilation)


def test_conv_valid_and_explicit_output_shapes():
    y = Conv2D(3, (5, 3), strides=(2, 1), dilation_rate=(1, 2))(torch.zeros(2, 1, 11, 10))
    assert y.shape == (2, 3, (11 - 5) // 2 + 1, 10 - 4)
    y = Conv1D(3, 3, padding=2)(torch.zeros(2, 1, 10))
    assert y.shape == (2, 3, 10 + 4 - 2)


@pytest.mark.parametrize(
    "size, kernel, stride, dilation",
    [((8, 8), (3, 3), (2, 2), (1, 1)),   # pads (0, 1) on both axes
     ((7, 8), (4, 3), (2, 2), (1, 1)),   # (1, 2) and (0, 1)
     ((6, 6), (2, 2), (1, 1), (1, 1)),   # even kernel, stride 1: (0, 1)
     ((9, 9), (3, 3), (1, 1), (2, 2)),   # symmetric (2, 2)
     ((9, 10), (3, 2), (3, 2), (2, 1))],
)
def test_conv2d_same_matches_tf_padding_done_by_hand(size, kernel, stride, dilation):
    torch.manual_seed(0)
    x = torch.randn(2, 3, *size)
    conv = Conv2D(4, kernel, strides=stride, padding="same", dilation_rate=dilation)
    y = conv(x)
    (top, bottom), (left, right) = (tf_same_pads(*a) for a in zip(size, kernel, stride, dilation))
    expected = F.conv2d(F.pad(x, (left, right, top, bottom)), conv.weight, conv.bias, stride, 0, dilation)
    torch.testing.assert_close(y, expected)


def test_conv1d_and_conv3d_same_match_hand_padding():
    torch.manual_seed(0)
    x = torch.randn(2, 2, 9)
    conv = Conv1D(3, 4, strides=2, padding="same")
    y = conv(x)
    expected = F.conv1d(F.pad(x, tf_same_pads(9, 4, 2)), conv.weight, conv.bias, 2)
    torch.testing.assert_close(y, expected)

    x = torch.randn(1, 2, 5, 6, 7)
    conv = Conv3D(3, (2, 3, 3), strides=2, padding="same")
    y = conv(x)
    pads = [tf_same_pads(n, k, 2) for n, k in zip((5, 6, 7), (2, 3, 3))]
    flat = [p for pair in reversed(pads) for p in pair]
    expected = F.conv3d(F.pad(x, flat), conv.weight, conv.bias, 2)
    torch.testing.assert_close(y, expected)
    assert y.shape[2:] == (3, 3, 4)


def test_window_pads_symmetric_natively_and_asymmetric_with_f_pad():
    odd = Window((3, 3), (1, 1), (1, 1), "same", True, "Conv2D")
    assert odd.pads((8, 8)) == ((1, 1), None)
    strided = Window((3, 3), (2, 2), (1, 1), "same", True, "Conv2D")
    assert strided.pads((9, 9)) == ((1, 1), None)
    assert strided.pads((8, 9)) == ((0, 0), [1, 1, 0, 1])  # F.pad order: last axis first


def test_course_convolution_example():
    image = torch.tensor([[3, 3, 2, 1, 0], [0, 0, 1, 3, 1], [3, 1, 2, 2, 3], [2, 0, 0, 2, 2], [2, 0, 0, 0, 1]],
                         dtype=torch.float32)
    conv = Conv2D(1, 3, use_bias=False, kernel_initializer=initializers.Constant(1 / 9))
    y = conv(image[None, None])[0, 0]
    expected = torch.tensor([[1.7, 1.7, 1.7], [1.0, 1.2, 1.8], [1.1, 0.8, 1.3]])
    torch.testing.assert_close(torch.round(y * 10) / 10, expected)


def test_conv_parameter_counts_and_weight_layout():
    conv = Conv2D(32, 5)
    conv(torch.zeros(1, 3, 28, 28))
    assert n_params(conv) == 2432 == (5 * 5 * 3 + 1) * 32  # the course's colour-image example
    assert conv.weight.shape == (32, 3, 5, 5)
    conv3 = Conv3D(16, 3, padding="same")
    conv3(torch.zeros(1, 1, 4, 6, 6))
    assert n_params(conv3) == 448  # conv3d_1 in the course's Keras summary
    no_bias = Conv1D(8, 3, use_bias=False)
    no_bias(torch.zeros(1, 4, 10))
    assert n_params(no_bias) == 8 * 4 * 3 and no_bias.bias is None


def test_conv_kernel_initialiser_uses_conv_fans():
    torch.manual_seed(0)
    conv = Conv2D(64, 5)
    conv(torch.zeros(1, 32, 5, 5))
    limit = math.sqrt(6 / (32 * 25 + 64 * 25))  # glorot_uniform with fan_in = C*k*k, fan_out = F*k*k
    assert conv.weight.abs().max() <= limit
    assert conv.weight.abs().max() > 0.99 * limit


@pytest.mark.parametrize("layer, shape, padding", [
    (Conv2D, (5, 3, 9, 8), "valid"), (Conv2D, (5, 3, 9, 8), "same"), (Conv2D, (5, 3, 9, 8), 1),
    (Conv1D, (3, 2, 11), "same"), (Conv3D, (3, 2, 5, 6, 7), "valid"),
])
def test_strided_pointwise_convolution_is_the_strided_convolution(layer, shape, padding):
    """A 1x1 kernel with stride 2 subsamples then convolves (module comment): outputs and
    gradients are those of torch's strided convolution."""
    torch.manual_seed(0)
    conv = layer(4, 1, strides=2, padding=padding)
    x = torch.randn(*shape, requires_grad=True)
    y = conv(x)
    torch_conv = (F.conv1d, F.conv2d, F.conv3d)[len(shape) - 3]
    pad = 0 if isinstance(padding, str) else padding
    x_ref = x.detach().clone().requires_grad_()
    weight, bias = (conv.weight.detach().clone().requires_grad_(), conv.bias.detach().clone().requires_grad_())
    y_ref = torch_conv(x_ref, weight, bias, stride=2, padding=pad)
    torch.testing.assert_close(y, y_ref)
    upstream = torch.randn_like(y)
    (y * upstream).sum().backward()
    (y_ref * upstream).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(conv.weight.grad, weight.grad)
    torch.testing.assert_close(conv.bias.grad, bias.grad)


def test_conv_activation_applies():
    torch.manual_seed(0)
    y = Conv2D(4, 3, activation="relu", padding="same")(torch.randn(2, 3, 8, 8))
    assert y.min() == 0.0 and y.max() > 0.0


def test_conv_wrong_rank_error_names_layer_and_shape():
    with pytest.raises(DeepfieldError, match=r"Conv2D 'conv2d' expects \(N, C, H, W\) input, got shape \(N, 64, 64\)"):
        Conv2D(8, 3)(torch.zeros(2, 64, 64))
    with pytest.raises(DeepfieldError, match=r"Conv1D 'spec' expects \(N, C, L\) input"):
        Conv1D(8, 3, name="spec")(torch.zeros(2, 1, 8, 8))


def test_conv_valid_kernel_larger_than_input_is_an_error():
    with pytest.raises(DeepfieldError, match=r"Conv2D 'conv2d': window 5x5 is larger than the 3x3 input"):
        Conv2D(8, 5)(torch.zeros(1, 1, 3, 3))
    with pytest.raises(DeepfieldError, match="window 5 is larger"):
        Conv1D(8, 3, dilation_rate=2)(torch.zeros(1, 1, 4))
    assert Conv2D(8, 5, padding="same")(torch.zeros(1, 1, 3, 3)).shape == (1, 8, 3, 3)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"padding": "full"}, "padding must be 'valid', 'same' or ints"),
     ({"padding": -1}, "non-negative"),
     ({"strides": 0}, "strides must be positive"),
     ({"kernel_size": (3, 3, 3)}, "kernel_size must be an int or 2 ints"),
     ({"activation": "relux"}, "relux")],
)
def test_conv_bad_arguments(kwargs, message):
    args = {"filters": 4, "kernel_size": 3, **kwargs}
    with pytest.raises(DeepfieldError, match=message):
        Conv2D(**args)


# -- pooling ------------------------------------------------------------------------


def numpy_pool(x: np.ndarray, kind: str, pool: tuple, strides: tuple, padding: str) -> np.ndarray:
    """Pooling by explicit sliding windows; TF 'same' padding cells are NaN, i.e. not data."""
    rank = len(pool)
    if padding == "same":
        pads = [tf_same_pads(n, k, s) for n, k, s in zip(x.shape[2:], pool, strides)]
        x = np.pad(x, [(0, 0), (0, 0), *pads], constant_values=np.nan)
    windows = sliding_window_view(x, pool, axis=tuple(range(2, 2 + rank)))
    windows = windows[(slice(None), slice(None), *(slice(None, None, s) for s in strides))]
    axes = tuple(range(-rank, 0))
    if kind == "max":
        return np.nanmax(windows, axis=axes)
    if kind == "average":
        return np.nanmean(windows, axis=axes)
    if kind == "sum":
        return np.nansum(windows, axis=axes)
    return np.sqrt(np.nansum(windows**2, axis=axes))


POOLS = {
    (1, "max"): MaxPooling1D, (2, "max"): MaxPooling2D, (3, "max"): MaxPooling3D,
    (1, "average"): AveragePooling1D, (2, "average"): AveragePooling2D, (3, "average"): AveragePooling3D,
    (1, "sum"): SumPooling1D, (2, "sum"): SumPooling2D,
    (1, "l2"): L2Pooling1D, (2, "l2"): L2Pooling2D,
}
SIZES = {1: (11,), 2: (7, 8), 3: (5, 6, 7)}


@pytest.mark.parametrize("rank, kind", list(POOLS))
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_pooling_matches_numpy_sliding_windows(rank, kind, padding):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, *SIZES[rank]))
    for pool, strides in ((2, None), (3, None), (3, 2), (2, 1), (3, 1)):
        layer = POOLS[rank, kind](pool_size=pool, strides=strides, padding=padding)
        got = layer(torch.tensor(x, dtype=torch.float32)).numpy()
        pool_t = (pool,) * rank
        stride_t = pool_t if strides is None else (strides,) * rank
        expected = numpy_pool(x, kind, pool_t, stride_t, padding)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=f"{pool=} {strides=}")
        if padding == "same":
            assert got.shape[2:] == tuple(math.ceil(n / s) for n, s in zip(SIZES[rank], stride_t))


def test_pooling_same_hand_values():
    x = torch.tensor([[[1.0, 5.0, 2.0, 4.0, 3.0]]])  # windows [1,5] [2,4] [3, pad]
    assert MaxPooling1D(padding="same")(x).tolist() == [[[5.0, 4.0, 3.0]]]
    assert AveragePooling1D(padding="same")(x).tolist() == [[[3.0, 3.0, 3.0]]]  # pad not counted
    assert SumPooling1D(padding="same")(x).tolist() == [[[6.0, 6.0, 3.0]]]
    torch.testing.assert_close(L2Pooling1D(padding="same")(x), torch.tensor([[[26.0, 20.0, 9.0]]]).sqrt())
    # Keras's documented AveragePooling2D example (pool 2, stride 1, 'same').
    image = torch.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    y = AveragePooling2D(pool_size=2, strides=1, padding="same")(image)
    assert y[0, 0].tolist() == [[3.0, 4.0, 4.5], [6.0, 7.0, 7.5], [7.5, 8.5, 9.0]]


def test_sum_pooling_is_average_times_window_when_valid():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(SumPooling2D(2)(x), AveragePooling2D(2)(x) * 4)


def test_l2_pooling_gradient_is_finite_on_zero_windows():
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = 3.0
    x.requires_grad_(True)
    y = L2Pooling2D(2)(x)
    assert y[0, 0].tolist() == [[3.0, 0.0], [0.0, 0.0]]
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad[0, 0, 0, 0] == 1.0


def test_global_pooling():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 4)
    torch.testing.assert_close(GlobalAveragePooling2D()(x), x.mean(dim=(2, 3)))
    torch.testing.assert_close(GlobalMaxPooling2D()(x), x.flatten(2).max(dim=2).values)
    assert GlobalAveragePooling2D(keepdims=True)(x).shape == (2, 3, 1, 1)
    s = torch.randn(2, 3, 7)
    torch.testing.assert_close(GlobalAveragePooling1D()(s), s.mean(dim=2))
    torch.testing.assert_close(GlobalMaxPooling1D()(s), s.max(dim=2).values)
    with pytest.raises(DeepfieldError, match=r"GlobalAveragePooling2D 'global_average_pooling2d' expects"):
        GlobalAveragePooling2D()(s)


def test_pooling_errors():
    with pytest.raises(DeepfieldError, match=r"MaxPooling2D 'max_pooling2d' expects \(N, C, H, W\) input"):
        MaxPooling2D()(torch.zeros(1, 3, 8))
    with pytest.raises(DeepfieldError, match="window 4x4 is larger than the 3x3 input"):
        MaxPooling2D(4)(torch.zeros(1, 1, 3, 3))
    with pytest.raises(DeepfieldError, match="padding must be 'valid' or 'same'"):
        MaxPooling2D(padding=1)
    with pytest.raises(DeepfieldError, match="must be positive"):
        AveragePooling1D(0)


def test_course_maxpooling3d_halves_each_axis():
    assert MaxPooling3D(2)(torch.zeros(1, 16, 16, 12, 12)).shape == (1, 16, 8, 6, 6)


# -- batch normalisation --------------------------------------------------------------


def make_batch(shape: tuple[int, ...]) -> torch.Tensor:
    torch.manual_seed(0)
    shift = torch.tensor([5.0, -2.0, 0.5]).reshape(1, 3, *[1] * (len(shape) - 2))
    scale = torch.tensor([3.0, 0.5, 1.0]).reshape(1, 3, *[1] * (len(shape) - 2))
    return torch.randn(shape) * scale + shift


@pytest.mark.parametrize("shape", [(64, 3), (16, 3, 10), (8, 3, 6, 5), (4, 3, 3, 4, 5)])
def test_batchnorm_training_normalises_each_channel(shape):
    x = make_batch(shape)
    bn = BatchNormalization()
    bn.train()
    y = bn(x)
    axes = [0, *range(2, len(shape))]
    batch_var = x.var(dim=axes, unbiased=False)
    torch.testing.assert_close(y.mean(dim=axes), torch.zeros(3), atol=1e-5, rtol=0)
    # (x - mean) / sqrt(var + eps) has variance var / (var + eps), 1 up to epsilon
    torch.testing.assert_close(y.var(dim=axes, unbiased=False), batch_var / (batch_var + 1e-3), atol=1e-4, rtol=1e-4)


def test_batchnorm_moving_stats_follow_keras_momentum_with_biased_variance():
    x = make_batch((4, 3)).double()  # a small batch: biased and unbiased variance differ by 4/3
    bn = BatchNormalization(momentum=0.9)
    bn.build_for((3,))
    bn.double()
    with torch.no_grad():
        bn.moving_mean.copy_(torch.tensor([0.0, 0.0, 0.0]))
        bn.moving_variance.copy_(torch.tensor([1.0, 1.0, 1.0]))
    mean, var = x.numpy().mean(axis=0), x.numpy().var(axis=0)  # numpy's var is the biased one
    expected_mean, expected_var = np.zeros(3), np.ones(3)
    for _ in range(3):
        bn(x)
        expected_mean = 0.9 * expected_mean + 0.1 * mean
        expected_var = 0.9 * expected_var + 0.1 * var
        np.testing.assert_allclose(bn.moving_mean.numpy(), expected_mean, rtol=1e-10)
        np.testing.assert_allclose(bn.moving_variance.numpy(), expected_var, rtol=1e-10)


def test_batchnorm_moving_variance_float32_precision():
    x = make_batch((8, 3, 4, 4))
    bn = BatchNormalization()
    bn(x)
    var = x.var(dim=(0, 2, 3), unbiased=False)
    torch.testing.assert_close(bn.moving_variance, 0.99 + 0.01 * var, rtol=1e-6, atol=1e-6)


def test_batchnorm_eval_uses_moving_stats_and_leaves_them_alone():
    x = make_batch((6, 3, 4))
    bn = BatchNormalization(epsilon=0.01)
    bn(x)
    with torch.no_grad():
        bn.moving_mean.copy_(torch.tensor([1.0, 2.0, 3.0]))
        bn.moving_variance.copy_(torch.tensor([4.0, 0.25, 1.0]))
        bn.gamma.copy_(torch.tensor([2.0, 1.0, 0.5]))
        bn.beta.copy_(torch.tensor([0.0, 1.0, -1.0]))
    bn.eval()
    y = bn(x)
    mean, var, gamma, beta = (torch.tensor(v).reshape(1, 3, 1) for v in
                              ([1.0, 2.0, 3.0], [4.0, 0.25, 1.0], [2.0, 1.0, 0.5], [0.0, 1.0, -1.0]))
    expected = gamma * (x - mean) / torch.sqrt(var + 0.01) + beta
    torch.testing.assert_close(y, expected)
    assert bn.moving_mean.tolist() == [1.0, 2.0, 3.0]


def test_batchnorm_parameter_counts_and_buffers():
    bn = BatchNormalization()
    bn(torch.zeros(2, 16, 4, 4))
    trainable = sum(p.numel() for p in bn.parameters())
    buffers = {name: b.numel() for name, b in bn.named_buffers()}
    assert trainable == 32 and buffers == {"moving_mean": 16, "moving_variance": 16}  # 4C in all, 2C non-trainable
    bare = BatchNormalization(center=False, scale=False)
    bare(torch.zeros(2, 5))
    assert n_params(bare) == 0 and bare.gamma is None and bare.beta is None


def test_batchnorm_other_axis_matches_course_summary():
    # The course's Keras summary: BN (Keras axis=-1) after a Conv3D with output (16, 16, 112, 112)
    # has 4 * 112 = 448 params, 224 of them non-trainable; here W = 12.
    x = make_batch((2, 3, 4, 5, 12))
    bn = BatchNormalization(axis=-1)
    y = bn(x)
    assert n_params(bn) + sum(b.numel() for b in bn.buffers()) == 4 * 12
    torch.testing.assert_close(y.mean(dim=(0, 1, 2, 3)), torch.zeros(12), atol=1e-5, rtol=0)
    with pytest.raises(DeepfieldError, match="axis 4 is not a feature axis"):
        BatchNormalization(axis=4)(torch.zeros(2, 3, 5, 5))


def test_batchnorm_gradients_reach_gamma_and_beta():
    x = make_batch((8, 3)).requires_grad_(True)
    bn = BatchNormalization()
    (bn(x) * torch.arange(3.0)).sum().backward()
    assert bn.gamma.grad is not None and bn.beta.grad.tolist() == [0.0, 8.0, 16.0]


# -- config round trip ------------------------------------------------------------------


ROUND_TRIP = [
    (Conv1D(4, 3, strides=2, padding="same", activation="relu"), (2, 3, 11)),
    (Conv2D(5, (3, 2), padding=(1, 0), dilation_rate=(2, 1), use_bias=False, kernel_initializer="he_normal"),
     (2, 3, 9, 9)),
    (Conv2D(4, 3, kernel_initializer=initializers.VarianceScaling(2.0, "fan_out", "uniform"), name="c"),
     (2, 2, 6, 6)),
    (Conv3D(2, 2, padding="same", input_shape=(2, 5, 5, 5)), (1, 2, 5, 5, 5)),
    (MaxPooling2D(3, strides=2, padding="same"), (2, 3, 7, 7)),
    (AveragePooling1D(2, padding="same"), (2, 3, 7)),
    (L2Pooling2D((2, 3)), (2, 3, 6, 6)),
    (SumPooling1D(3, strides=1), (2, 3, 7)),
    (GlobalMaxPooling2D(keepdims=True), (2, 3, 4, 4)),
    (BatchNormalization(axis=-1, momentum=0.9, center=False, gamma_initializer="random_normal"), (4, 3, 5)),
]


@pytest.mark.parametrize("layer, shape", ROUND_TRIP, ids=lambda v: type(v).__name__ if isinstance(v, Layer) else "")
def test_config_round_trip_rebuilds_an_equal_layer(layer, shape):
    torch.manual_seed(0)
    x = torch.randn(shape)
    layer(x)
    config = json.loads(json.dumps(layer.get_config()))
    twin = Layer.registry[type(layer).__name__].from_config(config)
    twin(x)
    twin.load_state_dict(layer.state_dict())
    layer.eval()
    twin.eval()
    torch.testing.assert_close(twin(x), layer(x), rtol=0, atol=0)
    assert twin.get_config() == config


# -- dropout ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [0.1, 0.25, 0.5, 0.8])
def test_dropout_zeroes_the_rate_and_scales_the_rest(rate):
    from deepfield.models import Dropout

    layer = Dropout(rate).train()
    x = torch.ones(200, 50, 10)  # 100,000 elements: the dropped fraction is within 0.5 % of the rate
    torch.manual_seed(0)
    y = layer(x)
    dropped = float((y == 0).float().mean())
    assert abs(dropped - rate) < 0.005
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1.0 / (1.0 - rate)))
    assert torch.equal(layer.eval()(x), x) and Dropout(0.0).train()(x) is x


def test_dropout_lanes_are_independent_and_seeded():
    """Each 64-bit draw feeds four consecutive elements: each position of the four keeps 1 - rate,
    and neighbours are not correlated."""
    from deepfield.models.core import keep_mask

    torch.manual_seed(3)
    mask = keep_mask((100_000, 4), 0.3).float()
    np.testing.assert_allclose(mask.mean(0).numpy(), 0.7, atol=0.006)
    centred = mask - mask.mean(0)
    correlation = (centred.T @ centred / len(mask)) / mask.var(0)
    assert float((correlation - torch.eye(4)).abs().max()) < 0.02
    torch.manual_seed(3)
    assert torch.equal(keep_mask((100_000, 4), 0.3).float(), mask)


def test_dropout_gradient_is_the_mask_scaled_and_dtype_is_kept():
    from deepfield.models import Dropout

    layer = Dropout(0.4).train()
    x = torch.randn(64, 33, requires_grad=True)
    y = layer(x)
    y.sum().backward()
    kept = y.detach() != 0
    torch.testing.assert_close(x.grad, kept.float() / 0.6)
    half = layer(torch.randn(8, 8, dtype=torch.bfloat16))
    assert half.dtype == torch.bfloat16
