"""What a trained convolution learned: its filters (kernels) and the feature maps they make.

>>> kernels = conv_filters(model)                     # (32, 1, 6, 6): the first convolution
>>> kernels = conv_filters(model, "conv2d_1")         # (64, 32, 5, 5)
>>> maps = feature_maps(model, x, "activation")       # (N, 32, 64, 64): after the first ReLU

Only the first layer's filters read directly as images (they act on the bands); deeper
ones act on feature maps, and the strongest-activating input patches
(:mod:`deepfield.analysis.explain.patches`) show better what they respond to.
Layer names are those of :func:`~deepfield.analysis.layer_features.layer_names`.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from deepfield.analysis.layer_features import _label, layer_names, layer_output, unknown_layer
from deepfield.errors import DeepfieldError
from deepfield.models.blocks import TimeDistributed
from deepfield.models.conv import _Conv

__all__ = ["conv_filters", "conv_layer_names", "feature_maps"]

_TORCH_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _convolution(module: nn.Module) -> nn.Module | None:
    """The convolution ``module`` is, or wraps in a TimeDistributed (Dieleman's views); else None."""
    if isinstance(module, TimeDistributed):
        module = module.layer
    return module if isinstance(module, (_Conv, *_TORCH_CONVS)) else None


def conv_layer_names(model: nn.Module) -> list[str]:
    """The names of ``model``'s convolution layers, in order (deepfield, Bayesian or torch ``nn.Conv*d``)."""
    return [name for name in layer_names(model) if _convolution(model.get_submodule(name)) is not None]


def conv_filters(model: nn.Module, layer: str | None = None) -> np.ndarray:
    """The kernel of the convolution ``layer``: ``(filters, in_channels, *kernel_size)`` float32.

    Args:
        model: a network with convolutions: deepfield ``Conv1D/2D/3D``, their Bayesian
            variants (the posterior mean ``weight_mu``), torch ``nn.Conv1d/2d/3d``
            (``in_channels`` per group), each possibly inside a ``TimeDistributed``.
        layer: a name from :func:`conv_layer_names` (``stage2_block1.conv2`` inside a
            block); ``None``: the first convolution, whose filters act on the bands.

    The weights are in the input's units per output unit; a copy, on the CPU.
    """
    convs = conv_layer_names(model)
    if not convs:
        raise DeepfieldError(f"model {_label(model)} has no convolution layer")
    name = convs[0] if layer is None else layer
    if name not in convs:
        names = layer_names(model)
        if name not in names:
            raise unknown_layer(model, name, names)
        inside = [conv for conv in convs if conv.startswith(f"{name}.")]
        kind = type(model.get_submodule(name)).__name__
        what = f"is a {kind}; its convolutions" if inside else f"is a {kind}, not a convolution; its convolutions"
        raise DeepfieldError(f"layer {name!r} of model {_label(model)} {what}: {', '.join(inside or convs)}")
    conv = _convolution(model.get_submodule(name))
    weight = getattr(conv, "weight_mu", None)
    weight = conv.weight if weight is None else weight
    if weight is None:
        raise DeepfieldError(f"layer {name!r} of model {_label(model)} is not built yet; build the model first")
    return weight.detach().to("cpu", torch.float32).numpy().copy()


def feature_maps(model: nn.Module, x: Any, layer: str, batch_size: int = 256,
                 device: str | torch.device | None = None) -> np.ndarray:
    """The maps ``layer`` makes from each input of ``x``: ``(N, C, *spatial)`` float32, e.g. ``(N, C, H, W)``.

    Args:
        x: ``(N, C, H, W)`` stamps (or ``(N, C, L)`` spectra), as
            :func:`~deepfield.analysis.layer_features.layer_output` takes them.
        layer: any layer with spatial output (a convolution, an activation or pooling
            after it, a residual block or a layer inside one by dotted name); a
            ``TimeDistributed`` layer gives ``(N, V, C, H, W)``, a map per view.
        batch_size, device: as for :func:`~deepfield.analysis.layer_features.layer_output`.

    Values are the layer's outputs in eval mode (after its activation when it has one).
    """
    maps = layer_output(model, x, layer, batch_size, device)
    if maps.ndim < 3:
        raise DeepfieldError(f"layer {layer!r} of model {_label(model)} gives {maps.shape[1:]} vectors, "
                             "not feature maps; choose a convolution, pooling or activation before the flatten")
    return maps
