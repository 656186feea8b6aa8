"""The explain methods a user names, checked against those a network's output takes."""
from __future__ import annotations

from collections.abc import Callable, Sequence

from deepfield.errors import DeepfieldError


def chosen_methods(names: Sequence[str], known: Sequence[str], refuse: Callable[[str], DeepfieldError]) -> list[str]:
    """The ``known`` methods named (``all`` for every one; ``_`` read as ``-``), in ``known``'s order;
    ``refuse(name)`` is raised for a name not known, and naming none is one error line."""
    chosen = set()
    for name in names:
        name = name.strip().replace("_", "-")
        if name == "all":
            chosen.update(known)
        elif name in known:
            chosen.add(name)
        else:
            raise refuse(name)
    if not chosen:
        raise DeepfieldError("explain: name at least one method (or all)")
    return [m for m in known if m in chosen]
