"""A surface ``f(x, y)`` given as a formula string, parsed and never executed as Python.

``parse_formula("(1 - x)**2 + 100*(y - x**2)**2")`` returns a function of two tensors built from
torch operations, so autograd gives its gradient and Hessian. The formula may use only:

- the variables ``x`` and ``y``, numbers, and the constants ``pi`` and ``e``;
- ``+ - * / **`` and unary ``-`` / ``+``, with parentheses;
- the functions in :data:`FUNCTIONS` (``sin cos tan exp log sqrt abs tanh sinh cosh``), one argument each.

Anything else (attribute access, subscripts, other names or calls, keywords, lambdas, ...) is
refused with one line naming it. Python's own ``ast`` module only parses the text here; the
tree is checked against that whitelist and turned into torch calls by hand, because the formula
parsers at hand execute their input: ``sympy.parse_expr`` (sympy comes with torch) runs
``eval`` and is documented as unsafe on untrusted strings.
"""
from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable

import torch

from deepfield.errors import DeepfieldError

__all__ = ["FUNCTIONS", "MAX_LENGTH", "parse_formula"]

Term = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sin": torch.sin, "cos": torch.cos, "tan": torch.tan, "exp": torch.exp, "log": torch.log,
    "sqrt": torch.sqrt, "abs": torch.abs, "tanh": torch.tanh, "sinh": torch.sinh, "cosh": torch.cosh,
}
"""The functions a formula may call, by name."""

CONSTANTS = {"pi": math.pi, "e": math.e}
MAX_LENGTH = 2000
"""The longest formula accepted (characters): a formula is one line a person writes."""

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_ALLOWED = "x, y, numbers, pi, e, + - * / ** and " + " ".join(FUNCTIONS)


def parse_formula(text: str) -> Term:
    """``f(x, y)`` from ``text``: tensors ``x``, ``y`` of one shape in, a tensor of that shape out.

    Raises:
        DeepfieldError: the text is not a formula over that whitelist (one line naming what is not allowed).
    """
    where = f"surface formula {text[:80]!r}"
    if len(text) > MAX_LENGTH:
        raise DeepfieldError(f"{where}: longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        detail = exc.msg if isinstance(exc, SyntaxError) else type(exc).__name__
        raise DeepfieldError(f"{where}: not a formula ({detail}); use {_ALLOWED}") from None
    term = _term(tree.body, where)
    if not any(isinstance(node, ast.Name) and node.id in ("x", "y") for node in ast.walk(tree)):
        raise DeepfieldError(f"{where}: uses neither x nor y")
    return term


def _term(node: ast.AST, where: str) -> Term:
    """The torch function of ``node`` and its children (the whitelist is checked on the way down)."""
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        op, left, right = _BINARY[type(node.op)], _term(node.left, where), _term(node.right, where)
        return lambda x, y: op(left(x, y), right(x, y))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        unary, operand = _UNARY[type(node.op)], _term(node.operand, where)
        return lambda x, y: unary(operand(x, y))
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _constant(_float(node.value))
    if isinstance(node, ast.Name):
        if node.id == "x":
            return lambda x, y: x
        if node.id == "y":
            return lambda x, y: y
        if node.id in CONSTANTS:
            return _constant(CONSTANTS[node.id])
        raise DeepfieldError(f"{where}: unknown name {node.id!r}; use {_ALLOWED}")
    if isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in FUNCTIONS:
            shown = repr(name) if name else "anything but a function by name"
            raise DeepfieldError(f"{where}: calling {shown} is not allowed; the functions are {' '.join(FUNCTIONS)}")
        if len(node.args) != 1 or node.keywords or isinstance(node.args[0], ast.Starred):
            raise DeepfieldError(f"{where}: {name}() takes one argument, e.g. {name}(x)")
        function, argument = FUNCTIONS[name], _term(node.args[0], where)
        return lambda x, y: function(argument(x, y))
    what = "attribute access (.)" if isinstance(node, ast.Attribute) else type(node).__name__
    raise DeepfieldError(f"{where}: {what} is not allowed; use {_ALLOWED}")


def _float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:  # an integer literal past float's range
        return math.inf


def _constant(value: float) -> Term:
    """A number as a tensor of ``x``'s dtype and device (no float64 promotion, no Python overflow)."""
    return lambda x, y: torch.tensor(value, dtype=x.dtype, device=x.device)
