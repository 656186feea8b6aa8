"""Learning-rate schedules with Keras 3's names, arguments and values (``keras.optimizers.schedules``).

A schedule is given wherever a learning rate is, and the optimiser evaluates it at each
update, ``step`` counting the updates already made (0 at the first), as Keras does:

>>> from deepfield.training.optimizers import Adam
>>> opt = Adam(learning_rate=ExponentialDecay(1e-3, decay_steps=1000, decay_rate=0.5))
>>> opt.learning_rate                     # the rate of the next update: schedule(opt.iterations)
0.001

A schedule is stateless (the rate is a function of the step alone), so a resumed run continues
it exactly: the optimiser's state carries the step count. ``get_config`` gives the constructor's
arguments and :func:`get` rebuilds from ``{"class_name": "CosineDecay", "config": {...}}``, the
form Keras's ``serialize`` writes (its ``module`` and ``registered_name`` keys are ignored) and
the form a run config takes::

    training:
      optimizer: {name: adam, learning_rate: {class_name: CosineDecay, config: {initial_learning_rate: 1.0e-3,
                                                                          decay_steps: 1000}}}

The values are computed in Python floats (no tensor op per step); Keras computes them in
float32, so the two agree to float32 rounding (~1e-7 relative).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from deepfield.arguments import is_integer, is_number
from deepfield.errors import DeepfieldError
from deepfield.registry import Registry


class LearningRateSchedule:
    """Base class: ``schedule(step)`` is the learning rate of update ``step`` (from 0).

    Subclasses register under their class name (Keras's) and keep their constructor's
    arguments as attributes named like them, which ``get_config`` returns.
    """

    registry: ClassVar[Registry[type[LearningRateSchedule]]] = Registry("learning rate schedule", any_case=True)
    _arguments: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        LearningRateSchedule.registry.add(cls.__name__, cls)

    def __call__(self, step: int) -> float:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """The constructor's keyword arguments (JSON-ready, Keras's keys)."""
        return {name: getattr(self, name) for name in self._arguments}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LearningRateSchedule:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.get_config() == self.get_config()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def _check(self, ok: bool, what: str) -> None:
        if not ok:
            raise DeepfieldError(f"{type(self).__name__}: {what}")

    def _number(self, name: str, value: Any, *, positive: bool = False) -> float:
        """``value`` as a float (>= 0, or > 0 with ``positive``), else the error naming ``name``."""
        ok = is_number(value) and math.isfinite(value)
        ok = ok and (value > 0 if positive else value >= 0)
        self._check(ok, f"{name} must be a number {'>' if positive else '>='} 0, got {value!r}")
        return value


class _TimeDecay(LearningRateSchedule):
    """A rate decaying with ``step / decay_steps`` (floored with ``staircase``), named after its class by default."""

    _arguments = ("initial_learning_rate", "decay_steps", "decay_rate", "staircase", "name")

    def __init__(self, initial_learning_rate: float, decay_steps: int, decay_rate: float, staircase: bool = False,
                 name: str | None = None) -> None:
        self.initial_learning_rate = self._number("initial_learning_rate", initial_learning_rate)
        self.decay_steps = self._number("decay_steps", decay_steps, positive=True)
        self.decay_rate = self._number("decay_rate", decay_rate)
        self.staircase, self.name = bool(staircase), name or type(self).__name__

    def progress(self, step: int) -> float:
        """``step / decay_steps``, floored with ``staircase``."""
        p = step / self.decay_steps
        return math.floor(p) if self.staircase else p


class ExponentialDecay(_TimeDecay):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)`` (the exponent floored with ``staircase``)."""

    def __call__(self, step: int) -> float:
        return self.initial_learning_rate * self.decay_rate ** self.progress(step)


class InverseTimeDecay(_TimeDecay):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)`` (the ratio floored with ``staircase``)."""

    def __call__(self, step: int) -> float:
        return self.initial_learning_rate / (1.0 + self.decay_rate * self.progress(step))


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` while ``step <= boundaries[0]``, ``values[i]`` while ``boundaries[i-1] < step <= boundaries[i]``,
    ``values[-1]`` after the last boundary."""

    _arguments = ("boundaries", "values", "name")

    def __init__(self, boundaries: Sequence[int], values: Sequence[float], name: str = "PiecewiseConstant") -> None:
        self._check(isinstance(boundaries, Sequence) and isinstance(values, Sequence)
                    and len(boundaries) == len(values) - 1,
                    f"boundaries must be one shorter than values, got {boundaries!r} and {values!r}")
        self.boundaries = [self._number("boundaries", b) for b in boundaries]
        self.values = [self._number("values", v) for v in values]
        self._check(self.boundaries == sorted(self.boundaries), f"boundaries must increase, got {boundaries!r}")
        self.name = name

    def __call__(self, step: int) -> float:
        for boundary, value in zip(self.boundaries, self.values):
            if step <= boundary:
                return value
        return self.values[-1]


class PolynomialDecay(LearningRateSchedule):
    """From ``initial_learning_rate`` to ``end_learning_rate`` in ``decay_steps`` as ``(1 - step/decay_steps)**power``.

    Then constant; with ``cycle`` the decay restarts from a ``decay_steps`` stretched to the next
    multiple of it that is past ``step``.
    """

    _arguments = ("initial_learning_rate", "decay_steps", "end_learning_rate", "power", "cycle", "name")

    def __init__(self, initial_learning_rate: float, decay_steps: int, end_learning_rate: float = 0.0001,
                 power: float = 1.0, cycle: bool = False, name: str = "PolynomialDecay") -> None:
        self.initial_learning_rate = self._number("initial_learning_rate", initial_learning_rate)
        self.decay_steps = self._number("decay_steps", decay_steps, positive=True)
        self.end_learning_rate = self._number("end_learning_rate", end_learning_rate)
        self.power = self._number("power", power)
        self.cycle, self.name = bool(cycle), name

    def __call__(self, step: int) -> float:
        decay_steps = self.decay_steps
        if self.cycle:
            decay_steps = decay_steps * (1.0 if step == 0 else math.ceil(step / decay_steps))
        else:
            step = min(step, decay_steps)
        fraction = step / decay_steps
        span = self.initial_learning_rate - self.end_learning_rate
        return span * (1 - fraction) ** self.power + self.end_learning_rate


class CosineDecay(LearningRateSchedule):
    """Optional linear warm-up, then a half cosine from the rate reached down to ``alpha`` times it.

    Without ``warmup_target``: ``initial_learning_rate * ((1 - alpha) * c + alpha)`` with
    ``c = (1 + cos(pi * min(step, decay_steps) / decay_steps)) / 2`` (Loshchilov & Hutter 2017).
    With it: linear from ``initial_learning_rate`` to ``warmup_target`` over ``warmup_steps``
    updates, then the cosine from ``warmup_target`` over ``decay_steps`` more.
    """

    _arguments = ("initial_learning_rate", "decay_steps", "alpha", "name", "warmup_target", "warmup_steps")

    def __init__(self, initial_learning_rate: float, decay_steps: int, alpha: float = 0.0, name: str = "CosineDecay",
                 warmup_target: float | None = None, warmup_steps: int = 0) -> None:
        self.initial_learning_rate = self._number("initial_learning_rate", initial_learning_rate)
        self.decay_steps = self._number("decay_steps", decay_steps, positive=True)
        self.alpha = self._number("alpha", alpha)
        self.warmup_target = None if warmup_target is None else self._number("warmup_target", warmup_target)
        self._check(is_integer(warmup_steps, minimum=0), f"warmup_steps must be an integer >= 0, got {warmup_steps!r}")
        self.warmup_steps, self.name = warmup_steps, name

    def _cosine(self, step: float, peak: float) -> float:
        decayed = 0.5 * (1.0 + math.cos(math.pi * step / self.decay_steps))
        return peak * ((1 - self.alpha) * decayed + self.alpha)

    def __call__(self, step: int) -> float:
        if self.warmup_target is None:
            return self._cosine(min(step, self.decay_steps), self.initial_learning_rate)
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            start = self.initial_learning_rate
            return (self.warmup_target - start) * step / self.warmup_steps + start
        return self._cosine(step - self.warmup_steps, self.warmup_target)


class CosineDecayRestarts(LearningRateSchedule):
    """Cosine decay with warm restarts (SGDR, Loshchilov & Hutter 2017).

    The first period lasts ``first_decay_steps`` updates, each next one ``t_mul`` times longer
    and starting ``m_mul`` times lower; within a period the rate is
    ``initial_learning_rate * ((1 - alpha) * m_mul**i * (1 + cos(pi * f)) / 2 + alpha)``, ``f`` the
    fraction of the period done and ``i`` the number of restarts.
    """

    _arguments = ("initial_learning_rate", "first_decay_steps", "t_mul", "m_mul", "alpha", "name")

    def __init__(self, initial_learning_rate: float, first_decay_steps: int, t_mul: float = 2.0, m_mul: float = 1.0,
                 alpha: float = 0.0, name: str = "SGDRDecay") -> None:
        self.initial_learning_rate = self._number("initial_learning_rate", initial_learning_rate)
        self.first_decay_steps = self._number("first_decay_steps", first_decay_steps, positive=True)
        self.t_mul = self._number("t_mul", t_mul, positive=True)
        self.m_mul = self._number("m_mul", m_mul)
        self.alpha = self._number("alpha", alpha)
        self.name = name

    def __call__(self, step: int) -> float:
        fraction = step / self.first_decay_steps
        if self.t_mul == 1.0:
            restarts = math.floor(fraction)
            fraction -= restarts
        else:
            restarts = math.floor(math.log(1.0 - fraction * (1.0 - self.t_mul)) / math.log(self.t_mul))
            done = (1.0 - self.t_mul**restarts) / (1.0 - self.t_mul)
            fraction = (fraction - done) / self.t_mul**restarts
        cosine = 0.5 * self.m_mul**restarts * (1.0 + math.cos(math.pi * fraction))
        return self.initial_learning_rate * ((1 - self.alpha) * cosine + self.alpha)


def get(spec: LearningRateSchedule | Mapping[str, Any]) -> LearningRateSchedule:
    """A schedule from an instance (returned as is) or ``{"class_name": ..., "config": {...}}``."""
    if isinstance(spec, LearningRateSchedule):
        return spec
    if isinstance(spec, Mapping) and "class_name" in spec:
        return LearningRateSchedule.registry.from_config(spec)
    raise DeepfieldError(
        "a learning-rate schedule must be a schedule object or {'class_name': ..., 'config': {...}}; "
        f"got {spec!r}")


def serialize(schedule: LearningRateSchedule) -> dict[str, Any]:
    """``{"class_name": ..., "config": ...}``, JSON-ready, which :func:`get` (and Keras) read back."""
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


NAMES = LearningRateSchedule.registry.names()

__all__ = ["NAMES", "CosineDecay", "CosineDecayRestarts", "ExponentialDecay", "InverseTimeDecay",
           "LearningRateSchedule", "PiecewiseConstantDecay", "PolynomialDecay", "get", "serialize"]
