"""What ``deepfield explain`` writes beside its figures: explain.npz (the arrays) and explain.json (the summary)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from deepfield import atomic
from deepfield.analysis.classification import jsonable


def write_explanation(out: Path, arrays: dict[str, np.ndarray], summary: dict[str, Any]) -> None:
    """``out/explain.npz`` (numpy, read with ``allow_pickle=False``) and ``out/explain.json``, written atomically."""
    atomic.write_with(out / "explain.npz", lambda tmp: _write_npz(tmp, arrays))
    atomic.write_text(out / "explain.json", json.dumps(jsonable(summary), indent=2) + "\n")


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as fh:  # a file object: numpy would add ".npz" to the temporary name
        np.savez_compressed(fh, **arrays)
