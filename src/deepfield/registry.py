"""Classes looked up by name: the one way losses, metrics and optimisers are found.

A registry maps lower-case names to classes; a name may also be an alias
(``"mean_squared_error" -> "mse"``) or the class name in any case (``"Adam"``).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from deepfield.errors import DeepfieldError, unknown_name

T = TypeVar("T")


def lookup(kind: str, name: object, registry: Mapping[str, type[T]],
           aliases: Mapping[str, str] | None = None) -> type[T]:
    """The class registered under ``name`` (or its alias or class name); else one clear error."""
    aliases = aliases or {}
    if isinstance(name, str):
        key = aliases.get(name.lower(), name.lower())
        if key in registry:
            return registry[key]
        for cls in registry.values():
            if cls.__name__.lower() == key:
                return cls
    raise unknown_name(kind, name, [*registry, *aliases])


def from_config(kind: str, spec: Mapping[str, Any], registry: Mapping[str, type[T]],
                aliases: Mapping[str, str] | None = None) -> T:
    """An instance from ``{"class_name": ..., "config": {...}}``; bad arguments name the class."""
    cls = lookup(kind, spec["class_name"], registry, aliases)
    try:
        return cls(**(spec.get("config") or {}))
    except TypeError as exc:
        raise DeepfieldError(f"{kind} {getattr(cls, 'name', cls.__name__)}: bad config ({exc})") from None
