"""Save and load models as the run folder keeps them: ``model.json`` + ``weights.safetensors``.

Loading never executes code from the files: the architecture is JSON naming
registered layer classes, the weights are safetensors. ``model.json`` records the
SHA-256 of the weights file, so a swapped or edited weights file is refused with
a clear message instead of silently loading.

A Sequential is saved layer by layer (``"class_name": "Sequential"``). A zoo preset
that is not a Sequential (:class:`~deepfield.models.presets.base.PresetModel`) is saved
as the zoo call that makes it, ``"class_name": "Preset"`` with
``"config": {"preset": NAME, "kwargs": {...}}``, and rebuilt through the zoo.

A model made Bayesian by :func:`~deepfield.models.bayesian.bayesianize` has
``"bayesian": {"prior_sigma", "posterior_sigma", "kl_weight"}`` in its config: loading
builds the network as written, applies ``bayesianize`` again (which also reaches the
layers inside blocks, whose configs name deterministic layers), then loads the weights.
No ``"bayesian"`` key: the model is loaded as written.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import TypeVar, overload

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from deepfield import __version__, atomic
from deepfield.errors import DeepfieldError
from deepfield.models import zoo
from deepfield.models.bayesian import SETTINGS, bayesian_settings, bayesianize
from deepfield.models.presets.base import PresetModel
from deepfield.models.sequential import Sequential

FORMAT = "deepfield.model"
FORMAT_VERSION = 1
ARCHITECTURE_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
PRESET_CLASS = "Preset"
BAYESIAN_KEY = "bayesian"

M = TypeVar("M", bound=Sequential)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_weights(model: nn.Module, path: str | os.PathLike[str]) -> str:
    """Write ``model.state_dict()`` to a safetensors file atomically; returns its SHA-256."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    path = Path(path)
    atomic.write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    return _sha256(path)


def load_weights(model: nn.Module, path: str | os.PathLike[str], sha256: str | None = None) -> None:
    """Load a safetensors file into ``model`` (strict: every name and shape must match)."""
    path = Path(path)
    if not path.is_file():
        raise DeepfieldError(f"{path}: weights file not found")
    if sha256 is not None and _sha256(path) != sha256:
        raise DeepfieldError(
            f"{path}: weights do not match the checksum recorded in {ARCHITECTURE_FILE} "
            "(the file was changed or belongs to another model)"
        )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise DeepfieldError(f"{path}: not a readable safetensors weights file ({exc})") from None
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise DeepfieldError(
            f"{path}: weights do not fit the model (missing: {', '.join(missing) or 'none'}; "
            f"unexpected: {', '.join(unexpected) or 'none'})"
        )
    for name, expected in own.items():  # in the model's order: the first layer that differs is named
        if tuple(tensors[name].shape) != tuple(expected.shape):
            raise DeepfieldError(
                f"{path}: weight {name!r} has shape {tuple(tensors[name].shape)}, the model expects {tuple(expected.shape)}"
            )
    device = next((t.device for t in own.values()), torch.device("cpu"))
    model.load_state_dict({k: v.to(device) for k, v in tensors.items()})


def has_architecture(model: nn.Module) -> bool:
    """Whether ``save_model`` can write ``model``'s architecture as JSON (else: weights only)."""
    return isinstance(model, (Sequential, PresetModel))


def save_model(model: Sequential | PresetModel, folder: str | os.PathLike[str]) -> Path:
    """Write ``folder/model.json`` and ``folder/weights.safetensors`` (each atomically)."""
    folder = Path(folder)
    if not model.built:
        model.build()
    config = model.get_config()
    bayesian = bayesian_settings(model)
    if bayesian is not None:
        config[BAYESIAN_KEY] = bayesian
    digest = save_weights(model, folder / WEIGHTS_FILE)
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "deepfield_version": __version__,
        "class_name": PRESET_CLASS if isinstance(model, PresetModel) else type(model).__name__,
        "config": config,
        "weights": {"file": WEIGHTS_FILE, "sha256": digest},
    }
    atomic.write_text(folder / ARCHITECTURE_FILE, json.dumps(document, indent=2) + "\n")
    return folder


def read_architecture(folder: str | os.PathLike[str]) -> dict:
    """The parsed, checked ``model.json`` of a saved model."""
    path = Path(folder) / ARCHITECTURE_FILE
    if not path.is_file():
        raise DeepfieldError(f"{path}: architecture file not found (is {folder} a saved model or run folder?)")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DeepfieldError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise DeepfieldError(f"{path}: not a deepfield model file (expected \"format\": \"{FORMAT}\")")
    if document.get("format_version", 0) > FORMAT_VERSION:
        raise DeepfieldError(
            f"{path}: written by a newer deepfield (format {document['format_version']}); upgrade deepfield"
        )
    return document


def _reapply_bayesian(model: nn.Module, settings: object) -> None:
    """``bayesianize`` the freshly built ``model`` as its config records (None: it was not)."""
    if settings is None:
        return
    if not isinstance(settings, dict) or sorted(settings) != sorted(SETTINGS):
        raise DeepfieldError(f'"{BAYESIAN_KEY}" must map {", ".join(SETTINGS)} to numbers, got {settings!r}')
    bayesianize(model, **settings)


class BareNetworkWarning(UserWarning):
    """A run folder was loaded as a bare network, without the run's input preparation."""


RUN_FILES = ("config.yaml", "prepared.json")
"""What makes a folder a run (``deepfield train``), not only a saved model."""


def warn_if_run(folder: str | os.PathLike[str]) -> None:
    """Warn (:class:`BareNetworkWarning`) when ``folder`` is a run folder loaded as a bare network."""
    if all((Path(folder) / name).is_file() for name in RUN_FILES):
        warnings.warn(f"{folder} is a run folder: this loads the bare network, without the run's input "
                      "preparation (normalisation and stretch of stamps, scaling of catalogue features): its inputs "
                      "must already be prepared as in training, and its predictions on raw data differ from "
                      f"`deepfield predict`'s; for those use deepfield.load_run({str(folder)!r}).predict(...)",
                      BareNetworkWarning, stacklevel=3)


@overload
def load_model(folder: str | os.PathLike[str]) -> Sequential | PresetModel: ...


@overload
def load_model(folder: str | os.PathLike[str], cls: type[M]) -> M: ...


def load_model(folder: str | os.PathLike[str], cls: type[M] | None = None) -> Sequential | PresetModel:
    """Rebuild the model saved in ``folder`` and load its weights (:func:`load_network`).

    On a run folder it warns (:class:`BareNetworkWarning`) that this is the bare network:
    ``deepfield.load_run`` predicts as the CLI does, from raw data.
    """
    warn_if_run(folder)
    return load_network(folder, cls)


def load_network(folder: str | os.PathLike[str], cls: type[M] | None = None) -> Sequential | PresetModel:
    """Rebuild the network saved in ``folder`` and load its weights, silently (a run's own loader).

    A Sequential comes back as class ``cls`` (default :class:`Sequential`); a preset saved
    as ``"Preset"`` comes back from the zoo, and then ``cls`` must not be given.
    """
    folder = Path(folder)
    document = read_architecture(folder)
    try:
        if document.get("class_name") == PRESET_CLASS:
            model = zoo.from_config(document["config"])
            if cls is not None:
                raise DeepfieldError(f"it holds the preset {document['config']['preset']!r}, not a "
                                     f"{cls.__name__}; load it with deepfield.models.serialization.load_model(folder)")
        else:
            model = (cls or Sequential).from_config(document["config"])
        model.build()
        _reapply_bayesian(model, document["config"].get(BAYESIAN_KEY))
    except DeepfieldError as exc:
        raise DeepfieldError(f"{folder / ARCHITECTURE_FILE}: {exc}") from None
    weights = document.get("weights", {})
    load_weights(model, folder / weights.get("file", WEIGHTS_FILE), weights.get("sha256"))
    return model
