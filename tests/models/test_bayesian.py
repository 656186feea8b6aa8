"""Bayes-by-backprop layers: the KL term, local reparameterisation, bayesianize, the engine's loss, saving."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from deepfield.errors import DeepfieldError
from deepfield.models import (BayesianConv1D, BayesianConv2D, BayesianConv3D, BayesianDense, Conv1D, Conv2D, Conv3D,
                              Dense, Flatten, zoo)
from deepfield.models.bayesian import bayesian_settings, bayesianize, is_stochastic_layer
from deepfield.models.serialization import load_model, save_model
from deepfield.models.summary import summarize
from deepfield.tasks.base import Prepared, Task
from deepfield.tasks.config import load_config
from deepfield.training import Callback, Sequential

DETERMINISTIC = (Dense, Conv1D, Conv2D, Conv3D)


def randomise_posterior(layer, rho_range=(-4.0, -1.0), seed=0):
    """Random means and rho in ``rho_range`` (sigma about 0.02 to 0.3), so that mu and sigma differ per weight."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.endswith("_mu"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
            else:
                p.copy_(torch.empty(p.shape).uniform_(*rho_range, generator=gen))
    return layer


def sigma(rho):
    return F.softplus(rho)


def set_stochastic(model, on=True):
    for m in model.modules():
        if is_stochastic_layer(m):
            m.stochastic = on


def swappable(model):
    return [m for m in model.modules() if type(m) in DETERMINISTIC]


# -- the layer -------------------------------------------------------------------------------

@pytest.mark.parametrize("layer, shape", [
    (BayesianDense(5, prior_sigma=0.3), (4,)),
    (BayesianConv2D(3, 2, use_bias=False, prior_sigma=2.5), (2, 5, 5)),
])
def test_kl_divergence_is_the_closed_form_of_two_gaussians(layer, shape):
    layer.build_for(shape)
    randomise_posterior(layer)
    prior = Normal(0.0, layer.prior_sigma)
    pairs = [(layer.weight_mu, layer.weight_rho)] + ([(layer.bias_mu, layer.bias_rho)] if layer.use_bias else [])
    expected = sum(kl_divergence(Normal(mu, sigma(rho)), prior).sum() for mu, rho in pairs)
    assert layer.kl_divergence().item() == pytest.approx(expected.item(), rel=1e-5)
    layer.kl_weight = 0.01
    assert layer.auxiliary_loss().item() == pytest.approx(0.01 * expected.item(), rel=1e-5)


def test_kl_is_zero_when_the_posterior_is_the_prior():
    layer = BayesianDense(3, prior_sigma=0.7, posterior_sigma=0.7)
    layer.build_for((2,))
    torch.nn.init.zeros_(layer.weight_mu)
    assert layer.kl_divergence().item() == pytest.approx(0.0, abs=1e-5)


def test_initial_posterior_sigma_and_parameters():
    layer = BayesianDense(4, posterior_sigma=0.02)
    layer.build_for((3,))
    assert [n for n, _ in layer.named_parameters()] == ["weight_mu", "weight_rho", "bias_mu", "bias_rho"]
    assert layer.weight is None and layer.bias is None
    assert torch.allclose(sigma(layer.weight_rho), torch.full((4, 3), 0.02))
    limit = math.sqrt(6 / (3 + 4))  # glorot_uniform, Dense's default kernel initialiser
    assert layer.weight_mu.abs().max() <= limit and layer.weight_mu.std() > 0
    assert torch.equal(layer.bias_mu, torch.zeros(4))


def test_eval_mode_is_the_deterministic_network_of_the_posterior_means():
    torch.manual_seed(0)
    dense = randomise_posterior(BayesianDense(6, activation="tanh").eval())
    x = torch.randn(8, 4)
    dense(x)  # builds
    randomise_posterior(dense)
    assert torch.equal(dense(x), dense(x))
    assert torch.allclose(dense(x), torch.tanh(F.linear(x, dense.weight_mu, dense.bias_mu)))

    conv = BayesianConv2D(3, 3, input_shape=(2, 7, 7)).eval()
    images = torch.randn(2, 2, 7, 7)
    conv(images)
    randomise_posterior(conv)
    assert torch.equal(conv(images), conv(images))
    assert torch.allclose(conv(images), F.conv2d(images, conv.weight_mu, conv.bias_mu), atol=1e-6)


@pytest.mark.parametrize("switch", ["training", "stochastic"])
def test_training_or_stochastic_mode_samples(switch):
    torch.manual_seed(0)
    layer = BayesianDense(6)
    x = torch.randn(8, 4)
    layer.eval()(x)
    randomise_posterior(layer)
    if switch == "training":
        layer.train()
    else:
        layer.stochastic = True
    assert is_stochastic_layer(layer) and not is_stochastic_layer(Dense(2))
    assert BayesianDense.stochastic is False  # the class default, which MC prediction looks for
    first, second = layer(x), layer(x)
    assert not torch.allclose(first, second)
    assert first.shape == second.shape == (8, 6)


def test_a_tiny_posterior_samples_close_to_the_mean():
    torch.manual_seed(0)
    layer = BayesianDense(6, posterior_sigma=1e-6).train()
    x = torch.randn(8, 4)
    sample = layer(x)
    mean = F.linear(x, layer.weight_mu, layer.bias_mu)
    assert not torch.equal(sample, mean)
    assert torch.allclose(sample, mean, atol=1e-5)


def assert_moments(samples, mean, variance):
    """Empirical mean and variance over axis 0 of ``samples`` match, within 5 standard errors."""
    t = samples.shape[0]
    assert torch.all((samples.mean(0) - mean).abs() <= 5 * (variance / t).sqrt())
    assert torch.all((samples.var(0) - variance).abs() <= 5 * variance * math.sqrt(2 / (t - 1)))


def test_local_reparameterisation_dense_moments():
    """Each row is one network sample: output ~ N(x mu^T + b_mu, x² sigma^T² + sigma_b²), rows independent."""
    torch.manual_seed(0)
    layer = BayesianDense(5).train()
    x = torch.randn(1, 3)
    layer(x)
    randomise_posterior(layer)
    with torch.no_grad():
        samples = layer(x.repeat(20000, 1))
    mean = F.linear(x, layer.weight_mu, layer.bias_mu)[0]
    variance = F.linear(x ** 2, sigma(layer.weight_rho) ** 2, sigma(layer.bias_rho) ** 2)[0]
    assert_moments(samples, mean, variance)


def test_local_reparameterisation_conv_moments():
    """Strided 'same' convolution: mean = conv(x, mu), variance = conv(x², sigma²) (deterministic Conv2D)."""
    torch.manual_seed(0)
    layer = BayesianConv2D(2, 3, strides=2, padding="same").train()
    x = torch.randn(1, 2, 6, 5)
    layer(x)
    randomise_posterior(layer)
    with torch.no_grad():
        samples = layer(x.repeat(4000, 1, 1, 1))
    reference = Conv2D(2, 3, strides=2, padding="same")
    reference(x)
    with torch.no_grad():
        reference.weight.copy_(layer.weight_mu)
        reference.bias.copy_(layer.bias_mu)
        mean = reference(x)[0]
        reference.weight.copy_(sigma(layer.weight_rho) ** 2)
        reference.bias.copy_(sigma(layer.bias_rho) ** 2)
        variance = reference(x ** 2)[0]
    assert samples.shape[1:] == mean.shape == (2, 3, 3)
    assert_moments(samples, mean, variance)


@pytest.mark.parametrize("deterministic, shape", [
    (Conv1D(4, 5, strides=2, padding="same", dilation_rate=1), (3, 17)),
    (Conv1D(4, 3, padding="valid", dilation_rate=3), (3, 17)),
    (Conv2D(4, 3, strides=2, padding="same", activation="relu"), (2, 9, 8)),
    (Conv2D(4, (3, 2), strides=(1, 2), padding=1, dilation_rate=2, use_bias=False), (2, 9, 8)),
    (Conv2D(4, 4, strides=3, padding="valid"), (2, 11, 10)),
    (Conv3D(2, 3, strides=2, padding="same"), (1, 5, 6, 7)),
])
def test_conv_counterparts_match_the_deterministic_shapes_and_outputs(deterministic, shape):
    torch.manual_seed(0)
    x = torch.randn(3, *shape)
    expected = deterministic.eval()(x)
    bayesian = {Conv1D: BayesianConv1D, Conv2D: BayesianConv2D, Conv3D: BayesianConv3D}[type(deterministic)]
    copied = bayesian.from_layer(deterministic).eval()
    assert torch.allclose(copied(x), expected, atol=1e-6)
    fresh = bayesian(**{**deterministic._config, "name": None})  # built lazily from x, as the deterministic one
    assert fresh.train()(x).shape == expected.shape
    assert fresh.weight_mu.shape == deterministic.weight.shape


def test_bad_settings_name_the_value():
    with pytest.raises(DeepfieldError, match="BayesianDense prior_sigma must be positive, got 0"):
        BayesianDense(2, prior_sigma=0)
    with pytest.raises(DeepfieldError, match="BayesianConv2D kl_weight must be non-negative, got -1"):
        BayesianConv2D(2, 3, kl_weight=-1)
    with pytest.raises(DeepfieldError, match="bayesianize posterior_sigma must be positive, got nan"):
        bayesianize(Sequential([Dense(2)], input_shape=(3,)).build(), posterior_sigma=float("nan"))


# -- the engine ------------------------------------------------------------------------------

class Gradients(Callback):
    def __init__(self):
        super().__init__()
        self.grads = {}

    def on_after_backward(self, model):
        self.grads = {n: p.grad.clone() for n, p in model.named_parameters()}


def one_step(model, x, y, optimizer="sgd", callbacks=()):
    model.compile(optimizer=optimizer, loss="mse")
    return model.fit(x, y, batch_size="full", epochs=1, verbose=0, shuffle=False, seed=0,
                     callbacks=list(callbacks)).history["loss"][0]


@pytest.mark.parametrize("optimizer", ["sgd", "newton"])
def test_reported_training_loss_is_data_loss_plus_weighted_kl(optimizer):
    torch.manual_seed(0)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    model = Sequential([BayesianDense(1, posterior_sigma=1e-6, kl_weight=0.2, input_shape=(3,))]).build()
    layer = model[0]
    randomise_posterior(layer, rho_range=(-14.0, -13.0))  # sigma < 1e-5: sample noise negligible
    with torch.no_grad():
        data = F.mse_loss(F.linear(x, layer.weight_mu, layer.bias_mu), y).item()
        kl = layer.kl_divergence().item()
    assert 0.2 * kl > data  # the KL term matters in the sum
    assert one_step(model, x, y, optimizer) == pytest.approx(data + 0.2 * kl, rel=1e-5)


def test_gradients_of_the_data_loss_reach_mu_and_rho():
    torch.manual_seed(0)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    model = Sequential([BayesianDense(4, activation="tanh", input_shape=(3,), posterior_sigma=0.1, kl_weight=0.0),
                        BayesianDense(1, posterior_sigma=0.1, kl_weight=0.0)]).build()
    grads = Gradients()
    one_step(model, x, y, callbacks=[grads])
    assert sorted(grads.grads) == sorted(n for n, _ in model.named_parameters())
    assert all(g.abs().sum() > 0 for g in grads.grads.values())


def test_kl_gradient_pulls_sigma_towards_the_prior():
    """With no data term (targets equal to outputs hardly move mu), the KL gradient grows a tiny sigma."""
    model = Sequential([BayesianDense(2, input_shape=(3,), posterior_sigma=1e-3, kl_weight=1.0)]).build()
    grads = Gradients()
    one_step(model, torch.zeros(4, 3), torch.zeros(4, 2), callbacks=[grads])
    # d/drho [-log sigma + sigma²/2] = -(1/sigma - sigma) * sigmoid(rho), about -1 for a small sigma
    assert model[0].name == "bayesian_dense"
    assert torch.all(grads.grads["bayesian_dense.weight_rho"] < -0.9)


def test_deterministic_model_loss_is_the_data_loss_alone():
    torch.manual_seed(0)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    model = Sequential([Dense(1, input_shape=(3,))]).build()
    with torch.no_grad():
        expected = F.mse_loss(model(x), y).item()
    assert one_step(model, x, y) == pytest.approx(expected, rel=1e-6)


def test_evaluate_reports_the_data_loss_of_the_posterior_means():
    torch.manual_seed(0)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    model = Sequential([BayesianDense(1, input_shape=(3,), posterior_sigma=0.3, kl_weight=1.0)]).build()
    model.compile(optimizer="sgd", loss="mse")
    layer = model[0]
    with torch.no_grad():
        expected = F.mse_loss(F.linear(x, layer.weight_mu, layer.bias_mu), y).item()
    assert model.evaluate(x, y, verbose=0)["loss"] == pytest.approx(expected, rel=1e-6)


def test_training_a_bayesian_mlp_learns_and_is_unsure_away_from_the_data():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = 256
    x = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    y = (np.sin(3 * x) + rng.normal(0, 0.1, (n, 1))).astype(np.float32)
    kw = {"kl_weight": 1 / n, "posterior_sigma": 0.05}
    model = Sequential([BayesianDense(32, activation="relu", input_shape=(1,), **kw),
                        BayesianDense(32, activation="relu", **kw), BayesianDense(1, **kw)])
    model.compile(optimizer={"class_name": "adam", "config": {"learning_rate": 0.01}}, loss="mse")
    history = model.fit(x, y, batch_size=32, epochs=40, verbose=0, seed=0).history["loss"]
    assert history[-1] < 0.2 * history[0]
    assert model.evaluate(x, y, verbose=0)["loss"] < 0.15  # the posterior-mean network fits sin(3x) (variance 0.5)
    model.eval()
    set_stochastic(model)
    grid = torch.tensor([[-4.0], [-0.5], [0.0], [0.5], [4.0]])
    with torch.no_grad():
        spread = model(grid.repeat(500, 1)).reshape(500, 5).std(0)
    inside, outside = spread[1:4].max(), spread[[0, 4]].min()
    assert outside > 3 * inside > 0


# -- bayesianize -----------------------------------------------------------------------------

def n_params(modules):
    return sum(p.numel() for m in modules for p in m.parameters())


@pytest.mark.parametrize("preset, kwargs", [
    ("lecture-cnn", {"input_shape": (1, 32, 32), "n_outputs": 3}),
    ("resnet", {"input_shape": (1, 16, 16), "filters": (4, 8), "blocks": 1}),
    ("pasquet", {"input_shape": (5, 16, 16), "n_bins": 8, "dense_units": 16}),
    ("dieleman", {"input_shape": (3, 48, 48), "view_size": 45, "n_views": 8, "dense_units": 8}),
])
def test_bayesianize_swaps_every_dense_and_conv_of_a_preset(preset, kwargs):
    torch.manual_seed(0)
    model = zoo.get(preset, **kwargs).eval()
    x = torch.randn(2, *kwargs["input_shape"])
    before = model(x)
    names = [name for name, m in model.named_modules() if type(m) in DETERMINISTIC]
    swapped, total = n_params(swappable(model)), n_params([model])
    assert names

    assert bayesianize(model, prior_sigma=0.5, kl_weight=0.1) is model
    assert swappable(model) == []
    variational = {name: m for name, m in model.named_modules() if is_stochastic_layer(m)}
    assert sorted(variational) == sorted(names)  # same places, same names
    assert all(m.kl_weight == 0.1 and m.prior_sigma == 0.5 for m in variational.values())
    assert n_params([model]) == total + swapped  # mu and rho: each swapped layer doubles
    assert summarize(model, kwargs["input_shape"]).trainable == sum(p.numel() for p in model.parameters())
    assert torch.allclose(model(x), before, atol=1e-6)
    assert bayesian_settings(model) == {"prior_sigma": 0.5, "posterior_sigma": 1e-3, "kl_weight": 0.1}


def test_bayesianize_keeps_layer_names_and_arguments():
    model = Sequential([Conv2D(3, 3, padding="same", activation="relu", input_shape=(1, 8, 8)), Flatten(),
                        Dense(4, use_bias=False), Dense(2, name="head")]).build()
    bayesianize(model)
    assert [(name, type(m).__name__) for name, m in model.named_children()] == [
        ("conv2d", "BayesianConv2D"), ("flatten", "Flatten"), ("dense", "BayesianDense"), ("head", "BayesianDense")]
    conv = model.conv2d
    assert (conv.filters, conv.kernel_size, conv.padding, conv.name) == (3, (3, 3), "same", "conv2d")
    assert model.dense.bias_mu is None and model.dense.bias_rho is None


def test_bayesianize_needs_a_built_model():
    with pytest.raises(DeepfieldError, match="Dense 'dense' is not built yet; build the model first"):
        bayesianize(Sequential([Dense(2)]))


# -- saving ----------------------------------------------------------------------------------

def round_trip(model, folder, x):
    model.eval()
    save_model(model, folder)
    loaded = load_model(folder).eval()
    assert torch.allclose(loaded(x), model(x), atol=1e-6)
    own, back = model.state_dict(), loaded.state_dict()
    assert list(own) == list(back) and all(torch.equal(own[k], back[k]) for k in own)
    return loaded, json.loads((folder / "model.json").read_text())


def test_a_bayesian_sequential_saves_and_loads(tmp_path):
    torch.manual_seed(0)
    model = Sequential([BayesianConv2D(3, 3, strides=2, padding="same", kl_weight=0.5, input_shape=(1, 9, 9)),
                        Flatten(), BayesianDense(2, prior_sigma=0.2)]).build()
    for layer in (model[0], model[2]):
        randomise_posterior(layer)
    loaded, document = round_trip(model, tmp_path / "run", torch.randn(2, 1, 9, 9))
    assert [layer["class_name"] for layer in document["config"]["layers"]] == [
        "BayesianConv2D", "Flatten", "BayesianDense"]
    assert "bayesian" not in document["config"]
    assert (loaded[0].kl_weight, loaded[2].prior_sigma) == (0.5, 0.2)


@pytest.mark.parametrize("preset, kwargs", [
    ("pasquet", {"input_shape": (5, 16, 16), "n_bins": 8, "dense_units": 16}),  # a PresetModel
    ("resnet", {"input_shape": (1, 16, 16), "filters": (4, 8), "blocks": 1}),  # convs inside blocks
])
def test_a_bayesianized_preset_saves_and_loads(tmp_path, preset, kwargs):
    torch.manual_seed(0)
    model = bayesianize(zoo.get(preset, **kwargs), prior_sigma=0.4, posterior_sigma=0.01, kl_weight=0.25)
    for layer in filter(is_stochastic_layer, model.modules()):
        randomise_posterior(layer)
    loaded, document = round_trip(model, tmp_path / "run", torch.randn(2, *kwargs["input_shape"]))
    settings = {"prior_sigma": 0.4, "posterior_sigma": 0.01, "kl_weight": 0.25}
    assert document["config"]["bayesian"] == settings and bayesian_settings(loaded) == settings
    assert swappable(loaded) == []


def test_a_deterministic_model_json_loads_as_before(tmp_path):
    model = Sequential([Dense(2, input_shape=(3,))]).build()
    loaded, document = round_trip(model, tmp_path / "run", torch.randn(2, 3))
    assert "bayesian" not in document["config"] and type(loaded[0]) is Dense


def test_a_bad_bayesian_entry_is_refused(tmp_path):
    folder = tmp_path / "run"
    save_model(bayesianize(Sequential([Dense(2, input_shape=(3,))]).build()), folder)
    document = json.loads((folder / "model.json").read_text())
    document["config"]["bayesian"] = {"prior_sigma": 1.0}
    document.pop("sha256")  # edited by hand, loaded trusting it
    (folder / "model.json").write_text(json.dumps(document))
    with pytest.raises(DeepfieldError, match='model.json: "bayesian" must map prior_sigma, posterior_sigma'):
        load_model(folder, trust=True)


# -- the run config switch -------------------------------------------------------------------

class Toy(Task):
    name = "toy"

    def head(self, prepared):
        return 2, None


def prepared(n_train=40):
    return Prepared(x={"train": np.zeros((n_train, 5), np.float32), "validation": np.zeros((8, 5), np.float32)},
                    y={"train": np.zeros((n_train, 2), np.float32), "validation": np.zeros((8, 2), np.float32)})


def toy_config(bayesian):
    model = {"preset": "mlp", "options": {"hidden": [8]}}
    if bayesian is not None:
        model["bayesian"] = bayesian
    return load_config(None, document={"task": "tabular", "data": {"path": "unused.csv"}, "model": model})


def test_the_bayesian_switch_makes_the_preset_variational_with_kl_weight_one_over_n():
    model = Toy().build_model(toy_config({"prior_sigma": 0.5, "posterior_sigma": 0.01}), prepared(40))
    layers = [m for m in model.modules() if is_stochastic_layer(m)]
    assert len(layers) == 2 and swappable(model) == []
    assert all((m.kl_weight, m.prior_sigma) == (1 / 40, 0.5) for m in layers)
    assert torch.allclose(sigma(layers[0].weight_rho), torch.tensor(0.01))


def test_bayesian_true_takes_the_defaults_and_absent_keeps_the_network_deterministic():
    model = Toy().build_model(toy_config(True), prepared(10))
    assert bayesian_settings(model) == {"prior_sigma": 1.0, "posterior_sigma": 1e-3, "kl_weight": 0.1}
    plain = Toy().build_model(toy_config(None), prepared(10))
    assert bayesian_settings(plain) is None and len(swappable(plain)) == 2


def test_kl_scale_tempers_the_kl_weight():
    model = Toy().build_model(toy_config({"kl_scale": 0.1}), prepared(40))
    assert all(m.kl_weight == pytest.approx(0.1 / 40) for m in model.modules() if is_stochastic_layer(m))


# -- KL annealing ----------------------------------------------------------------------------------

class Scales(Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_begin(self, epoch, logs=None):  # runs after KLAnnealing's (callbacks run in order)
        self.seen.append(self.engine.model[0].kl_scale)


def test_kl_annealing_ramps_the_kl_term_up_and_restores_it():
    from deepfield.training import KLAnnealing

    torch.manual_seed(0)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    model = Sequential([BayesianDense(1, posterior_sigma=1e-6, kl_weight=0.2, input_shape=(3,))]).build()
    layer = model[0]
    randomise_posterior(layer, rho_range=(-14.0, -13.0))  # sample noise negligible
    with torch.no_grad():
        data = F.mse_loss(F.linear(x, layer.weight_mu, layer.bias_mu), y).item()
        kl = layer.kl_divergence().item()
    model.compile(optimizer={"class_name": "sgd", "config": {"learning_rate": 0.0}}, loss="mse")
    scales = Scales()
    history = model.fit(x, y, batch_size="full", epochs=4, verbose=0, callbacks=[KLAnnealing(3), scales])
    assert scales.seen == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])
    expected = [data + s * 0.2 * kl for s in scales.seen]
    assert history.history["loss"] == pytest.approx(expected, rel=1e-5)
    assert layer.kl_scale == 1.0  # back to the full term once training ends


def test_kl_annealing_needs_epochs_and_a_variational_layer():
    from deepfield.training import KLAnnealing

    with pytest.raises(DeepfieldError, match="KLAnnealing needs a positive number of epochs, got 0"):
        KLAnnealing(0)
    model = Sequential([Dense(1, input_shape=(3,))]).compile(optimizer="sgd", loss="mse")
    with pytest.raises(DeepfieldError, match="KLAnnealing: the model has no variational"):
        model.fit(torch.randn(4, 3), torch.randn(4, 1), verbose=0, callbacks=[KLAnnealing(2)])
