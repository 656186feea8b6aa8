"""Named model presets ("zoo"): the networks of the course and of its papers, ready to train.

``get(name, input_shape=..., n_outputs=..., **options)`` returns a fresh network whose
parameters already exist (built for ``input_shape``), so an optimiser can be made at
once. Each preset checks at construction that the input shape suits it and says what
it needs when not. See :mod:`deepfield.models.presets` for the networks themselves.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from deepfield.errors import DeepfieldError
from deepfield.models.presets.course import dominguez_sanchez, euclid_quality, lecture_cnn
from deepfield.models.presets.cvae import ConditionalVAE
from deepfield.models.presets.dieleman import dieleman
from deepfield.models.presets.diffusion import Diffusion
from deepfield.models.presets.pasquet import Pasquet
from deepfield.models.presets.resnet import resnet
from deepfield.models.presets.spectra import spectra1d
from deepfield.models.presets.tabular import mlp
from deepfield.models.presets.unet import unet
from deepfield.registry import Registry

PRESETS: Registry[Callable[..., nn.Module]] = Registry("model preset", {
    "lecture-cnn": lecture_cnn,
    "euclid-quality": euclid_quality,
    "dominguez-sanchez": dominguez_sanchez,
    "dieleman": dieleman,
    "pasquet": Pasquet,
    "spectra1d": spectra1d,
    "mlp": mlp,
    "resnet": resnet,
    "unet": unet,
    "diffusion": Diffusion,
    "cvae": ConditionalVAE,
})
PRESETS.alias("quality-cnn", "euclid-quality", listed=False)  # the name before the rename, no longer offered


def parameters(name: str) -> dict[str, inspect.Parameter]:
    """The parameters of preset ``name``'s builder, by name; ``{}`` for an unknown name (:func:`get` says why)."""
    builder = PRESETS.find(name)
    return {} if builder is None else dict(inspect.signature(builder).parameters)


def get(name: str, **kwargs: Any) -> nn.Module:
    """A fresh, built preset by name, e.g. ``get("lecture-cnn", input_shape=(3, 64, 64))``."""
    builder = PRESETS.lookup(name)
    accepted = parameters(name)
    unexpected = sorted(set(kwargs) - set(accepted))
    if unexpected:
        raise DeepfieldError(f"preset {name!r} has no parameter {', '.join(map(repr, unexpected))}; "
                             f"it takes: {', '.join(accepted)}")
    return builder(**kwargs).build()


def from_config(config: dict[str, Any]) -> nn.Module:
    """The preset a ``model.json`` names: ``{"preset": NAME, "kwargs": {...}}``."""
    if not isinstance(config, dict) or not isinstance(config.get("kwargs", {}), dict):
        raise DeepfieldError('preset config must be {"preset": NAME, "kwargs": {...}}')
    return get(config.get("preset"), **config.get("kwargs", {}))  # type: ignore[arg-type]
