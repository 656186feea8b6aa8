"""The Sequential container: layers applied in order, named the Keras way.

It is an ``nn.Sequential``: its ``forward`` is PyTorch's, its ``state_dict`` keys
are the layer names (``conv2d.weight``, ``dense_1.bias``), and it works with
anything that takes an ``nn.Module`` (captum, torch.compile, DDP, ONNX).
The Keras training face (``compile``/``fit``/...) is added in ``deepfield.training``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.models import symbolic
from deepfield.models.base import Layer, ensure_built, layer_from_config, snake_case
from deepfield.models.summary import summarize


class Sequential(nn.Sequential):
    """A linear stack of layers.

    ``input_shape`` is the shape of one sample without the batch axis, e.g.
    ``(1, 64, 64)`` for one-band 64×64 images; it may instead be given to the first
    layer (Keras style) or learned from the first batch the model sees.
    """

    def __init__(self, layers: list[nn.Module] | None = None, name: str = "sequential",
                 input_shape: tuple[int, ...] | None = None):
        super().__init__()
        self.name = name
        self.input_shape: tuple[int, ...] | None = tuple(input_shape) if input_shape else None
        for layer in layers or []:
            self.add(layer)

    def add(self, layer: nn.Module) -> Sequential:
        """Append ``layer``; a deepfield layer without a name gets a Keras-style one."""
        if not isinstance(layer, nn.Module):
            raise DeepfieldError(f"Sequential.add expects a layer (torch.nn.Module), got {type(layer).__name__}")
        name = getattr(layer, "name", None)
        if not name:
            base = snake_case(type(layer).__name__)
            name, i = base, 0
            while name in self._modules:
                i += 1
                name = f"{base}_{i}"
            if isinstance(layer, Layer):
                layer.name = name
        elif name in self._modules:
            raise DeepfieldError(f"Sequential {self.name!r} already has a layer named {name!r}")
        if len(self) == 0 and self.input_shape is None and getattr(layer, "input_shape", None):
            self.input_shape = tuple(layer.input_shape)
        self.add_module(name, layer)
        return self

    @property
    def built(self) -> bool:
        return all(m.built for m in self.modules() if isinstance(m, Layer))

    def build(self, input_shape: tuple[int, ...] | None = None) -> Sequential:
        """Create every layer's parameters for samples of ``input_shape`` (no batch axis)."""
        shape = tuple(input_shape) if input_shape is not None else self.input_shape
        if shape is None:
            raise DeepfieldError(
                f"model {self.name!r} does not know its input shape: pass input_shape= to "
                "Sequential or to its first layer, or call build((C, H, W))"
            )
        self.input_shape = shape = arguments.shape(f"model {self.name!r} input_shape", shape)
        device = next((p.device for p in self.parameters()), torch.device("cpu"))
        ensure_built(self, torch.zeros((1, *shape), device=device))
        return self

    def __call__(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        if type(x) is not torch.Tensor and symbolic.is_symbolic(x):  # a layer of a functional model
            return symbolic.symbolic_call(self, x, args, kwargs)
        return super().__call__(x, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_shape is None:
            self.input_shape = tuple(x.shape[1:])
        for layer in self._modules.values():
            x = layer(x)
        return x

    # -- architecture as JSON -------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """JSON-ready architecture: name, input shape and each layer's config."""
        layers = []
        for name, layer in self._modules.items():
            if not isinstance(layer, Layer):
                raise DeepfieldError(
                    f"layer {name!r} is a plain {type(layer).__name__}; only deepfield layers "
                    "can be saved as architecture JSON (save the weights alone instead)"
                )
            layers.append({"class_name": type(layer).__name__, "config": layer.get_config()})
        return {"name": self.name, "input_shape": list(self.input_shape) if self.input_shape else None,
                "layers": layers}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Sequential:
        layers = config.get("layers")
        if not isinstance(layers, list):
            raise DeepfieldError("model config has no 'layers' list")
        model = cls(name=config.get("name", "sequential"), input_shape=config.get("input_shape"))
        for spec in layers:
            model.add(layer_from_config(spec))
        return model

    def summary(self, input_shape: tuple[int, ...] | None = None, print_fn: Any = None) -> None:
        """Print the Keras-style table (see :func:`deepfield.models.summary.summarize`)."""
        summarize(self, input_shape).print(print_fn)
