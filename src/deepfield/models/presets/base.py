"""What the presets share: input-shape checks done by arithmetic, the dense head, and
:class:`PresetModel`, the base of presets that are not a plain Sequential.
"""
from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from deepfield.errors import DeepfieldError
from deepfield.models.base import Layer
from deepfield.models.conv import Window
from deepfield.models.core import Activation, Dense, Dropout
from deepfield.models.normalization import BatchNormalization
from deepfield.models.summary import summarize

# rank (axes after the channels) -> (what the preset takes, the noun for a size error)
_SAMPLE = {0: ("(features,) rows", "rows"), 1: ("(C, L) spectra", "spectra"), 2: ("(C, H, W) stamps", "stamps")}


def sample_shape(preset: str, input_shape: Sequence[int], rank: int) -> tuple[int, ...]:
    """``input_shape`` as a tuple of positive ints with ``rank`` axes after the channels."""
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != rank + 1 or min(shape) < 1:
        raise DeepfieldError(f"preset {preset!r} takes {_SAMPLE[rank][0]}; got input_shape {input_shape!r}")
    return shape


def _window_output(window: Window, axis: int, size: int) -> int:
    """Length of one axis after one convolution or pooling window (0: it does not fit)."""
    stride = window.strides[axis]
    if window.mode == "same":
        return -(-size // stride)
    span = (window.kernel[axis] - 1) * window.dilation[axis] + 1
    padded = size + 2 * window.explicit[axis]
    return 0 if padded < span else (padded - span) // stride + 1


def output_size(layers: Iterable[nn.Module], size: int, axis: int = 0) -> int:
    """Length of spatial axis ``axis`` after the convolutions and poolings among ``layers``.

    Layers without a window (activations, dropout, 'same'-padded blocks) keep the size;
    0 means some window does not fit.
    """
    for layer in layers:
        window = getattr(layer, "_window", None)
        if window is not None:
            size = _window_output(window, axis, size)
            if size < 1:
                return 0
    return size


def check_fits(preset: str, input_shape: tuple[int, ...], layers: Sequence[nn.Module], reason: str,
               what: str | None = None) -> None:
    """Refuse, with the smallest size that works, a sample too small for ``layers``' windows.

    ``input_shape`` is ``(C, L)`` or ``(C, H, W)``; ``reason`` names what shrinks it,
    e.g. ``"three 3×3 convolutions and 2×2 poolings"``; ``what`` the samples in the
    message (default ``spectra`` or ``stamps``).
    """
    spatial = input_shape[1:]
    if all(output_size(layers, n, axis) >= 1 for axis, n in enumerate(spatial)):
        return
    smallest = []
    for axis in range(len(spatial)):
        n = 1
        while output_size(layers, n, axis) < 1:
            n += 1
        smallest.append(n)
    noun = what or _SAMPLE[len(spatial)][1]
    raise DeepfieldError(
        f"preset {preset!r} needs {noun} of at least {'×'.join(map(str, smallest))} pixels ({reason}); "
        f"got {'×'.join(map(str, spatial))}"
    )


def dense_layers(hidden: Sequence[int], activation: str, dropout: float = 0.0,
                 batch_norm: bool = False) -> list[Layer]:
    """A hidden dense stack: per width ``Dense [→ BatchNormalization] → activation [→ Dropout]``.

    With batch normalisation the Dense has no bias (BN's beta replaces it) and BN comes
    before the non-linearity, as in Ioffe & Szegedy (2015).
    """
    layers: list[Layer] = []
    for units in hidden:
        if batch_norm:
            layers += [Dense(units, use_bias=False), BatchNormalization(), Activation(activation)]
        else:
            layers.append(Dense(units, activation=activation))
        if dropout:
            layers.append(Dropout(dropout))
    return layers


class PresetModel(nn.Module):
    """A preset that is not a linear stack (e.g. two inputs), saved by name and arguments.

    Subclasses keep every constructor argument as an attribute of the same name (the
    scikit-learn convention); :meth:`get_config` reads them back, so ``model.json`` holds
    ``{"class_name": "Preset", "config": {"preset": NAME, "kwargs": {...}}}`` and loading
    rebuilds the network through the zoo. The layers are sized from ``input_shape`` and
    built when the model is made, so the parameters exist at once.
    """

    preset: ClassVar[str]
    input_shape: tuple[int, ...]

    @property
    def built(self) -> bool:
        return all(m.built for m in self.modules() if isinstance(m, Layer))

    def example_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The positional arguments of ``forward`` for the image batch ``x`` (zeros for extras)."""
        return (x,)

    def build(self) -> PresetModel:
        """Create every layer's parameters with one dry pass of a zero sample (no-op when built)."""
        if self.built:
            return self
        device = next((p.device for p in self.parameters()), torch.device("cpu"))
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                self(*self.example_inputs(torch.zeros((1, *self.input_shape), device=device)))
        finally:
            self.train(was_training)
        return self

    def get_config(self) -> dict[str, Any]:
        """``{"preset": NAME, "kwargs": {...}}``: the zoo call that rebuilds this network."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        kwargs = {n: list(v) if isinstance(v, tuple) else v for n, v in ((n, getattr(self, n)) for n in names)}
        return {"preset": self.preset, "kwargs": kwargs}

    def summary(self, print_fn: Any = None) -> None:
        """Print the Keras-style table (see :func:`deepfield.models.summary.summarize`)."""
        summarize(self).print(print_fn)
