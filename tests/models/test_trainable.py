"""``layer.trainable = False`` as Keras 3 has it: frozen weights (no gradient step, no weight decay, no momentum),
the summary's trainable / non-trainable counts, ``model.trainable`` for everything, nested containers, a frozen
BatchNormalization in inference mode even in fit, and the flag kept in model.json. Keras 3 (torch backend) is
the reference: the same network with the same weights, trained one step, compared to 1e-5."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from deepfield.models import BatchNormalization, Dense
from deepfield.models.summary import summarize
from deepfield.models.serialization import load_network, save_model
from deepfield.training import Sequential

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

RNG = np.random.default_rng(5)
X = RNG.normal(size=(40, 4)).astype(np.float32)
Y = RNG.normal(size=(40, 1)).astype(np.float32)


def ours() -> Sequential:
    torch.manual_seed(1)
    model = Sequential([Dense(3, name="a"), BatchNormalization(name="bn"), Dense(1, name="b")], input_shape=(4,))
    model.build()
    with torch.no_grad():  # moving statistics far from the batch's, so that using them shows
        model.bn.moving_mean.copy_(torch.tensor([0.5, -0.3, 0.2]))
        model.bn.moving_variance.copy_(torch.tensor([2.0, 0.5, 1.5]))
        model.bn.gamma.copy_(torch.tensor([1.2, 0.8, 1.1]))
        model.bn.beta.copy_(torch.tensor([0.1, -0.2, 0.3]))
    return model


def theirs(model: Sequential):
    twin = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="a"),
                             keras.layers.BatchNormalization(name="bn"), keras.layers.Dense(1, name="b")])
    for name in ("a", "b"):
        layer = getattr(model, name)
        twin.get_layer(name).set_weights([layer.weight.detach().numpy().T, layer.bias.detach().numpy()])
    bn = model.bn
    twin.get_layer("bn").set_weights([t.detach().numpy() for t in (bn.gamma, bn.beta, bn.moving_mean,
                                                                     bn.moving_variance)])
    return twin


def keras_counts(twin) -> tuple[int, int]:
    return (sum(int(np.prod(w.shape)) for w in twin.trainable_weights),
            sum(int(np.prod(w.shape)) for w in twin.non_trainable_weights))


def weights(model: Sequential) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def assert_same_as_keras(model: Sequential, twin) -> None:
    for name in ("a", "b"):
        np.testing.assert_allclose(getattr(model, name).weight.detach().numpy().T, twin.get_layer(name).kernel.numpy(),
                                   atol=1e-5)
    bn, their_bn = model.bn, twin.get_layer("bn")
    for ours_, theirs_ in [(bn.gamma, their_bn.gamma), (bn.beta, their_bn.beta), (bn.moving_mean, their_bn.moving_mean),
                           (bn.moving_variance, their_bn.moving_variance)]:
        np.testing.assert_allclose(ours_.detach().numpy(), theirs_.numpy(), atol=1e-5)


@pytest.mark.parametrize("frozen", [["a"], ["bn"], ["a", "bn", "b"]])
@pytest.mark.parametrize("optimizer", [
    {"class_name": "sgd", "config": {"learning_rate": 0.1, "momentum": 0.9}},
    {"class_name": "adamw", "config": {"learning_rate": 0.01, "weight_decay": 0.1}},
])
def test_frozen_layers_train_summarise_and_normalise_as_in_keras(frozen, optimizer):
    model = ours()
    twin = theirs(model)
    for name in frozen:
        getattr(model, name).trainable = False
        twin.get_layer(name).trainable = False
    summary = summarize(model)
    assert (summary.trainable, summary.non_trainable) == keras_counts(twin)
    before = weights(model)
    model.compile(optimizer=optimizer, loss="mse")
    twin.compile(optimizer=keras.optimizers.get({"class_name": optimizer["class_name"], "config": optimizer["config"]}),
                 loss="mse")
    model.fit(X, Y, batch_size=20, epochs=2, shuffle=False, verbose=0)
    twin.fit(X, Y, batch_size=20, epochs=2, shuffle=False, verbose=0)
    assert_same_as_keras(model, twin)
    after = weights(model)
    for key in before:
        if key.split(".")[0] in frozen:
            np.testing.assert_array_equal(after[key], before[key], err_msg=key)  # moving statistics included


def test_model_trainable_false_freezes_everything_and_fit_still_runs():
    model = ours()
    twin = theirs(model)
    model.trainable = False
    twin.trainable = False
    assert not any(layer.trainable for layer in model.children())
    summary = summarize(model)
    assert (summary.trainable, summary.non_trainable) == keras_counts(twin) == (0, 31)
    before = weights(model)
    model.compile(optimizer="adam", loss="mse")
    with pytest.warns(UserWarning, match="no trainable weights"):
        history = model.fit(X, Y, batch_size=20, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for key, value in weights(model).items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)
    model.trainable = True  # Keras: the switch goes down to every layer, both ways
    assert all(layer.trainable for layer in model.children())
    assert summarize(model).trainable == 4 * 3 + 3 + 3 + 3 + 3 + 1


def test_nested_containers_and_layers_built_after_the_switch():
    inner = Sequential([Dense(3, name="c"), Dense(2, name="d")], name="inner")
    outer = Sequential([inner, Dense(1, name="e")], input_shape=(4,))
    outer.trainable = False  # before anything is built: the weights made later are frozen too
    assert not inner.trainable and not inner.c.trainable
    outer.build()
    assert all(not p.requires_grad for p in outer.parameters())
    outer.trainable = True
    inner.d.trainable = False
    summary = summarize(outer)
    assert (summary.trainable, summary.non_trainable) == (4 * 3 + 3 + 2 + 1, 3 * 2 + 2)


def test_a_frozen_batch_normalization_uses_its_moving_statistics_in_fit():
    model = ours()
    model.bn.trainable = False
    model.train()
    x = torch.from_numpy(X)
    expected = (model.a(x) - model.bn.moving_mean) / torch.sqrt(model.bn.moving_variance + 1e-3)
    expected = expected * model.bn.gamma + model.bn.beta
    torch.testing.assert_close(model.bn(model.a(x)), expected)


def test_trainable_changed_after_compile_takes_effect_at_the_next_fit():
    """Keras 3 honours a freeze after compile and refuses an unfreeze with a stateful optimiser
    ("recreate a new optimizer"); deepfield takes both at the next fit, without a recompile."""
    model = ours().compile(optimizer="adam", loss="mse")
    model.fit(X, Y, batch_size=20, epochs=1, verbose=0)
    model.a.trainable = False
    frozen = model.a.weight.detach().clone()
    model.fit(X, Y, batch_size=20, epochs=1, verbose=0)
    torch.testing.assert_close(model.a.weight.detach(), frozen, rtol=0, atol=0)
    model.a.trainable = True
    model.fit(X, Y, batch_size=20, epochs=1, verbose=0)
    assert not torch.equal(model.a.weight.detach(), frozen)


def test_the_flag_is_kept_in_model_json(tmp_path):
    model = ours()
    model.a.trainable = False
    save_model(model, tmp_path / "m")
    again = load_network(tmp_path / "m", Sequential)
    assert not again.a.trainable and again.b.trainable
    assert not any(p.requires_grad for p in again.a.parameters())
    assert summarize(again).trainable == summarize(model).trainable
