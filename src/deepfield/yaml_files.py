"""YAML read safely: text only, and no alias "bomb" expanded.

``yaml.safe_load`` runs no code, but a document of a few hundred bytes whose anchors
alias each other (``a2: [*a1, *a1, ...]``, "billion laughs") stands for 10⁹ values:
validating it, or echoing it in an error message, takes hours and gigabytes. Here the
composed document is measured first, each shared node counted once per use, and refused
beyond :data:`MAX_NODES`.
"""
from __future__ import annotations

import reprlib
from typing import Any

import yaml

from deepfield.errors import DeepfieldError

MAX_NODES = 1_000_000
"""Values (scalars, lists, mappings) a document may stand for, its aliases expanded."""


def parse(text: str, source: str) -> Any:
    """The Python value of the YAML ``text``; ``source`` names it in errors.

    Raises :class:`yaml.YAMLError` for bad YAML, :class:`DeepfieldError` for a document whose
    aliases expand to more than :data:`MAX_NODES` values.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = expanded_size(node)
        if size > MAX_NODES:
            raise DeepfieldError(f"{source}: its aliases (*name) expand to over {MAX_NODES:,} values; "
                                 "write the values out or use fewer aliases")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def expanded_size(node: yaml.Node) -> int:
    """How many values ``node`` stands for, every alias expanded (linear in the composed graph)."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(node, False)]
    while stack:
        current, done = stack.pop()
        if id(current) in sizes:
            continue
        children = _children(current)
        if done or not children:
            sizes[id(current)] = 1 + sum(sizes.get(id(child), 0) for child in children)
            if sizes[id(current)] > MAX_NODES:
                return sizes[id(current)]
            continue
        stack.append((current, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)
    return sizes[id(node)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 6
_SHORT.maxlevel = 3


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to about ``limit`` characters, without walking all of a large value."""
    text = _SHORT.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
