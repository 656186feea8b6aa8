"""Save and load a training state — a tree of dicts, lists, numbers, strings and tensors.

One file, written atomically (temporary file in the same folder, fsync, ``os.replace``):
a safetensors file whose tensors are the tree's tensors and whose header metadata holds
the rest of the tree as JSON, each tensor replaced by ``{"$tensor": "<key>"}``. Loading
parses JSON and safetensors only: nothing is unpickled, no code runs.

JSON cannot say everything Python can, so two more markers keep the tree exact:
``{"$tuple": [...]}`` for tuples and ``{"$items": [[key, value], ...]}`` for dicts
whose keys are not all strings (torch optimiser states are keyed by int).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from deepfield import atomic
from deepfield.errors import DeepfieldError

FORMAT = "deepfield.training_state"
_TREE_KEY = "deepfield_tree"
_MARKERS = ("$tensor", "$tuple", "$items")


def _encode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        # A private contiguous CPU copy: safetensors refuses views and shared storage.
        tensors[key] = value.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
        return {"$tensor": key}
    if isinstance(value, dict):
        if all(isinstance(k, str) and k not in _MARKERS for k in value):
            return {k: _encode(v, tensors) for k, v in value.items()}
        return {"$items": [[_encode(k, tensors), _encode(v, tensors)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v, tensors) for v in value]}
    if isinstance(value, list):
        return [_encode(v, tensors) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise DeepfieldError(f"cannot save a {type(value).__name__} in a training state (only tensors, numbers, "
                         "strings, lists, tuples and dicts)")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "$tensor" in value:
        return tensors[value["$tensor"]]
    if "$tuple" in value:
        return tuple(_decode(v, tensors) for v in value["$tuple"])
    if "$items" in value:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value["$items"]}
    return {k: _decode(v, tensors) for k, v in value.items()}


def save_state(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically: a reader sees the previous file or this one."""
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    tree = json.dumps(_encode(state, tensors))
    metadata = {"format": FORMAT, _TREE_KEY: tree}
    atomic.write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    return path


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a state written by :func:`save_state`; tensors come back on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise DeepfieldError(f"{path}: training state file not found")
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    except (SafetensorError, OSError) as exc:
        raise DeepfieldError(f"{path}: not a readable training state ({exc})") from None
    if metadata.get("format") != FORMAT or _TREE_KEY not in metadata:
        raise DeepfieldError(f"{path}: not a deepfield training state (no {FORMAT!r} header)")
    try:
        return _decode(json.loads(metadata[_TREE_KEY]), tensors)
    except (json.JSONDecodeError, KeyError) as exc:
        raise DeepfieldError(f"{path}: damaged training state header ({exc})") from None
