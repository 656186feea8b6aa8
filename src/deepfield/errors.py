"""The one error type deepfield raises for things a user can fix.

Every message is one line that names the thing (file, column, layer, option) and
what was expected; the CLI prints it without a traceback and exits non-zero.
"""
from __future__ import annotations

from collections.abc import Iterable


class DeepfieldError(ValueError):
    """A bad input, name, shape, file or config value, described in one line."""


def flag(owner: str, name: str, value: object) -> bool:
    """``value`` if it is ``True`` or ``False``; else the error naming ``owner`` and ``name``.

    A string such as ``"maybe"`` or ``"false"`` (a config typo, or quotes) is truthy to Python:
    taking it for ``True`` would do the opposite of what was meant, silently.

    >>> flag("adam", "amsgrad", True)
    True

    ``flag("adam", "amsgrad", "maybe")`` raises "adam: amsgrad must be true or false, got 'maybe'".
    """
    if not isinstance(value, bool):
        raise DeepfieldError(f"{owner}: {name} must be true or false, got {value!r}")
    return value


def unknown_name(kind: str, name: object, choices: Iterable[str]) -> DeepfieldError:
    """The error for a name that is not in a registry, listing what is.

    >>> str(unknown_name("optimizer", "adamm", ["adam", "sgd"]))
    "unknown optimizer 'adamm'; expected one of: adam, sgd"
    """
    return DeepfieldError(f"unknown {kind} {name!r}; expected one of: {', '.join(sorted(choices))}")
