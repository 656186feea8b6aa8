"""Region explanations of an image output, on networks whose answer is known: a 1×1 convolution
(each output pixel a fixed mix of the input's bands at that pixel) and a 3×3 one (its receptive field)."""
import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, Occlusion
from photutils.aperture import CircularAperture
from torch import nn

from deepfield.analysis.explain.region import (Aperture, RegionFlux, Window, parse_aperture, parse_window,
                                               region_integrated_gradients, region_occlusion)
from deepfield.errors import DeepfieldError

MIX = np.array([[1.0, 0.5], [-2.0, 0.25], [0.0, 3.0]])  # 3 output channels from 2 bands
BIAS = np.array([0.3, -1.0, 2.0])


def pointwise() -> nn.Module:
    conv = nn.Conv2d(2, 3, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(MIX, dtype=torch.float32)[:, :, None, None])
        conv.bias.copy_(torch.tensor(BIAS, dtype=torch.float32))
    return conv


def stamps(n=3, size=16, seed=0):
    return np.random.default_rng(seed).normal(1.0, 1.0, (n, 2, size, size)).astype(np.float32)


def test_aperture_weights_are_photutils_exact_overlap_and_the_window_a_box():
    weights = Aperture(7.3, 8.6, 4.2).weights((16, 20))
    image = np.random.default_rng(1).random((16, 20))
    expected = CircularAperture((7.3, 8.6), r=4.2).to_mask(method="exact").multiply(image, fill_value=0.0).sum()
    assert weights.shape == (16, 20) and (weights * image).sum() == pytest.approx(expected, rel=1e-6)
    box = Window(2, 5, 3, 9).weights((16, 20))
    assert box.sum() == 18 and box[3:9, 2:5].all()


@pytest.mark.parametrize("channels", [None, [0, 2]])
def test_integrated_gradients_of_a_pointwise_network_are_the_input_times_weight_inside_the_region(channels):
    x = stamps()
    region = Aperture(7.5, 6.0, 4.0)
    result = region_integrated_gradients(pointwise(), x, region, channels=channels, steps=8)
    w = region.weights((16, 16))
    per_band = MIX[channels if channels is not None else slice(None)].sum(axis=0)  # (2,) ∂flux/∂band per unit weight
    expected = x * w[None, None] * per_band[None, :, None, None]
    np.testing.assert_allclose(result.attributions, expected, atol=1e-5)
    assert (result.attributions[:, :, w == 0] == 0).all()  # nothing outside the aperture
    selected = channels if channels is not None else [0, 1, 2]
    flux = np.einsum("kc,nchw,hw->n", MIX[selected], x, w) + BIAS[selected].sum() * w.sum()
    np.testing.assert_allclose(result.score, flux, rtol=1e-5)
    np.testing.assert_allclose(result.baseline_score, BIAS[selected].sum() * w.sum(), rtol=1e-5)
    assert np.all(np.abs(result.delta) < 1e-4 * np.abs(result.score - result.baseline_score))


def test_an_identity_network_attributes_a_windows_flux_to_the_pixels_in_the_window():
    x = stamps(2)
    result = region_integrated_gradients(nn.Identity(), x, [Window(0, 4, 0, 4), Window(10, 16, 2, 5)], steps=4)
    np.testing.assert_allclose(result.attributions[0, :, :4, :4], x[0, :, :4, :4], rtol=1e-5)
    np.testing.assert_allclose(result.attributions[1, :, 2:5, 10:16], x[1, :, 2:5, 10:16], rtol=1e-5)
    assert result.attributions[0].sum() == pytest.approx(x[0, :, :4, :4].sum(), rel=1e-5)
    assert np.count_nonzero(result.attributions) == 2 * (16 + 18)


def test_integrated_gradients_of_a_nonlinear_network_add_up_to_the_flux_difference():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 1, 3, padding=1))
    result = region_integrated_gradients(model, stamps(2), Aperture(8, 8, 3), steps=64)
    assert np.all(result.relative_error < 1e-3)
    sums = result.attributions.reshape(2, -1).sum(axis=1)
    np.testing.assert_allclose(sums, result.score - result.baseline_score, rtol=1e-3)


def test_occlusion_of_a_pointwise_network_is_the_hidden_pixels_share_and_matches_integrated_gradients():
    x = stamps(1)
    region = Aperture(8.0, 8.0, 5.0)
    occ = region_occlusion(pointwise(), x[0], region, size=1, stride=1)
    ig = region_integrated_gradients(pointwise(), x, region, steps=4)
    np.testing.assert_allclose(occ.pixel_map(), ig.attributions[0].sum(axis=0), atol=1e-5)
    assert occ.clean == pytest.approx(float(ig.score[0]), rel=1e-6)


def test_occlusion_outside_the_receptive_field_changes_nothing():
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 1, 3, padding=1)
    with torch.no_grad():
        conv.weight.abs_()  # every weight positive, inputs positive: hiding a pixel near the window lowers its flux
    x = np.abs(stamps(1)) + 0.5
    occ = region_occlusion(conv, x[0], Window(0, 4, 0, 4), size=2, stride=2)
    pixels = occ.pixel_map()
    # a square at rows/columns ≥ 6 reaches output pixels ≥ 5 only: outside the window (zero to the float32
    # rounding of the convolution, which differs between a batch of copies and the stamp alone)
    zero = 1e-6 * abs(occ.clean)
    assert (np.abs(pixels[6:, :]) < zero).all() and (np.abs(pixels[:, 6:]) < zero).all()
    assert (pixels[:6, :6] > 1e-3 * abs(occ.clean)).all()


def test_the_wrapper_is_a_module_captum_takes_directly():
    x = torch.from_numpy(stamps(1))
    readout = RegionFlux(pointwise(), Window(3, 9, 4, 12).weights((16, 16)))
    captum_occ = Occlusion(readout).attribute(x, sliding_window_shapes=(2, 3, 3), strides=(2, 2, 2), baselines=0.0)
    ours = region_occlusion(pointwise(), x[0], Window(3, 9, 4, 12), size=3, stride=2)
    # captum's map spans the squares it placed; the same squares here, so the same mean losses
    np.testing.assert_allclose(captum_occ[0, 0].numpy(), ours.pixel_map(), atol=1e-4)
    ig = IntegratedGradients(readout).attribute(x, baselines=0.0, n_steps=4)
    np.testing.assert_allclose(ig.detach().numpy(), region_integrated_gradients(
        pointwise(), x, Window(3, 9, 4, 12), steps=4).attributions, atol=1e-5)


@pytest.mark.parametrize("text, message", [
    ("8,8", "expected x,y,r in pixels"), ("a,b,c", "expected x,y,r"), ("8;8;3", "expected x,y,r")])
def test_bad_aperture_text_is_one_line(text, message):
    with pytest.raises(DeepfieldError, match=message):
        parse_aperture(text)


def test_bad_window_text_and_regions_off_the_stamp_are_refused():
    assert parse_window(" 2:5, 3:9") == Window(2, 5, 3, 9)
    assert parse_aperture("7.5,8,1e1") == Aperture(7.5, 8.0, 10.0)
    with pytest.raises(DeepfieldError, match="expected x0:x1,y0:y1"):
        parse_window("2-5,3-9")
    with pytest.raises(DeepfieldError, match="must lie on the 16×16 stamp"):
        region_integrated_gradients(nn.Identity(), stamps(1), Window(10, 20, 0, 4))
    with pytest.raises(DeepfieldError, match="aperture's centre must lie on the 16×16 stamp"):
        region_occlusion(nn.Identity(), stamps(1)[0], Aperture(16.0, 3.0, 2.0))
    with pytest.raises(DeepfieldError, match="radius be positive"):
        Aperture(3.0, 3.0, 0.0).check((16, 16))
    with pytest.raises(DeepfieldError, match="is not a batch of images"):
        region_integrated_gradients(nn.Flatten(), stamps(1), Window(0, 2, 0, 2))
