"""Composite layers for the zoo's literature networks, usable in any Sequential.

=================  ======================================================  ================================
layer              shapes                                                  from
=================  ======================================================  ================================
PReLU              ``(N, C, ...) -> same``, one learned slope per channel  He et al. 2015 (ICCV)
Maxout             ``(N, F) -> (N, units)``                                Goodfellow et al. 2013 (ICML)
Inception          ``(N, C, H, W) -> (N, C', H, W)``                       Szegedy et al. 2015; Pasquet+19
ResidualBlock      ``(N, C, H, W) -> (N, filters, ceil(H/s), ceil(W/s))``  He et al. 2016 (CVPR)
ViewPoints         ``(N, C, H, W) -> (N, V, C, size, size)``               Dieleman, Willett & Dambre 2015
TimeDistributed    ``(N, V, *sample) -> (N, V, *out)``                     Keras
MergeViews         ``(N, V, *f) -> (N, V*F)`` or ``(N, F)``                Dieleman+15
=================  ======================================================  ================================

Each is a :class:`~deepfield.models.base.Layer`: its constructor arguments are its JSON
config, its parts are ordinary deepfield layers built lazily from the first input.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.models import initializers
from deepfield.models.base import Layer, layer_from_config
from deepfield.models.conv import Conv2D, check_rank
from deepfield.models.core import Dense
from deepfield.models.normalization import BatchNormalization
from deepfield.models.pooling import AveragePooling2D
from deepfield.models.sequential import Sequential


class PReLU(Layer):
    """Parametric ReLU, ``y = max(0, x) + alpha * min(0, x)``, one ``alpha`` per channel (axis 1).

    Keras's ``PReLU(shared_axes=...)`` over every axis but the channel axis, which is how
    He et al. (2015) and Pasquet et al. (2019) use it. ``alpha``: ``(C,)``, zeros at start
    (Keras's default, and Pasquet+19's), so the layer starts as a ReLU.
    """

    def __init__(self, alpha_initializer: str | initializers.Initializer | dict = "zeros",
                 name: str | None = None, input_shape: tuple[int, ...] | None = None):
        super().__init__(name=name, input_shape=input_shape)
        self.alpha_initializer = initializers.get(alpha_initializer)
        self.alpha: nn.Parameter | None = None

    def build(self, input_shape: tuple[int, ...]) -> None:
        channels = input_shape[0]
        self.alpha = nn.Parameter(torch.empty(channels))
        self.alpha_initializer(self.alpha, channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.view(-1, *([1] * (x.dim() - 2)))
        return torch.where(x >= 0, x, alpha * x)


class Maxout(Layer):
    """Maxout units (Goodfellow et al. 2013): ``y_j = max_k (x @ W_jk + b_jk)``, ``k < pieces``.

    ``(N, F) -> (N, units)``; one inner :class:`Dense` of ``units * pieces`` outputs
    (pieces innermost), so it has ``(F + 1) * units * pieces`` parameters.
    """

    def __init__(self, units: int, pieces: int = 2,
                 kernel_initializer: str | initializers.Initializer | dict = "glorot_uniform",
                 name: str | None = None, input_shape: tuple[int, ...] | None = None):
        super().__init__(name=name, input_shape=input_shape)
        self.units, self.pieces = arguments.integer("Maxout units", units), arguments.integer("Maxout pieces", pieces)
        self.dense = Dense(self.units * self.pieces, kernel_initializer=kernel_initializer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(x).unflatten(-1, (self.units, self.pieces)).amax(-1)


def _conv_prelu(filters: int, kernel_size: int) -> list[Layer]:
    """'same' convolution + PReLU, biases 0.1 and Glorot kernels as in Pasquet+19's code."""
    return [Conv2D(filters, kernel_size, padding="same", bias_initializer=initializers.Constant(0.1)), PReLU()]


class Inception(Layer):
    """Parallel convolutions of several sizes, concatenated on channels (Szegedy et al. 2015).

    The variant of Pasquet et al. (2019, their Fig. 2 and public code), every convolution
    'same' and followed by a :class:`PReLU`:

    * a 1×1 convolution of ``filters``;
    * for each ``k`` in ``kernel_sizes``: 1×1 of ``bottleneck`` → k×k of ``filters``;
    * 1×1 of ``bottleneck`` → 2×2 average pooling, stride 1, 'same'.

    ``(N, C, H, W) -> (N, filters * (1 + len(kernel_sizes)) + bottleneck, H, W)``.
    """

    def __init__(self, filters: int, bottleneck: int, kernel_sizes: tuple[int, ...] = (3, 5),
                 name: str | None = None, input_shape: tuple[int, ...] | None = None):
        super().__init__(name=name, input_shape=input_shape)
        self.filters = arguments.integer("Inception filters", filters)
        self.bottleneck = arguments.integer("Inception bottleneck", bottleneck)
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        branches = {"conv1x1": _conv_prelu(self.filters, 1)}
        for k in self.kernel_sizes:
            branches[f"conv{k}x{k}"] = _conv_prelu(self.bottleneck, 1) + _conv_prelu(self.filters, k)
        branches["pool"] = _conv_prelu(self.bottleneck, 1) + [AveragePooling2D(2, strides=1, padding="same")]
        self.branches = nn.ModuleDict({key: Sequential(layers, name=key) for key, layers in branches.items()})

    def build(self, input_shape: tuple[int, ...]) -> None:
        check_rank(self, input_shape, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches.values()], dim=1)


class ResidualBlock(Layer):
    """The basic residual block of He et al. (2016): two 3×3 convolutions and a skip.

    ``y = relu(BN(conv(relu(BN(conv_s(x))))) + shortcut(x))``, where ``conv_s`` has stride
    ``strides`` and ``shortcut`` is the identity, or a 1×1 convolution with stride ``strides``
    + BN when the stride or the channel count changes (the paper's option B). Convolutions
    are 'same', without bias (BN follows), He-normal initialised.

    ``(N, C, H, W) -> (N, filters, ceil(H / strides), ceil(W / strides))``.
    """

    def __init__(self, filters: int, strides: int = 1,
                 name: str | None = None, input_shape: tuple[int, ...] | None = None):
        super().__init__(name=name, input_shape=input_shape)
        self.filters, self.strides = int(filters), int(strides)
        self.conv1 = self._conv(3, self.strides)
        self.bn1 = BatchNormalization()
        self.conv2 = self._conv(3, 1)
        self.bn2 = BatchNormalization()
        self.projection: Sequential | None = None

    def _conv(self, kernel_size: int, strides: int) -> Conv2D:
        return Conv2D(self.filters, kernel_size, strides=strides, padding="same", use_bias=False,
                      kernel_initializer="he_normal")

    def build(self, input_shape: tuple[int, ...]) -> None:
        check_rank(self, input_shape, 2)
        if self.strides != 1 or input_shape[0] != self.filters:
            self.projection = Sequential([self._conv(1, self.strides), BatchNormalization()], name="projection")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.projection is None else self.projection(x)
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + shortcut)


class ViewPoints(Layer):
    """Cuts each stamp into rotated and flipped viewpoints (Dieleman, Willett & Dambre 2015, §5).

    ``(N, C, H, W) -> (N, V, C, size, size)``: the top-left ``size × size`` patch of each of
    the 8 dihedral transforms of the stamp (4 rotations by 90°, without and with a
    left-right flip), V = 8. With ``size > H/2`` each patch holds the stamp centre near its
    lower-right corner: these are the paper's overlapping corner views, each turned so
    that the centre sits in the same place. ``diagonal=True`` adds the same 8 views of the
    stamp rotated by 45° (bilinear, zero outside the stamp), V = 16: the paper's 16
    viewpoints (45×45 from 69×69).

    The views of a rotated or flipped square stamp are the same images in another order,
    so a network that pools over views symmetrically (:class:`MergeViews` 'mean' or 'max')
    is invariant to the 8 transforms exactly (to rounding for the 45° views).
    """

    def __init__(self, size: int, diagonal: bool = False,
                 name: str | None = None, input_shape: tuple[int, ...] | None = None):
        super().__init__(name=name, input_shape=input_shape)
        self.size, self.diagonal = arguments.integer("ViewPoints size", size), bool(diagonal)

    def build(self, input_shape: tuple[int, ...]) -> None:
        check_rank(self, input_shape, 2)
        height, width = input_shape[1:]
        if self.size > min(height, width):
            raise DeepfieldError(f"{self.label}: {self.size}×{self.size} views do not fit in {height}×{width} stamps")
        if self.diagonal and height != width:
            raise DeepfieldError(f"{self.label}: the 45° views need square stamps, got {height}×{width}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stamps = [x, _rotate45(x)] if self.diagonal else [x]
        views = [torch.rot90(image, k, dims=(-2, -1))[..., :self.size, :self.size]
                 for stamp in stamps for image in (stamp, stamp.flip(-1)) for k in range(4)]
        return torch.stack(views, dim=1)


def _rotate45(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, H)`` turned by 45° about the stamp centre; bilinear, zero outside."""
    c = math.sqrt(0.5)  # cos 45° and sin 45° as one float, so the grid keeps its 90° symmetry
    theta = x.new_tensor([[c, -c, 0.0], [c, c, 0.0]]).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class TimeDistributed(Layer):
    """Applies one layer, with one set of weights, to every slice along axis 1 (Keras's name).

    ``(N, V, *sample) -> (N, V, *layer_output)``: the V slices (time steps, viewpoints)
    are folded into the batch, so ``layer`` sees ``(N * V, *sample)``.
    """

    def __init__(self, layer: Layer, name: str | None = None, input_shape: tuple[int, ...] | None = None):
        super().__init__(name=name, input_shape=input_shape)
        if not isinstance(layer, Layer):
            raise DeepfieldError(f"TimeDistributed wraps a deepfield layer, got {type(layer).__name__}")
        self.layer = layer

    def build(self, input_shape: tuple[int, ...]) -> None:
        # the wrapped layer now, so its weights exist before any pass (a functional model's shape pass runs on
        # the meta device and must not be the one that creates them), as Bidirectional does
        self.layer.build_for(tuple(input_shape[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.flatten(0, 1)).unflatten(0, x.shape[:2])

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TimeDistributed:
        config = dict(config)
        config["layer"] = layer_from_config(config["layer"])
        return cls(**config)


class MergeViews(Layer):
    """Joins per-view features ``(N, V, *f)`` into one vector per sample.

    ``'concat'``: ``(N, V * F)`` in view order (Dieleman+15: the dense layers see which
    view a feature came from); ``'mean'`` or ``'max'``: ``(N, F)``, symmetric in the views.
    """

    MODES = ("concat", "mean", "max")

    def __init__(self, mode: str = "concat", name: str | None = None, input_shape: tuple[int, ...] | None = None):
        super().__init__(name=name, input_shape=input_shape)
        if mode not in self.MODES:
            raise DeepfieldError(f"MergeViews mode must be one of {', '.join(self.MODES)}; got {mode!r}")
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "concat":
            return x.flatten(1)
        pooled = x.mean(1) if self.mode == "mean" else x.amax(1)
        return pooled.flatten(1)
