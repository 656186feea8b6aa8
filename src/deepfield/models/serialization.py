"""Save and load models as the run folder keeps them: ``model.json`` + ``weights.safetensors``.

Loading never executes code from the files: the architecture is JSON naming
registered layer classes (and container classes, :data:`CONTAINERS`), the weights are
safetensors, every size is checked before anything is allocated (:mod:`deepfield.arguments`).

Checksums (format 2): ``weights.sha256`` is the SHA-256 of the weights file, and the top-level
``sha256`` that of ``model.json``'s own content (:func:`content_digest`: canonical JSON of
everything but that field, the weights' checksum included), so an edited architecture or a
swapped or edited weights file is refused with a line naming the file. A ``model.json``
without them is refused unless the caller trusts it (``trust=True``; the command line's
``--trust-unchecked``); a checksum that does not match is refused whatever the trust. Files of
format 1 (deepfield 0.1) carry the weights' checksum only, which is still checked.
The checksums catch damaged, mixed-up and hand-edited files; they are no signature (whoever
edits a file can recompute them), which is why loading must never run code whatever the file says.

``weights.file`` names a file inside the model's folder (no absolute path, no ``..``, no
symbolic link leading out).

A Sequential is saved layer by layer (``"class_name": "Sequential"``), a functional model as its
graph (``"class_name": "Functional"``: :meth:`~deepfield.models.functional.Functional.get_config`). A zoo preset
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

from deepfield import atomic
from deepfield.version import __version__
from deepfield.errors import DeepfieldError
from deepfield.models import zoo
from deepfield.models.bayesian import SETTINGS, bayesian_settings, bayesianize
from deepfield.models.functional import Functional
from deepfield.models.presets.base import PresetModel
from deepfield.models.sequential import Sequential

FORMAT = "deepfield.model"
FORMAT_VERSION = 2
"""1: the checksum covers the weights file only; 2: model.json's own checksum covers its whole content."""
CHECKSUM_KEY = "sha256"
TRUST_HINT = "if you trust this file, load it with trust=True (on the command line: --trust-unchecked)"
ARCHITECTURE_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
PRESET_CLASS = "Preset"
BAYESIAN_KEY = "bayesian"
CONTAINERS = ("Sequential", "Functional", PRESET_CLASS)
"""The ``class_name`` values a model.json may hold (a subclass's name when loaded as that subclass)."""

M = TypeVar("M", bound=Sequential | Functional)


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


def content_digest(document: dict) -> str:
    """SHA-256 of a model.json's content: canonical JSON (sorted keys, no spaces) without the checksum field."""
    body = {k: v for k, v in document.items() if k != CHECKSUM_KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def load_weights(model: nn.Module, path: str | os.PathLike[str], sha256: str | None = None) -> None:
    """Load a safetensors file into ``model`` (strict: every name and shape must match);
    with ``sha256``, the file must have that checksum."""
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


def is_saved(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds a saved model (``model.json`` and its weights, as :func:`save_model` leaves them)."""
    folder = Path(folder)
    return (folder / ARCHITECTURE_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()


def has_architecture(model: nn.Module) -> bool:
    """Whether ``save_model`` can write ``model``'s architecture as JSON (else: weights only)."""
    return isinstance(model, (Sequential, Functional, PresetModel))


def save_model(model: Sequential | Functional | PresetModel, folder: str | os.PathLike[str]) -> Path:
    """Write ``folder/model.json`` and ``folder/weights.safetensors`` (each atomically).

    An older ``model.json`` there is removed first and written again last, so that a kill in between
    leaves no model (``is_saved`` is False) rather than new weights beside the old checksum.
    """
    folder = Path(folder)
    if not model.built:
        model.build()
    config = model.get_config()
    bayesian = bayesian_settings(model)
    if bayesian is not None:
        config[BAYESIAN_KEY] = bayesian
    (folder / ARCHITECTURE_FILE).unlink(missing_ok=True)
    digest = save_weights(model, folder / WEIGHTS_FILE)
    document = json.loads(json.dumps({  # as a reader will see it (tuples as lists), to checksum
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "deepfield_version": __version__,
        "class_name": PRESET_CLASS if isinstance(model, PresetModel) else type(model).__name__,
        "config": config,
        "weights": {"file": WEIGHTS_FILE, "sha256": digest},
    }))
    document[CHECKSUM_KEY] = content_digest(document)
    atomic.write_text(folder / ARCHITECTURE_FILE, json.dumps(document, indent=2) + "\n")
    return folder


def read_architecture(folder: str | os.PathLike[str]) -> dict:
    """The parsed ``model.json`` of a saved model, its structure checked (not yet its checksums)."""
    path = Path(folder) / ARCHITECTURE_FILE
    if not path.is_file():
        raise DeepfieldError(f"{path}: architecture file not found (is {folder} a saved model or run folder?)")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DeepfieldError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise DeepfieldError(f"{path}: not a deepfield model file (expected \"format\": \"{FORMAT}\")")
    version = document.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise DeepfieldError(f"{path}: \"format_version\" must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise DeepfieldError(f"{path}: written by a newer deepfield (format {version}); upgrade deepfield")
    if not isinstance(document.get("class_name"), str):
        raise DeepfieldError(f"{path}: \"class_name\" must be one of {', '.join(CONTAINERS)}, "
                             f"got {document.get('class_name')!r}")
    if not isinstance(document.get("config"), dict):
        raise DeepfieldError(f"{path}: \"config\" must be an object (the architecture), got {document.get('config')!r}")
    weights = document.get("weights", {})
    if (not isinstance(weights, dict) or not isinstance(weights.get("file", WEIGHTS_FILE), str)
            or not isinstance(weights.get("sha256", ""), str)):
        raise DeepfieldError(f"{path}: \"weights\" must be {{\"file\": NAME, \"sha256\": HEX}}, got {weights!r}")
    if not isinstance(document.get(CHECKSUM_KEY, ""), str):
        raise DeepfieldError(f"{path}: \"{CHECKSUM_KEY}\" must be a hexadecimal string, got {document[CHECKSUM_KEY]!r}")
    return document


def verify_checksums(document: dict, path: Path, trust: bool = False) -> str | None:
    """Check model.json's own checksum (format 2); return the weights' checksum to check the weights file by.

    A checksum missing is refused unless ``trust``; one that does not match always is.
    """
    weights_digest = document.get("weights", {}).get("sha256") or None
    own = document.get(CHECKSUM_KEY) or None
    if (weights_digest is None or (own is None and document["format_version"] >= 2)) and not trust:
        raise DeepfieldError(f"{path}: has no checksum, so a damaged or edited file would load unnoticed; "
                             f"{TRUST_HINT}")
    if own is not None and own != content_digest(document):
        raise DeepfieldError(f"{path}: does not match its checksum (the architecture or the weights entry was "
                             "changed after it was saved); restore the file, or save the model again")
    return weights_digest


def weights_path(folder: Path, document: dict, path: Path) -> Path:
    """The weights file that ``weights.file`` names, which must lie inside ``folder``."""
    name = document.get("weights", {}).get("file", WEIGHTS_FILE)
    target = folder / name
    inside = folder.resolve()
    if not name or Path(name).is_absolute() or inside not in target.resolve().parents:
        raise DeepfieldError(f"{path}: \"weights\": {{\"file\": {name!r}}} must name a file inside {folder} "
                             "(no absolute path, no '..', no link leading out)")
    return target


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
def load_model(folder: str | os.PathLike[str], *, trust: bool = False) -> Sequential | Functional | PresetModel: ...


@overload
def load_model(folder: str | os.PathLike[str], cls: type[M], *, trust: bool = False) -> M: ...


def load_model(folder: str | os.PathLike[str], cls: type[M] | None = None, *,
               trust: bool = False) -> Sequential | Functional | PresetModel:
    """Rebuild the model saved in ``folder`` and load its weights (:func:`load_network`).

    On a run folder it warns (:class:`BareNetworkWarning`) that this is the bare network:
    ``deepfield.load_run`` predicts as the CLI does, from raw data.
    """
    warn_if_run(folder)
    return load_network(folder, cls, trust=trust)


def load_network(folder: str | os.PathLike[str], cls: type[M] | None = None, *,
                 trust: bool = False) -> Sequential | Functional | PresetModel:
    """Rebuild the network saved in ``folder`` and load its weights, silently (a run's own loader).

    A Sequential comes back as class ``cls`` (default :class:`Sequential`); a preset saved
    as ``"Preset"`` comes back from the zoo, and then ``cls`` must not be given. ``trust``:
    load a model.json that has no checksum (see the module doc).
    """
    folder = Path(folder)
    path = folder / ARCHITECTURE_FILE
    document = read_architecture(folder)
    known = [*CONTAINERS, *([c.__name__ for c in cls.__mro__ if issubclass(c, (Sequential, Functional))]
                            if cls else [])]
    if document["class_name"] not in known:
        raise DeepfieldError(f"{path}: \"class_name\" must be one of {', '.join(dict.fromkeys(known))}, "
                             f"got {document['class_name']!r}")
    kind = Functional if document["class_name"] == "Functional" else Sequential
    if cls is not None and document["class_name"] != PRESET_CLASS and not issubclass(cls, kind):
        raise DeepfieldError(f"{path}: it holds a {kind.__name__} model, not a {cls.__name__}; load it with "
                             f"{kind.__name__}.load(folder) or deepfield.models.serialization.load_model(folder)")
    weights = weights_path(folder, document, path)
    digest = verify_checksums(document, path, trust)
    try:
        if document["class_name"] == PRESET_CLASS:
            model = zoo.from_config(document["config"])
            if cls is not None:
                raise DeepfieldError(f"it holds the preset {document['config']['preset']!r}, not a "
                                     f"{cls.__name__}; load it with deepfield.models.serialization.load_model(folder)")
        else:
            model = (cls or kind).from_config(document["config"])
        model.build()
        _reapply_bayesian(model, document["config"].get(BAYESIAN_KEY))
    except DeepfieldError as exc:
        raise DeepfieldError(f"{path}: {exc}") from None
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:  # a value of the wrong kind
        raise DeepfieldError(f"{path}: \"config\" does not describe a network deepfield can build "
                             f"({type(exc).__name__}: {exc})") from None
    load_weights(model, weights, digest)
    return model
