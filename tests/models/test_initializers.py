"""Initialisers against their published variance rules (He, Glorot, LeCun) and limits."""
from __future__ import annotations

import math

import pytest
import torch

from deepfield.errors import DeepfieldError
from deepfield.models import initializers
from deepfield.models.core import fans

TRUNCATED_STD = 0.87962566103423978  # std of a unit normal cut at ±2

# (shape, fan_in, fan_out): a dense kernel and a conv kernel whose two fans differ,
# so that the He, Glorot and LeCun rules give different variances.
SHAPES = [((400, 400), 400, 400), ((64, 32, 5, 5), 32 * 25, 64 * 25)]
RULES = {
    "he": lambda fan_in, fan_out: 2 / fan_in,
    "glorot": lambda fan_in, fan_out: 2 / (fan_in + fan_out),
    "lecun": lambda fan_in, fan_out: 1 / fan_in,
}


@pytest.mark.parametrize("shape, fan_in, fan_out", SHAPES)
@pytest.mark.parametrize("family", list(RULES))
@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_variance_follows_the_published_rule(shape, fan_in, fan_out, family, distribution):
    assert fans(shape) == (fan_in, fan_out)
    torch.manual_seed(0)
    w = initializers.get(f"{family}_{distribution}")(torch.empty(shape), fan_in, fan_out)
    variance = RULES[family](fan_in, fan_out)
    assert abs(w.var().item() / variance - 1) < 0.03
    assert abs(w.mean().item()) < 0.05 * math.sqrt(variance)
    biggest = w.abs().max().item()
    if distribution == "uniform":
        limit = math.sqrt(3 * variance)
        assert biggest <= limit and biggest > 0.99 * limit
    else:  # truncated at two standard deviations of the underlying normal
        sigma = math.sqrt(variance) / TRUNCATED_STD
        assert biggest <= 2 * sigma * (1 + 1e-6) and biggest > 1.9 * sigma


def test_variance_scaling_modes_and_untruncated_normal():
    torch.manual_seed(0)
    w = initializers.VarianceScaling(3.0, "fan_out", "untruncated_normal")(torch.empty(400, 400), 100, 300)
    assert abs(w.var().item() / (3.0 / 300) - 1) < 0.03
    assert w.abs().max().item() > 2.5 * math.sqrt(3.0 / 300)  # not truncated: 4-sigma draws occur in 160000


def test_fixed_initialisers():
    torch.manual_seed(0)
    w = initializers.get("random_normal")(torch.empty(400, 400), 1, 1)
    assert abs(w.std().item() - 0.05) < 0.05 * 0.03
    w = initializers.get("random_uniform")(torch.empty(400, 400), 1, 1)
    assert w.min().item() >= -0.05 and w.max().item() <= 0.05 and w.max().item() > 0.0499
    assert initializers.get("zeros")(torch.empty(3), 1, 1).tolist() == [0.0, 0.0, 0.0]
    assert initializers.get("ones")(torch.empty(2), 1, 1).tolist() == [1.0, 1.0]
    assert initializers.Constant(0.5)(torch.empty(2), 1, 1).tolist() == [0.5, 0.5]


def test_names_are_case_insensitive_and_instances_pass_through():
    assert isinstance(initializers.get("He_Normal"), initializers.VarianceScaling)
    init = initializers.RandomNormal(stddev=0.1)
    assert initializers.get(init) is init


def test_serialize_round_trip():
    for init in (initializers.VarianceScaling(2.0, "fan_avg", "uniform"), initializers.RandomUniform(-1, 2),
                 initializers.RandomNormal(1.0, 0.3), initializers.Constant(7.0)):
        again = initializers.get(initializers.serialize(init))
        assert type(again) is type(init) and again.get_config() == init.get_config()


@pytest.mark.parametrize(
    "spec, message",
    [("he_normall", "unknown initializer 'he_normall'"),
     ({"class_name": "Orthogonall"}, "unknown initializer class 'Orthogonall'"),
     (3, "unknown initializer 3")],
)
def test_unknown_names_raise_naming_the_bad_name(spec, message):
    with pytest.raises(DeepfieldError, match=message):
        initializers.get(spec)


def test_bad_variance_scaling_arguments():
    with pytest.raises(DeepfieldError, match="mode 'fan_sum'"):
        initializers.VarianceScaling(mode="fan_sum")
    with pytest.raises(DeepfieldError, match="distribution 'cauchy'"):
        initializers.VarianceScaling(distribution="cauchy")


def test_orthogonal_matches_keras_rule():
    """Keras 3's Orthogonal: orthonormal rows when rows <= cols (a recurrent kernel (units, 4 units)), else columns."""
    wide, tall = torch.empty(5, 20), torch.empty(20, 5)
    initializers.get("orthogonal")(wide, 5, 20)
    initializers.get({"class_name": "Orthogonal", "config": {"gain": 2.0}})(tall, 20, 5)
    torch.testing.assert_close(wide @ wide.T, torch.eye(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(tall.T @ tall, 4 * torch.eye(5), atol=1e-5, rtol=0)
