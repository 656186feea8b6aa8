"""Transforms against numpy and the math: D4 group, robust statistics, stretches, resampling, noise, shifts."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deepfield.data import transforms as T
from deepfield.errors import DeepfieldError


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def asymmetric(shape: tuple[int, ...] = (2, 5, 5)) -> torch.Tensor:
    """Distinct pixel values, so no rotation or flip maps the image onto itself."""
    return torch.randperm(int(np.prod(shape)), generator=seeded()).reshape(shape).double()


# ---------------------------------------------------------------- dihedral group


@pytest.mark.parametrize("shape", [(2, 5, 5), (3, 4, 6)])
def test_dihedral_matches_numpy_rot90_and_flip(shape):
    x = asymmetric(shape)
    for k in range(8):
        a = x.numpy()
        expected = np.rot90(np.flip(a, -1) if k >= 4 else a, k % 4, axes=(-2, -1))
        np.testing.assert_array_equal(T.dihedral(x, k).numpy(), expected)


def test_the_eight_variants_are_distinct_and_form_a_group():
    x = asymmetric()
    variants = T.all_dihedral(x)
    assert variants.shape == (8, *x.shape)
    assert all(torch.equal(variants[k], T.dihedral(x, k)) for k in range(8))
    assert len({tuple(v.flatten().tolist()) for v in variants}) == 8

    def index(y: torch.Tensor) -> list[int]:
        return [k for k in range(8) if torch.equal(y, variants[k])]

    for a in range(8):
        for b in range(8):  # closure: doing a then b is exactly one element of the group
            assert len(index(T.dihedral(T.dihedral(x, a), b))) == 1
        assert torch.equal(T.dihedral(T.dihedral(x, a), T.inverse_dihedral(a)), x)
        assert torch.equal(T.dihedral(T.dihedral(x, T.inverse_dihedral(a)), a), x)


def test_random_dihedral_draws_per_sample_and_each_output_is_a_variant():
    x = asymmetric((2, 6, 6))
    out = T.RandomDihedral(generator=seeded())(x.expand(64, -1, -1, -1).clone())
    variants = T.all_dihedral(x)
    drawn = [next(k for k in range(8) if torch.equal(o, variants[k])) for o in out]
    assert len(set(drawn)) >= 6
    single = T.RandomDihedral(generator=seeded(1))(x)
    assert single.shape == x.shape and any(torch.equal(single, v) for v in variants)


def test_random_dihedral_is_reproducible_with_a_seeded_generator():
    x = torch.randn(16, 1, 8, 8)
    assert torch.equal(T.RandomDihedral(generator=seeded(3))(x), T.RandomDihedral(generator=seeded(3))(x))


# ---------------------------------------------------------------- robust normalisation


def mad_sigma(a: np.ndarray) -> float:
    return 1.4826 * float(np.median(np.abs(a - np.median(a))))


def test_robust_normalize_per_image_gives_median_0_and_robust_sigma_1_per_band():
    rng = np.random.default_rng(0)
    images = rng.normal([[[[5.0]], [[-2.0]]]], [[[[3.0]], [[0.1]]]], (3, 2, 20, 21))
    out = T.RobustNormalize()(torch.as_tensor(images)).numpy()
    for n in range(3):
        for c in range(2):
            assert abs(np.median(out[n, c])) < 1e-12
            assert mad_sigma(out[n, c]) == pytest.approx(1.0, abs=1e-12)


def test_robust_normalize_ignores_a_few_outliers_unlike_mean_and_std():
    clean = torch.randn(1, 2, 64, 64, generator=seeded())
    dirty = clean.clone()
    dirty[0, :, :3, :3] = 1e4  # a saturated star in both bands
    keep = torch.ones_like(clean, dtype=torch.bool)
    keep[0, :, :3, :3] = False
    normalize = T.RobustNormalize()
    assert (normalize(dirty) - normalize(clean))[keep].abs().max() < 0.02

    def standardize(x: torch.Tensor) -> torch.Tensor:
        return (x - x.mean(dim=(2, 3), keepdim=True)) / x.std(dim=(2, 3), keepdim=True)

    assert (standardize(dirty) - standardize(clean))[keep].abs().max() > 0.5


def test_robust_normalize_fit_freezes_pooled_band_statistics():
    rng = np.random.default_rng(1)
    train = rng.normal([[[[10.0]], [[0.0]], [[-4.0]]]], [[[[2.0]], [[1.0]], [[0.5]]]], (5, 3, 8, 8))
    normalize = T.RobustNormalize().fit(torch.as_tensor(train, dtype=torch.float32))
    bands = train.transpose(1, 0, 2, 3).reshape(3, -1)
    expected_median = np.median(bands, axis=1)
    expected_sigma = [mad_sigma(b) for b in bands]
    np.testing.assert_allclose(normalize.median.numpy(), expected_median, rtol=1e-5)
    np.testing.assert_allclose(normalize.sigma.numpy(), expected_sigma, rtol=1e-5)

    new = torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=seeded())
    expected = (new.numpy() - expected_median[:, None, None]) / np.array(expected_sigma)[:, None, None]
    np.testing.assert_allclose(normalize(new).numpy(), expected, rtol=1e-5, atol=1e-6)
    restored = T.from_config(json.loads(json.dumps(normalize.get_config())))
    assert torch.equal(restored(new), normalize(new))
    with pytest.raises(DeepfieldError, match="robust_normalize: statistics are for 3 bands, the image has 2"):
        normalize(new[:, :2])


# ---------------------------------------------------------------- stretches and clipping


def test_asinh_and_log_stretch_follow_their_formulas():
    x = torch.linspace(-5, 50, 111, dtype=torch.float64).view(1, 1, 3, 37)
    a = x.numpy()
    np.testing.assert_allclose(T.AsinhStretch(softening=0.3)(x).numpy(), np.arcsinh(a / 0.3), rtol=1e-12)
    np.testing.assert_allclose(T.LogStretch(scale=2.0)(x).numpy(), np.log(1 + np.clip(a, 0, None) / 2.0), rtol=1e-12)


def test_colour_preserving_asinh_stretches_the_band_mean_and_keeps_band_ratios():
    x = torch.tensor([[[1.0, 0.0, 30.0]], [[2.0, 0.0, -6.0]], [[3.0, 0.0, 3.0]]], dtype=torch.float64)  # (3, 1, 3)
    out = T.AsinhStretch(softening=0.5, preserve_colour=True)(x).numpy()
    a = x.numpy()
    intensity = a.mean(axis=0)
    gain = np.where(intensity == 0, 1 / 0.5, np.arcsinh(intensity / 0.5) / np.where(intensity == 0, 1, intensity))
    np.testing.assert_allclose(out, a * gain, rtol=1e-12)
    assert out[0, 0, 0] / out[2, 0, 0] == pytest.approx(1 / 3)


def test_clip_limits_values():
    x = torch.linspace(-3, 3, 7).view(1, 1, 7)
    assert T.Clip(-1, 2)(x).flatten().tolist() == [-1, -1, -1, 0, 1, 2, 2]
    assert T.Clip(high=0)(x).max() == 0


# ---------------------------------------------------------------- crop and resize


def test_center_crop_takes_the_central_pixels():
    x = torch.arange(2 * 6 * 7, dtype=torch.float32).view(1, 2, 6, 7)
    assert torch.equal(T.CenterCrop((2, 3))(x), x[:, :, 2:4, 2:5])
    assert torch.equal(T.CenterCrop(5)(x[0]), x[0, :, 0:5, 1:6])  # odd margin: extra pixel bottom/right


@pytest.mark.parametrize("mode", ["bilinear", "area"])
@pytest.mark.parametrize("size", [(5, 5), (16, 12)])
def test_resize_keeps_a_constant_image_constant(mode, size):
    out = T.Resize(size, mode=mode)(torch.full((2, 3, 8, 8), 7.5))
    assert out.shape == (2, 3, *size)
    assert torch.allclose(out, torch.full_like(out, 7.5))


def test_area_resize_averages_blocks():
    x = torch.arange(16, dtype=torch.float64).view(1, 4, 4) ** 2
    blocks = x.numpy().reshape(1, 2, 2, 2, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(T.Resize(2, mode="area")(x).numpy(), blocks)


# ---------------------------------------------------------------- noise and shifts


def test_gaussian_noise_has_the_requested_sigma_per_band_and_is_reproducible():
    x = torch.zeros(4, 2, 128, 128)
    out = T.GaussianNoise([0.5, 2.0], generator=seeded())(x)
    assert out[:, 0].std().item() == pytest.approx(0.5, rel=0.03)
    assert out[:, 1].std().item() == pytest.approx(2.0, rel=0.03)
    assert abs(out.mean().item()) < 0.02
    assert not torch.equal(out[0], out[1])  # each sample its own draw
    assert torch.equal(T.GaussianNoise(1.0, generator=seeded(5))(x), T.GaussianNoise(1.0, generator=seeded(5))(x))
    torch.manual_seed(9)
    first = T.GaussianNoise(1.0)(x)
    torch.manual_seed(9)
    assert torch.equal(T.GaussianNoise(1.0)(x), first)  # the global RNG when no generator


def test_roll_shift_is_a_per_sample_torch_roll_and_keeps_flux_exactly():
    x = asymmetric((1, 9, 9)).expand(32, -1, -1, -1)
    out = T.RandomShift(max_shift=2, mode="roll", generator=seeded())(x)
    offsets = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
    drawn = [next(s for s in offsets if torch.equal(o, torch.roll(x[0], s, dims=(-2, -1)))) for o in out]
    assert len(set(drawn)) >= 10
    assert torch.equal(out.flatten(1).sort().values, x.flatten(1).sort().values)


def test_pad_shift_keeps_the_flux_of_a_source_inside_the_frame():
    x = torch.zeros(32, 2, 12, 12, dtype=torch.float64)
    x[:, :, 4:8, 3:9] = torch.rand(2, 4, 6, generator=seeded(), dtype=torch.float64) + 1  # margin >= 3 all round
    out = T.RandomShift(max_shift=3, mode="pad", generator=seeded())(x)
    torch.testing.assert_close(out.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))
    shifted = [torch.roll(x[0], (dy, dx), dims=(-2, -1)) for dy in range(-3, 4) for dx in range(-3, 4)]
    assert all(any(torch.equal(o, s) for s in shifted) for o in out)
    assert len({tuple(o.nonzero()[0].tolist()) for o in out}) >= 10


def test_pad_shift_fills_the_uncovered_edge_with_zero():
    x = torch.ones(64, 1, 5, 5)
    out = T.RandomShift(max_shift=1, mode="pad", generator=seeded())(x)
    lost = 25 - out.sum(dim=(1, 2, 3))
    assert set(lost.tolist()) == {0.0, 5.0, 9.0}  # no shift, one edge row or column, or both
    assert torch.equal(T.RandomShift(max_shift=0, mode="pad")(x), x)


# ---------------------------------------------------------------- composition, config, devices


def test_compose_applies_in_order():
    x = torch.linspace(-2, 8, 40).view(1, 4, 10)
    clip, stretch = T.Clip(high=1.0), T.AsinhStretch(softening=0.1)
    assert torch.equal(T.Compose([clip, stretch])(x), stretch(clip(x)))
    assert torch.equal(T.Compose([stretch, clip])(x), clip(stretch(x)))
    assert not torch.equal(stretch(clip(x)), clip(stretch(x)))
    assert T.Compose([T.CenterCrop(4), T.Resize(8)])(torch.zeros(3, 1, 6, 6)).shape == (3, 1, 8, 8)


EXAMPLES = [
    T.RobustNormalize(),
    T.RobustNormalize(median=[0.0, 1.0], sigma=[1.0, 2.0]),
    T.AsinhStretch(softening=0.2, preserve_colour=True),
    T.LogStretch(scale=3.0),
    T.Clip(low=-1.0),
    T.CenterCrop((4, 6)),
    T.Resize(5, mode="area"),
    T.RandomDihedral(),
    T.GaussianNoise([0.1, 0.3]),
    T.RandomShift(max_shift=2, mode="pad"),
    T.Compose([T.CenterCrop(6), T.RandomDihedral()]),
]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("transform", EXAMPLES, ids=repr)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_device_dtype_and_single_image_shape_are_kept(transform, device, dtype):
    batch = torch.randn(3, 2, 8, 8, dtype=dtype, device=device)
    out = transform(batch)
    assert (out.device.type, out.dtype, out.ndim, len(out)) == (device, dtype, 4, 3)
    single = transform(batch[0])
    assert (single.device.type, single.dtype, single.shape) == (device, dtype, out.shape[1:])


@pytest.mark.parametrize("transform", EXAMPLES, ids=repr)
def test_config_round_trips_through_json_and_the_repr_reads_well(transform):
    config = json.loads(json.dumps(transform.get_config()))
    assert config == transform.get_config()
    rebuilt = T.from_config(config)
    assert type(rebuilt) is type(transform) and rebuilt.get_config() == config and repr(rebuilt) == repr(transform)
    assert repr(transform).startswith(type(transform).__name__ + "(")


def test_registry_builds_by_name():
    assert set(T.names()) >= {
        "robust_normalize", "asinh", "log", "clip", "center_crop", "resize", "dihedral", "gaussian_noise", "shift",
    }
    assert repr(T.get("asinh", softening=0.5)) == "AsinhStretch(softening=0.5, preserve_colour=False)"
    assert isinstance(T.get("dihedral"), T.RandomDihedral)
    composed = T.Compose([{"name": "clip", "high": 1.0}, T.LogStretch()])
    assert T.from_config(composed.get_config()).get_config() == composed.get_config()


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: T.CenterCrop(9)(torch.zeros(1, 8, 8)), "center_crop: crop 9x9 is larger than the image 8x8"),
        (lambda: T.CenterCrop(0), "center_crop: size must be a positive int"),
        (lambda: T.GaussianNoise(-0.1), "gaussian_noise: sigma must be finite and >= 0"),
        (lambda: T.GaussianNoise([1.0, 2.0])(torch.zeros(3, 4, 4)), "gaussian_noise: sigma has 2 bands, the image has"),
        (lambda: T.get("blur"), "unknown transform 'blur'; expected one of: asinh, "),
        (lambda: T.get("asinh", soft=1.0), "asinh: unexpected argument 'soft'"),
        (lambda: T.get("resize"), "resize: missing argument 'size'"),
        (lambda: T.from_config({"softening": 1.0}), "a transform config is a mapping with a 'name' key"),
        (lambda: T.Resize(4, mode="bicubic"), "resize: mode 'bicubic'; expected one of: bilinear, area"),
        (lambda: T.RandomShift(max_shift=-1), "shift: max_shift must be an int >= 0"),
        (lambda: T.RandomShift(mode="reflect"), "shift: mode 'reflect'"),
        (lambda: T.Clip(), "clip: give low, high or both"),
        (lambda: T.Clip(2.0, 1.0), "clip: low must be < high"),
        (lambda: T.AsinhStretch(softening=0), "asinh: softening must be finite and > 0"),
        (lambda: T.LogStretch(scale=-1), "log: scale must be finite and > 0"),
        (lambda: T.RobustNormalize(median=[0.0]), "robust_normalize: give both median and sigma"),
        (lambda: T.RobustNormalize(median=[0.0], sigma=[0.0]), "robust_normalize: median must be finite and sigma"),
        (lambda: T.RandomDihedral()(torch.zeros(1, 4, 5)), "dihedral: random rotations need square images, got 4x5"),
        (lambda: T.dihedral(torch.zeros(4, 4), 8), "dihedral: k must be an integer in 0..7, got 8"),
        (lambda: T.inverse_dihedral(-1), "dihedral: k must be an integer in 0..7, got -1"),
        (lambda: T.all_dihedral(torch.zeros(1, 4, 5)), "dihedral: all eight variants need square images"),
        (lambda: T.AsinhStretch()(torch.zeros(4, 4)), r"asinh: expected shape \(C, H, W\) or \(N, C, H, W\), got"),
        (lambda: T.LogStretch()(torch.zeros(1, 4, 4, dtype=torch.int64)), "log: expected a floating-point tensor"),
        (lambda: T.Clip(0)(np.zeros((1, 4, 4))), "clip: expected a torch.Tensor image, got ndarray"),
    ],
)
def test_bad_arguments_give_one_line_naming_the_transform(build, message):
    with pytest.raises(DeepfieldError, match=message) as caught:
        build()
    assert "\n" not in str(caught.value)
