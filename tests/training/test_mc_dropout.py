"""MC dropout: dropout only in MC mode, draws that are networks, batched = looped, the shared prefix."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from deepfield.errors import DeepfieldError
from deepfield.models.base import ensure_built
from deepfield.layers import BatchNormalization, Conv2D, Dense, Dropout, Flatten, SpatialDropout
from deepfield.training import Engine, Sequential, losses
from deepfield.training.mc_dropout import MCPrediction, _draw_generator, sample_outputs


def mlp(rate: float = 0.5) -> Sequential:
    torch.manual_seed(0)
    return Sequential([Dense(32, activation="relu"), Dropout(rate), Dense(16, activation="relu"), Dropout(rate),
                       Dense(3, activation="softmax")], input_shape=(4,))


def reference_draw(model: nn.Sequential, x: torch.Tensor, seed: int, t: int) -> torch.Tensor:
    """Draw ``t`` by the documented rule: dropout layer k (in order) multiplies by one mask of a
    sample's shape drawn from the generator seeded (seed, t, k), the same for every input."""
    k = 0
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, (Dropout, SpatialDropout)):
                shape = x.shape[1:] if isinstance(layer, Dropout) else x.shape[1:2] + (1,) * (x.dim() - 2)
                keep = 1.0 - layer.rate
                x = x * torch.bernoulli(torch.full(shape, keep), generator=_draw_generator(seed, t, k)) / keep
                k += 1
            else:
                x = layer.eval()(x)
    return x


def test_dropout_is_off_outside_mc_mode_and_everything_is_restored():
    model = mlp()
    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    first = model.predict(x, verbose=0)
    assert np.array_equal(first, model.predict(x, verbose=0))
    mc = model.predict(x, verbose=0, mc_samples=10)
    assert isinstance(mc, MCPrediction)
    assert np.array_equal(first, model.predict(x, verbose=0))  # MC left nothing switched on
    assert model.training and all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_draws_differ_and_their_mean_converges_as_t_grows():
    model = mlp()
    x = torch.randn(40, 4, generator=torch.Generator().manual_seed(1))
    many = sample_outputs(model, [x], 2000, seed=7)
    assert len({tuple(d[0].tolist()) for d in many[:20]}) == 20  # every draw is another network
    truth = many.mean(0)
    errors = [float((sample_outputs(model, [x], t, seed=3).mean(0) - truth).abs().mean()) for t in (4, 64, 1024)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < errors[0] / 6  # ~1/sqrt(T): a 256-fold T gives ~16-fold less error


def test_batched_equals_looped_draw_for_draw_however_grouped():
    model = mlp()
    x = torch.randn(30, 4, generator=torch.Generator().manual_seed(2))
    batched = sample_outputs(model, [x], 12, seed=5)
    looped = torch.stack([reference_draw(model, x, 5, t) for t in range(12)])
    assert torch.allclose(batched, looped, atol=1e-6)
    # tiny memory budget: one input and few draws per forward pass; other input batches
    assert torch.allclose(sample_outputs(model, x.split(7), 12, seed=5, memory_mb=1e-4), batched, atol=1e-6)
    assert torch.allclose(sample_outputs(model, [x], 5, seed=5), batched[:5], atol=1e-6)  # T=5 = first 5 of 12
    assert not torch.allclose(sample_outputs(model, [x], 12, seed=6), batched)  # the seed matters


def test_the_layers_before_the_first_dropout_run_once_per_input():
    torch.manual_seed(0)
    model = Sequential([Conv2D(4, 3, padding="same", activation="relu"), BatchNormalization(), Flatten(),
                        Dense(8, activation="relu"), Dropout(0.3), Dense(2, activation="softmax")],
                       input_shape=(1, 8, 8))
    ensure_built(model, torch.zeros(1, 1, 8, 8))
    with torch.no_grad():  # statistics unlike any batch's: a batch-norm in training mode would differ
        model[1].moving_mean.uniform_(-1, 1)
        model[1].moving_variance.uniform_(0.5, 2)
    moving = model[1].moving_mean.clone()
    rows = {"conv": 0, "head": 0}
    model[0].register_forward_hook(lambda m, i, o: rows.__setitem__("conv", rows["conv"] + o.shape[0]))
    model[5].register_forward_hook(lambda m, i, o: rows.__setitem__("head", rows["head"] + o.shape[0]))
    x = torch.randn(20, 1, 8, 8)
    draws = sample_outputs(model, [x], 25, seed=0)
    # the probe: 2 inputs × 2 draws with the prefix shared (2 rows in the prefix), the same with the
    # input repeated (4 rows), then 1 input × 1 draw; then the 20 inputs once, their 25 draws after
    assert rows["conv"] == 20 + 2 + 4 + 1
    assert rows["head"] == 25 * 20 + 4 + 4 + 1
    assert torch.allclose(draws, torch.stack([reference_draw(model, x, 0, t) for t in range(25)]), atol=1e-5)
    assert torch.equal(moving, model[1].moving_mean)  # batch norm stayed in inference mode


class SkipAround(nn.Module):
    """A skip connection around dropout: the repeated rows meet a tensor computed before them."""

    def __init__(self):
        super().__init__()
        self.a, self.drop, self.b = nn.Linear(6, 6), nn.Dropout(0.5), nn.Linear(6, 2)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.b(h + self.drop(h))


def test_a_skip_connection_around_dropout_falls_back_to_repeating_the_input():
    torch.manual_seed(0)
    model = SkipAround()
    x = torch.randn(9, 6)
    draws = sample_outputs(model, x.split(4), 6, seed=1)
    with torch.no_grad():
        h = torch.relu(model.a(x))
        for t in range(6):
            mask = torch.bernoulli(torch.full((6,), 0.5), generator=_draw_generator(1, t, 0)) / 0.5
            assert torch.allclose(draws[t], model.b(h + h * mask), atol=1e-6)


def test_channelwise_dropout_drops_whole_maps():
    torch.manual_seed(0)
    model = Sequential([Conv2D(3, 3, padding="same"), SpatialDropout(0.5), Flatten(), Dense(2)],
                       input_shape=(1, 5, 5))
    x = torch.randn(4, 1, 5, 5)
    draws = sample_outputs(model, [x], 6, seed=2)
    assert torch.allclose(draws, torch.stack([reference_draw(model, x, 2, t) for t in range(6)]), atol=1e-6)


def test_a_model_without_dropout_is_refused():
    model = Sequential([Dense(2)], input_shape=(3,))
    with pytest.raises(DeepfieldError, match="no dropout or variational layer"):
        model.predict(np.zeros((2, 3), np.float32), verbose=0, mc_samples=5)
    with pytest.raises(DeepfieldError, match="mc_samples must be a positive"):
        sample_outputs(mlp(), [torch.zeros(2, 4)], 0)


def test_summaries_follow_their_definitions():
    two = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # two draws that disagree completely
    p = MCPrediction.from_samples(two)
    assert p.kind == "probabilities"
    assert p.entropy[0] == pytest.approx(math.log(2)) and p.mutual_information[0] == pytest.approx(math.log(2))
    same = MCPrediction.from_samples(torch.tensor([[[0.3, 0.7]], [[0.3, 0.7]]]))
    assert same.mutual_information[0] == pytest.approx(0.0, abs=1e-7) and same.std.max() == 0
    binary = MCPrediction.from_samples(torch.tensor([[[0.9]], [[0.5]]]), "probabilities")
    h = lambda q: -(q * math.log(q) + (1 - q) * math.log(1 - q))  # noqa: E731
    assert binary.entropy[0] == pytest.approx(h(0.7), rel=1e-6)
    assert binary.mutual_information[0] == pytest.approx(h(0.7) - (h(0.9) + h(0.5)) / 2, rel=1e-5)
    values = MCPrediction.from_samples(torch.tensor([[[1.0]], [[3.0]]]))
    assert values.kind == "values" and values.mean[0, 0] == 2.0 and values.std[0, 0] == 1.0
    # Gaussian head: total² = epistemic² (spread of means) + aleatoric² (mean variance)
    gauss = MCPrediction.from_samples(torch.tensor([[[1.0, math.log(4.0)]], [[3.0, math.log(2.0)]]]), "gaussian")
    assert gauss.std[0, 0] == pytest.approx(1.0) and gauss.aleatoric[0, 0] == pytest.approx(math.sqrt(3.0))
    assert gauss.total[0, 0] == pytest.approx(2.0)
    with pytest.raises(DeepfieldError, match="kind must be one of"):
        MCPrediction.from_samples(two, "logits")


def test_a_gaussian_image_head_splits_means_and_log_variances_on_the_channel_axis():
    # draws (T=2, N=1, 2C=4, H=1, W=2): channels 0, 1 the means, 2, 3 their log-variances
    draws = torch.zeros(2, 1, 4, 1, 2)
    draws[0, 0, 0], draws[1, 0, 0] = 1.0, 3.0
    draws[0, 0, 2], draws[1, 0, 2] = math.log(4.0), math.log(2.0)
    gauss = MCPrediction.from_samples(draws, "gaussian")
    assert gauss.mean.shape == gauss.std.shape == gauss.aleatoric.shape == gauss.total.shape == (1, 2, 1, 2)
    np.testing.assert_allclose(gauss.mean[0, :, 0], [[2.0, 2.0], [0.0, 0.0]])
    np.testing.assert_allclose(gauss.std[0, :, 0], [[1.0, 1.0], [0.0, 0.0]])
    np.testing.assert_allclose(gauss.aleatoric[0, :, 0], [[math.sqrt(3.0)] * 2, [1.0, 1.0]])
    np.testing.assert_allclose(gauss.total[0, :, 0], [[2.0, 2.0], [1.0, 1.0]])
    with pytest.raises(DeepfieldError, match=r"\(N, 2C, H, W\)"):
        MCPrediction.from_samples(torch.zeros(2, 1, 3, 1, 2), "gaussian")


def test_engine_predict_keeps_the_samples_when_asked_and_summarises_them():
    model = mlp()
    x = np.random.default_rng(3).normal(size=(25, 4)).astype(np.float32)
    p = Engine(model).predict(x, batch_size=8, verbose=0, mc_samples=16, seed=4, return_samples=True)
    assert p.samples.shape == (16, 25, 3) and p.mean.shape == (25, 3)
    assert np.allclose(p.mean, p.samples.mean(0), atol=1e-6) and np.allclose(p.std, p.samples.std(0), atol=1e-6)
    assert np.all(p.mutual_information <= p.entropy + 1e-6)


def test_gaussian_nll_matches_the_closed_form():
    y_pred = torch.tensor([[1.0, math.log(4.0)], [0.0, 0.0]])
    y_true = torch.tensor([2.0, 0.5])
    expected = np.mean([0.5 * (math.log(2 * math.pi) + math.log(4.0) + 1 / 4),
                        0.5 * (math.log(2 * math.pi) + 0.0 + 0.25)])
    assert losses.get("gaussian_nll")(y_pred, y_true).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(DeepfieldError, match="mean and log-variance"):
        losses.get("gaussian_nll")(torch.zeros(2, 3), torch.zeros(2))
