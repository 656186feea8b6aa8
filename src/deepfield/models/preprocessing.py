"""Preprocessing and augmentation layers with Keras 3's names, arguments and geometry, channels first.

``Rescaling`` and ``Normalization`` act always (they are part of the model). The random layers
(``RandomFlip``, ``RandomRotation``, ``RandomRotation90``, ``RandomTranslation``, ``RandomZoom``) act only
while the model trains, as Keras's do: in ``evaluate``, ``predict`` and every ``model.eval()`` pass they
return their input unchanged. They take batches of images ``(N, C, H, W)`` and draw one transformation per
sample, in one batched operation (``grid_sample`` for the resampling ones, no loop over samples).

Randomness: with ``seed=None`` the draws come from torch's global generator (``torch.manual_seed`` fixes
them); with a ``seed``, from the layer's own generator seeded once. ``augment(x, generator)`` applies the
layer with draws from a given generator whatever the mode (what ``fit(augment=...)`` and the run config's
``training.augment`` use). The draws cannot equal Keras's (another generator); the geometry does: a
fixed factor (``factor=(0.1, 0.1)``) gives Keras's image to float rounding.

Geometry (Keras's): pixel centres at integer coordinates, rotations and zooms about the image centre
``((W - 1) / 2, (H - 1) / 2)``; ``fill_mode`` ``"reflect"`` (d c b a | a b c d | d c b a), ``"wrap"``
(a b c d | a b c d | a b c d), ``"constant"`` (``fill_value`` outside), ``"nearest"`` (a a | a b c d | d d);
``interpolation`` ``"bilinear"`` or ``"nearest"``.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.models.base import Layer

FILL_MODES = {"reflect": "reflection", "wrap": "border", "constant": "zeros", "nearest": "border"}
"""Keras's fill modes -> grid_sample's padding (``wrap`` pads the image circularly first)."""
INTERPOLATIONS = ("bilinear", "nearest")
EPSILON = 1e-7  # Keras's backend.epsilon(): the smallest standard deviation Normalization divides by


class Rescaling(Layer):
    """``y = x * scale + offset``, e.g. ``Rescaling(1 / 255)`` for 8-bit images; any shape. Always active."""

    def __init__(self, scale: float, offset: float = 0.0, name: str | None = None,
                 input_shape: tuple[int, ...] | None = None):
        super().__init__(name=name, input_shape=input_shape)
        if not (arguments.is_number(scale) and arguments.is_number(offset)):
            raise DeepfieldError(f"Rescaling scale and offset must be numbers, got {scale!r}, {offset!r} "
                                 "(per band: Normalization(mean=..., variance=...))")
        self.scale, self.offset = float(scale), float(offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.offset


class Normalization(Layer):
    """``y = (x - mean) / max(sqrt(variance), 1e-7)`` per feature along ``axis`` (``invert``: the inverse).

    ``axis`` is the axis (or tuple of axes) that keeps its own mean and variance, counted with the batch
    axis as 0 (negative counts from the end); the statistics are over every other axis. The default,
    ``axis=1``, is the channel axis of deepfield's channels-first data: one mean and variance per band of
    ``(N, C, H, W)`` images or ``(N, C, L)`` spectra, per feature of ``(N, F)`` tables. That is what Keras's
    own default ``axis=-1`` means for its channels-last images; for channels-last data pass ``axis=-1``.
    ``axis=None``: one scalar mean and variance.

    ``mean`` and ``variance`` are given (numbers or arrays broadcast to the kept axes) or learned by
    :meth:`adapt` (population mean and variance, as Keras). Buffers ``mean``, ``variance`` have the shape
    of the kept axes, Keras's weights' shape ((C,) by default; Keras's third weight, ``count``, is not
    kept). A Keras layer's ``axis=-1`` on channels-last images is ``axis=1`` here. Always active.
    """

    def __init__(self, axis: int | Sequence[int] | None = 1, mean: Any = None, variance: Any = None,
                 invert: bool = False, name: str | None = None, input_shape: tuple[int, ...] | None = None):
        super().__init__(name=name, input_shape=input_shape)
        if (mean is None) != (variance is None):
            raise DeepfieldError("Normalization: give both mean and variance, or neither (then call adapt)")
        self.axis = None if axis is None else tuple(axis) if isinstance(axis, (list, tuple)) else (int(axis),)
        if self.axis is not None and 0 in self.axis:
            raise DeepfieldError("Normalization axis 0 is the batch axis; the default 1 is the channel axis")
        self.invert = bool(invert)
        self._given = None if mean is None else (np.asarray(mean, np.float32), np.asarray(variance, np.float32))
        self.register_buffer("mean", None)
        self.register_buffer("variance", None)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        for key in ("mean", "variance"):  # arrays as lists, for model.json
            if config.get(key) is not None:
                config[key] = np.asarray(config[key], np.float64).tolist()
        return config

    def _kept(self, ndim: int) -> tuple[int, ...]:
        """The kept axes of an input of ``ndim`` dimensions (batch included), non-negative and sorted."""
        if self.axis is None:
            return ()
        kept = tuple(sorted(a + ndim if a < 0 else a for a in self.axis))
        if not all(1 <= a < ndim for a in kept):
            raise DeepfieldError(f"{self.label}: axis {self.axis} is not an axis of inputs with {ndim} dimensions")
        return kept

    def build(self, input_shape: tuple[int, ...]) -> None:
        kept = self._kept(len(input_shape) + 1)
        shape = tuple(input_shape[a - 1] for a in kept)
        mean, variance = self._given or (np.zeros(shape, np.float32), np.ones(shape, np.float32))
        try:
            self.register_buffer("mean", torch.from_numpy(np.broadcast_to(mean, shape).copy()))
            self.register_buffer("variance", torch.from_numpy(np.broadcast_to(variance, shape).copy()))
        except ValueError:
            raise DeepfieldError(f"{self.label}: mean and variance of shape {np.shape(mean)} do not fit the "
                                 f"kept axes {kept} of shape {shape}") from None

    def adapt(self, data: Any) -> Normalization:
        """Learn ``mean`` and ``variance`` from ``data``: an array or tensor ``(N, ...)``, or an iterable of such
        batches (a list, a generator, a DataLoader of ``(x, y)``: its ``x``); statistics in float64 over every
        axis but the kept ones. Returns self."""
        batches = [data] if isinstance(data, (np.ndarray, torch.Tensor)) else data
        if not isinstance(batches, Iterable):
            raise DeepfieldError(f"{self.label}: adapt takes an array, a tensor or an iterable of batches, "
                                 f"got {type(data).__name__}")
        count, total, squares = 0, 0.0, 0.0
        for batch in batches:
            if isinstance(batch, (tuple, list)):  # (inputs, targets) from a loader: the inputs, as Keras
                batch = batch[0]
            array = np.asarray(batch.detach().cpu() if isinstance(batch, torch.Tensor) else batch, np.float64)
            kept = self._kept(array.ndim)
            reduce = tuple(a for a in range(array.ndim) if a not in kept)
            count += math.prod(array.shape[a] for a in reduce)
            total = total + array.sum(axis=reduce)
            squares = squares + (array ** 2).sum(axis=reduce)
        if count == 0:
            raise DeepfieldError(f"{self.label}: adapt got no data")
        mean = np.asarray(total / count)
        variance = np.asarray(np.maximum(squares / count - mean ** 2, 0.0))
        if not self.built:
            self.build_for(array.shape[1:])
        if tuple(self.mean.shape) != mean.shape:
            raise DeepfieldError(f"{self.label}: built for statistics of shape {tuple(self.mean.shape)}, "
                                 f"the data give {mean.shape}")
        with torch.no_grad():
            self.mean.copy_(torch.from_numpy(mean))
            self.variance.copy_(torch.from_numpy(variance))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept = self._kept(x.dim())
        shape = [x.shape[a] if a in kept else 1 for a in range(x.dim())]
        mean, std = self.mean.reshape(shape), self.variance.sqrt().clamp(min=EPSILON).reshape(shape)
        return x * std + mean if self.invert else (x - mean) / std


# -- random augmentation ----------------------------------------------------------------


def _range(name: str, factor: float | Sequence[float]) -> tuple[float, float]:
    """Keras's factor: ``f`` means ``(-f, f)``, a pair ``(low, high)`` itself."""
    if arguments.is_number(factor):
        pair: tuple[Any, ...] = (-float(factor), float(factor))  # type: ignore[arg-type]
    else:
        pair = tuple(factor) if isinstance(factor, (list, tuple)) else ()
    if len(pair) != 2 or not all(map(arguments.is_number, pair)) or not math.isfinite(sum(pair)) or pair[0] > pair[1]:
        raise DeepfieldError(f"{name} must be a number or a (low, high) pair with low <= high, got {factor!r}")
    return float(pair[0]), float(pair[1])


class _RandomImageLayer(Layer):
    """A random augmentation: identity unless training; ``augment(x, generator)`` draws and applies."""

    planar = True  # needs both pixel axes (the training.augment check refuses it for spectra)
    moves_pixels = False  # moves whole pixels only, every channel alike (a target may move with its image)

    def __init__(self, seed: int | None, data_format: str | None, name: str | None,
                 input_shape: tuple[int, ...] | None):
        super().__init__(name=name, input_shape=input_shape)
        if data_format not in (None, "channels_first"):
            raise DeepfieldError(f"{type(self).__name__}: deepfield images are channels first (N, C, H, W); "
                                 f"data_format {data_format!r} is not taken")
        self.seed = None if seed is None else arguments.integer(f"{type(self).__name__} seed", seed, minimum=0)
        self._generators: dict[torch.device, torch.Generator] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        generator = None
        if self.seed is not None:
            generator = self._generators.get(x.device)
            if generator is None:
                generator = self._generators[x.device] = torch.Generator(x.device).manual_seed(self.seed)
        return self.augment(x, generator)

    def augment(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``x`` (N, C, H, W) transformed, one draw per sample from ``generator`` (None: torch's global one)."""
        if x.dim() != 4 or not x.is_floating_point():
            raise DeepfieldError(f"{self.label}: takes floating-point images (N, C, H, W), got "
                                 f"{tuple(x.shape)} {x.dtype}")
        return self._transform(x, generator)

    def _transform(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def _uniform(n: int, low: float, high: float, x: torch.Tensor, generator: torch.Generator | None
                 ) -> torch.Tensor:
        """(n,) uniform in [low, high), drawn on the generator's device, returned on ``x``'s (float32)."""
        device = x.device if generator is None else generator.device
        return (torch.rand(n, generator=generator, device=device) * (high - low) + low).to(x.device)


def augmentation_layer(name: object) -> type[Layer] | None:
    """The random augmentation layer class registered as ``name`` (``"RandomFlip"``...), else ``None``."""
    cls = Layer.registry.find(name)
    return cls if isinstance(cls, type) and issubclass(cls, _RandomImageLayer) else None


def is_augmentation_layer(layer: object) -> bool:
    """Whether ``layer`` is one of the random augmentation layers (an instance)."""
    return isinstance(layer, _RandomImageLayer)


class RandomFlip(_RandomImageLayer):
    """Flips each image with probability 1/2 while training, as Keras 3.

    ``mode``: ``"horizontal"`` (left-right: the W axis), ``"vertical"`` (up-down: the H axis), or
    ``"horizontal_and_vertical"``, which in Keras 3 flips BOTH axes on one coin per image: the identity or
    the half turn, not four cases. For the eight symmetries of the square (D4) use
    ``RandomFlip("horizontal")`` then ``RandomRotation90()``.
    """

    MODES = ("horizontal", "vertical", "horizontal_and_vertical")
    moves_pixels = True

    def __init__(self, mode: str = "horizontal_and_vertical", seed: int | None = None,
                 data_format: str | None = None, name: str | None = None,
                 input_shape: tuple[int, ...] | None = None):
        super().__init__(seed, data_format, name, input_shape)
        if mode not in self.MODES:
            raise DeepfieldError(f"RandomFlip mode {mode!r}; expected one of: {', '.join(self.MODES)}")
        self.mode = mode

    def _transform(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        flips = (self._uniform(len(x), 0.0, 1.0, x, generator) <= 0.5).view(-1, 1, 1, 1)
        axes = {"horizontal": [-1], "vertical": [-2], "horizontal_and_vertical": [-2, -1]}[self.mode]
        return torch.where(flips, x.flip(axes), x)


class RandomRotation90(_RandomImageLayer):
    """Turns each image by ``k`` quarter turns counter-clockwise (as ``numpy.rot90``), ``k`` uniform in 0..3,
    while training. Exact (a permutation of the pixels, no resampling); images must be square.

    Not a Keras layer: deepfield's exact 90-degree turns (Keras's ``RandomRotation`` resamples at any angle).
    After ``RandomFlip("horizontal")`` it draws the eight symmetries of the square (D4) uniformly.
    """

    moves_pixels = True

    def __init__(self, seed: int | None = None, data_format: str | None = None, name: str | None = None,
                 input_shape: tuple[int, ...] | None = None):
        super().__init__(seed, data_format, name, input_shape)

    def _transform(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if x.shape[-1] != x.shape[-2]:
            raise DeepfieldError(f"{self.label}: quarter turns need square images, got {x.shape[-2]}x{x.shape[-1]}")
        turns = (self._uniform(len(x), 0.0, 4.0, x, generator).floor().clamp(max=3)).view(-1, 1, 1, 1)
        out = x
        for k in (1, 2, 3):
            out = torch.where(turns == k, torch.rot90(x, k, dims=(-2, -1)), out)
        return out


class _AffineLayer(_RandomImageLayer):
    """Resamples each image through an affine map of pixel coordinates, Keras's ``affine_transform``."""

    def __init__(self, fill_mode: str, interpolation: str, seed: int | None, fill_value: float,
                 data_format: str | None, name: str | None, input_shape: tuple[int, ...] | None):
        super().__init__(seed, data_format, name, input_shape)
        kind = type(self).__name__
        if fill_mode not in FILL_MODES:
            raise DeepfieldError(f"{kind} fill_mode {fill_mode!r}; expected one of: {', '.join(FILL_MODES)}")
        if interpolation not in INTERPOLATIONS:
            raise DeepfieldError(f"{kind} interpolation {interpolation!r}; expected one of: "
                                 f"{', '.join(INTERPOLATIONS)}")
        self.fill_mode, self.interpolation, self.fill_value = fill_mode, interpolation, float(fill_value)

    def _matrices(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """(N, 2, 3): output pixel (column, row, 1) -> input pixel (column, row)."""
        raise NotImplementedError

    def _transform(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return warp(x, self._matrices(x, generator), self.fill_mode, self.interpolation, self.fill_value)


def warp(x: torch.Tensor, matrices: torch.Tensor, fill_mode: str = "reflect", interpolation: str = "bilinear",
         fill_value: float = 0.0) -> torch.Tensor:
    """``x`` (N, C, H, W) resampled: output pixel (column, row) takes the input at ``matrices (N, 2, 3) @
    (column, row, 1)``, pixel centres at integers (Keras's convention), with Keras's fill modes."""
    n, _, h, w = x.shape
    rows, cols = torch.meshgrid(torch.arange(h, device=x.device, dtype=x.dtype),
                                torch.arange(w, device=x.device, dtype=x.dtype), indexing="ij")
    points = torch.stack([cols, rows, torch.ones_like(rows)], -1).reshape(-1, 3)  # (H*W, 3)
    source = torch.einsum("nij,pj->npi", matrices.to(x.dtype), points)  # (N, H*W, 2) as (column, row)
    size = torch.tensor([w, h], device=x.device, dtype=x.dtype)
    if fill_mode == "wrap":  # coordinates modulo the size, on the image padded by one pixel from its other side
        source = source.remainder(size) + 1
        x, size = F.pad(x, (1, 1, 1, 1), mode="circular"), size + 2
    if fill_mode == "constant":
        x = x - fill_value
    grid = ((2 * source + 1) / size - 1).view(n, h, w, 2)  # align_corners=False: pixel i spans [i - 1/2, i + 1/2]
    out = F.grid_sample(x, grid, mode=interpolation, padding_mode=FILL_MODES[fill_mode], align_corners=False)
    return out + fill_value if fill_mode == "constant" else out


class RandomRotation(_AffineLayer):
    """Rotates each image about its centre by an angle uniform in ``factor * 2 pi`` while training, as Keras 3.

    ``factor``: a fraction of a full turn, ``f`` for ``(-f, f)`` or ``(low, high)``; positive is
    counter-clockwise, so ``factor=(0.25, 0.25)`` is the quarter turn of ``numpy.rot90`` (resampled, exact to
    float rounding). For exact random quarter turns use :class:`RandomRotation90`.
    """

    def __init__(self, factor: float | Sequence[float], fill_mode: str = "reflect",
                 interpolation: str = "bilinear", seed: int | None = None, fill_value: float = 0.0,
                 data_format: str | None = None, name: str | None = None,
                 input_shape: tuple[int, ...] | None = None):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, name, input_shape)
        self.factor = _range("RandomRotation factor", factor)

    def _matrices(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n, _, h, w = x.shape
        angle = self._uniform(n, *self.factor, x, generator).double() * (2 * math.pi)
        cos, sin = angle.cos(), angle.sin()
        cx, cy = (w - 1) / 2, (h - 1) / 2
        row0 = torch.stack([cos, -sin, cx - cx * cos + cy * sin], -1)
        row1 = torch.stack([sin, cos, cy - cx * sin - cy * cos], -1)
        return torch.stack([row0, row1], 1)


class RandomTranslation(_AffineLayer):
    """Shifts each image by ``height_factor * H`` rows and ``width_factor * W`` columns while training, as Keras 3.

    Each factor is a fraction of the image size, ``f`` for ``(-f, f)`` or ``(low, high)``; positive moves the
    content down / right. Shifts are not rounded to whole pixels (bilinear by default).
    """

    def __init__(self, height_factor: float | Sequence[float], width_factor: float | Sequence[float],
                 fill_mode: str = "reflect", interpolation: str = "bilinear", seed: int | None = None,
                 fill_value: float = 0.0, data_format: str | None = None, name: str | None = None,
                 input_shape: tuple[int, ...] | None = None):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, name, input_shape)
        self.height_factor = _range("RandomTranslation height_factor", height_factor)
        self.width_factor = _range("RandomTranslation width_factor", width_factor)

    def _matrices(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n, _, h, w = x.shape
        dy = self._uniform(n, *self.height_factor, x, generator) * h
        dx = self._uniform(n, *self.width_factor, x, generator) * w
        one, zero = torch.ones_like(dx), torch.zeros_like(dx)
        return torch.stack([torch.stack([one, zero, -dx], -1), torch.stack([zero, one, -dy], -1)], 1)


class RandomZoom(_AffineLayer):
    """Zooms each image about its centre while training, as Keras 3: the image shows ``1 + factor`` times its
    extent, ``factor`` uniform in ``height_factor`` (``f`` for ``(-f, f)`` or ``(low, high)``): positive zooms
    out, negative zooms in. ``width_factor=None`` uses the height's draw (the aspect ratio is kept).
    """

    def __init__(self, height_factor: float | Sequence[float], width_factor: float | Sequence[float] | None = None,
                 fill_mode: str = "reflect", interpolation: str = "bilinear", seed: int | None = None,
                 fill_value: float = 0.0, data_format: str | None = None, name: str | None = None,
                 input_shape: tuple[int, ...] | None = None):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, name, input_shape)
        self.height_factor = _range("RandomZoom height_factor", height_factor)
        self.width_factor = None if width_factor is None else _range("RandomZoom width_factor", width_factor)
        if min(self.height_factor[0], *(self.width_factor or (0.0,))) <= -1:
            raise DeepfieldError(f"RandomZoom factors must be above -1 (a zoom of 1 + factor), got {height_factor!r}, "
                                 f"{width_factor!r}")

    def _matrices(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n, _, h, w = x.shape
        zy = 1 + self._uniform(n, *self.height_factor, x, generator)
        zx = zy if self.width_factor is None else 1 + self._uniform(n, *self.width_factor, x, generator)
        zero = torch.zeros_like(zx)
        return torch.stack([torch.stack([zx, zero, (w - 1) / 2 * (1 - zx)], -1),
                            torch.stack([zero, zy, (h - 1) / 2 * (1 - zy)], -1)], 1)
