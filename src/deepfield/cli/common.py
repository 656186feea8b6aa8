"""What the command groups share: the console and the parsers of option values (one-line errors)."""
from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.console import Console

from deepfield.errors import DeepfieldError

console = Console(soft_wrap=True)  # long paths stay on one line, also when piped

TRUST = Annotated[bool, typer.Option("--trust-unchecked", help="load a model.json that has no checksums (written by "
                                     "hand or by another program); a checksum that does not match is refused "
                                     "all the same")]
"""The option of every command that loads a saved model or run (its ``trust``)."""

OVERWRITE = Annotated[bool, typer.Option("--overwrite", help="replace an existing --out (never an input of the "
                                         "command nor a file in a run folder)")]
"""The option of every command that writes a file or folder the user names with ``--out``."""

TTA = Annotated[Optional[str], typer.Option(help="test-time augmentation over the run's model.tta: dihedral (the mean "
                                                 "over the 8 rotations and flips of each stamp) or none")]
"""The option of the commands that apply a run to stamps (evaluate, predict): ``model.tta`` for this call."""


def split_list(text: str | None) -> list[str] | None:
    """``"g,r,i" -> ["g", "r", "i"]``; ``None`` stays ``None``."""
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def parse_range(text: str, option: str, form: str = "low,high (e.g. 20,200)") -> tuple[float, float]:
    """``"20,200" -> (20.0, 200.0)``: two numbers (a range, a point); ``form`` shows them in the error."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise DeepfieldError(f"{option} {text!r} must be two numbers, {form}") from None
    return low, high


def parse_numbers(text: str, option: str, kind: type = int) -> list:
    """``"8,8" -> [8, 8]`` (``kind`` int or float); an empty text is an empty list."""
    try:
        return [kind(part) for part in split_list(text) or []]
    except ValueError:
        raise DeepfieldError(f"{option} {text!r} must be {kind.__name__}s separated by commas") from None


def parse_batch_size(text: str) -> int | str:
    """``"32" -> 32``; ``"full"`` stays."""
    if text.strip() == "full":
        return "full"
    try:
        return int(text)
    except ValueError:
        raise DeepfieldError(f"batch size {text!r} must be a positive integer or full") from None


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1x64x64" -> (1, 64, 64)``."""
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        shape = ()
    if not shape or any(s < 1 for s in shape):
        raise DeepfieldError(f"--input-shape {text!r} must be positive integers joined by 'x', like 1x64x64")
    return shape
