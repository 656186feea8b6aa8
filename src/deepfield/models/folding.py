"""Batch normalisation folded into the convolution before it, for inference (Ioffe & Szegedy 2015, sec. 3.1).

In inference a batch norm is an affine map per channel, ``y = gamma (z - mean) / sqrt(var + eps) + beta``;
after a convolution ``z = W * x + b`` with no activation, the pair is one convolution with
``W' = W s`` and ``b' = (b - mean) s + beta`` per output channel, ``s = gamma / sqrt(var + eps)``.
The U-Net preset has a batch norm after each of its 3×3 convolutions: folded, its inference skips
eighteen passes over its activations (about a tenth of its time on the CPU; ``bench_unet.py --profile``).

:func:`fold_batch_norm` returns a *copy* of the model that shares every weight it does not change: the
model the user holds, and its training, are untouched. Hand-written rather than ``torch.fx``'s
``fuse`` (``torch.fx.experimental.optimization``): that traces ``nn.Conv2d`` / ``nn.BatchNorm2d``
pairs only, while deepfield's functional models already know their graph (each layer's readers).
"""
from __future__ import annotations

import copy
from collections import Counter, OrderedDict

import torch
from torch import nn

from deepfield.models.conv import Conv1D, Conv2D, Conv3D
from deepfield.models.core import Activation
from deepfield.models.functional import Functional
from deepfield.models.normalization import BatchNormalization
from deepfield.models.sequential import Sequential

CONVOLUTIONS = (Conv1D, Conv2D, Conv3D, nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMS = (BatchNormalization, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """``model`` with every inference-mode batch norm that follows a linear convolution (its only reader)
    folded into that convolution: a shallow copy of the containers on the way, new weights for the folded
    convolutions, ``nn.Identity`` for the norms; ``model`` itself when nothing folds (or it is training).
    A ReLU that alone reads such a norm runs in place on the convolution's output (a fresh tensor no one
    else reads): one image-sized allocation fewer. The outputs equal ``model``'s to float rounding
    (~1e-6 relative). Run the copy in eval mode, without gradients, where the model already is (moving
    it would move the weights it shares); it is a snapshot: fold again after the weights change."""
    children = OrderedDict((name, fold_batch_norm(child) if child is not None else None)
                           for name, child in model._modules.items())
    follower = dict(_sole_readers(model, children))
    pairs = [(conv, norm) for conv, norm in follower.items() if _folds(children[conv], children[norm])]
    if not pairs and all(children[name] is child for name, child in model._modules.items()):
        return model
    for conv, norm in pairs:
        children[conv] = _folded(children[conv], children[norm])
        children[norm] = nn.Identity()
        relu = follower.get(norm)
        if relu is not None and _is_relu(children[relu]):
            children[conv] = nn.Sequential(children[conv], nn.ReLU(inplace=True))
            children[relu] = nn.Identity()
    folded = copy.copy(model)
    folded._modules = children
    return folded


def _sole_readers(model: nn.Module, children: dict[str, nn.Module | None]) -> list[tuple[str, str]]:
    """Names ``(a, b)`` of children where ``b`` reads ``a``'s output alone and nothing else reads it (in a
    functional model's graph, each called once; or consecutive layers of a sequence)."""
    if isinstance(model, Functional):
        steps, out_slots, _ = model._plan
        calls = Counter(name for name, *_ in steps)  # a layer called twice (shared weights) is left alone
        readers = Counter(slot for _, reads, *_ in steps for slot in (reads if isinstance(reads, list) else [reads]))
        writer = {writes[0]: name for name, _, writes, several, _ in steps if not several}
        return [(writer[reads], name) for name, reads, *_ in steps
                if not isinstance(reads, list) and reads in writer and readers[reads] == 1
                and reads not in out_slots and calls[name] == calls[writer[reads]] == 1]
    if isinstance(model, (nn.Sequential, Sequential)):
        names = list(children)
        return list(zip(names, names[1:]))
    return []


def _is_relu(module: nn.Module | None) -> bool:
    """A ReLU (deepfield's ``Activation("relu")`` or torch's) with no hooks."""
    relu = module.activation if isinstance(module, Activation) else module
    return isinstance(relu, nn.ReLU) and not (module._forward_hooks or module._forward_pre_hooks)


def _folds(conv: nn.Module | None, norm: nn.Module | None) -> bool:
    """A convolution with no activation and no hooks, then an inference-mode batch norm of its channels."""
    if not isinstance(conv, CONVOLUTIONS) or not isinstance(norm, NORMS) or norm.training:
        return False
    if any((m._forward_hooks, m._forward_pre_hooks) != ({}, {}) for m in (conv, norm)) or conv.weight is None:
        return False
    if isinstance(norm, BatchNormalization):
        ours_linear = not isinstance(conv, nn.modules.conv._ConvNd) and isinstance(conv.activation, nn.Identity)
        return ours_linear and norm._channel_axis == 1 and norm.moving_mean is not None
    return norm.track_running_stats and norm.running_mean is not None and (
        isinstance(conv, nn.modules.conv._ConvNd) or isinstance(conv.activation, nn.Identity))


def _folded(conv: nn.Module, norm: nn.Module) -> nn.Module:
    """A copy of ``conv`` whose weight and bias include ``norm`` (frozen: no gradients)."""
    if isinstance(norm, BatchNormalization):
        mean, var, gamma, beta, eps = norm.moving_mean, norm.moving_variance, norm.gamma, norm.beta, norm.epsilon
    else:
        mean, var, gamma, beta, eps = norm.running_mean, norm.running_var, norm.weight, norm.bias, norm.eps
    with torch.no_grad():
        weight = conv.weight
        scale = torch.rsqrt(var.double() + eps)
        if gamma is not None:
            scale = scale * gamma.double()
        bias = -mean.double() if conv.bias is None else conv.bias.double() - mean.double()
        bias = bias * scale + (0.0 if beta is None else beta.double())
        new_weight = torch.empty_like(weight).copy_(weight.double() * scale.view(-1, *(1,) * (weight.dim() - 1)))
        new_bias = bias.to(weight.dtype)
    folded = copy.copy(conv)
    folded._parameters = OrderedDict(conv._parameters)
    folded.weight = nn.Parameter(new_weight, requires_grad=False)
    folded.bias = nn.Parameter(new_bias, requires_grad=False)
    return folded
