"""Things looked up by name: the one registry of every named family.

Layers, losses, metrics, optimisers, transforms, initialisers, activations, model presets and
feature extractors are each one :class:`Registry`, made where the family lives and found here
by kind (:func:`family`). A registry is a read-only mapping from registered names to entries (classes or factories) and
also knows

* aliases, the other spellings users write (Keras's ``"mean_squared_error"`` for ``"mse"``),
  listed beside the names when a name is unknown;
* quiet spellings, accepted but never offered: class names (``"MeanSquaredError"``) and names
  retired by a rename.

:meth:`Registry.lookup` resolves any of these and otherwise raises the one error for an unknown
name (:func:`deepfield.errors.unknown_name`), which lists the names and aliases. A name or
spelling is taken once: registering it again for something else is refused.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from deepfield.errors import DeepfieldError, unknown_name

T = TypeVar("T")

_FAMILIES: dict[str, Registry[Any]] = {}


class Registry(Mapping[str, T]):
    """The names of one family (``kind``: ``"loss"``, ``"layer"``, ...), first holding ``entries``.

    ``any_case`` folds case when looking up; ``class_names`` accepts a class entry's class name too.

    >>> from deepfield.training import losses
    >>> family("loss").lookup("Mean_Squared_Error") is losses.MeanSquaredError
    True
    """

    def __init__(self, kind: str, entries: Mapping[str, T] | None = None, *, any_case: bool = False,
                 class_names: bool = False) -> None:
        if kind in _FAMILIES:
            raise DeepfieldError(f"a registry of {kind} names exists already")
        self.kind = kind
        self.any_case = any_case
        self.class_names = class_names
        self._entries: dict[str, T] = {}
        self._spellings: dict[str, str] = {}  # folded spelling -> registered name
        self._aliases: list[str] = []
        for name, entry in (entries or {}).items():
            self.add(name, entry)
        _FAMILIES[kind] = self

    # -- filling ------------------------------------------------------------------
    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` as ``name`` (and, with ``class_names``, quietly its class name); a taken name is refused.

        The same class defined again (same module and qualified name: a notebook cell run twice)
        replaces its first definition.
        """
        taken = self._spellings.get(self._fold(name))
        if taken is not None and _same_definition(self._entries[taken], entry):
            self._entries[taken] = entry
            return entry
        self._claim(name, name)
        self._entries[name] = entry
        if self.class_names and isinstance(entry, type) and self._fold(entry.__name__) != self._fold(name):
            self._claim(entry.__name__, name)
        return entry

    def alias(self, spelling: str, name: str, *, listed: bool = True) -> None:
        """Let ``spelling`` stand for the registered ``name``; ``listed`` offers it in errors too."""
        if name not in self._entries:
            raise unknown_name(self.kind, name, self._entries)
        self._claim(spelling, name)
        if listed:
            self._aliases.append(spelling)

    def _claim(self, spelling: str, name: str) -> None:
        key = self._fold(spelling)
        if key in self._spellings:
            raise DeepfieldError(f"{self.kind} {spelling!r} is registered already (as {self._spellings[key]!r})")
        self._spellings[key] = name

    def _fold(self, name: str) -> str:
        return name.lower() if self.any_case else name

    # -- looking up ---------------------------------------------------------------
    def find(self, name: object) -> T | None:
        """The entry registered as ``name``, an alias or a quiet spelling; else ``None``."""
        key = self._spellings.get(self._fold(name)) if isinstance(name, str) else None
        return None if key is None else self._entries[key]

    def lookup(self, name: object) -> T:
        """The entry registered as ``name``, an alias or a quiet spelling; else the unknown-name error."""
        entry = self.find(name)
        if entry is None:
            raise unknown_name(self.kind, name, self.known())
        return entry

    def from_config(self, spec: Mapping[str, Any]) -> Any:
        """An instance from ``{"class_name": ..., "config": {...}}``; bad arguments name the class."""
        cls = self.lookup(spec.get("class_name"))
        try:
            return cls(**(spec.get("config") or {}))  # type: ignore[operator]
        except TypeError as exc:
            raise DeepfieldError(f"{self.kind} {getattr(cls, 'name', cls.__name__)}: bad config ({exc})") from None

    def known(self) -> list[str]:
        """The names and the listed aliases (what an error offers)."""
        return [*self._entries, *self._aliases]

    def names(self) -> tuple[str, ...]:
        """The registered names, sorted."""
        return tuple(sorted(self._entries))

    # -- the mapping of registered names ------------------------------------------
    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"


def family(kind: str) -> Registry[Any]:
    """The registry of ``kind`` (its module must have been imported), else the unknown-name error."""
    if kind not in _FAMILIES:
        raise unknown_name("registry", kind, _FAMILIES)
    return _FAMILIES[kind]


def _same_definition(old: object, new: object) -> bool:
    """Whether ``new`` is ``old`` defined again: a class of the same module and qualified name."""
    return (isinstance(old, type) and isinstance(new, type) and old.__module__ == new.__module__
            and old.__qualname__ == new.__qualname__)
