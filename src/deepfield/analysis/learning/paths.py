"""Optimiser paths on 2-D loss surfaces: deepfield's own optimisers, stepping one point.

Each optimiser moves a single ``nn.Parameter`` of shape ``(2,)`` (float64) holding the
point ``(x, y)``, with exactly the update rules :mod:`deepfield.training.optimizers` uses to
train networks: first-order ones through ``loss.backward(); opt.step()``, Newton through
``opt.step(closure)`` (it differentiates the loss twice itself).

The optimisers, by name (:data:`PRESETS`), with their default learning rates
(:data:`DEFAULT_LEARNING_RATES`):

============  =========================================  =======
name          deepfield optimiser                        lr
============  =========================================  =======
sgd           ``SGD``                                    0.001
momentum      ``SGD(momentum=0.9)``                      0.001
nesterov      ``SGD(momentum=0.9, nesterov=True)``       0.001
adagrad       ``Adagrad``                                0.5
rmsprop       ``RMSprop``                                0.02
adam          ``Adam``                                   0.1
amsgrad       ``Adam(amsgrad=True)``                     0.1
newton        ``Newton(damping=0)``                      1.0
============  =========================================  =======

Keras's defaults (0.01 for SGD, 0.001 for the adaptive ones) are tuned for networks, not
for these surfaces. The rates above show the classic pictures on ``beale`` and
``rosenbrock`` from their default starts in 200–400 steps:

* SGD: 0.001 is about the largest rate Rosenbrock's curvature allows at its start (the
  Hessian's largest eigenvalue there is ~1500, and plain gradient descent is stable only
  below 2/1500 ≈ 0.0013); it crawls along the flat valley floor, as the course says it does;
* momentum (0.9), same rate: rolls ~10 times further along the valley;
* Adagrad: its first step is about ``lr`` per coordinate, then the steps shrink as squared
  gradients pile up (it stalls on Rosenbrock); 0.5 rather than the paper's 1.0, whose first
  jumps of ~1 unit leave the interesting region;
* RMSprop: its first steps are ``lr·√10`` per coordinate (``v`` starts at ``(1 − ρ) g²``), and
  do not shrink: 0.02 reaches Beale's minimum region in 200 steps and jitters there;
* Adam: moves about ``lr`` per coordinate per step (its known property); 0.1 reaches Beale's
  minimum in ~400 steps and the end of Rosenbrock's valley in ~500;
* Newton: the full step ``H⁻¹∇f`` (``learning_rate=1``), run with ``damping=0``: deepfield's
  default Levenberg–Marquardt floor (1e-4) would shorten every step slightly (one step on a
  quadratic would miss the minimum by ~1e-4 of the distance); with a floor of 0 the damping
  still switches on by itself wherever the Hessian is not positive definite or a full step
  fails (on the saddle it then behaves like small-step gradient descent).

Any other deepfield optimiser works by its registry name (``"adamw"``) or as
``{"class_name": ..., "config": {...}}``.

Divergence: a path *diverges* at step ``k`` when the loss there is not finite or
``|f| > divergence``, a coordinate is not finite or ``|x|`` or ``|y| > divergence``, or
(Newton) the optimiser refuses a non-finite loss, gradient or Hessian. The path then stops: ``points`` and
``losses`` hold steps ``0 .. k−1`` only (truncated, never padded, so every stored value is
finite), ``diverged`` is true and ``diverged_at`` is ``k``.

>>> paths = optimizer_paths("beale", ("sgd", "adam", "newton"), steps=300)
>>> paths["adam"].points[-1], paths["adam"].steps_to_tolerance
>>> X, Y, Z = loss_grid("beale")
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from deepfield import arguments
from deepfield.analysis.learning.surfaces import Surface, load_surface
from deepfield.errors import DeepfieldError, unknown_name
from deepfield.training import optimizers as opt_lib

__all__ = ["DEFAULT_LEARNING_RATES", "PRESETS", "Path2D", "loss_grid", "optimizer_paths"]

PRESETS: dict[str, dict[str, Any]] = {
    "sgd": {"class_name": "SGD", "config": {}},
    "momentum": {"class_name": "SGD", "config": {"momentum": 0.9}},
    "nesterov": {"class_name": "SGD", "config": {"momentum": 0.9, "nesterov": True}},
    "adagrad": {"class_name": "Adagrad", "config": {}},
    "rmsprop": {"class_name": "RMSprop", "config": {}},
    "adam": {"class_name": "Adam", "config": {}},
    "amsgrad": {"class_name": "Adam", "config": {"amsgrad": True}},
    "newton": {"class_name": "Newton", "config": {"damping": 0.0}},
}
"""The named optimisers of a path plot, as deepfield optimiser configs."""

DEFAULT_LEARNING_RATES: dict[str, float] = {
    "sgd": 1e-3,
    "momentum": 1e-3,
    "nesterov": 1e-3,
    "adagrad": 0.5,
    "rmsprop": 0.02,
    "adam": 0.1,
    "amsgrad": 0.1,
    "newton": 1.0,
}
"""Learning rates for the 2-D surfaces (see the module docstring for why)."""

DEFAULT_OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam", "newton")

OptimizerSpec = str | Mapping[str, Any] | opt_lib.Optimizer


@dataclass(frozen=True)
class Path2D:
    """Where one optimiser went on a surface.

    Attributes:
        optimizer: its label (``"adam"``, ...).
        learning_rate: the learning rate it used.
        points: ``(n + 1, 2)``: the start (exactly), then the point after each step.
            ``n`` is ``steps``, or fewer when the path diverged (see :attr:`diverged_at`).
        losses: ``(n + 1,)``: ``f`` at each point.
        steps_to_tolerance: the first step ``k`` whose loss is within ``tolerance`` of the
            value of the known minimum nearest ``points[k]`` (or, on a surface with no known
            minimum, whose gradient norm is below ``tolerance``); ``None`` if none is.
        final_value: ``losses[-1]``, the last finite loss.
        diverged: whether the loss or the point ran away (the path then stops).
        diverged_at: the step at which it did (not stored), or ``None``.
    """

    optimizer: str
    learning_rate: float
    points: np.ndarray
    losses: np.ndarray
    steps_to_tolerance: int | None
    final_value: float
    diverged: bool
    diverged_at: int | None = None

    @property
    def steps(self) -> int:
        """The number of steps stored (``len(points) − 1``)."""
        return len(self.points) - 1


def optimizer_paths(
    surface: str | Surface,
    optimizers: Iterable[OptimizerSpec] | Mapping[str, OptimizerSpec] = DEFAULT_OPTIMIZERS,
    start: tuple[float, float] | None = None,
    learning_rates: Mapping[str, float] | float | None = None,
    steps: int = 200,
    tolerance: float = 1e-6,
    divergence: float = 1e6,
) -> dict[str, Path2D]:
    """Run each optimiser ``steps`` steps from ``start`` on ``surface``; ``{label: Path2D}`` in order.

    Args:
        surface: a :class:`Surface`, a name (``"beale"``) or a ``FILE.py`` (see :func:`load_surface`).
        optimizers: names from :data:`PRESETS` or deepfield's registry, ``{"class_name":
            ..., "config": {...}}`` dicts or unbound deepfield optimisers (copied, never
            bound), labelled by name / lower-case class name; or a ``{label: spec}`` mapping.
        start: the starting point; default the surface's.
        learning_rates: one rate for all, or ``{label: rate}`` overriding some. Otherwise a
            rate in the spec's config is used, then :data:`DEFAULT_LEARNING_RATES`, then
            the optimiser's own default.
        steps: optimiser steps per path.
        tolerance: see :attr:`Path2D.steps_to_tolerance`.
        divergence: the bound on ``|f|`` and on ``|x|``, ``|y|`` beyond which a path has diverged.
    """
    surf = load_surface(surface)
    steps = arguments.integer("steps", steps, 0, expected="an integer >= 0")
    if not (tolerance > 0 and divergence > 0):
        raise DeepfieldError(f"tolerance and divergence must be > 0, got {tolerance!r} and {divergence!r}")
    origin = _start(surf, start)
    specs = _labelled(optimizers)
    if isinstance(learning_rates, Mapping):
        extra = sorted(set(learning_rates) - set(specs))
        if extra:
            raise DeepfieldError(
                f"learning_rates: {', '.join(map(repr, extra))} not among the optimizers ({', '.join(specs)})"
            )
    paths = {}
    for label, spec in specs.items():
        class_name, config = _config(label, spec)
        lr = _learning_rate(label, config, learning_rates)
        if lr is not None:
            config["learning_rate"] = lr
        try:
            unbound = opt_lib.get({"class_name": class_name, "config": config})
        except DeepfieldError as exc:
            raise DeepfieldError(f"optimizer {label!r}: {exc}") from None
        paths[label] = _walk(surf, label, unbound, origin, steps, tolerance, divergence)
    return paths


def loss_grid(surface: str | Surface, n: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(X, Y, Z)``, each ``(n, n)``: the surface on an ``n × n`` grid over its window (``Z[i, j] = f(X[i, j], Y[i, j])``).

    ``X`` varies along columns and ``Y`` along rows (``np.meshgrid``'s ``xy`` indexing), as
    ``contour(X, Y, Z)`` expects.
    """
    surf = load_surface(surface)
    n = arguments.integer("loss_grid: n", n, 2, expected="an integer >= 2")
    xmin, xmax, ymin, ymax = surf.window
    xs = torch.linspace(xmin, xmax, n, dtype=torch.float64)
    ys = torch.linspace(ymin, ymax, n, dtype=torch.float64)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    with torch.no_grad():
        z = surf.function(torch.stack([gx, gy], dim=-1))
    return gx.numpy(), gy.numpy(), z.detach().to(torch.float64).numpy()


# --- internals ----------------------------------------------------------------------------------

def _start(surf: Surface, start: Any) -> tuple[float, float]:
    point = surf.start if start is None else start
    try:
        x, y = (float(v) for v in point)
    except (TypeError, ValueError):
        raise DeepfieldError(f"start must be a point (x, y), got {point!r}") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise DeepfieldError(f"start must be finite, got {point!r}")
    return x, y


def _labelled(optimizers: Any) -> dict[str, OptimizerSpec]:
    if isinstance(optimizers, Mapping) and "class_name" not in optimizers:
        items = list(optimizers.items())
    else:
        specs = [optimizers] if isinstance(optimizers, (str, Mapping, opt_lib.Optimizer)) else list(optimizers)
        items = [(_label(s), s) for s in specs]
    out: dict[str, OptimizerSpec] = {}
    for label, spec in items:
        if label in out:
            raise DeepfieldError(
                f"optimizers: {label!r} appears twice; give a {{label: spec}} mapping to compare variants"
            )
        out[str(label)] = spec
    if not out:
        raise DeepfieldError("optimizers: give at least one optimizer")
    return out


def _label(spec: Any) -> str:
    if isinstance(spec, str):
        return spec.lower()
    if isinstance(spec, Mapping) and "class_name" in spec:
        return str(spec["class_name"]).lower()
    if isinstance(spec, opt_lib.Optimizer):
        return spec.name
    raise DeepfieldError(
        f"optimizers: expected names, {{'class_name': ..., 'config': ...}} dicts or deepfield "
        f"optimizers, got {type(spec).__name__}"
    )


def _config(label: str, spec: Any) -> tuple[str, dict[str, Any]]:
    """``(class_name, config)`` of a fresh, unbound optimiser for ``spec``."""
    if isinstance(spec, str):
        key = spec.lower()
        if key in PRESETS:
            return PRESETS[key]["class_name"], dict(PRESETS[key]["config"])
        if key in opt_lib.Optimizer.registry:
            return key, {}
        raise unknown_name("optimizer", spec, {*PRESETS, *opt_lib.Optimizer.registry})
    if isinstance(spec, Mapping) and "class_name" in spec:
        return str(spec["class_name"]), dict(spec.get("config") or {})
    if isinstance(spec, opt_lib.Optimizer):
        return type(spec).__name__, dict(spec.get_config())
    raise DeepfieldError(f"optimizer {label!r}: expected a name, a config dict or a deepfield optimizer")


def _learning_rate(label: str, config: Mapping[str, Any], rates: Mapping[str, float] | float | None) -> float | None:
    if isinstance(rates, Mapping) and label in rates:
        return float(rates[label])
    if rates is not None and not isinstance(rates, Mapping):
        return float(rates)
    if "learning_rate" in config or "lr" in config:
        return float(config.get("learning_rate", config.get("lr")))
    return DEFAULT_LEARNING_RATES.get(label)


def _walk(
    surf: Surface,
    label: str,
    optimizer: opt_lib.Optimizer,
    origin: tuple[float, float],
    steps: int,
    tolerance: float,
    divergence: float,
) -> Path2D:
    point = nn.Parameter(torch.tensor(origin, dtype=torch.float64))
    optimizer.bind([point])
    newton = optimizer.requires_closure

    def closure() -> torch.Tensor:
        return surf.function(point)

    def sane(xy: torch.Tensor, loss: torch.Tensor) -> bool:
        value = float(loss)
        return (
            math.isfinite(value) and abs(value) <= divergence
            and bool(torch.isfinite(xy).all()) and float(xy.abs().max()) <= divergence
        )

    loss = surf.function(point)
    if not sane(point.detach(), loss.detach()):
        raise DeepfieldError(f"{surf.name}: f at the start {origin} is {float(loss.detach()):g}, not finite "
                             f"or beyond divergence={divergence:g}")
    points = [point.detach().clone()]
    losses = [float(loss.detach())]
    diverged_at = None
    for k in range(1, steps + 1):
        if newton:
            try:
                optimizer.step(closure)
            except DeepfieldError:  # Newton refuses a non-finite loss, gradient or Hessian
                diverged_at = k
                break
            loss = surf.function(point)
        else:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss = surf.function(point)
        if not sane(point.detach(), loss.detach()):
            diverged_at = k
            break
        points.append(point.detach().clone())
        losses.append(float(loss.detach()))

    xy = torch.stack(points)
    values = np.asarray(losses, dtype=np.float64)
    return Path2D(
        optimizer=label,
        learning_rate=float(optimizer.learning_rate),
        points=xy.numpy(),
        losses=values,
        steps_to_tolerance=_steps_to_tolerance(surf, xy, values, tolerance),
        final_value=float(values[-1]),
        diverged=diverged_at is not None,
        diverged_at=diverged_at,
    )


def _steps_to_tolerance(surf: Surface, xy: torch.Tensor, losses: np.ndarray, tolerance: float) -> int | None:
    if surf.minima:
        minima = torch.tensor(surf.minima, dtype=torch.float64)
        nearest = torch.cdist(xy, minima).argmin(dim=1).numpy()
        reached = np.abs(losses - np.asarray(surf.minimum_values)[nearest]) <= tolerance
    else:
        at = xy.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(surf.function(at).sum(), at, allow_unused=True)
        norms = np.zeros(len(xy)) if grad is None else grad.norm(dim=1).numpy()
        reached = norms < tolerance
    hits = np.flatnonzero(reached)
    return int(hits[0]) if len(hits) else None
