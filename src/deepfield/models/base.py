"""The Keras-style layer: a ``torch.nn.Module`` that builds itself from its first input.

A layer subclass:

* takes Keras argument names in ``__init__`` and stores them (the constructor
  arguments are recorded automatically and become the layer's JSON config);
* creates its parameters in ``build(input_shape)``, where ``input_shape`` is the
  shape of one sample, without the batch axis: ``(C, H, W)`` for images,
  ``(features,)`` for tables;
* computes in ``forward(x)`` as any ``nn.Module``.

The first call builds the layer on the input's device; after that a call costs
one boolean test more than the bare ``nn.Module`` call.
"""
from __future__ import annotations

import copy
import functools
import inspect
import re
from typing import Any, ClassVar

import torch
from torch import nn

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.models import symbolic
from deepfield.registry import Registry


class Layer(nn.Module):
    """Base of every deepfield layer. Subclasses are registered by class name."""

    registry: ClassVar[Registry[type[Layer]]] = Registry("layer")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):  # private bases (_Conv, _Pooling) are not layers users name
            Layer.registry.add(cls.__name__, cls)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self: Layer, *args: Any, **kw: Any) -> None:
            # Record the outermost constructor's arguments: they are the config.
            if not hasattr(self, "_config"):
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                config = dict(bound.arguments)
                config.pop("self")
                config.update(config.pop("kwargs", {}))
                object.__setattr__(self, "_config", config)
            init(self, *args, **kw)

        cls.__init__ = recording_init  # type: ignore[method-assign]

    def __init__(self, name: str | None = None, input_shape: tuple[int, ...] | None = None):
        super().__init__()
        self.name = name
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.built = False

    # -- building -----------------------------------------------------------------
    def build(self, input_shape: tuple[int, ...]) -> None:
        """Create parameters for samples of shape ``input_shape`` (no batch axis)."""

    def build_for(self, input_shape: tuple[int, ...] | list[tuple[int, ...]], device: torch.device | None = None,
                  ) -> None:
        """Build once for ``input_shape`` (a list of shapes for a layer taking several tensors, such as
        the merging layers); a no-op when already built."""
        if self.built:
            return
        self.build(_int_shapes(input_shape))
        if device is not None:
            self.to(device)
        self.built = True

    def __call__(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        # One test on the path of a built layer called on a tensor, as before functional models existed.
        if not self.built or type(x) is not _TENSOR:
            if symbolic.is_symbolic(x):  # building a functional model: record the call, return its outputs
                return symbolic.symbolic_call(self, x, args, kwargs)
            if not self.built:
                first = x[0] if isinstance(x, (list, tuple)) else x
                self.build_for(symbolic.sample_shapes(x), first.device)
        return super().__call__(x, *args, **kwargs)

    @property
    def label(self) -> str:
        """``"Conv2D 'conv2d'"``: class and name (Keras's default name when unnamed), for messages."""
        return f"{type(self).__name__} {(self.name or snake_case(type(self).__name__))!r}"

    # -- config -------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, JSON-ready (the layer's current name included)."""
        config = dict(self._config)
        config["name"] = self.name
        if self.input_shape is not None:
            config["input_shape"] = list(self.input_shape)
        return {k: _jsonable(v) for k, v in config.items()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        return cls(**config)

    def extra_repr(self) -> str:
        shown = {k: v for k, v in self._config.items() if k not in ("name", "input_shape")}
        return ", ".join(f"{k}={v!r}" for k, v in shown.items())


_TENSOR = torch.Tensor


def _int_shapes(shape: Any) -> Any:
    """A shape as a tuple of ints, or a list of shapes as a list of such tuples."""
    if shape and isinstance(shape[0], (list, tuple)):
        return [_int_shapes(s) for s in shape]
    return tuple(int(s) for s in shape)


def snake_case(class_name: str) -> str:
    """Keras's default layer name: ``Conv2D -> conv2d``, ``MaxPooling2D -> max_pooling2d``."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if hasattr(value, "get_config"):
        return {"class_name": type(value).__name__, "config": value.get_config()}
    return value


def layer_from_config(spec: dict[str, Any]) -> Layer:
    """A layer from ``{"class_name": ..., "config": {...}}`` (the model.json form)."""
    name = spec.get("class_name")
    cls = Layer.registry.lookup(name)
    try:
        return cls.from_config(dict(spec.get("config", {})))
    except TypeError as exc:
        raise DeepfieldError(f"layer {name}: bad config ({exc})") from None


def as_tuple(value: int | tuple[int, ...] | list[int], rank: int, what: str) -> tuple[int, ...]:
    """``3 -> (3, 3)`` for rank 2; a sequence must have ``rank`` entries, each an integer."""
    values = list(value) if isinstance(value, (list, tuple)) else [value] * rank
    if len(values) != rank:
        raise DeepfieldError(f"{what} must be an int or {rank} ints, got {value}")
    return tuple(arguments.integer(what, v, minimum=-arguments.MAX_ELEMENTS) for v in values)  # signs: the caller


def ensure_built(module: nn.Module, example: torch.Tensor) -> None:
    """Build every unbuilt deepfield layer inside ``module`` by one dry forward pass.

    ``example``: a batch ``(N, ...)``; only its first sample is used. Runs in eval
    mode without gradients and restores the module's training flag. Call it before
    handing ``module.parameters()`` to an optimiser.
    """
    if all(m.built for m in module.modules() if isinstance(m, Layer)):
        return
    check_size(module, example)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            module(example[:1])
    finally:
        module.train(was_training)


def check_size(module: nn.Module, example: torch.Tensor) -> None:
    """Refuse, before anything is allocated, a network that would hold more than
    :data:`~deepfield.arguments.MAX_ELEMENTS` parameters or compute more numbers in one layer's
    output for one sample (``filters: 1e9`` in a model.json, a Dense of a billion units).

    The dry pass runs on a copy on PyTorch's ``meta`` device: shapes only, no memory. A module
    that cannot run there (an operation without a meta kernel) is left to the real pass.
    """
    outputs: dict[str, int] = {}

    def record(name: str) -> Any:
        def hook(_: nn.Module, __: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                outputs[name] = max(outputs.get(name, 0), output.numel())
        return hook

    try:
        with torch.device("meta"):
            ghost = copy.deepcopy(module).to("meta")
            for name, sub in ghost.named_modules():
                sub._forward_pre_hooks.clear()  # the copy must not call the user's hooks
                sub._forward_hooks.clear()
                sub.register_forward_hook(record(name or "the model"))
            ghost.eval()
            with torch.no_grad():
                ghost(torch.empty(example[:1].shape, dtype=example.dtype))
    except Exception:  # no meta kernel, a wrapper whose hooks the copy lost (layer_features' _UpTo), or a
        return          # real mistake: the real pass reports it in its own words
    limit = arguments.MAX_ELEMENTS
    sizes = {name or "the model": sum(p.numel() for p in sub.parameters(recurse=False))
             for name, sub in ghost.named_modules()}
    total = sum(sizes.values())
    if total > limit:
        largest = max(sizes, key=sizes.__getitem__)
        raise DeepfieldError(f"the network would hold {total:,} parameters ({largest!r} alone {sizes[largest]:,}); "
                             f"deepfield builds at most {limit:,} (8 GiB in float32): is a layer's size wrong?")
    # the outermost layer named (not the activation inside it, nor the whole model)
    largest = max(outputs, key=lambda n: (outputs[n], -n.count("."), n != "the model"), default=None)
    if largest is not None and outputs[largest] > limit:
        raise DeepfieldError(f"layer {largest!r} would compute {outputs[largest]:,} numbers for one sample; "
                             f"deepfield allows at most {limit:,} (8 GiB in float32): is a layer's size wrong?")
