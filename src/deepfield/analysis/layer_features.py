"""A trained network's inner layer as features for another learner (transfer learning).

The output of one named layer, flattened to ``(N, F)``, is a representation of each
object that any classical learner (random forest, k-NN, a linear model) can take:

>>> layer_names(model)                    # what can be picked, in order
['conv2d', 'activation', ..., 'flatten', 'dense', 'dropout_4', 'dense_1']
>>> default_layer(model)                  # the one before the head
'dropout_4'
>>> f = layer_features(model, x)          # (N, 64): the course CNN's dense representation
>>> f = layer_features(model, x, layer="flatten")
>>> maps = layer_output(model, x, "conv2d")  # (N, 32, 64, 64): the layer's output as it is

Which names a model offers (:func:`layer_names`; ``deepfield summary RUN --layers`` prints them):

* a deepfield :class:`~deepfield.models.sequential.Sequential` or
  :class:`~deepfield.models.presets.base.PresetModel`: its layers, in order, by the
  names ``model.summary()`` shows (``conv2d``, ``dense_1``, ``stage2_block1``...), each
  followed by the deepfield layers inside it by dotted name (``stage2_block1.conv1``,
  ``stage2_block1.bn1``, ``stage2_block1.conv2``, ``stage2_block1.projection.conv2d``);
  a layer's own activation function is part of that layer, not a layer;
* any other ``nn.Module``: every submodule by its dotted path (``layer4``,
  ``layer4.1.conv2``, ``fc``), in registration order;
* in both, never a ``ModuleList`` or ``ModuleDict`` (they hold layers but are never called
  themselves) nor what a :class:`~deepfield.models.blocks.TimeDistributed` wraps (it sees
  the views or time steps folded into the batch; take the TimeDistributed itself).

The forward pass stops as soon as the chosen layer has given its output, so the head
is not computed and a layer called twice gives its first output. A two-input preset
(Pasquet's with ``use_ebv=True``) is fed the images alone: layers before E(B−V) joins
(up to ``flatten``) work; for later ones the model itself says it needs E(B−V).
"""
from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from deepfield.errors import DeepfieldError
from deepfield.models.base import Layer
from deepfield.models.blocks import TimeDistributed
from deepfield.models.core import Dense
from deepfield.models.presets.base import PresetModel
from deepfield.models.sequential import Sequential
from deepfield.training.engine import Engine

__all__ = ["default_layer", "layer_features", "layer_names", "layer_output", "unknown_layer"]


SHOWN_INSIDE = 12
"""An unknown-layer error lists every name of a model up to this many; beyond, its top-level ones."""


def _named_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The pickable layers of ``model`` by name, in order (see the module doc)."""
    deepfield = isinstance(model, (Sequential, PresetModel))
    wrapped = tuple(f"{name}." for name, module in model.named_modules() if isinstance(module, TimeDistributed))
    return {name: module for name, module in model.named_modules()
            if name and not isinstance(module, (nn.ModuleList, nn.ModuleDict)) and not name.startswith(wrapped)
            and (not deepfield or "." not in name or isinstance(module, (Layer, nn.Sequential)))}


def layer_names(model: nn.Module) -> list[str]:
    """The names of the layers whose output :func:`layer_features` can return, in order
    (a block before the layers inside it)."""
    return list(_named_layers(model))


def unknown_layer(model: nn.Module, name: str, names: Sequence[str]) -> DeepfieldError:
    """The one-line error for a layer name ``model`` lacks: the nearest names, and its names.

    A model of at most :data:`SHOWN_INSIDE` names lists them all; a larger one its top-level
    layers, the count of those inside them, and the command that lists every one.
    """
    close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.75)
    guess = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    top = [n for n in names if "." not in n]
    if len(names) <= SHOWN_INSIDE or len(top) == len(names):
        listed = ", ".join(names)
    else:
        inside = [n for n in names if "." in n]
        listed = (f"{', '.join(top)} and {len(inside)} inside them by dotted name ({inside[0]}, ...); "
                  "`deepfield summary RUN --layers` lists them all")
    return DeepfieldError(f"model {_label(model)} has no layer {name!r}{guess}; its layers: {listed}")


def default_layer(model: nn.Module) -> str:
    """The layer before the head: the one whose output is the input of the last Dense/Linear.

    The head is the last :class:`~deepfield.models.core.Dense` (or ``nn.Linear``) and
    whatever follows it (an Activation, a Dropout). Course CNN: ``dropout_4`` (the 64-d dense
    representation); ResNet: ``global_average_pooling2d``; Pasquet: ``dense2``. For a
    nested module the answer is the outermost block that ends just before the head
    (``layer4`` rather than ``layer4.1.bn2``).
    """
    layers = _named_layers(model)
    names = list(layers)
    heads = [i for i, name in enumerate(names) if isinstance(layers[name], (Dense, nn.Linear))]
    if not heads:
        raise DeepfieldError(f"model {_label(model)} has no Dense/Linear head to take the layer before; "
                             f"choose a layer: {', '.join(names)}")
    head = names[heads[-1]]
    for name in reversed(names[:heads[-1]]):
        if head.startswith(name + "."):  # a block that contains the head
            continue
        parts = name.split(".")
        outermost = (".".join(parts[:k]) for k in range(1, len(parts) + 1))
        return next(p for p in outermost if p in layers and not head.startswith(p + "."))
    raise DeepfieldError(f"model {_label(model)}: its head {head!r} is its first layer, so no layer comes "
                         f"before it; choose a layer: {', '.join(names)}")


def layer_features(model: nn.Module, x: Any, layer: str | None = None, batch_size: int = 256,
                   device: str | torch.device | None = None) -> np.ndarray:
    """The output of ``layer`` for every sample of ``x``, flattened: ``(N, F)`` float32.

    As :func:`layer_output`, with ``layer=None`` meaning :func:`default_layer`. ``F`` is
    the product of the layer's output shape per sample, in channels-first order (a
    ``(C, H, W)`` map gives ``C·H·W``).
    """
    output = layer_output(model, x, default_layer(model) if layer is None else layer, batch_size, device)
    return output.reshape(len(output), -1)


def layer_output(model: nn.Module, x: Any, layer: str, batch_size: int = 256,
                 device: str | torch.device | None = None) -> np.ndarray:
    """The output of ``layer`` for every sample of ``x``, as the layer gives it: ``(N, *shape)`` float32.

    Args:
        model: any ``nn.Module`` taking one input batch.
        x: ``(N, ...)`` inputs as :meth:`Engine.predict <deepfield.training.Engine.predict>`
            takes them (arrays, tensors, a Dataset or a DataLoader).
        layer: a name from :func:`layer_names`.
        batch_size: samples per forward pass.
        device: as for :class:`~deepfield.training.Engine` (``None``: the best present);
            the model is moved there, as ``predict`` does.

    ``shape`` is the layer's own output shape per sample, e.g. ``(C, H, W)`` for a
    convolution. Runs in eval mode (dropout off, batch-norm statistics frozen) without
    gradients; afterwards every submodule has its former train/eval mode back and the
    hook is removed, also when an error is raised.
    """
    layers = _named_layers(model)
    if layer not in layers:
        raise unknown_layer(model, layer, list(layers))
    modes = {module: module.training for module in model.modules()}
    handle = layers[layer].register_forward_hook(_stop_with_output)
    try:
        return Engine(_UpTo(model, layer), device=device).predict(x, batch_size=batch_size, verbose=0)
    finally:
        handle.remove()
        for module, training in modes.items():
            module.training = training


class _LayerOutput(Exception):
    """Carries the hooked layer's output out of the forward pass, which it ends."""

    def __init__(self, output: Any):
        super().__init__()
        self.output = output


def _stop_with_output(module: nn.Module, inputs: Any, output: Any) -> None:
    """The forward hook: hand the layer's output out and stop the forward pass."""
    raise _LayerOutput(output)


class _UpTo(nn.Module):
    """``model`` run until its hooked layer ``name``, returning that layer's output (as float32)."""

    def __init__(self, model: nn.Module, name: str):
        super().__init__()
        self.model = model
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            self.model(x)
        except _LayerOutput as stop:
            output = stop.output
        except DeepfieldError as exc:  # e.g. a second input the model needs before this layer
            raise DeepfieldError(f"layer {self.name!r} of model {_label(self.model)} cannot be reached from "
                                 f"the images alone ({exc}); choose an earlier layer") from None
        else:
            raise DeepfieldError(f"layer {self.name!r} of model {_label(self.model)} was not called in the "
                                 "forward pass; choose another layer")
        if not isinstance(output, torch.Tensor):
            raise DeepfieldError(f"layer {self.name!r} returns a {type(output).__name__}, not one tensor; "
                                 "choose another layer")
        return output.float()


def _label(model: nn.Module) -> str:
    return repr(getattr(model, "name", None) or type(model).__name__)
