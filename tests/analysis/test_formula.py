"""A surface given as a formula string (issue 15, item 10): parsed over a whitelist, never executed,
differentiable by torch (values, gradients and one exact Newton step against the mathematics)."""
import math

import numpy as np
import pytest
import torch

from deepfield.analysis.learning.formula import parse_formula
from deepfield.analysis.learning.paths import optimizer_paths
from deepfield.analysis.learning.surfaces import DEFAULT_WINDOW, load_surface
from deepfield.errors import DeepfieldError


def test_the_rosenbrock_formula_matches_the_named_surface_and_its_gradient():
    s = load_surface("(1-x)**2 + 100*(y-x**2)**2")
    assert s.name == "formula" and s.formula == "(1-x)**2 + 100*(y-x**2)**2" and s.window == DEFAULT_WINDOW
    assert s.value(-1.0, 2.0) == 4.0 + 100.0
    # at (-1, 2), y - x² = 1: d/dx = -2 (1 - x) - 400 x (y - x²) = -4 + 400 = 396, d/dy = 200 (y - x²) = 200
    assert s.gradient(-1.0, 2.0) == (396.0, 200.0)
    grid = torch.tensor(np.random.default_rng(0).uniform(-2, 2, (5, 7, 2)))
    assert torch.allclose(s(grid), load_surface("rosenbrock")(grid), rtol=0, atol=1e-12)


def test_every_function_and_constant_against_math():
    text = "sin(x)*exp(y) + cos(x)/2 - sqrt(abs(y)) + log(x**2 + 1)*tanh(y) + tan(x/4) + sinh(y)*cosh(x) - pi*e + -x"
    s = load_surface(text)
    x, y = 0.7, -1.3
    expected = (math.sin(x) * math.exp(y) + math.cos(x) / 2 - math.sqrt(abs(y)) + math.log(x**2 + 1) * math.tanh(y)
                + math.tan(x / 4) + math.sinh(y) * math.cosh(x) - math.pi * math.e - x)
    assert s.value(x, y) == pytest.approx(expected, rel=1e-14)
    dfdx = (math.cos(x) * math.exp(y) - math.sin(x) / 2 + 2 * x / (x**2 + 1) * math.tanh(y)
            + 1 / (4 * math.cos(x / 4) ** 2) + math.sinh(y) * math.sinh(x) - 1)
    dfdy = (math.sin(x) * math.exp(y) + 0.5 / math.sqrt(abs(y)) + math.log(x**2 + 1) / math.cosh(y) ** 2
            + math.cosh(y) * math.cosh(x))  # d/dy -sqrt(|y|) = +1/(2 sqrt|y|) for y < 0
    assert s.gradient(x, y) == pytest.approx((dfdx, dfdy), rel=1e-12)


def test_one_newton_step_lands_on_the_minimum_of_a_quadratic_formula():
    p = optimizer_paths("(x - 1)**2/2 + 5*(y - 0.5)**2", ["newton"], start=(-1.5, 1.5), steps=1)["newton"]
    assert np.allclose(p.points[1], [1.0, 0.5], rtol=0, atol=1e-9)


def test_the_formula_keeps_the_input_dtype():
    f = parse_formula("2*x + y**2")
    x, y = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 0.5])
    out = f(x, y)
    assert out.dtype == torch.float32 and out.tolist() == [11.0, 4.25]


@pytest.mark.parametrize("text, problem", [
    ("x.__class__", "attribute access (.) is not allowed"),
    ("__import__('os') + x", "calling '__import__' is not allowed"),
    ("__import__('os').system('touch HACKED') + x", "calling anything but a function by name is not allowed"),
    ("eval('1') * x", "calling 'eval' is not allowed"),
    ("open('f') or x", "BoolOp is not allowed"),
    ("x[0] + y", "Subscript is not allowed"),
    ("(lambda: x)()", "calling anything but a function by name is not allowed"),
    ("z + x", "unknown name 'z'"),
    ("sin(x, y)", "sin() takes one argument"),
    ("sin(x=y)", "sin() takes one argument"),
    ("'x' * 3", "Constant is not allowed"),
    ("x if y else 1", "IfExp is not allowed"),
    ("3 + 4", "uses neither x nor y"),
    ("x +", "not a formula"),
    ("x" + "+x" * 1200, "longer than 2000 characters"),
])
def test_anything_outside_the_whitelist_is_refused_in_one_line(text, problem):
    with pytest.raises(DeepfieldError) as caught:
        load_surface(text)
    message = str(caught.value)
    assert message.startswith("surface formula ") and problem in message and "\n" not in message


def test_a_formula_runs_nothing_from_the_command_line(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)  # cli: the command line in this process (tests/conftest.py)
    done = cli("playground", "optimizers", "--surface", "__import__('pathlib').Path('HACKED').touch() or x",
               "--out", "o")
    assert done.returncode == 2 and "surface formula" in done.stderr and "is not allowed" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "HACKED").exists() and not (tmp_path / "o").exists()


def test_a_misspelt_name_is_still_an_unknown_surface():
    with pytest.raises(DeepfieldError, match="unknown surface 'rosenbrok'.*a formula in x and y"):
        load_surface("rosenbrok")
