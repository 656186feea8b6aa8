"""The transform contract, the registry by name, and ``Compose``.

A transform is called on one image ``(C, H, W)`` or a batch ``(N, C, H, W)``, a
floating-point tensor on any device, and returns the same shape convention
(geometric transforms may change ``H, W``), device and dtype. Subclasses see only
batches: they implement ``_apply(x: (N, C, H, W)) -> (N, C, H', W')`` and
``_arguments()`` (their constructor arguments, JSON/YAML-ready), and register
under a name with ``class Mine(Transform, name="mine")``.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch

from deepfield.errors import DeepfieldError
from deepfield.registry import Registry


class Transform:
    """Base class: ``t(x)`` for ``x`` of shape (C, H, W) or (N, C, H, W)."""

    name: ClassVar[str]
    registry: ClassVar[Registry[type[Transform]]] = Registry("transform")
    planar: ClassVar[bool] = False
    """True when the transform needs both pixel axes: spectra (C, L) seen as one-row images are refused."""
    moves_pixels: ClassVar[bool] = False
    """True when the transform only moves whole pixels, every channel alike, and fills with 0 (no value is made
    or resampled): a target image or label map can move with its input (``BatchAugment(..., targets=True)``)."""

    def __init_subclass__(cls, name: str | None = None, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        if name is not None:
            cls.name = name
            Transform.registry.add(name, cls)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self._apply(self._as_batch(x))
        return out if x.ndim == 4 else out[0]

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _arguments(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this transform (plain Python values)."""
        return {}

    def get_config(self) -> dict[str, Any]:
        """``{"name": registry name, **arguments}``; :func:`from_config` reads it back."""
        return {"name": self.name, **self._arguments()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._arguments().items())
        return f"{type(self).__name__}({args})"

    @classmethod
    def _error(cls, message: str) -> DeepfieldError:
        """A one-line error that starts with the transform's registry name."""
        return DeepfieldError(f"{cls.name}: {message}")

    @classmethod
    def _as_batch(cls, x: object) -> torch.Tensor:
        """``x`` checked and viewed as (N, C, H, W): a (C, H, W) image gets N = 1."""
        if not isinstance(x, torch.Tensor):
            raise cls._error(f"expected a torch.Tensor image, got {type(x).__name__}")
        if x.ndim not in (3, 4):
            raise cls._error(f"expected shape (C, H, W) or (N, C, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise cls._error(f"expected a floating-point tensor, got {x.dtype}")
        return x if x.ndim == 4 else x.unsqueeze(0)


class RandomTransform(Transform):
    """A transform that draws random numbers, independently for each sample of a batch.

    Draws come from ``generator`` when given (on the generator's own device, then
    moved to the image's), else from the global RNG on the image's device. The
    generator is not part of the config: a run records its seed instead. In
    DataLoader workers a shared generator is copied into every worker, which then
    repeat each other; leave it ``None`` there (PyTorch seeds each worker's global
    RNG differently) or reseed it in ``worker_init_fn``.
    """

    def __init__(self, generator: torch.Generator | None = None):
        self.generator = generator

    def _draw_device(self, x: torch.Tensor) -> torch.device:
        return x.device if self.generator is None else self.generator.device

    def _randint(self, low: int, high: int, n: int, x: torch.Tensor) -> torch.Tensor:
        """(n,) int64 uniform in ``low..high - 1``, on ``x``'s device."""
        draw = torch.randint(low, high, (n,), generator=self.generator, device=self._draw_device(x))
        return draw.to(x.device)

    def _randn(self, x: torch.Tensor) -> torch.Tensor:
        """Unit normal noise of ``x``'s shape, dtype and device."""
        draw = torch.randn(x.shape, generator=self.generator, device=self._draw_device(x), dtype=x.dtype)
        return draw.to(x.device)


class Compose(Transform, name="compose"):
    """Applies ``transforms`` in order; each item is a transform or its config dict."""

    def __init__(self, transforms: Sequence[Transform | Mapping[str, Any]]):
        if isinstance(transforms, (str, Mapping)) or not isinstance(transforms, Sequence):
            raise self._error(f"expected a list of transforms, got {type(transforms).__name__}")
        self.transforms = [t if isinstance(t, Transform) else from_config(t) for t in transforms]

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        for transform in self.transforms:
            x = transform(x)
        return x

    def _arguments(self) -> dict[str, Any]:
        return {"transforms": [t.get_config() for t in self.transforms]}

    def __repr__(self) -> str:
        lines = "".join(f"    {t!r},\n" for t in self.transforms)
        return f"Compose(\n{lines})" if lines else "Compose()"


def get(name: str, **kwargs: Any) -> Transform:
    """A transform by registry name, e.g. ``get("asinh", softening=0.1)``."""
    cls = Transform.registry.lookup(name)
    parameters = inspect.signature(cls).parameters
    unexpected = sorted(set(kwargs) - set(parameters))
    if unexpected:
        options = [p for p in parameters if p != "generator"]  # the generator is given in Python, not in a config
        raise cls._error(f"unexpected argument {unexpected[0]!r}; expected: {', '.join(options) or 'none'}")
    missing = [p for p, spec in parameters.items() if spec.default is inspect.Parameter.empty and p not in kwargs]
    if missing:
        raise cls._error(f"missing argument {missing[0]!r}")
    return cls(**kwargs)


def from_config(config: Mapping[str, Any]) -> Transform:
    """The transform that :meth:`Transform.get_config` described."""
    if not isinstance(config, Mapping) or "name" not in config:
        raise DeepfieldError(f"a transform config is a mapping with a 'name' key, got {config!r}")
    arguments = dict(config)
    return get(arguments.pop("name"), **arguments)


def names() -> tuple[str, ...]:
    """The registered transform names, sorted."""
    return Transform.registry.names()


def random_names() -> tuple[str, ...]:
    """The names of the random transforms (the augmentations), sorted."""
    return tuple(sorted(name for name, cls in Transform.registry.items() if issubclass(cls, RandomTransform)))
