"""Reading and writing the files Keras saves models in, with ``zipfile``, ``json`` and ``h5py`` alone.

=====================  ==========================================================================
file                   what it holds
=====================  ==========================================================================
``.keras`` (Keras 3)   a zip: ``config.json`` (the architecture), ``metadata.json``,
                       ``model.weights.h5`` (``layers/<key>/vars/<i>``, the key made from the
                       layer's class: ``conv2d``, ``conv2d_1``, ...)
``.h5`` (Keras 2,      one HDF5 file: the attribute ``model_config`` (the architecture as JSON) and
tf.keras, legacy)      the group ``model_weights/<layer name>`` (attribute ``weight_names``, in order)
``.weights.h5``        weights only: Keras 3's layout as in a ``.keras``, or the legacy one (root
                       attribute ``layer_names``, a group per layer as in ``model_weights``)
=====================  ==========================================================================

Nothing here runs code from a file: no pickle, no ``eval``, no ``marshal``. The HDF5 files are read
as plain numbers: a link to another file, a dataset stored outside the file (external or virtual)
and any array that is not numbers is refused, and each array's size is checked before it is read.
Every problem is one :class:`~deepfield.errors.DeepfieldError` line naming the file.
"""
from __future__ import annotations

import datetime
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from deepfield import arguments, atomic
from deepfield.errors import DeepfieldError

CONFIG = "config.json"
METADATA = "metadata.json"
WEIGHTS = "model.weights.h5"
MAX_JSON_BYTES = 64 << 20
"""The most a ``config.json`` or ``metadata.json`` may hold (a model's architecture is kilobytes)."""
MAX_WEIGHTS_BYTES = 4 * arguments.MAX_ELEMENTS
"""The most a weights file may hold: as many float32 numbers as a deepfield model may have."""


@dataclass
class Weights:
    """A file's weights: ``arrays[k]`` is one layer's list of arrays in Keras's order (kernel, bias, ...).

    ``by`` says what ``k`` is: ``"key"`` (Keras 3: the layer's class in snake case, numbered:
    ``conv2d``, ``conv2d_1``) or ``"name"`` (legacy HDF5: the layer's name).
    """

    by: str
    arrays: dict[str, list[np.ndarray]] = field(default_factory=dict)
    parts: dict[str, dict[str, list[np.ndarray]]] = field(default_factory=dict)
    """Keras 3: each layer's arrays by the part of it that holds them (``forward_layer``, ``backward_layer``)."""
    models: dict[str, Weights] = field(default_factory=dict)
    """Keras 3: the weights of a model used as a layer, by its key (``layers/sequential/layers/...``)."""
    paths: dict[str, list[str]] = field(default_factory=dict)
    """Legacy files: each layer's weight names (a model used as a layer: ``head/dense/kernel``, ...)."""

    def of(self, name: str, key: str, parts: tuple[str, ...] = ()) -> list[np.ndarray]:
        """The arrays of the layer called ``name`` whose Keras 3 key is ``key`` (none: an empty list); ``parts``:
        in Keras 3's files, those parts' arrays in that order (Keras walks them in the order of their names;
        legacy files list them in the layer's own order)."""
        if self.by == "key" and parts:
            return [a for part in parts for a in self.parts.get(key, {}).get(part, [])]
        return self.arrays.get(key if self.by == "key" else name, [])

    def inside(self, name: str, key: str) -> Weights:
        """The weights of the model called ``name`` (Keras 3 key ``key``) used as a layer, as a model's own."""
        if self.by == "key":
            return self.models.get(key, Weights("key"))
        inner = Weights("name")
        for path, array in zip(self.paths.get(name, []), self.arrays.get(name, [])):
            steps = path.split("/")
            steps = steps[1:] if len(steps) > 2 and steps[0] == name else steps  # Keras 3 writes the model's name
            inner.arrays.setdefault(steps[0], []).append(array)
            inner.paths.setdefault(steps[0], []).append("/".join(steps))
        return inner


@dataclass
class KerasFile:
    """What a Keras file holds: the model's config (``None`` for a weights-only file) and its weights."""

    path: Path
    kind: str  # "keras" (Keras 3 archive), "h5" (legacy full model), "weights" (weights only)
    config: dict[str, Any] | None
    weights: Weights


def read(path: str | os.PathLike[str]) -> KerasFile:
    """The config and weights of the Keras file at ``path`` (a ``.keras`` zip or an HDF5 ``.h5``)."""
    path = Path(path)
    if not path.is_file():
        raise DeepfieldError(f"{path}: file not found")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"PK"):
        return _read_archive(path)
    if head == b"\x89HDF\r\n\x1a\n":
        return _read_h5(path)
    raise DeepfieldError(f"{path}: not a Keras file (neither a .keras zip archive nor an HDF5 .h5 file)")


def _read_archive(path: Path) -> KerasFile:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            missing = [n for n in (CONFIG, WEIGHTS) if n not in names]
            if missing:
                raise DeepfieldError(f"{path}: a .keras archive must hold {CONFIG} and {WEIGHTS}; "
                                     f"{', '.join(missing)} missing")
            config = _json(_member(archive, CONFIG, MAX_JSON_BYTES, path), f"{path}: {CONFIG}")
            data = _member(archive, WEIGHTS, MAX_WEIGHTS_BYTES, path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, NotImplementedError) as exc:
        raise DeepfieldError(f"{path}: not a readable .keras archive (damaged or truncated zip: {exc})") from None
    if not isinstance(config, dict):
        raise DeepfieldError(f"{path}: {CONFIG} must hold an object (the model), got {type(config).__name__}")
    with _open_h5(io.BytesIO(data), f"{path}: {WEIGHTS}") as h5:
        weights = _keras3_weights(h5, f"{path}: {WEIGHTS}")
    return KerasFile(path, "keras", config, weights)


def _member(archive: zipfile.ZipFile, name: str, limit: int, path: Path) -> bytes:
    info = archive.getinfo(name)
    if info.file_size > limit:
        raise DeepfieldError(f"{path}: {name} claims {info.file_size:,} bytes, more than a model can hold ({limit:,})")
    return archive.read(name)  # checks the CRC: a damaged member is BadZipFile


def _json(data: bytes, where: str) -> Any:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DeepfieldError(f"{where}: not valid JSON ({exc})") from None


def _open_h5(source: Path | io.BytesIO, where: str) -> h5py.File:
    try:
        return h5py.File(source, "r")
    except OSError as exc:
        raise DeepfieldError(f"{where}: not a readable HDF5 file ({exc})") from None


def _read_h5(path: Path) -> KerasFile:
    where = str(path)
    with _open_h5(path, where) as h5:
        try:
            if "model_config" in h5.attrs:
                config = _json(_text(h5.attrs["model_config"]), f"{path}: attribute model_config")
                if not isinstance(config, dict):
                    raise DeepfieldError(f"{path}: model_config must hold an object (the model)")
                group = _child(h5, "model_weights", where)
                if not isinstance(group, h5py.Group):
                    raise DeepfieldError(f"{path}: a Keras HDF5 model file must hold the group model_weights")
                return KerasFile(path, "h5", config, _legacy_weights(group, where))
            if "layer_names" in h5.attrs:
                return KerasFile(path, "weights", None, _legacy_weights(h5, where))
            if "layers" in h5 or "vars" in h5:
                return KerasFile(path, "weights", None, _keras3_weights(h5, where))
        except (KeyError, ValueError, TypeError) as exc:  # a structure Keras does not write
            if isinstance(exc, DeepfieldError):
                raise
            raise DeepfieldError(f"{path}: not a Keras model or weights file ({type(exc).__name__}: {exc})") from None
    raise DeepfieldError(f"{path}: an HDF5 file, but not one Keras wrote (no model_config, layer_names or layers)")


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _child(group: h5py.Group, name: str, where: str) -> h5py.Group | h5py.Dataset | None:
    """``group[name]`` when it is stored in this file; a link elsewhere is refused."""
    link = group.get(name, getlink=True)
    if link is None:
        return None
    if not isinstance(link, h5py.HardLink):
        raise DeepfieldError(f"{where}: {group.name}/{name} is a link ({type(link).__name__}); Keras files hold none "
                             "and deepfield follows none")
    return group[name]


def _array(dataset: Any, where: str) -> np.ndarray:
    """A dataset's numbers, after checking it is a plain numeric array stored in the file."""
    if not isinstance(dataset, h5py.Dataset):
        raise DeepfieldError(f"{where}: {getattr(dataset, 'name', dataset)} must be an array of numbers")
    if dataset.external or dataset.is_virtual:
        raise DeepfieldError(f"{where}: {dataset.name} is stored outside the file; deepfield reads only numbers "
                             "stored in it")
    if dataset.dtype.kind not in "fiub":
        raise DeepfieldError(f"{where}: {dataset.name} holds {dataset.dtype}, not numbers")
    if dataset.size > arguments.MAX_ELEMENTS:
        raise DeepfieldError(f"{where}: {dataset.name} holds {dataset.size:,} numbers, more than a deepfield model "
                             f"may ({arguments.MAX_ELEMENTS:,})")
    return np.asarray(dataset[()])


def _keras3_weights(h5: h5py.File, where: str) -> Weights:
    """``layers/<key>/vars/<0, 1, ...>`` of Keras 3 (a layer's own variables; nested parts are not read)."""
    weights = Weights("key")
    layers = _child(h5, "layers", where)
    if layers is None and "_layer_checkpoint_dependencies" in h5:
        raise DeepfieldError(f"{where}: written by tf.keras 2.12-2.15, whose first .keras layout deepfield does not "
                             "read; save the model again with that version as .h5 (model.save('model.h5'))")
    if layers is None:
        return weights
    for key in layers:
        group = layers[key]
        if isinstance(group, h5py.Group):
            weights.arrays[key] = _variables(group, where)
            weights.parts[key] = {part: _variables(group[part], where) for part in group
                                  if part != "vars" and isinstance(_child(group, part, where), h5py.Group)}
            if isinstance(_child(group, "layers", where), h5py.Group):  # a model used as a layer
                weights.models[key] = _keras3_weights(group, where)
    return weights


def _variables(group: h5py.Group, where: str) -> list[np.ndarray]:
    """A layer's arrays: its own (``vars/0``, ``vars/1``, ...), then its parts' (a recurrent layer's ``cell``), in
    the order of their names, as Keras walks them."""
    arrays = []
    variables = _child(group, "vars", where)
    if isinstance(variables, h5py.Group):
        count = len(variables)
        if sorted(variables) != sorted(map(str, range(count))):
            raise DeepfieldError(f"{where}: {variables.name} must hold arrays named 0 .. {count - 1}")
        arrays += [_array(_child(variables, str(i), where), where) for i in range(count)]
    for name in sorted(group):
        part = _child(group, name, where)
        if name != "vars" and isinstance(part, h5py.Group):
            arrays += _variables(part, where)
    return arrays


def _legacy_weights(group: h5py.Group, where: str) -> Weights:
    """Keras 2's ``layer_names`` / ``weight_names`` attributes: each layer's arrays in its weights' order."""
    weights = Weights("name")
    for name in map(_text, group.attrs["layer_names"]):
        layer = _child(group, name, where)
        if not isinstance(layer, h5py.Group):
            raise DeepfieldError(f"{where}: layer {name!r} is listed in layer_names but has no group")
        arrays = []
        for weight in map(_text, layer.attrs["weight_names"]):
            node: Any = layer
            for part in weight.split("/"):
                node = _child(node, part, where) if isinstance(node, h5py.Group) else None
                if node is None:
                    raise DeepfieldError(f"{where}: layer {name!r}: weight {weight!r} is named but not stored")
            arrays.append(_array(node, where))
        weights.arrays[name] = arrays
        weights.paths[name] = list(map(_text, layer.attrs["weight_names"]))
    return weights


# -- writing -------------------------------------------------------------------------------------------------


def write(path: str | os.PathLike[str], config: dict[str, Any], layers: dict[str, tuple[str, list[np.ndarray]]],
          model_name: str, producer: str) -> Path:
    """Write a Keras 3 ``.keras`` archive atomically.

    ``layers``: Keras 3 weight key (with the part that holds them: ``lstm/cell``) -> (layer name, arrays in
    Keras's order), as :func:`read` gives them back.
    ``producer`` is recorded in ``metadata.json`` beside Keras's own fields.
    """
    h5_bytes = _weights_image(layers, model_name)
    metadata = {"keras_version": "3.0.0", "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
                "producer": producer}

    def writer(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w") as archive:  # stored, not deflated: Keras reads the weights by seeking
            archive.writestr(METADATA, json.dumps(metadata))
            archive.writestr(CONFIG, json.dumps(config))
            archive.writestr(WEIGHTS, h5_bytes)

    atomic.write_with(path, writer)
    return Path(path)


def _weights_image(layers: dict[str, tuple[str, list[np.ndarray]]], model_name: str) -> bytes:
    """The bytes of a ``model.weights.h5`` in Keras 3's layout, made in memory."""
    with h5py.File(io.BytesIO(), "w") as h5:
        for key, (name, arrays) in layers.items():
            variables = h5.create_group(f"layers/{key}/vars")
            variables.attrs["name"] = name
            for i, array in enumerate(arrays):
                variables.create_dataset(str(i), data=np.ascontiguousarray(array, dtype=np.float32))
        h5.create_group("vars").attrs["name"] = model_name
        h5.flush()
        return h5.id.get_file_image()
