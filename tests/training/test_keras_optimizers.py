"""Nadam, Adamax, Adadelta, Ftrl and Lion against Keras 3 itself: same start, same gradients, same weights."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from deepfield.errors import DeepfieldError
from deepfield.training import optimizers
from deepfield.training.optimizers import Adadelta, Adamax, Ftrl, Lion, Nadam

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

START = [np.array([0.5, -1.0, 2.0]), np.array([[0.3, -0.2], [1.5, 0.1]])]
# Step 1 large (clipping bites), later steps small and of changing sign.
GRADS = [[np.random.default_rng(s).normal(size=x.shape) * scale for x in START]
         for s, scale in enumerate([3.0, 0.2, 0.5, 1.0, 0.05, 0.7, 0.3, 2.0])]
STEPS = len(GRADS)
SCHEDULE = {"class_name": "ExponentialDecay", "config": dict(initial_learning_rate=0.1, decay_steps=2, decay_rate=0.6)}

# Large epsilons make "where epsilon goes" visible; every case steps 8 times. Keras keeps the learning
# rate in float32 even for float64 variables: the measured differences reach 1.1e-7, not 1e-15.
CASES = [
    ("Nadam", {}),
    ("Nadam", dict(learning_rate=0.1, beta_1=0.8, beta_2=0.9, epsilon=0.1)),
    ("Nadam", dict(learning_rate=0.1, weight_decay=0.2, clipnorm=0.7)),
    ("Nadam", dict(learning_rate=SCHEDULE, global_clipnorm=1.0)),
    ("Adamax", {}),
    ("Adamax", dict(learning_rate=0.1, beta_1=0.5, beta_2=0.8, epsilon=0.3)),
    ("Adamax", dict(learning_rate=0.1, weight_decay=0.1, clipvalue=0.4)),
    ("Adamax", dict(learning_rate=SCHEDULE, epsilon=0.1)),
    ("Adadelta", {}),
    ("Adadelta", dict(learning_rate=1.0, rho=0.8, epsilon=0.01)),
    ("Adadelta", dict(learning_rate=1.0, epsilon=1e-3, weight_decay=0.1, global_clipnorm=0.5)),
    ("Adadelta", dict(learning_rate=SCHEDULE, epsilon=1e-3)),
    ("Ftrl", {}),
    ("Ftrl", dict(learning_rate=0.5, learning_rate_power=-0.7, initial_accumulator_value=0.3)),
    ("Ftrl", dict(learning_rate=0.5, l1_regularization_strength=0.05, l2_regularization_strength=0.1,
                  l2_shrinkage_regularization_strength=0.02, beta=0.3)),
    ("Ftrl", dict(learning_rate=0.5, learning_rate_power=0.0, l1_regularization_strength=0.5, clipnorm=1.0)),
    ("Ftrl", dict(learning_rate=SCHEDULE, weight_decay=0.1, beta=0.1)),
    ("Lion", {}),
    ("Lion", dict(learning_rate=0.05, beta_1=0.5, beta_2=0.9)),
    ("Lion", dict(learning_rate=0.05, beta_1=1.0, weight_decay=0.3, clipvalue=0.1)),
    ("Lion", dict(learning_rate=SCHEDULE)),
]


def keras_weights(name: str, config: dict) -> list[list[np.ndarray]]:
    if isinstance(config.get("learning_rate"), dict):
        config = {**config, "learning_rate": keras.optimizers.schedules.deserialize(config["learning_rate"])}
    opt = getattr(keras.optimizers, name)(**config)
    variables = [keras.Variable(x, dtype="float64") for x in START]
    out = []
    for grads in GRADS:
        opt.apply_gradients(zip([keras.ops.convert_to_tensor(g, dtype="float64") for g in grads], variables))
        out.append([np.array(keras.ops.convert_to_numpy(v)) for v in variables])
    return out


def deepfield_weights(opt: optimizers.Optimizer) -> list[list[np.ndarray]]:
    params = [torch.tensor(x, requires_grad=True) for x in START]
    opt.bind(params)
    out = []
    for grads in GRADS:
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g)
        opt.step()
        out.append([p.detach().numpy().copy() for p in params])
    return out


@pytest.mark.parametrize(("name", "config"), CASES, ids=lambda v: str(v))
def test_every_update_equals_keras(name: str, config: dict) -> None:
    ours = optimizers.get({"class_name": name, "config": config})
    for step, (mine, ref) in enumerate(zip(deepfield_weights(ours), keras_weights(name, config))):
        for a, b in zip(mine, ref):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6, err_msg=f"step {step + 1}")
    assert ours.iterations == STEPS


@pytest.mark.parametrize("name", ["Nadam", "Adamax", "Adadelta", "Ftrl", "Lion"])
def test_keras_names_defaults_and_config(name: str) -> None:
    theirs = getattr(keras.optimizers, name)().get_config()
    ours = optimizers.get(name.lower())
    assert type(ours).__name__ == name and ours.name == name.lower()
    config = ours.get_config()
    for key in set(config) - {"decay"}:  # Keras 2's decay is deepfield's extra
        want = pytest.approx(theirs[key], rel=1e-7) if isinstance(theirs[key], float) else theirs[key]
        assert config[key] == want, key  # approx: Keras gives the rate back as a float32
    assert optimizers.get({"class_name": name, "config": config}).get_config() == config


def test_the_hand_written_rules_differ_from_torch_where_torch_has_one() -> None:
    """Why Adamax and Nadam are written here: torch's put epsilon inside the max (Adamax) and
    decay the momentum schedule 250 times slower by default (NAdam's momentum_decay=0.004)."""
    for ours, theirs in [
        (Adamax(learning_rate=0.1, epsilon=0.3), lambda p: torch.optim.Adamax(p, lr=0.1, eps=0.3)),
        (Nadam(learning_rate=0.1), lambda p: torch.optim.NAdam(p, lr=0.1, eps=1e-7)),
    ]:
        mine = deepfield_weights(ours)[-1][0]
        params = [torch.tensor(x, requires_grad=True) for x in START]
        opt = theirs(params)
        for grads in GRADS:
            for p, g in zip(params, grads):
                p.grad = torch.tensor(g)
            opt.step()
        assert np.abs(mine - params[0].detach().numpy()).max() > 1e-5  # rounding: < 1e-7


def test_nadam_state_resumes_mid_run() -> None:
    straight = deepfield_weights(Nadam(learning_rate=0.1))[-1]
    params = [torch.tensor(x, requires_grad=True) for x in START]
    first = Nadam(params, learning_rate=0.1)
    for grads in GRADS[:3]:
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g)
        first.step()
    second = Nadam(params, learning_rate=0.1)
    second.load_state_dict(first.state_dict())
    for grads in GRADS[3:]:
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g)
        second.step()
    for a, b in zip(params, straight):
        np.testing.assert_allclose(a.detach().numpy(), b, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Lion(beta_1=0.0), r"lion: beta_1 must be in \(0, 1\], got 0.0"),
    (lambda: Nadam(beta_2=1.0), r"nadam: beta_2 must be in \[0, 1\), got 1.0"),
    (lambda: Ftrl(learning_rate_power=0.5), "ftrl: learning_rate_power must be <= 0, got 0.5"),
    (lambda: Ftrl(l1_regularization_strength=-1), "ftrl: l1_regularization_strength must be a number >= 0"),
    (lambda: Adadelta(rho=1.5), r"adadelta: rho must be in \[0, 1\], got 1.5"),
    (lambda: Adamax(epsilon=-1.0), "adamax: epsilon must be a number >= 0"),
    (lambda: Lion(clipnorm=1.0, clipvalue=1.0), "lion: give only one of clipnorm, clipvalue, global_clipnorm"),
])
def test_bad_arguments_name_the_optimizer_and_argument(make, message: str) -> None:
    with pytest.raises(DeepfieldError, match=message):
        make()


def test_fit_trains_with_each_new_optimizer() -> None:
    from deepfield.layers import Dense
    from deepfield.training import Sequential

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]])).astype("float32")
    configs = {"nadam": dict(learning_rate=0.05), "adamax": dict(learning_rate=0.05), "ftrl": dict(learning_rate=0.5),
               "adadelta": dict(learning_rate=1.0, epsilon=1e-3), "lion": dict(learning_rate=0.02)}
    for name, config in configs.items():
        model = Sequential([Dense(1)], input_shape=(3,))
        model.compile(optimizer=optimizers.get({"class_name": name, "config": config}), loss="mse")
        history = model.fit(x, y, batch_size=16, epochs=15, verbose=0, seed=0)
        assert history.history["loss"][-1] < 0.5 * history.history["loss"][0], name
