"""Drawing stamps from a trained ``generate`` run: ``Run.sample`` and ``deepfield sample``.

Conditions come in the units of the run's ``data.conditions`` columns (``{"half_light_radius": 0.6, "mag": -10}``,
the text ``"half_light_radius=0.6,mag=-10"``, or a table with one row per sample: a FITS/CSV/HDF5/Parquet file,
an astropy ``Table``, a mapping of columns); a run conditioned on classes takes the class name
(``labels=disk``). They are standardised (or one-hot) as in training, the network draws in normalised units,
and the samples come back in the training file's unit (``prepared.json``). The same seed gives the same samples.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
import torch
from astropy.table import Table
from rich.progress import MofNCompleteColumn, Progress

from deepfield import atomic
from deepfield.data.catalogues import read_catalogue
from deepfield.data.sources import HDF5_SUFFIXES
from deepfield.errors import DeepfieldError
from deepfield.models.generative import check_generative
from deepfield.outputs import check_output
from deepfield.tasks.generate import draw_stamps, network_conditions
from deepfield.tasks.prepared_info import GenerateInfo

if TYPE_CHECKING:
    from deepfield.tasks.run import Run

Condition = Mapping[str, float | str] | str | None
Conditions = str | os.PathLike[str] | Table | Mapping[str, Any] | None


def parse_condition(text: str) -> dict[str, float | str]:
    """``"hlr=0.4,mag=22.5"`` -> ``{"hlr": 0.4, "mag": 22.5}`` (a value that is no number stays text: a class)."""
    values: dict[str, float | str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise DeepfieldError(f"--condition {text!r}: {item!r} must look like name=value, e.g. hlr=0.4,mag=22.5")
        try:
            values[name.strip()] = float(value)
        except ValueError:
            values[name.strip()] = value.strip()
    return values


def _table(conditions: Conditions) -> Mapping[str, Any]:
    if isinstance(conditions, (str, os.PathLike)):
        return read_catalogue(conditions)
    return conditions  # type: ignore[return-value]


def condition_rows(info: GenerateInfo, n: int | None, condition: Condition = None,
                   conditions: Conditions = None) -> np.ndarray:
    """(N, K') conditions as the run reads them (numeric columns, or one column of class indices) for N samples:
    ``condition`` repeated ``n`` times, or one row per row of the ``conditions`` table; an unconditional run takes
    neither and ``n`` rows of nothing. Missing, unknown or non-numeric names are one line naming them."""
    names, where = info.conditions, "--conditions" if conditions is not None else "--condition"
    if condition is not None and conditions is not None:
        raise DeepfieldError("give --condition (one condition for every sample) or --conditions (a table), not both")
    if not names:
        if condition or conditions is not None:
            raise DeepfieldError("this run is unconditional (it was trained without data.conditions); leave "
                                 "--condition and --conditions out")
        return np.zeros((_count(n, None), 0), np.float64)
    if condition is None and conditions is None:
        raise DeepfieldError(f"this run is conditioned on {', '.join(names)}: give --condition "
                             f"\"{','.join(f'{name}=...' for name in names)}\" or --conditions TABLE")
    given = parse_condition(condition) if isinstance(condition, str) else condition if condition is not None else \
        _table(conditions)
    columns = list(given.keys()) if isinstance(given, Mapping) else list(given.colnames)
    missing, unknown = [c for c in names if c not in columns], [c for c in columns if c not in names]
    if missing or (unknown and condition is not None):
        extra = f"; unknown {', '.join(unknown)}" if unknown and condition is not None else ""
        raise DeepfieldError(f"{where}: the run is conditioned on {', '.join(names)}; missing "
                             f"{', '.join(missing) or 'none'}{extra}")
    if condition is not None:
        rows = _count(n, None)
        values = {name: np.full(rows, given[name], dtype=object) for name in names}
    else:
        values = {name: np.asarray(given[name]) for name in names}
        rows = _count(n, len(values[names[0]]))
    if info.condition_classes is not None:
        return _class_indices(values[names[0]], info.condition_classes, names[0], where)[:, None]
    return np.column_stack([_numbers(values[name], name, where) for name in names])


def _count(n: int | None, rows: int | None) -> int:
    if rows is not None and n is not None and n != rows:
        raise DeepfieldError(f"--n {n}, but the conditions table has {rows} rows (one sample per row): leave --n out")
    count = rows if rows is not None else n
    if count is None or isinstance(count, bool) or int(count) != count or count < 1:
        raise DeepfieldError(f"--n must be a positive number of samples, got {count!r}")
    return int(count)


def _numbers(values: np.ndarray, name: str, where: str) -> np.ndarray:
    try:
        numbers = np.asarray(np.ma.filled(values, np.nan), dtype=np.float64)
    except (TypeError, ValueError):
        numbers = np.array([np.nan])
    if not np.all(np.isfinite(numbers)):
        bad = next(v for v, ok in zip(np.ravel(values), np.isfinite(numbers)) if not ok) if numbers.size == len(
            values) else values[0]
        raise DeepfieldError(f"{where}: {name}={bad!s} is not a finite number")
    return numbers


def _class_indices(values: np.ndarray, classes: list[str], name: str, where: str) -> np.ndarray:
    indices = []
    for value in np.ravel(values):
        text = value.decode() if isinstance(value, bytes) else str(value)
        if text in classes:
            indices.append(classes.index(text))
        elif isinstance(value, (int, np.integer, float, np.floating)) and float(value).is_integer() and \
                0 <= int(value) < len(classes):
            indices.append(int(value))
        else:
            raise DeepfieldError(f"{where}: {name}={text} is not one of the run's classes ({', '.join(classes)})")
    return np.asarray(indices, dtype=np.float32)


def draw(model: torch.nn.Module, info: GenerateInfo, rows: np.ndarray, seed: int, batch_size: int = 256,
         advance: Callable[[int], None] | None = None, noise: bool = True, **options: Any) -> np.ndarray:
    """Samples (N, C, H, W) float32 in the training file's unit for the conditions ``rows`` (N, K') as read;
    ``options`` go to the model's ``sample`` (``temperature``; a diffusion model's ``steps``, ``guidance``, ``eta``);
    ``noise``: a VAE's samples get the training stamps' sky noise (:func:`~deepfield.tasks.generate.draw_stamps`)."""
    generative = check_generative(model, what="run network")
    conditions = torch.from_numpy(network_conditions(rows, info))
    generator = torch.Generator().manual_seed(int(seed))
    return draw_stamps(generative, info, conditions, generator, batch_size, advance, noise, **options).astype(
        np.float32)


def write_samples(path: Path, samples: np.ndarray, rows: np.ndarray, info: GenerateInfo, seed: int, run: str,
                  options: Mapping[str, Any]) -> Path:
    """The samples file (HDF5, atomically): ``samples`` (N, C, H, W) float32 (attrs ``bands``, ``unit``),
    ``conditions/<name>`` (N,) the conditions used (class names for a class condition), attrs ``seed``, ``run``,
    ``options`` (JSON)."""
    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as h5:
            data = h5.create_dataset("samples", data=samples)
            data.attrs["bands"] = list(info.bands)
            data.attrs["unit"] = info.unit
            group = h5.create_group("conditions", track_order=True)
            if info.condition_classes is not None:
                names = np.asarray(info.condition_classes)[rows[:, 0].astype(np.int64)]
                group.create_dataset(info.conditions[0], data=names.astype(np.bytes_))
            else:
                for k, name in enumerate(info.conditions):
                    group.create_dataset(name, data=rows[:, k].astype(np.float64))
            h5.attrs.update(seed=int(seed), run=str(run), options=json.dumps(dict(options)))
    atomic.write_with(path, write)
    return path



def sample_to_file(run: Run, out: str | os.PathLike[str], n: int | None = None, condition: Condition = None,
                   conditions: Conditions = None, seed: int = 0, batch_size: int = 256, overwrite: bool = False,
                   progress: bool = True, noise: bool = True, **options: Any) -> Path:
    """``deepfield sample``: :meth:`Run.sample` written by :func:`write_samples` to ``out`` (.h5), with a progress
    bar by batches. ``out`` may not be an input (the conditions table) nor lie in the run folder."""
    inputs = (conditions,) if isinstance(conditions, (str, os.PathLike)) else ()
    out = check_output(out, inputs=inputs, runs=(run.folder,), overwrite=overwrite)
    if not out.name.lower().endswith(HDF5_SUFFIXES):
        raise DeepfieldError(f"{out}: samples are written as HDF5; name the file .h5 or .hdf5")
    rows = condition_rows(run.info, n, condition, conditions)  # type: ignore[arg-type]
    with Progress(*Progress.get_default_columns(), MofNCompleteColumn(), transient=True,
                  disable=not progress) as bar:
        task = bar.add_task("sampling", total=len(rows))
        samples = draw(run.models[0], run.info, rows, seed, batch_size,  # type: ignore[arg-type]
                       lambda k: bar.advance(task, k), noise, **options)
    return write_samples(out, samples, rows, run.info, seed, str(run.folder), options | {"noise": noise})  # type: ignore[arg-type]
