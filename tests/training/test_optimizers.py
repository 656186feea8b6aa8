"""Optimisers against the published Keras update rules, written out here in numpy."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from deepfield.errors import DeepfieldError
from deepfield.training import optimizers
from deepfield.training.optimizers import SGD, Adam, Newton, RMSprop

# -- a fixed small problem: two variables, three steps of fixed gradients -------------
RNG = np.random.default_rng(7)
START = [np.array([0.5, -1.0, 2.0]), np.array([[0.3, -0.2], [1.5, 0.1]])]
# Step 1 large (so clipping bites and amsgrad's max keeps it), later steps small.
GRADS = [
    [RNG.normal(size=3) * s, RNG.normal(size=(2, 2)) * s] for s in (3.0, 0.2, 0.5)
]


def keras_reference(name: str, config: dict, steps: int = 3) -> list[list[np.ndarray]]:
    """The variables after each step, by the Keras update rules (one variable at a time)."""
    c = {**DEFAULTS[name], **config}
    w = [x.copy() for x in START]
    slots: dict[tuple[str, int], np.ndarray] = {}

    def slot(key: str, i: int, fill: float = 0.0) -> np.ndarray:
        return slots.setdefault((key, i), np.full_like(w[i], fill))

    history = []
    for it in range(steps):
        grads = [g.copy() for g in GRADS[it]]
        if c.get("clipnorm"):
            grads = [g * c["clipnorm"] / max(np.linalg.norm(g), c["clipnorm"]) for g in grads]
        if c.get("clipvalue"):
            grads = [np.clip(g, -c["clipvalue"], c["clipvalue"]) for g in grads]
        if c.get("global_clipnorm"):
            total = np.sqrt(sum((g**2).sum() for g in grads))
            grads = [g * c["global_clipnorm"] / max(total, c["global_clipnorm"]) for g in grads]
        lr = c["learning_rate"] / (1 + c.get("decay", 0.0) * it)
        t = it + 1
        for i, g in enumerate(grads):
            if c.get("weight_decay"):
                w[i] = w[i] - w[i] * c["weight_decay"] * lr
            if name == "sgd":
                if c["momentum"]:
                    m = slot("m", i)
                    m[...] = c["momentum"] * m - lr * g
                    w[i] = w[i] + (c["momentum"] * m - lr * g if c["nesterov"] else m)
                else:
                    w[i] = w[i] - lr * g
            elif name == "adagrad":
                acc = slot("acc", i, c["initial_accumulator_value"])
                acc += g**2
                w[i] = w[i] - lr * g / np.sqrt(acc + c["epsilon"])
            elif name == "rmsprop":
                v = slot("v", i)
                v[...] = c["rho"] * v + (1 - c["rho"]) * g**2
                if c["centered"]:
                    a = slot("a", i)
                    a[...] = c["rho"] * a + (1 - c["rho"]) * g
                    denominator = v - a**2 + c["epsilon"]
                else:
                    denominator = v + c["epsilon"]
                increment = lr * g / np.sqrt(denominator)
                if c["momentum"] > 0:
                    m = slot("m", i)
                    m[...] = c["momentum"] * m + increment
                    w[i] = w[i] - m
                else:
                    w[i] = w[i] - increment
            else:  # adam, adamw
                m, v = slot("m", i), slot("v", i)
                m[...] = m + (g - m) * (1 - c["beta_1"])
                v[...] = v + (g**2 - v) * (1 - c["beta_2"])
                if c["amsgrad"]:
                    v_hat = slot("v_hat", i)
                    v_hat[...] = np.maximum(v_hat, v)
                    v = v_hat
                alpha = lr * np.sqrt(1 - c["beta_2"] ** t) / (1 - c["beta_1"] ** t)
                w[i] = w[i] - m * alpha / (np.sqrt(v) + c["epsilon"])
        history.append([x.copy() for x in w])
    return history


DEFAULTS = {
    "sgd": dict(learning_rate=0.01, momentum=0.0, nesterov=False),
    "adagrad": dict(learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7),
    "rmsprop": dict(learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False),
    "adam": dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False),
    "adamw": dict(
        learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
        weight_decay=0.004,
    ),
}

# Large epsilons make "inside vs outside the root" and "eps hat" differences visible.
CASES = [
    ("sgd", {}),
    ("sgd", dict(learning_rate=0.1, momentum=0.9)),
    ("sgd", dict(learning_rate=0.1, momentum=0.9, nesterov=True)),
    ("sgd", dict(learning_rate=0.1, momentum=0.5, decay=0.5)),
    ("sgd", dict(learning_rate=0.1, clipnorm=0.7)),
    ("sgd", dict(learning_rate=0.1, clipvalue=0.4)),
    ("sgd", dict(learning_rate=0.1, global_clipnorm=1.0)),
    ("sgd", dict(learning_rate=0.1, weight_decay=0.3)),
    ("adagrad", {}),
    ("adagrad", dict(learning_rate=0.1, initial_accumulator_value=0.5, epsilon=0.1)),
    ("adagrad", dict(learning_rate=0.1, epsilon=0.1, decay=1.0, clipnorm=1.0)),
    ("rmsprop", dict(learning_rate=0.01, epsilon=0.1)),
    ("rmsprop", dict(learning_rate=0.01, rho=0.8, momentum=0.5, epsilon=0.1)),
    ("rmsprop", dict(learning_rate=0.01, epsilon=0.1, centered=True)),
    ("rmsprop", dict(learning_rate=0.01, momentum=0.9, epsilon=0.1, centered=True, clipvalue=1.0)),
    ("adam", {}),
    ("adam", dict(learning_rate=0.1, epsilon=0.1)),
    ("adam", dict(learning_rate=0.1, beta_1=0.5, beta_2=0.7, epsilon=0.1, amsgrad=True)),
    ("adam", dict(learning_rate=0.1, epsilon=0.1, decay=0.3, global_clipnorm=2.0)),
    ("adamw", dict(learning_rate=0.1, epsilon=0.1)),
    ("adamw", dict(learning_rate=0.1, weight_decay=0.2, amsgrad=True, clipnorm=0.5)),
]


def run_steps(opt_params: list[torch.Tensor], opt: optimizers.Optimizer, steps: range) -> list:
    out = []
    for it in steps:
        for p, g in zip(opt_params, GRADS[it]):
            p.grad = torch.tensor(g)
        opt.step()
        out.append([p.detach().numpy().copy() for p in opt_params])
    return out


def fresh_params() -> list[torch.Tensor]:
    return [torch.tensor(x, requires_grad=True) for x in START]


@pytest.mark.parametrize(("name", "config"), CASES, ids=lambda v: str(v))
def test_first_three_updates_match_keras(name: str, config: dict) -> None:
    params = fresh_params()
    opt = optimizers.get({"class_name": name, "config": config}).bind(params)
    got = run_steps(params, opt, range(3))
    for step, (mine, ref) in enumerate(zip(got, keras_reference(name, config))):
        for a, b in zip(mine, ref):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6, err_msg=f"step {step + 1}")
    assert opt.iterations == 3


def test_keras_rules_differ_from_torch_builtins() -> None:
    """The cases above are discriminating: torch's Adam/RMSprop/Adagrad give other numbers."""
    for ours, theirs in [
        (Adam(learning_rate=0.1, epsilon=0.1), lambda p: torch.optim.Adam(p, lr=0.1, eps=0.1)),
        (RMSprop(learning_rate=0.01, epsilon=0.1), lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=0.1)),
    ]:
        a, b = fresh_params(), fresh_params()
        mine = run_steps(a, ours.bind(a), range(3))[-1][0]
        torch_ = run_steps(b, theirs(b), range(3))[-1][0]
        assert np.abs(mine - torch_).max() > 1e-3


def test_clipping_does_not_modify_gradients() -> None:
    params = fresh_params()
    opt = SGD(params, learning_rate=0.1, clipnorm=0.1)
    grads = [torch.tensor(g) for g in GRADS[0]]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    opt.step()
    for p, g in zip(params, grads):
        assert torch.equal(p.grad, g)


# -- the two faces, config, get() ----------------------------------------------------
def test_keras_face_and_torch_face_agree() -> None:
    a, b = fresh_params(), fresh_params()
    unbound = Adam(learning_rate=0.05, amsgrad=True)
    assert not unbound.bound
    assert unbound.bind(a) is unbound
    ra = run_steps(a, unbound, range(3))
    rb = run_steps(b, Adam(b, learning_rate=0.05, amsgrad=True), range(3))
    np.testing.assert_array_equal(ra[-1][1], rb[-1][1])


def test_bind_same_parameters_twice_is_a_no_op_other_parameters_an_error() -> None:
    params = fresh_params()
    opt = Adam().bind(params)
    assert opt.bind(params) is opt
    with pytest.raises(DeepfieldError, match="already bound"):
        opt.bind(fresh_params())
    with pytest.raises(DeepfieldError, match="no parameters"):
        Adam().bind([])


@pytest.mark.parametrize("name", optimizers.NAMES)
def test_get_config_round_trip(name: str) -> None:
    opt = optimizers.get(name)
    assert opt.name == name
    assert not opt.bound
    rebuilt = optimizers.get({"class_name": type(opt).__name__, "config": opt.get_config()})
    assert type(rebuilt) is type(opt)
    assert rebuilt.get_config() == opt.get_config()
    assert rebuilt.requires_closure == (name == "newton")


def test_defaults_are_keras_defaults() -> None:
    for name, defaults in DEFAULTS.items():
        config = optimizers.get(name).get_config()
        assert {k: config[k] for k in defaults} == defaults
    assert optimizers.get("adamw").get_config()["weight_decay"] == 0.004


def test_get_instance_unknown_name_and_bad_specs() -> None:
    opt = SGD(momentum=0.9)
    assert optimizers.get(opt) is opt
    assert isinstance(optimizers.get("Adam"), Adam)
    with pytest.raises(DeepfieldError, match=r"unknown optimizer 'adamm'; expected one of: adadelta, adagrad, adam,"):
        optimizers.get("adamm")
    with pytest.raises(DeepfieldError, match="torch Adam"):
        optimizers.get(torch.optim.Adam(fresh_params()))
    with pytest.raises(DeepfieldError, match="optimizer must be a name"):
        optimizers.get(3)
    with pytest.raises(DeepfieldError, match="unknown adam argument 'beta1'"):
        optimizers.get({"class_name": "adam", "config": {"beta1": 0.8}})


def test_course_keras2_spelling_is_accepted() -> None:
    """The course's ``RMSprop(lr=0.001, rho=0.9, epsilon=None, decay=0.0)`` works verbatim."""
    opt = RMSprop(lr=0.002, rho=0.9, epsilon=None, decay=0.0)
    assert opt.learning_rate == 0.002
    assert opt.get_config()["epsilon"] == 1e-7


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SGD(momentum=1.5), r"sgd: momentum must be in \[0, 1\], got 1.5"),
        (lambda: Adam(beta_2=1.0), r"adam: beta_2 must be in \[0, 1\), got 1.0"),
        (lambda: Adam(learning_rate=-1.0), "adam: learning_rate must be a number >= 0"),
        (lambda: SGD(clipnorm=1.0, clipvalue=1.0), "give only one of clipnorm"),
        (lambda: SGD(clipnorm=0.0), "sgd: clipnorm must be > 0"),
        (lambda: Adam(0.001), "write learning_rate=0.001"),
        (lambda: Newton(max_params=0), "newton: max_params must be a positive integer"),
    ],
)
def test_bad_hyperparameters_are_one_line_errors(make, message: str) -> None:
    with pytest.raises(DeepfieldError, match=message):
        make()


@pytest.mark.parametrize(
    ("name", "key"),
    [("adam", "amsgrad"), ("adamw", "amsgrad"), ("sgd", "nesterov"), ("rmsprop", "centered"),
     ("newton", "line_search")],
)
@pytest.mark.parametrize("value", ["maybe", "false", 1, 0.0, None])
def test_boolean_switches_take_booleans_only(name: str, key: str, value) -> None:
    """A string such as "maybe" (a YAML typo) or "false" is not silently truthy; the error names the key."""
    spec = {"class_name": name, "config": {key: value}}
    with pytest.raises(DeepfieldError, match=rf"^{name}: {key} must be true or false, got {value!r}$"):
        optimizers.get(spec)
    assert optimizers.get({"class_name": name, "config": {key: True}}).get_config()[key] is True


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SGD(learning_rate=True), "sgd: learning_rate must be a number >= 0, got True"),
        (lambda: SGD(momentum=True), r"sgd: momentum must be in \[0, 1\], got True"),
        (lambda: Adam(epsilon=False), "adam: epsilon must be a number >= 0, got False"),
        (lambda: Adam(decay=True), "adam: decay must be a number >= 0, got True"),
        (lambda: SGD(clipnorm=True), "sgd: clipnorm must be > 0, got True"),
        (lambda: Newton(max_params=True), "newton: max_params must be a positive integer, got True"),
    ],
)
def test_booleans_are_not_numbers(make, message: str) -> None:
    with pytest.raises(DeepfieldError, match=message):
        make()


# -- learning rate, decay, schedulers, state -------------------------------------------
def test_learning_rate_property_and_decay() -> None:
    params = fresh_params()
    opt = SGD(learning_rate=0.1, decay=0.5)
    opt.learning_rate = 0.2
    opt.bind(params)
    assert opt.param_groups[0]["lr"] == 0.2
    run_steps(params, opt, range(2))
    assert opt.learning_rate == 0.2  # the base rate is not decayed in place
    assert opt.decayed_learning_rate() == pytest.approx(0.2 / (1 + 0.5 * 2))
    opt.learning_rate = 0.05
    assert opt.param_groups[0]["lr"] == 0.05


def test_torch_lr_scheduler_drives_learning_rate() -> None:
    params = fresh_params()
    opt = Adam(params, learning_rate=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    run_steps(params, opt, range(1))
    scheduler.step()
    assert opt.learning_rate == pytest.approx(0.05)


@pytest.mark.parametrize(("name", "config"), [c for c in CASES if c[1]][::2], ids=lambda v: str(v))
def test_state_dict_round_trip_continues_identically(name: str, config: dict) -> None:
    params = fresh_params()
    opt = optimizers.get({"class_name": name, "config": config}).bind(params)
    run_steps(params, opt, range(1))
    saved = copy.deepcopy(opt.state_dict())
    assert saved["iterations"] == 1
    clone = [p.detach().clone().requires_grad_() for p in params]
    resumed = optimizers.get({"class_name": name, "config": config}).bind(clone)
    resumed.load_state_dict(saved)
    assert resumed.iterations == 1
    np.testing.assert_array_equal(
        run_steps(params, opt, range(1, 3))[-1][1], run_steps(clone, resumed, range(1, 3))[-1][1]
    )


def test_deepcopy_keeps_config_and_step_count() -> None:
    params = fresh_params()
    opt = Adam(params, learning_rate=0.05, decay=0.1)
    run_steps(params, opt, range(2))
    clone = copy.deepcopy(opt)
    assert clone.iterations == 2 and clone.get_config() == opt.get_config()
    assert copy.deepcopy(Newton(damping=0.5)).get_config()["damping"] == 0.5


# -- Newton ----------------------------------------------------------------------------
def test_newton_reaches_a_quadratic_minimum_in_one_undamped_step() -> None:
    """300 parameters in two tensors: the Hessian is assembled from two batched passes."""
    rng = np.random.default_rng(0)
    q = rng.normal(size=(300, 300))
    a = torch.tensor(q @ q.T / 300 + np.eye(300))
    b = torch.tensor(rng.normal(size=300))
    w = torch.zeros(10, 20, dtype=torch.float64, requires_grad=True)
    u = torch.zeros(100, dtype=torch.float64, requires_grad=True)

    def closure() -> torch.Tensor:
        x = torch.cat([w.reshape(-1), u])
        return 0.5 * x @ a @ x - b @ x + 3.0

    opt = Newton([w, u], damping=0.0, line_search=False)
    opt.step(closure)
    expected = torch.linalg.solve(a, b).numpy()
    np.testing.assert_allclose(torch.cat([w.reshape(-1), u]).detach().numpy(), expected, atol=1e-6)


def logistic_problem() -> tuple[torch.Tensor, torch.Tensor, float]:
    """200 points, 3 features on different scales (as raw magnitudes and colours would be)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 3)) * np.array([1.0, 4.0, 0.3])
    logits = x @ np.array([1.0, -0.4, 2.0]) + 0.5
    y = (rng.random(200) < 1 / (1 + np.exp(-logits))).astype(float)
    # The optimum by iteratively reweighted least squares, independently in numpy.
    design = np.hstack([x, np.ones((200, 1))])
    beta = np.zeros(4)
    for _ in range(50):
        p = 1 / (1 + np.exp(-design @ beta))
        beta += np.linalg.solve(design.T @ (design * (p * (1 - p))[:, None]), design.T @ (y - p))
    z = design @ beta
    best = float(np.mean(np.logaddexp(0, z) - y * z))
    return torch.tensor(x), torch.tensor(y), best


def iterations_to_optimum(opt_factory, limit: int) -> int:
    x, y, best = logistic_problem()
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = opt_factory([w, b])

    def loss_fn() -> torch.Tensor:
        return torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y)

    for it in range(limit):
        if loss_fn().item() - best < 1e-6:
            return it
        if opt.requires_closure:
            opt.step(loss_fn)
        else:
            opt.zero_grad()
            loss_fn().backward()
            opt.step()
    return limit


def test_newton_beats_gradient_descent_on_logistic_regression() -> None:
    x, _, _ = logistic_problem()
    design = torch.cat([x, torch.ones(200, 1, dtype=x.dtype)], 1)
    # The largest safe gradient-descent rate: 1/L, L bounding the logistic loss's curvature.
    lipschitz = torch.linalg.eigvalsh(design.T @ design / (4 * 200)).max().item()
    newton = iterations_to_optimum(lambda p: Newton(p), limit=50)
    descent = iterations_to_optimum(lambda p: SGD(p, learning_rate=1 / lipschitz), limit=1001)
    assert newton <= 10  # 4 in practice
    assert descent > 1000  # not there after 1,000 steps (1,835 in practice): the limit stops it at 1,001


def test_newton_damping_and_line_search_handle_a_non_convex_valley() -> None:
    """Rosenbrock from (0, 1), where the Hessian is indefinite: the loss never rises."""
    xy = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)

    def closure() -> torch.Tensor:
        return (1 - xy[0]) ** 2 + 100 * (xy[1] - xy[0] ** 2) ** 2

    opt = Newton([xy])
    losses = [opt.step(closure).item() for _ in range(40)]
    assert all(b <= a + 1e-12 for a, b in zip(losses, losses[1:]))
    np.testing.assert_allclose(xy.detach().numpy(), [1.0, 1.0], atol=1e-6)


def test_newton_state_dict_keeps_damping_and_iterations() -> None:
    xy = torch.tensor([-1.2, 1.0], dtype=torch.float64, requires_grad=True)
    opt = Newton([xy])
    opt.step(lambda: (1 - xy[0]) ** 2 + 100 * (xy[1] - xy[0] ** 2) ** 2)
    state = opt.state_dict()
    resumed = Newton([xy.detach().clone().requires_grad_()])
    resumed.load_state_dict(state)
    assert resumed.iterations == 1
    assert resumed.state_dict()["damping_now"] == state["damping_now"]


def test_newton_refuses_large_networks_with_the_parameter_count() -> None:
    big = torch.nn.Linear(100, 60)  # 6,060 parameters
    with pytest.raises(DeepfieldError) as info:
        Newton().bind(big.parameters())
    message = str(info.value)
    assert message.startswith(
        "newton needs a dense 6,060 x 6,060 Hessian; this network has 6,060 parameters "
        "(max_params=5,000)"
    )
    assert "\n" not in message
    assert Newton(max_params=7000).bind(big.parameters()).bound


def test_newton_needs_a_closure() -> None:
    opt = Newton([torch.zeros(2, requires_grad=True)])
    with pytest.raises(DeepfieldError, match="needs a closure"):
        opt.step()


def test_newton_takes_a_torch_style_closure_that_calls_backward() -> None:
    """torch's ``step(closure)`` convention: the closure zeroes the gradients, calls ``backward`` and
    returns the loss. Newton takes it as it is and steps exactly as with a closure that only returns
    the loss; afterwards ``p.grad`` holds the gradient at the start point, as torch's optimisers leave it."""
    x, y, _ = logistic_problem()
    model = torch.nn.Linear(3, 1, dtype=torch.float64)
    reference = copy.deepcopy(model)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    torch_style = Newton(model.parameters())
    plain = Newton(reference.parameters())

    def closure() -> torch.Tensor:
        torch_style.zero_grad()
        loss = loss_fn(model(x).squeeze(1), y)
        loss.backward()
        return loss

    for _ in range(3):
        start = [p.detach().clone() for p in reference.parameters()]
        probe = copy.deepcopy(reference)
        expected_grad = torch.autograd.grad(loss_fn(probe(x).squeeze(1), y), list(probe.parameters()))
        torch_style.step(closure)
        plain.step(lambda: loss_fn(reference(x).squeeze(1), y))
        for p, q in zip(model.parameters(), reference.parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
        for p, g in zip(model.parameters(), expected_grad):
            torch.testing.assert_close(p.grad, g)
        assert not all(torch.equal(a, b) for a, b in zip(start, reference.parameters()))  # it moved
