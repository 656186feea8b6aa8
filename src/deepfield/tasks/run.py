"""A trained run folder read back: ``load_run(folder)`` gives the :class:`Run` the CLI uses.

Its ``predict``, ``evaluate``, ``explain`` and ``features`` are what ``deepfield predict / evaluate /
explain / features`` call (``predict_run`` and the others only write their tables, :mod:`~deepfield.tasks.tables`).
Nothing in a run folder executes code (JSON, YAML and safetensors). Training one is
:mod:`deepfield.tasks.pipeline` (``train`` is named here too, as the runs' one entry point).
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from astropy.table import Table
from rich.console import Console

from deepfield import atomic
from deepfield.analysis.classification import jsonable
from deepfield.analysis.layer_features import default_layer, layer_features
from deepfield.errors import DeepfieldError
from deepfield.models import serialization
from deepfield.models.test_time import with_tta
from deepfield.outputs import check_output
from deepfield.tasks import run_paths
from deepfield.tasks.base import Calibration, NewData, Prepared, Task
from deepfield.tasks.config import RunConfig, load_config
from deepfield.tasks.explain import explain
from deepfield.tasks.explain_region import source_apertures
from deepfield.tasks.prepared_info import GenerateInfo, PreparedInfo
from deepfield.tasks.pipeline import analyse, class_labels, draws_per_network, prepare, run_predictive, task_for, train
from deepfield.tasks.reading import with_reading
from deepfield.tasks.run_folder import CALIBRATION_FILE, PREPARED_FILE, member_folders
from deepfield.tasks.sampling import Condition, Conditions, condition_rows, draw
from deepfield.tasks.tables import carried_columns, source_name, table_format, write_table
from deepfield.training.mc_dropout import MCPrediction

__all__ = ["Run", "evaluate_run", "explain_run", "features_run", "load_run", "predict_run", "train"]
"""``train`` is :mod:`deepfield.tasks.pipeline`'s, named here too: a run's one address for training and reading."""


def read_calibration(run: Path) -> Calibration:
    """``calibration.json``: the temperature (a float) where it holds one, as it always did, else the task's
    dict (:meth:`Task.fit_calibration`); ``None`` without the file."""
    path = run / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or not record:
            raise ValueError("expected a JSON object")
        return float(record["temperature"]) if "temperature" in record else record
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DeepfieldError(f"{path}: unreadable ({exc})") from None


@dataclass
class Run:
    """A trained run as the CLI sees it: ``df.load_run(folder)`` (:func:`load_run`).

    ``predict``, ``evaluate``, ``explain`` and ``features`` apply exactly what ``deepfield
    predict / evaluate / explain / features`` apply (those commands call them): the run's
    reader options, its normalisation and stretch fitted on the training part, every network
    of an ensemble with its MC draws, and the calibration fitted on the validation part.

    Attributes: ``folder`` (as found), ``config`` (its data paths where they were found,
    :mod:`~deepfield.tasks.run_paths`), ``info`` (``prepared.json`` as the task's model of
    :mod:`~deepfield.tasks.prepared_info`: bands, classes, normalisation), ``models`` (one
    network, or an ensemble's members), ``task``,
    ``calibration`` (``calibration.json``: ``None``, a classifier's temperature or the task's recalibration,
    :data:`~deepfield.tasks.base.Calibration`) and ``missing`` (training data paths found
    nowhere: ``{key: [places tried]}``; only evaluating or explaining its own test part needs them).
    """

    folder: Path
    config: RunConfig
    info: PreparedInfo
    models: list[torch.nn.Module]
    task: Task
    calibration: Calibration
    missing: dict[str, list[Path]] = field(default_factory=dict)

    @property
    def temperature(self) -> float | None:
        """The temperature fitted on the validation part (a classifier; ``None``: not calibrated)."""
        return self.calibration if isinstance(self.calibration, float) else None

    @property
    def classes(self) -> list[str] | None:
        """The class names of a classifier, in output order (``None``: a regression)."""
        return self.info.classes

    @property
    def bands(self) -> list[str] | None:
        """The bands (channels, or the photometry's) in input order."""
        return self.info.bands

    def with_tta(self, mode: str | None) -> Run:
        """This run predicting with ``model.tta`` set to ``mode`` (``"dihedral"``, or ``None``: one pass), its
        networks unchanged: ``deepfield evaluate/predict --tta``. The config is checked again (one line where the
        run cannot take it: MC draws, a generative run)."""
        document = self.config.model_dump(mode="json")
        document["model"]["tta"] = mode
        return replace(self, config=load_config(None, document=document, source=f"{self.folder} --tta {mode}"))

    @property
    def draws(self) -> int:
        """Predictions pooled per object: networks × MC draws per network (at least 1)."""
        return len(self.models) * max(draws_per_network(self.config), 1)

    def inputs(self, data: str | os.PathLike[str] | Any, labelled: bool = False,
               reading: Mapping[str, Any] | None = None) -> NewData:
        """Network-ready inputs: ``data`` a file (read with the run's reader options, ``reading``
        laid over them: :func:`~deepfield.tasks.reading.with_reading`) or raw values held in
        memory (stamps ``(N, C, H, W)`` as an array, catalogue rows as a table:
        :meth:`Task.read_values`), prepared as the training data was."""
        if isinstance(data, (str, os.PathLike)):
            config = self.config.model_copy(update={"data": with_reading(self.config.data, reading, labelled)})
            new = self.task.read_new(config, self.info, Path(data), labelled)
        else:
            new = self.task.read_values(self.config, self.info, data)
        if len(new.x) == 0:
            raise DeepfieldError(f"{source_name(data)}: no objects to read (0 rows or stamps)")
        return new

    def predictive(self, x: np.ndarray) -> MCPrediction:
        """Every network's draws on network-ready inputs ``x`` (from :meth:`inputs`), pooled (the draws themselves
        kept where the task reads them: :attr:`Task.keeps_draws`)."""
        return run_predictive(self.config, self.task, self.models, x, self.info, self.task.keeps_draws)

    def predict(self, data: str | os.PathLike[str] | Any, reading: Mapping[str, Any] | None = None,
                keep: Sequence[str] = ()) -> Table:
        """The table ``deepfield predict`` writes, for a file or raw values (:meth:`inputs`).

        Columns: ``id`` (text; row indices for values in memory), ``ra``/``dec`` when known and
        the ``keep`` columns (:func:`carried_columns`), then the task's (``predicted`` and
        ``p_<class>`` probabilities, or the predicted values) and its uncertainty columns
        (:meth:`Task.describe_uncertainty`: predictive entropy, mutual information, σ...).
        Meta: ``run``, ``draws`` and the ``temperature`` applied to the calibrated columns.
        """
        new = self.inputs(data, reading=reading)
        carried = carried_columns(new, source_name(data), keep)
        prediction = self.predictive(new.x)
        columns = {**self.task.describe(prediction.mean, self.info),
                   **self.task.describe_uncertainty(prediction, self.info, self.calibration)}
        clash = sorted(set(carried) & set(columns))
        if clash:
            raise DeepfieldError(f"--keep: {', '.join(clash)} would replace the prediction column of that name")
        table = Table({**carried, **columns})
        table.meta.update(run=str(self.folder), draws=self.draws)
        if self.temperature is not None:
            table.meta["temperature"] = self.temperature
        return table

    def training_data(self, what: str = "evaluate another labelled file with --data FILE") -> Prepared:
        """The run's data prepared (and split) as in training; ``what`` says in the error what else to do."""
        if self.missing:
            raise DeepfieldError(run_paths.missing_message(self.folder, self.missing, what))
        return prepare(self.task, self.config)

    def evaluate(self, data: str | os.PathLike[str] | None = None,
                 reading: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Metrics on the run's own test part, or on the labelled file ``data``, as ``deepfield evaluate``.

        The figures go to ``RUN/figures`` (own test part) or ``RUN/evaluations/<file stem>/``,
        and the metrics to ``metrics.json`` there (own test part: ``RUN/evaluation.json``).
        """
        if data is None:
            prepared, target = self.training_data(), self.folder / "evaluation.json"
            figures = self.folder / "figures"
        else:
            prepared = self.task.new_prepared(self.inputs(data, labelled=True, reading=reading), self.info)
            target = self.folder / "evaluations" / Path(data).stem / "metrics.json"
            figures = target.parent / "figures"
        metrics = analyse(self.task, self.models, prepared, figures, self.config, self.calibration)
        atomic.write_text(target, json.dumps(jsonable(metrics), indent=2, allow_nan=False) + "\n")
        return metrics

    def explain(self, data: str | os.PathLike[str] | Any = None, out: str | os.PathLike[str] = "explain",
                methods: list[str] | None = None, reading: Mapping[str, Any] | None = None,
                **settings: Any) -> Path:
        """Look inside the network (:mod:`deepfield.tasks.explain`) on ``data`` (a file or raw stamps;
        ``None``: the run's test part) into the folder ``out``, as ``deepfield explain``.

        ``settings`` override the run's ``explain`` config (``layer``, ``per_class``, ``baseline``,
        ``steps``, ``occlusion``, an image output's ``region`` or ``window``); an ensemble shows its first member.
        """
        options = self.config.explain.model_copy(update={k: v for k, v in settings.items() if v is not None})
        if data is None:
            prepared = self.training_data("explain another file (deepfield explain RUN FILE)")
            images, labels, sources = prepared.x["test"], class_labels(self.task, prepared), source_apertures(prepared)
        else:
            new = self.inputs(data, reading=reading)
            images, labels, sources = new.x, None, source_apertures(new)
        explain(self.models[0], images, Path(out), options, labels=labels, class_names=self.classes,
                band_names=self.bands, methods=methods, seed=self.config.seed, task=self.task, info=self.info,
                apertures=sources)
        return Path(out)

    def sample(self, n: int | None = None, condition: Condition = None, conditions: Conditions = None, seed: int = 0,
               batch_size: int = 256, noise: bool = True, **options: Any) -> np.ndarray:
        """``n`` stamps (N, C, H, W) float32 in the training file's unit drawn from a ``generate`` run, as ``deepfield
        sample``: at ``condition`` (``{"half_light_radius": 0.6}`` or ``"half_light_radius=0.6"``) or one per row of
        the ``conditions`` table (:mod:`~deepfield.tasks.sampling`); ``options``: the model's (``temperature``,
        ``steps``, ``guidance``). ``noise=False``: a VAE's noise-free decoder mean, without the training stamps'
        sky noise (e.g. to draw into a GalSim scene that adds its own). The same seed gives the same stamps; an
        ensemble draws from its first network."""
        if not isinstance(self.info, GenerateInfo):
            raise DeepfieldError(f"run {self.folder} is a {self.config.task} run; only task generate runs sample")
        rows = condition_rows(self.info, n, condition, conditions)
        return draw(self.models[0], self.info, rows, seed, batch_size, noise=noise, **options)

    def features(self, data: str | os.PathLike[str] | Any, layer: str | None = None,
                 reading: Mapping[str, Any] | None = None, keep: Sequence[str] = ()) -> Table:
        """The output of one layer of the network for every object of ``data``, as ``deepfield features``.

        ``layer``: a name from :func:`~deepfield.analysis.layer_features.layer_names`; ``None``
        takes the layer before the head; an ensemble gives its first member's. Columns as
        :meth:`predict` starts (``id``, ``ra``/``dec``, ``keep``), then ``f0 .. f{F-1}`` (the
        layer's output flattened, float32); meta ``run`` and ``layer``.
        """
        model = self.models[0]
        new = self.inputs(data, reading=reading)
        carried = carried_columns(new, source_name(data), keep)
        name = default_layer(model) if layer is None else layer
        features = layer_features(model, new.x, name, batch_size=256, device=self.config.training.device)
        table = Table({**carried, **{f"f{i}": column for i, column in enumerate(features.T)}})
        table.meta.update(run=str(self.folder), layer=name)
        return table


def load_run(run: str | os.PathLike[str], *, trust: bool = False) -> Run:
    """Read a run folder, wherever it now is; nothing in it executes code (JSON, YAML and safetensors).

    ``trust``: load networks whose model.json has no checksum (see :mod:`deepfield.models.serialization`).

    Its data paths are looked for as :mod:`~deepfield.tasks.run_paths` says (beside the run,
    then where they were); ``config.out`` becomes the folder as found.
    """
    run = Path(run)
    if not (run / "config.yaml").is_file():
        raise DeepfieldError(f"{run}: not a run folder (no config.yaml); train one with `deepfield train CONFIG`")
    config = load_config(run / "config.yaml")
    config, missing = run_paths.find_data(config.model_copy(update={"out": run}), run)
    check_finished(run, config)
    task = task_for(config)
    calibration = read_calibration(run)
    info = task.calibrated_info(task.info_model.read(run / PREPARED_FILE), calibration)
    models = [serialization.load_network(folder, trust=trust) for folder, _ in member_folders(config)]
    return Run(run, config, info, models, task, calibration, missing)


def check_finished(run: Path, config: RunConfig) -> None:
    """Refuse a run whose training was interrupted before every network was saved, saying how to resume it."""
    folders = member_folders(config)
    for k, (folder, _) in enumerate(folders):
        if not serialization.is_saved(folder):
            network = (f"member {k + 1} of {len(folders)} ({folder.relative_to(run)}) was not trained"
                       if len(folders) > 1 else "its network was not saved")
            raise DeepfieldError(f"run {run} is not finished: {network}; start `deepfield train` with its "
                                 f"config again to resume ({run / 'config.yaml'})")


TTA_CHOICES = {"dihedral": "dihedral", "none": None}
"""``--tta`` of evaluate and predict: its values and the ``model.tta`` each sets."""


def _loaded(run: str | Path, trust: bool, tta: str | None) -> Run:
    """The run folder ``run`` loaded, with ``--tta`` laid over its ``model.tta`` when given."""
    loaded = load_run(run, trust=trust)
    if tta is None:
        return loaded
    if tta not in TTA_CHOICES:
        raise DeepfieldError(f"--tta must be one of {', '.join(TTA_CHOICES)}; got {tta!r}")
    return loaded.with_tta(TTA_CHOICES[tta])


def evaluate_run(run: str | Path, data: str | Path | None = None, console: Console | None = None,
                 reading: Mapping[str, Any] | None = None, *, trust: bool = False,
                 tta: str | None = None) -> dict[str, Any]:
    """``deepfield evaluate``: :meth:`Run.evaluate` of the run folder ``run`` (``tta``: ``"dihedral"`` or ``"none"``
    over the run's ``model.tta``; ``None``: the run's own)."""
    return _loaded(run, trust, tta).evaluate(data, reading)


def predict_run(run: str | Path, data: str | Path, out: str | Path, reading: Mapping[str, Any] | None = None,
                keep: Sequence[str] = (), *, trust: bool = False, overwrite: bool = False,
                tta: str | None = None) -> Path:
    """``deepfield predict``: :meth:`Run.predict` of every object of ``data``, written to ``out`` (CSV, FITS or HDF5);
    for a task that restores whole images (denoise) and a FITS image, the restored image by tiles
    (:meth:`Task.predict_whole_image`).

    ``out`` may not be an input nor lie in the run folder; an existing ``out`` is replaced only with ``overwrite``.
    ``tta`` as :func:`evaluate_run`'s.
    """
    out = check_output(out, inputs=read_files(data, reading), runs=(run,), overwrite=overwrite)
    table_format(out, "predictions")
    loaded = _loaded(run, trust, tta)
    networks = [with_tta(model, loaded.config.model.tta) for model in loaded.models]
    whole = loaded.task.predict_whole_image(networks, loaded.config, loaded.info, Path(data), out, overwrite)
    return whole or write_table(loaded.predict(data, reading, keep), out, "predictions")


def read_files(data: str | Path | None, reading: Mapping[str, Any] | None) -> tuple[str | Path, ...]:
    """The files a command reads besides the run: ``data`` and a ``--labels`` table (for :func:`check_output`)."""
    labels = (reading or {}).get("labels")
    table = labels.get("table") if isinstance(labels, Mapping) else labels
    return tuple(path for path in (data, table) if isinstance(path, (str, os.PathLike)))


def explain_run(run: str | Path, data: str | Path | None, out: str | Path, methods: list[str] | None = None,
                reading: Mapping[str, Any] | None = None, trust: bool = False, overwrite: bool = False,
                **settings: Any) -> Path:
    """``deepfield explain``: :meth:`Run.explain` of the run folder ``run``.

    The folder ``out`` may not be an input nor lie in the run folder (its own ``explain/`` is written
    by ``train``); an existing ``out`` is rewritten when an earlier explain wrote it, any other
    non-empty folder only with ``overwrite``.
    """
    check_output(out, inputs=read_files(data, reading), runs=(run,), overwrite=overwrite,
                 folder="explain.json")
    return load_run(run, trust=trust).explain(data, out, methods, reading, **settings)


def features_run(run: str | Path, data: str | Path, out: str | Path, layer: str | None = None,
                 reading: Mapping[str, Any] | None = None, keep: Sequence[str] = (), *, trust: bool = False,
                 overwrite: bool = False) -> Path:
    """``deepfield features``: :meth:`Run.features` for every object of ``data``, written to ``out``.

    FITS and HDF5 tables take at most 999 columns: a wider layer goes to CSV (FITS and HDF5
    keep the meta, CSV the columns only). ``out`` is checked as in :func:`predict_run`.
    """
    out = check_output(out, inputs=read_files(data, reading), runs=(run,), overwrite=overwrite)
    fmt = table_format(out, "features")
    table = load_run(run, trust=trust).features(data, layer, reading, keep)
    if fmt != "ascii.csv" and len(table.colnames) > 999:
        raise DeepfieldError(f"{out}: layer {table.meta['layer']!r} gives {len(table.colnames) - 1} features, more "
                             f"columns than a {out.suffix} table holds (999); write .csv or choose a narrower layer")
    return write_table(table, out, "features")
