"""Where a run's data lives: the paths ``config.yaml`` records, and finding them again after a move.

The rule. ``deepfield train`` saves each data path of the config (``data.path``,
``data.validation``, ``data.test``, ``data.labels.table``) in ``RUN/config.yaml`` twice:

* resolved (absolute), in the ``data`` section itself;
* relative to the run folder, in ``data_from_run``, only when the file lies inside the folder
  that holds the run (the run's parent): ``runs/demo/data/sky.h5`` beside the run folder
  ``runs/demo/run`` is ``../data/sky.h5``. That tree moves as one; a path climbing further out
  (``../../../survey/sky.h5``) would break as soon as the run alone moved, so it is not kept.

:func:`find_data` looks for each path, in order: relative to the run folder as found now (the
run moved with its data), the absolute path (only the run moved, or the current folder
changed), and, for a run saved before this rule, the path as written, from the current folder.
A path found nowhere is reported with every place tried; only reading the training data needs it
(``evaluate`` on the run's own test part, ``explain`` without a file), never new files.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from deepfield.tasks.config import DataConfig, RunConfig

DATA_KEYS = ("path", "validation", "test", "labels.table")
"""The ``data`` keys that name files (``labels.table``: a label table's)."""


def data_path(data: DataConfig, key: str) -> Path | None:
    """The path at ``data.<key>`` (dotted), or ``None`` where the config has none."""
    node: Any = data
    for part in key.split("."):
        node = getattr(node, part, None)
    return Path(node) if isinstance(node, (str, os.PathLike)) else None


def with_paths(data: DataConfig, paths: dict[str, Path]) -> DataConfig:
    """``data`` with the path of each dotted key of ``paths`` replaced."""
    plain = {key: value for key, value in paths.items() if "." not in key}
    if "labels.table" in paths:
        plain["labels"] = data.labels.model_copy(update={"table": paths["labels.table"]})
    return data.model_copy(update=plain)


def relative_to_run(path: Path, run: Path) -> str | None:
    """``path`` relative to the run folder ``run`` (both absolute) when it lies inside ``run``'s parent, else None."""
    relative = Path(os.path.relpath(path, run))
    return relative.as_posix() if relative.parts.count("..") <= 1 else None


def saved_config(config: RunConfig) -> RunConfig:
    """``config`` as ``RUN/config.yaml`` keeps it: data paths absolute, plus ``data_from_run`` (module docstring)."""
    run = Path(config.out).resolve()
    absolute = {key: value.resolve() for key in DATA_KEYS if (value := data_path(config.data, key)) is not None}
    relative = {key: rel for key, path in absolute.items() if (rel := relative_to_run(path, run)) is not None}
    return config.model_copy(update={"data": with_paths(config.data, absolute), "data_from_run": relative})


def candidates(config: RunConfig, run: Path, key: str) -> list[Path]:
    """Where to look for ``data.<key>`` of the run found at ``run``, in order (module docstring)."""
    written = data_path(config.data, key)
    places = []
    if key in config.data_from_run:
        places.append(Path(os.path.normpath(run.resolve() / config.data_from_run[key])))
    places.append(written if written.is_absolute() else written.absolute())
    return list(dict.fromkeys(places))


def find_data(config: RunConfig, run: Path) -> tuple[RunConfig, dict[str, list[Path]]]:
    """``config`` with each data path replaced by the first place it is found, and the paths
    found nowhere: ``{key: [places tried]}`` (those keep their absolute path)."""
    found, missing = {}, {}
    for key in DATA_KEYS:
        if data_path(config.data, key) is None:
            continue
        places = candidates(config, run, key)
        found[key] = next((p for p in places if p.exists()), places[-1])
        if not found[key].exists():
            missing[key] = places
    return config.model_copy(update={"data": with_paths(config.data, found)}), missing


def missing_message(run: Path, missing: dict[str, list[Path]], what: str) -> str:
    """The one-line error when ``what`` needs the training data of ``run`` and some of it is gone."""
    tried = "; ".join(f"data.{key}: tried {', '.join(str(p) for p in places)}" for key, places in missing.items())
    return (f"{run}: the data it was trained on is not found ({tried}); {what}, "
            "or put the data back at one of those places")
