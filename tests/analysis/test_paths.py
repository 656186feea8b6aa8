"""Optimiser paths on 2-D surfaces: deepfield's own optimisers, checked against the mathematics."""
from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
import torch

from deepfield.analysis.learning.paths import DEFAULT_LEARNING_RATES, loss_grid, optimizer_paths
from deepfield.analysis.learning.surfaces import SURFACES, Surface, load_surface
from deepfield.errors import DeepfieldError

QUAD_MIN = np.array([1.0, 0.5])  # quadratic: f = (x - 1)^2 / 2 + 5 (y - 0.5)^2, Hessian diag(1, 10)


def _quad_grad(x: float, y: float) -> np.ndarray:
    return np.array([x - 1.0, 10.0 * (y - 0.5)])


# --- surfaces -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "minima"), [
    ("beale", [(3.0, 0.5)]),
    ("rosenbrock", [(1.0, 1.0)]),
    ("quadratic", [(1.0, 0.5)]),
    ("himmelblau", [(3.0, 2.0), (-2.805118, 3.131312), (-3.779310, -3.283186), (3.584428, -1.848126)]),
    ("saddle", []),
])
def test_known_minima_have_zero_gradient_and_value_zero(name, minima):
    s = load_surface(name)
    assert np.allclose(s.minima, minima, atol=1e-6) if minima else s.minima == ()
    for (x, y), value in zip(s.minima, s.minimum_values):
        assert abs(value) < 1e-20 and value == pytest.approx(s.value(x, y))
        assert np.hypot(*s.gradient(x, y)) < 1e-12
    xmin, xmax, ymin, ymax = s.window
    assert xmin < s.start[0] < xmax and ymin < s.start[1] < ymax
    assert all(xmin < x < xmax and ymin < y < ymax for x, y in s.minima)


def test_surface_formulas_by_hand():
    assert load_surface("Rosenbrock").value(0.0, 0.0) == 1.0
    assert load_surface("rosenbrock").value(-1.0, 2.0) == 4.0 + 100.0
    assert load_surface("beale").value(0.0, 0.0) == pytest.approx(1.5**2 + 2.25**2 + 2.625**2)
    assert load_surface("himmelblau").value(0.0, 0.0) == 121.0 + 49.0
    assert load_surface("saddle").gradient(1.0, 2.0) == (2.0, -4.0)
    assert np.allclose(load_surface("quadratic").gradient(-1.5, 1.5), _quad_grad(-1.5, 1.5))


def test_loss_grid_covers_the_window_with_x_along_columns():
    s = load_surface("himmelblau")
    X, Y, Z = loss_grid(s, n=7)
    assert X.shape == Y.shape == Z.shape == (7, 7)
    assert (X[0, 0], X[0, -1], Y[0, 0], Y[-1, 0]) == s.window[0:2] + s.window[2:4]
    assert np.all(X[:, 3] == X[0, 3]) and np.all(Y[2, :] == Y[2, 0])
    assert Z[2, 5] == pytest.approx(s.value(X[2, 5], Y[2, 5]))


def test_a_user_file_loads_with_its_window_start_and_minima(tmp_path):
    file = tmp_path / "bowl.py"
    file.write_text(textwrap.dedent("""
        import torch
        WINDOW = (-3, 3, -2, 2)
        START = (2.5, -1.5)
        MINIMA = [(0.0, 0.0)]
        def f(x, y):
            return x**2 + 3 * torch.sin(y) ** 2
    """))
    s = load_surface(str(file))
    assert (s.name, s.window, s.start, s.minima) == ("bowl", (-3.0, 3.0, -2.0, 2.0), (2.5, -1.5), ((0.0, 0.0),))
    assert s.value(1.0, 0.5) == pytest.approx(1.0 + 3 * math.sin(0.5) ** 2)
    assert s.gradient(1.0, 0.5) == pytest.approx((2.0, 6 * math.sin(0.5) * math.cos(0.5)))
    X, Y, Z = loss_grid(s, n=5)
    assert np.allclose(Z, X**2 + 3 * np.sin(Y) ** 2)
    path = optimizer_paths(s, ["sgd"], learning_rates=0.1, steps=300)["sgd"]
    assert tuple(path.points[0]) == (2.5, -1.5) and path.steps_to_tolerance is not None


@pytest.mark.parametrize(("body", "x_factor"), [
    ("def f(x, y):\n    return torch.stack([x, y]).pow(2).sum()\n", (1.0, 1.0)),  # not elementwise: vmapped
    ("def f(x, y):\n    return x**2 + y**2 if x > 0 else 2 * x**2 + y**2\n", (1.0, 2.0)),  # one call per point
])
def test_a_user_function_of_scalars_is_evaluated_on_grids(tmp_path, body, x_factor):
    file = tmp_path / "scalar.py"
    file.write_text("import torch\nSTART = (1.0, 1.0)\n" + body)
    X, Y, Z = loss_grid(load_surface(file), n=6)
    assert np.allclose(Z, np.where(X > 0, *x_factor) * X**2 + Y**2)


@pytest.mark.parametrize(("source", "problem"), [
    (None, "not found"),
    ("x = 1\n", "defines no function f"),
    ("f = 3\n", "f must be a function"),
    ("def f(x):\n    return x\n", "two arguments"),
    ("def f(x, y):\n    return float(x + y)\n", "must return a torch tensor"),
    ("def f(x, y):\n    return torch.stack([x, y])\n", "must return a scalar"),
    ("def f(x, y):\n    return torch.tensor(1.0)\n", "not differentiable"),
    ("WINDOW = (1, -1, 0, 2)\ndef f(x, y):\n    return x**2 + y**2\n", "WINDOW must have xmin < xmax"),
    ("WINDOW = (0, 1, 2)\ndef f(x, y):\n    return x**2 + y**2\n", "WINDOW must be four numbers"),
    ("START = 'here'\ndef f(x, y):\n    return x**2 + y**2\n", "START needs points"),
    ("def f(x, y)\n    return x\n", "running it failed: SyntaxError"),
])
@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
def test_bad_surface_files_name_the_file_and_the_problem(tmp_path, source, problem):
    file = tmp_path / "mine.py"
    if source is not None:
        file.write_text("import torch\n" + source)
    with pytest.raises(DeepfieldError, match=problem) as caught:
        load_surface(str(file))
    assert "mine.py" in str(caught.value) and "\n" not in str(caught.value)


def test_unknown_surface_names_list_the_known_ones():
    with pytest.raises(DeepfieldError, match="unknown surface 'bael'.*beale.*FILE.py"):
        load_surface("bael")


# --- paths on the convex quadratic --------------------------------------------------------------

def test_every_optimiser_reaches_the_quadratic_minimum_and_newton_in_one_step():
    rates = {"sgd": 0.1, "momentum": 0.1, "adagrad": 0.5, "rmsprop": 0.05, "adam": 0.1, "newton": 1.0}
    paths = optimizer_paths("quadratic", learning_rates=rates, steps=150)
    assert list(paths) == ["sgd", "momentum", "adagrad", "rmsprop", "adam", "newton"]
    for name, p in paths.items():
        k = p.steps_to_tolerance
        assert k is not None, name
        assert p.losses[k] <= 1e-6 and np.all(p.losses[:k] > 1e-6), name  # the first step within tolerance
        # f <= 1e-6 confines the point to |dx| <= sqrt(2e-6), |dy| <= sqrt(2e-7)
        assert np.all(np.abs(p.points[k] - QUAD_MIN) <= [1.5e-3, 4.5e-4]), name
        assert p.learning_rate == rates[name] and not p.diverged and p.points.shape == (151, 2)
        assert p.final_value == p.losses[-1] and p.final_value < 1e-6, name
    newton = paths["newton"]
    assert newton.steps_to_tolerance == 1
    assert np.allclose(newton.points[1], QUAD_MIN, rtol=0, atol=1e-9)


@pytest.mark.parametrize("start", [(-1.5, 1.5), (2.7, -0.9), (1.0, 1.9)])
def test_one_newton_step_is_exact_on_a_quadratic_from_anywhere(start):
    p = optimizer_paths("quadratic", ["newton"], start=start, steps=1)["newton"]
    assert np.allclose(p.points[1], QUAD_MIN, rtol=0, atol=1e-9) and p.losses[1] < 1e-18


def test_paths_start_exactly_at_the_start():
    start = (0.3125, -0.7)
    for p in optimizer_paths("beale", start=start, steps=2).values():
        assert tuple(p.points[0]) == start and p.losses[0] == load_surface("beale").value(*start)
    for p in optimizer_paths("rosenbrock", ["sgd", "newton"], steps=1).values():
        assert tuple(p.points[0]) == SURFACES["rosenbrock"].start


def test_small_step_sgd_descends_monotonically_on_the_quadratic():
    p = optimizer_paths("quadratic", ["sgd"], learning_rates=0.01, steps=100)["sgd"]
    assert np.all(np.diff(p.losses) < 0)


def test_first_steps_follow_the_update_rules_by_hand():
    start, lr = np.array([-1.5, 1.5]), 0.05
    g0 = _quad_grad(*start)  # (-2.5, 10)
    paths = optimizer_paths("quadratic", ["sgd", "momentum", "adagrad", "rmsprop", "adam"], start=tuple(start),
                            learning_rates=lr, steps=2)
    sgd = paths["sgd"].points
    assert np.allclose(sgd[1], start - lr * g0, rtol=0, atol=1e-15)
    assert np.allclose(sgd[1], [-1.375, 1.0])
    # momentum 0.9: v1 = -lr g0 (the same first step), then v2 = 0.9 v1 - lr g1
    mom = paths["momentum"].points
    assert np.allclose(mom[1], sgd[1], rtol=0, atol=1e-15)
    assert np.allclose(mom[2], mom[1] + 0.9 * (mom[1] - mom[0]) - lr * _quad_grad(*mom[1]), rtol=0, atol=1e-14)
    # Adagrad (G starts at 0.1): step lr g / sqrt(0.1 + g^2 + eps)
    assert np.allclose(paths["adagrad"].points[1], start - lr * g0 / np.sqrt(0.1 + g0**2 + 1e-7), rtol=0, atol=1e-14)
    # RMSprop (rho 0.9): v = 0.1 g^2, so the first step is ~ lr * sqrt(10) per coordinate
    assert np.allclose(paths["rmsprop"].points[1], start - lr * g0 / np.sqrt(0.1 * g0**2 + 1e-7), rtol=0, atol=1e-14)
    # Adam at t = 1: alpha = lr sqrt(1 - b2) / (1 - b1), m = (1 - b1) g, sqrt(v) = sqrt(1 - b2) |g|,
    # so the step is lr g / (|g| + eps / sqrt(1 - b2)): lr on each coordinate, up to epsilon
    step = paths["adam"].points[1] - start
    assert np.allclose(step, -lr * g0 / (np.abs(g0) + 1e-7 / np.sqrt(1e-3)), rtol=1e-12, atol=0)
    assert np.allclose(step, -lr * np.sign(g0), rtol=1e-5, atol=0)


def test_learning_rates_default_per_optimiser_and_are_overridable():
    paths = optimizer_paths("quadratic", ["sgd", "adam", {"class_name": "RMSprop", "config": {"learning_rate": 0.3}}],
                            learning_rates={"adam": 0.25}, steps=1)
    assert {k: p.learning_rate for k, p in paths.items()} == {
        "sgd": DEFAULT_LEARNING_RATES["sgd"], "adam": 0.25, "rmsprop": 0.3}
    variants = optimizer_paths("quadratic", {"plain": "adam", "ams": {"class_name": "adam", "config": {"amsgrad": True}}},
                               learning_rates=0.2, steps=1)
    assert [p.learning_rate for p in variants.values()] == [0.2, 0.2] and list(variants) == ["plain", "ams"]
    with pytest.raises(DeepfieldError, match="'adamm'"):
        optimizer_paths("quadratic", ["adamm"], steps=1)
    with pytest.raises(DeepfieldError, match="'rmsprop' not among the optimizers"):
        optimizer_paths("quadratic", ["sgd"], learning_rates={"rmsprop": 0.1}, steps=1)
    with pytest.raises(DeepfieldError, match="appears twice"):
        optimizer_paths("quadratic", ["sgd", "SGD"], steps=1)


# --- divergence ---------------------------------------------------------------------------------

@pytest.mark.parametrize("surface", ["quadratic", "rosenbrock"])
def test_a_far_too_large_learning_rate_is_flagged_and_stops_the_path(surface):
    p = optimizer_paths(surface, ["sgd"], learning_rates=10.0, steps=50)["sgd"]
    assert p.diverged and p.diverged_at is not None and p.diverged_at <= 10
    assert len(p.points) == len(p.losses) == p.diverged_at  # steps 0 .. diverged_at - 1 only
    assert np.isfinite(p.points).all() and np.isfinite(p.losses).all()
    assert np.all(np.abs(p.losses) <= 1e6) and p.final_value == p.losses[-1]
    assert p.steps_to_tolerance is None


def test_a_nan_gradient_stops_the_path_before_any_nan_is_stored():
    # the cone's gradient at its tip is 0/0: SGD steps to NaN, Newton refuses to step
    cone = Surface("cone", lambda xy: xy.pow(2).sum(-1).sqrt(), (-1.0, 1.0, -1.0, 1.0), ((0.0, 0.0),), (0.0, 0.0))
    for p in optimizer_paths(cone, ["sgd", "newton"], steps=3).values():
        assert p.diverged and p.diverged_at == 1 and p.points.tolist() == [[0.0, 0.0]] and p.losses.tolist() == [0.0]
    with pytest.raises(DeepfieldError, match="f at the start .* beyond divergence"):
        optimizer_paths("rosenbrock", ["sgd"], start=(100.0, 0.0), steps=1)


def test_newton_runs_off_the_unbounded_saddle_and_is_flagged():
    p = optimizer_paths("saddle", ["newton"], divergence=1e2, steps=100)["newton"]
    assert p.diverged and np.all(np.abs(p.losses) <= 1e2) and np.isfinite(p.points).all()


# --- classic behaviour --------------------------------------------------------------------------

def test_adam_reaches_the_beale_minimum_from_the_usual_start():
    p = optimizer_paths("beale", ["adam"], steps=400)["adam"]
    assert tuple(p.points[0]) == (1.0, 1.5)
    assert np.hypot(*(p.points[-1] - [3.0, 0.5])) < 0.05 and p.final_value < 1e-3


def test_sgd_on_the_saddle_axis_stays_on_it_and_slightly_off_it_escapes():
    lr, steps = 0.05, 100
    k = np.arange(steps + 1)
    on = optimizer_paths("saddle", ["sgd"], start=(-1.5, 0.0), learning_rates=lr, steps=steps)["sgd"]
    assert np.all(on.points[:, 1] == 0.0)  # df/dy = -2y = 0 on the axis
    assert np.allclose(on.points[:, 0], -1.5 * (1 - 2 * lr) ** k, rtol=1e-12)  # x <- (1 - 2 lr) x
    # no minimum is known: tolerance is on the gradient norm, 2 |x_k| = 3 (1 - 2 lr)^k
    tolerance = 1e-3
    on = optimizer_paths("saddle", ["sgd"], start=(-1.5, 0.0), learning_rates=lr, steps=steps,
                         tolerance=tolerance)["sgd"]
    assert on.steps_to_tolerance == int(np.argmax(3.0 * (1 - 2 * lr) ** k < tolerance)) > 0
    off = optimizer_paths("saddle", ["sgd"], start=(-1.5, 1e-3), learning_rates=lr, steps=steps)["sgd"]
    assert np.allclose(off.points[:, 1], 1e-3 * (1 + 2 * lr) ** k, rtol=1e-12)  # y <- (1 + 2 lr) y
    assert off.points[-1, 1] > 10 and not off.diverged and off.steps_to_tolerance is None


def test_a_surface_instance_and_a_custom_function_work():
    bowl = Surface("bowl", lambda xy: (xy**2).sum(-1), (-1.0, 1.0, -1.0, 1.0), ((0.0, 0.0),), (0.5, -0.5))
    p = optimizer_paths(bowl, ["newton"], steps=1)["newton"]
    assert np.allclose(p.points[1], 0.0, atol=1e-12) and p.steps_to_tolerance == 1
    assert torch.is_tensor(bowl(torch.zeros(3, 4, 2))) and bowl(torch.zeros(3, 4, 2)).shape == (3, 4)
