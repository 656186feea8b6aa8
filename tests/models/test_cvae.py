"""The cvae preset: the generative-model contract, its KL term against the formula, KL annealing, seeded samples."""
import math

import numpy as np
import pytest
import torch

from deepfield.errors import DeepfieldError
from deepfield.models import serialization, zoo
from deepfield.models.generative import check_generative
from deepfield.models.packed import Packed
from deepfield.models.presets.cvae import kl_to_unit_gaussian
from deepfield.training import Engine, KLAnnealing, optimizers


def small(condition_size=2, **options):
    return zoo.get("cvae", input_shape=(1, 8, 8), filters=[4, 8], latent_dim=3, condition_size=condition_size,
                   **options)


def fixed_posterior(model, mean, log_variance):
    """Encoder outputs that do not depend on the input: z_mean = ``mean``, z_log_var = ``log_variance``; and a decoder
    whose output does not depend on z (its dense weights zero): the loss is then the same at every draw."""
    with torch.no_grad():
        for layer, bias in ((model.z_mean, mean), (model.z_log_var, log_variance)):
            layer.weight.zero_()
            layer.bias.copy_(torch.tensor(bias))
        model.decoder_dense.weight.zero_()
        model.decoder_dense.bias.fill_(0.5)


def test_kl_of_known_moments_matches_the_formula():
    # KL(N(1, 1) || N(0, 1)) = 1/2; KL(N(0, 4) || N(0, 1)) = (4 - 1 - ln 4) / 2
    kl = kl_to_unit_gaussian(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(4.0)]]))
    assert kl.item() == pytest.approx(0.5 + (3.0 - math.log(4.0)) / 2, rel=1e-6)


def test_the_auxiliary_loss_is_beta_times_kl_per_pixel():
    model = small(beta=3.0)
    fixed_posterior(model, [1.0, 0.0, -2.0], [0.0, math.log(4.0), math.log(0.25)])
    model.train()
    model(torch.randn(5, 1, 8, 8), torch.randn(5, 2))
    hand = 0.5 + (3.0 - math.log(4.0)) / 2 + (4.0 + 0.25 - 1.0 - math.log(0.25)) / 2
    assert model.kl_divergence().item() == pytest.approx(hand, rel=1e-6)
    assert model.auxiliary_loss().item() == pytest.approx(3.0 * hand / 64, rel=1e-6)


def test_kl_annealing_scales_the_term_that_reaches_the_training_loss():
    x = np.random.default_rng(0).normal(size=(16, 1, 8, 8)).astype(np.float32)
    c = np.zeros((16, 2), np.float32)
    losses = {}
    for anneal in (None, 4):
        torch.manual_seed(0)
        model = small(beta=2.0)
        fixed_posterior(model, [1.0, 0.0, 0.0], [0.0, 0.0, 0.0])  # KL = 1/2 nat per stamp
        with torch.no_grad():
            reconstruction = model.eval()(torch.from_numpy(x), torch.from_numpy(c)).numpy()
        mse = float(np.mean((reconstruction - x) ** 2))
        engine = Engine(model, loss=model.training_loss, optimizer=optimizers.SGD(learning_rate=1e-12),
                        precision="fp32")  # "auto" trains convolutions in bf16 on CPUs with AMX
        history = engine.fit(Packed([x, c]), x, epochs=2, batch_size="full", verbose=0, seed=0,
                             callbacks=[KLAnnealing(anneal)] if anneal else [])
        losses[anneal] = (mse, history.history["loss"])
    mse, plain = losses[None]
    term = 2.0 * 0.5 / 64  # beta · KL / (C·H·W)
    assert plain == pytest.approx([mse + term] * 2, rel=1e-5)
    assert losses[4][1] == pytest.approx([mse + term / 4, mse + term / 2], rel=1e-5)


def test_samples_follow_the_generator_seed():
    model = small()
    conditions = torch.randn(6, 2)
    first = model.sample(conditions, generator=torch.Generator().manual_seed(7))
    again = model.sample(conditions, generator=torch.Generator().manual_seed(7))
    other = model.sample(conditions, generator=torch.Generator().manual_seed(8))
    assert first.shape == (6, 1, 8, 8)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    assert model.training  # left in the mode it was in


def test_temperature_zero_decodes_the_prior_mean():
    model = small(condition_size=0)
    cold = model.sample(torch.zeros(2, 0), generator=torch.Generator().manual_seed(1), temperature=0.0)
    assert torch.allclose(cold, model.decode(torch.zeros(2, 3)))


def test_encode_decode_round_trip_shapes():
    model = small()
    images, conditions = torch.randn(4, 1, 8, 8), torch.randn(4, 2)
    z = model.encode(images, conditions)
    assert z.shape == (4, 3)
    assert model.decode(z, conditions).shape == (4, 1, 8, 8)


def test_meets_the_contract_and_reloads(tmp_path):
    model = small()
    assert check_generative(model) is model
    serialization.save_model(model, tmp_path)
    loaded = serialization.load_network(tmp_path)
    assert loaded.condition_size == 2 and loaded.beta == 1.0
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    conditions = torch.randn(3, 2)
    assert torch.equal(loaded.sample(conditions, generator=g()), model.sample(conditions, generator=g()))


def test_not_generative_is_one_line():
    with pytest.raises(DeepfieldError, match=r"'lecture-cnn' is not a generative model: it has no condition_size"):
        check_generative(zoo.get("lecture-cnn", input_shape=(1, 16, 16)), "lecture-cnn")


@pytest.mark.parametrize("options, message", [
    ({"input_shape": (1, 12, 12), "filters": [4, 8, 8]}, r"sides divide by 8 .*got 12×12"),
    ({"filters": []}, r"filters must be a list"),
    ({"beta": -1}, r"beta must be a number >= 0"),
])
def test_bad_options_say_what_is_needed(options, message):
    with pytest.raises(DeepfieldError, match=message):
        zoo.get("cvae", **{"input_shape": (1, 8, 8), **options})


def test_conditions_of_the_wrong_shape_are_refused():
    with pytest.raises(DeepfieldError, match=r"takes conditions of shape \(4, 2\); got shape \(4, 3\)"):
        small()(torch.randn(4, 1, 8, 8), torch.randn(4, 3))
    with pytest.raises(DeepfieldError, match=r"takes conditions of shape \(4, 2\); got none"):
        small()(torch.randn(4, 1, 8, 8))
