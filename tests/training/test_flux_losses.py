"""flux_mae: the MAE plus the asinh of each image's relative total-flux error, checked against hand-computed
numbers."""
import math

import numpy as np
import pytest
import torch

from deepfield.errors import DeepfieldError
from deepfield.training import losses
from deepfield.training.flux_losses import FluxConservingMAE


def test_linear_values_give_the_mae_plus_the_mean_asinh_of_the_relative_flux_error():
    truth = torch.tensor([[[[1.0, 3.0]]], [[[2.0, 2.0]]]])  # (2, 1, 1, 2): fluxes 4 and 4
    output = torch.tensor([[[[2.0, 3.0]]], [[[1.0, 1.0]]]])  # fluxes 5 and 2
    mae = (1 + 0 + 1 + 1) / 4
    flux = (math.asinh(abs(5 - 4) / 4) + math.asinh(abs(2 - 4) / 4)) / 2
    assert float(losses.get("flux_mae")(output, truth)) == pytest.approx(mae + flux)
    assert float(FluxConservingMAE(flux_weight=0.5)(output, truth)) == pytest.approx(mae + 0.5 * flux)
    assert float(FluxConservingMAE(flux_weight=0.0)(output, truth)) == pytest.approx(mae)
    assert float(FluxConservingMAE(floor=4.0)(output, truth)) == pytest.approx(mae + (math.asinh(1 / 8) + math.asinh(2 / 8)) / 2)
    values = FluxConservingMAE().values(output, truth)
    assert values.shape == (2, 1, 1, 2) and float(values.mean()) == pytest.approx(mae + flux)


def test_the_flux_undoes_the_asinh_stretch_and_each_channels_normalisation():
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.0, 50.0, size=(3, 2, 4, 4))  # (N, C, H, W) in the file's unit
    median, sigma = np.array([0.5, 1.5]), np.array([2.0, 4.0])
    network = np.arcsinh((raw - median[:, None, None]) / sigma[:, None, None] / 3.0)
    loss = FluxConservingMAE(softening=3.0, scale=list(sigma), offset=list(median))
    np.testing.assert_allclose(loss.flux(torch.from_numpy(network)).numpy(), raw.sum(axis=(1, 2, 3)), rtol=1e-10)
    half = np.arcsinh((0.5 * raw - median[:, None, None]) / sigma[:, None, None] / 3.0)
    relative = float(loss(torch.from_numpy(half), torch.from_numpy(network)) - np.abs(half - network).mean())
    assert relative == pytest.approx(math.asinh(0.5))  # every output holds half of its truth's flux


def test_an_untrained_networks_huge_flux_costs_only_its_logarithm():
    truth = torch.ones(1, 1, 2, 2)
    output = torch.full((1, 1, 2, 2), 1000.0)  # relative error 999
    assert float(FluxConservingMAE(flux_weight=1.0)(output, truth)) == pytest.approx(999 + math.asinh(999.0))


def test_a_gradient_reaches_the_output_through_the_flux_term():
    truth = torch.ones(2, 1, 2, 2)
    output = torch.full((2, 1, 2, 2), 1.0, requires_grad=True)
    FluxConservingMAE()(output, truth + 0.5).backward()
    assert torch.all(output.grad < 0)  # every pixel is pushed up towards the brighter truth


@pytest.mark.parametrize("arguments, message", [
    ({"flux_weight": -1.0}, "flux_mae: flux_weight must be >= 0, got -1.0"),
    ({"softening": 0.0}, r"flux_mae: softening must be > 0 or null \(no stretch\), got 0.0"),
    ({"floor": -2.0}, "flux_mae: floor must be >= 0, got -2.0"),
])
def test_bad_arguments_are_one_line_naming_them(arguments, message):
    with pytest.raises(DeepfieldError, match=message):
        FluxConservingMAE(**arguments)


def test_one_scale_per_channel_is_checked_and_the_config_round_trips():
    with pytest.raises(DeepfieldError, match=r"flux_mae: scale and offset need one value per channel \(2\), got 3"):
        FluxConservingMAE(scale=[1.0, 2.0, 3.0])(torch.zeros(1, 2, 2, 2), torch.ones(1, 2, 2, 2))
    loss = FluxConservingMAE(flux_weight=0.3, softening=3.0, scale=[1.0, 2.0], offset=[0.1, 0.2], floor=1.0)
    again = losses.get({"class_name": "FluxConservingMAE", "config": loss.get_config()})
    assert again.get_config() == loss.get_config()
