"""Two-dimensional loss surfaces on which to watch optimisers walk.

A surface is a torch-differentiable function of a point: ``f(xy)`` takes a tensor
``(..., 2)`` (``xy[..., 0]`` is x, ``xy[..., 1]`` is y) and returns ``(...)``, so it
evaluates one point (what an optimiser needs) or a whole grid (what a contour plot
needs). The named ones are the classic test functions:

=============  ======================================  ===========================  ==================
name           f(x, y)                                 minima (value)               window, start
=============  ======================================  ===========================  ==================
``beale``      (1.5 − x + xy)² + (2.25 − x + xy²)²     (3, 0.5) (0)                 [−4.5, 4.5]²,
               + (2.625 − x + xy³)²                                                 (1, 1.5)
``rosenbrock`` (1 − x)² + 100 (y − x²)²                (1, 1) (0)                   [−2, 2]×[−1, 3],
                                                                                    (−1.2, 1)
``saddle``     x² − y²                                 none (a saddle at 0, 0)      [−2, 2]²,
                                                                                    (−1.5, 0.01)
``himmelblau`` (x² + y − 11)² + (x + y² − 7)²          four, all 0: (3, 2),         [−5, 5]²,
                                                       (−2.805, 3.131), (−3.779,    (0, −1)
                                                       −3.283), (3.584, −1.848)
``quadratic``  (x − 1)²/2 + 5 (y − 0.5)²               (1, 0.5) (0)                 [−2, 3]×[−1, 2],
                                                                                    (−1.5, 1.5)
=============  ======================================  ===========================  ==================

The quadratic is convex with condition number 10 (Hessian ``diag(1, 10)``): every sensible
optimiser reaches its minimum, and one exact Newton step lands on it.

A user's own surface is best given as a formula in x and y, parsed and never run as Python
(see :mod:`deepfield.analysis.learning.formula`)::

    load_surface("(1 - x)**2 + 100*(y - x**2)**2")     # window [-3, 3]², its start (-1.8, 1.8)

or as a Python file defining ``def f(x, y)`` with torch operations on two
scalar tensors, returning a scalar tensor, and optionally ``WINDOW = (xmin, xmax, ymin, ymax)``,
``START = (x, y)``, ``MINIMA = [(x, y), ...]`` and ``LOG_SCALE = True/False``::

    # bowl.py
    import torch
    WINDOW = (-3, 3, -3, 3)
    START = (2.5, -2.0)
    MINIMA = [(0.0, 0.0)]
    def f(x, y):
        return x**2 + 3 * torch.sin(y) ** 2

``load_surface("bowl.py")`` RUNS that file as Python, exactly like ``python bowl.py``
would (with ``__name__`` not ``"__main__"``): load only files you wrote or trust.

>>> s = load_surface("rosenbrock")
>>> s(torch.tensor([1.0, 1.0]))                 # tensor(0.)
>>> s.minima, s.minimum_values, s.window, s.start
"""
from __future__ import annotations

import inspect
import math
import os
import runpy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from deepfield.analysis.learning.formula import parse_formula
from deepfield.errors import DeepfieldError, unknown_name

__all__ = ["SURFACES", "Surface", "beale", "himmelblau", "load_surface", "quadratic", "rosenbrock", "saddle"]

Window = tuple[float, float, float, float]
Point = tuple[float, float]

DEFAULT_WINDOW: Window = (-3.0, 3.0, -3.0, 3.0)
"""The window of a user's surface that sets no ``WINDOW``."""


@dataclass(frozen=True)
class Surface:
    """A named 2-D loss surface.

    Attributes:
        name: ``"beale"``, ... or the stem of the user's file.
        function: ``f(xy (..., 2)) -> (...)``, differentiable by torch.
        window: ``(xmin, xmax, ymin, ymax)`` to plot.
        minima: the known minima ``(x, y)`` (empty when none is known or none exists).
        start: the default starting point.
        log_scale: contour levels spaced in log (``True``), linearly (``False``) or
            decided from the values on the grid (``None``).
        formula: ``f(x, y)`` in words, for titles.
    """

    name: str
    function: Callable[[torch.Tensor], torch.Tensor]
    window: Window
    minima: tuple[Point, ...] = ()
    start: Point = (0.0, 0.0)
    log_scale: bool | None = None
    formula: str = ""

    def __call__(self, xy: torch.Tensor) -> torch.Tensor:
        return self.function(xy)

    def value(self, x: float, y: float) -> float:
        """``f(x, y)`` as a float (computed in float64)."""
        with torch.no_grad():
            return float(self.function(torch.tensor([x, y], dtype=torch.float64)))

    def gradient(self, x: float, y: float) -> tuple[float, float]:
        """``∇f(x, y)`` as two floats (float64)."""
        xy = torch.tensor([x, y], dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(self.function(xy), xy, allow_unused=True)
        if grad is None:
            return 0.0, 0.0
        return float(grad[0]), float(grad[1])

    @cached_property
    def minimum_values(self) -> tuple[float, ...]:
        """``f`` at each of :attr:`minima`."""
        return tuple(self.value(x, y) for x, y in self.minima)


# --- the named surfaces -------------------------------------------------------------------------

def _split(xy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return xy[..., 0], xy[..., 1]


def beale(xy: torch.Tensor) -> torch.Tensor:
    """Beale's function; one global minimum 0 at (3, 0.5) in a flat, curved valley."""
    x, y = _split(xy)
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def rosenbrock(xy: torch.Tensor) -> torch.Tensor:
    """Rosenbrock's banana ``(1 − x)² + 100 (y − x²)²``; minimum 0 at (1, 1) at the end of a narrow valley."""
    x, y = _split(xy)
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def saddle(xy: torch.Tensor) -> torch.Tensor:
    """``x² − y²``: a saddle point at the origin, no minimum (unbounded below along y)."""
    x, y = _split(xy)
    return x**2 - y**2


def himmelblau(xy: torch.Tensor) -> torch.Tensor:
    """Himmelblau's function: four minima of value 0, a local maximum near (−0.27, −0.92)."""
    x, y = _split(xy)
    return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2


def quadratic(xy: torch.Tensor) -> torch.Tensor:
    """A convex anisotropic bowl ``(x − 1)²/2 + 5 (y − 0.5)²``: Hessian diag(1, 10), minimum 0 at (1, 0.5)."""
    x, y = _split(xy)
    return 0.5 * (x - 1) ** 2 + 5 * (y - 0.5) ** 2


# Himmelblau's three irrational minima, polished by Newton's method in float64.
_HIMMELBLAU_MINIMA: tuple[Point, ...] = (
    (3.0, 2.0),
    (-2.805118086952745, 3.131312518250573),
    (-3.779310253377747, -3.283185991286170),
    (3.584428340330492, -1.848126526964404),
)

SURFACES: dict[str, Surface] = {
    s.name: s
    for s in (
        Surface("beale", beale, (-4.5, 4.5, -4.5, 4.5), ((3.0, 0.5),), (1.0, 1.5), True,
                "(1.5 − x + xy)² + (2.25 − x + xy²)² + (2.625 − x + xy³)²"),
        Surface("rosenbrock", rosenbrock, (-2.0, 2.0, -1.0, 3.0), ((1.0, 1.0),), (-1.2, 1.0), True,
                "(1 − x)² + 100 (y − x²)²"),
        Surface("saddle", saddle, (-2.0, 2.0, -2.0, 2.0), (), (-1.5, 0.01), False, "x² − y²"),
        Surface("himmelblau", himmelblau, (-5.0, 5.0, -5.0, 5.0), _HIMMELBLAU_MINIMA, (0.0, -1.0), True,
                "(x² + y − 11)² + (x + y² − 7)²"),
        Surface("quadratic", quadratic, (-2.0, 3.0, -1.0, 2.0), ((1.0, 0.5),), (-1.5, 1.5), None,
                "(x − 1)²/2 + 5 (y − 0.5)²"),
    )
}
"""The named surfaces, by name."""


def load_surface(spec: str | os.PathLike[str] | Surface) -> Surface:
    """A :class:`Surface` from a name in :data:`SURFACES` (any case), a formula in ``x`` and ``y``
    (parsed, never executed), a user's ``FILE.py``, or a Surface.

    The file is executed as Python (see the module docstring). The formula's or the file's
    ``f(x, y)`` is checked on the start point: it must return a scalar tensor that depends on
    ``x`` and ``y`` differentiably. Every problem is one :class:`DeepfieldError` naming the formula or file.
    """
    if isinstance(spec, Surface):
        return spec
    if isinstance(spec, os.PathLike) or (isinstance(spec, str) and spec.lower().endswith(".py")):
        return _from_file(Path(spec))
    if isinstance(spec, str) and spec.lower() in SURFACES:
        return SURFACES[spec.lower()]
    if isinstance(spec, str) and spec.strip().isidentifier() and spec.strip() not in ("x", "y"):
        raise DeepfieldError(str(unknown_name("surface", spec, SURFACES)) + ", a formula in x and y, "
                             "or a FILE.py defining f(x, y)")
    if isinstance(spec, str):
        return _from_formula(spec)
    raise DeepfieldError(f"surface: expected a name, a formula or a FILE.py, got {type(spec).__name__}")


def _from_formula(text: str) -> Surface:
    """The formula's surface on :data:`DEFAULT_WINDOW`, started as a file's without ``START``."""
    f = parse_formula(text)
    start = _default_start(DEFAULT_WINDOW)
    _check_function(f"surface formula {text[:80]!r}", f, start)
    return Surface("formula", _pointwise(f), DEFAULT_WINDOW, (), start, None, text.strip())


def _default_start(window: Window) -> Point:
    """A start away from the window's centre, where a minimum often is: 20 % in from the top-left corner."""
    xmin, xmax, ymin, ymax = window
    return xmin + 0.2 * (xmax - xmin), ymax - 0.2 * (ymax - ymin)


# --- a user's file ------------------------------------------------------------------------------

def _from_file(path: Path) -> Surface:
    if not path.is_file():
        raise DeepfieldError(f"{path}: surface file not found")
    try:
        namespace = runpy.run_path(str(path), run_name="deepfield_surface")
    except Exception as exc:  # the user's code: report what went wrong, in one line
        message = " ".join(str(exc).split())
        raise DeepfieldError(f"{path}: running it failed: {type(exc).__name__}: {message}") from None
    f = namespace.get("f")
    if f is None:
        raise DeepfieldError(f"{path}: defines no function f(x, y) (the surface to plot)")
    if not callable(f):
        raise DeepfieldError(f"{path}: f must be a function f(x, y), got {type(f).__name__}")
    try:
        inspect.signature(f).bind(0.0, 0.0)
    except TypeError:
        raise DeepfieldError(f"{path}: f must take two arguments, f(x, y)") from None
    except ValueError:  # a builtin without a signature: let the trial call decide
        pass
    window = _window(path, namespace.get("WINDOW", DEFAULT_WINDOW))
    start = _point(path, "START", namespace.get("START", _default_start(window)))
    minima_spec = namespace.get("MINIMA", ())
    if isinstance(minima_spec, (str, bytes)) or not isinstance(minima_spec, Sequence):
        raise DeepfieldError(f"{path}: MINIMA must be a list of (x, y) points, got {minima_spec!r}")
    minima = tuple(_point(path, "MINIMA", m) for m in minima_spec)
    log_scale = namespace.get("LOG_SCALE")
    if log_scale is not None and not isinstance(log_scale, bool):
        raise DeepfieldError(f"{path}: LOG_SCALE must be True, False or None, got {log_scale!r}")
    _check_function(path, f, start)
    return Surface(path.stem, _pointwise(f), window, minima, start, log_scale, f"f(x, y) from {path.name}")


def _window(path: Path, value: Any) -> Window:
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        numbers = ()
    if len(numbers) != 4 or not all(math.isfinite(v) for v in numbers):
        raise DeepfieldError(f"{path}: WINDOW must be four numbers (xmin, xmax, ymin, ymax), got {value!r}")
    xmin, xmax, ymin, ymax = numbers
    if not (xmin < xmax and ymin < ymax):
        raise DeepfieldError(f"{path}: WINDOW must have xmin < xmax and ymin < ymax, got {value!r}")
    return numbers  # type: ignore[return-value]


def _point(path: Path, what: str, value: Any) -> Point:
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        numbers = ()
    if len(numbers) != 2 or not all(math.isfinite(v) for v in numbers):
        raise DeepfieldError(f"{path}: {what} needs points (x, y) of two finite numbers, got {value!r}")
    return numbers  # type: ignore[return-value]


def _check_function(path: Path | str, f: Callable[..., Any], start: Point) -> None:
    """Call ``f`` once at ``start``: a scalar tensor with a finite gradient, or one clear error naming ``path``."""
    x = torch.tensor(start[0], dtype=torch.float64, requires_grad=True)
    y = torch.tensor(start[1], dtype=torch.float64, requires_grad=True)
    try:
        out = f(x, y)
    except Exception as exc:
        message = " ".join(str(exc).split())
        raise DeepfieldError(f"{path}: f{start} failed: {type(exc).__name__}: {message}") from None
    if not isinstance(out, torch.Tensor):
        raise DeepfieldError(
            f"{path}: f(x, y) must return a torch tensor (use torch operations), got {type(out).__name__}"
        )
    if out.numel() != 1:
        raise DeepfieldError(f"{path}: f(x, y) must return a scalar, got a tensor of shape {tuple(out.shape)}")
    if not out.requires_grad:
        raise DeepfieldError(
            f"{path}: f(x, y) is not differentiable in x and y (its result carries no gradient; "
            "use torch operations, not numpy or float())"
        )
    grads = torch.autograd.grad(out.reshape(()), (x, y), allow_unused=True)
    if not all(g is None or bool(torch.isfinite(g).all()) for g in grads):
        raise DeepfieldError(f"{path}: the gradient of f at the start point {start} is not finite")


def _pointwise(f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``f(x, y)`` on scalars as a surface function of ``xy (..., 2)``.

    One point is one call. Many points are tried, in order: ``f`` on the whole arrays (most
    formulas are elementwise), ``torch.vmap`` over the points, and finally one call per point.
    """

    def function(xy: torch.Tensor) -> torch.Tensor:
        if xy.dim() == 1:
            return f(xy[0], xy[1]).reshape(())
        shape = xy.shape[:-1]
        flat = xy.reshape(-1, 2)
        try:
            out = f(flat[:, 0], flat[:, 1])
            if isinstance(out, torch.Tensor) and out.shape == flat.shape[:1]:
                return out.reshape(shape)
        except Exception:
            pass
        try:
            return torch.vmap(lambda p: f(p[0], p[1]).reshape(()))(flat).reshape(shape)
        except Exception:
            pass
        return torch.stack([f(p[0], p[1]).reshape(()) for p in flat]).reshape(shape)

    return function
