"""Train, evaluate and predict with a run folder (the contract of DESIGN.md).

``train(config)`` writes ``config.yaml``, ``model.json`` + ``weights.safetensors``,
``checkpoints/`` (best, and a backup that makes an interrupted run resume),
``history.csv``, ``summary.txt``, ``metrics.json``, ``figures/*.png`` and ``report.html``.
"""
from __future__ import annotations

import datetime
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from astropy.table import Table
from rich.console import Console

from deepfield import __version__, atomic
from deepfield.analysis.classification import jsonable
from deepfield.analysis.layer_features import default_layer, layer_features
from deepfield.data.images import Skipped, write_skip_report
from deepfield.errors import DeepfieldError
from deepfield.models import serialization
from deepfield.models.summary import summarize
from deepfield.report.figures import plot_learning_curves
from deepfield.report.html import write_report
from deepfield.tasks.base import Prepared, Task, make_optimizer
from deepfield.tasks.baselines.runner import append_rows, image_baselines, prepared_targets, run_baselines
from deepfield.tasks.config import RunConfig, load_config
from deepfield.tasks.imaging import Morphology, Quality
from deepfield.tasks.photoz import PhotoZ
from deepfield.tasks.tabular import Tabular
from deepfield.training import (BackupAndRestore, CSVLogger, EarlyStopping, Engine, ModelCheckpoint,
                                ReduceLROnPlateau)

TASKS: dict[str, type[Task]] = {task.name: task for task in (Morphology, PhotoZ, Quality, Tabular)}


def task_for(config: RunConfig) -> Task:
    if config.task not in TASKS:
        raise DeepfieldError(f"task {config.task!r} is not available yet; available: {', '.join(sorted(TASKS))}")
    return TASKS[config.task]()



def train(config: RunConfig, console: Console | None = None, verbose: int = 1) -> Path:
    """Run ``config`` end to end; returns the run folder. Starting it again resumes."""
    console = console or Console()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out / "config.yaml", config.to_yaml())
    task = task_for(config)
    started = time.perf_counter()

    prepared = task.prepare(config)
    skipped = prepared.info.get("skipped") or []
    if skipped:
        report = write_skip_report([Skipped(*row) for row in skipped], out / "data")
        console.print(f"[yellow]{len(skipped)} bad objects skipped[/], listed in {report}")
    atomic.write_text(out / "prepared.json", json.dumps(prepared.info, indent=2) + "\n")
    console.print(f"task {config.task}: " + ", ".join(f"{part} {len(x)}" for part, x in prepared.x.items())
                  + f" samples of shape {prepared.input_shape}")

    torch.manual_seed(config.seed)  # the weights of the new network follow the seed
    model = task.build_model(config, prepared)
    summary = summarize(model, prepared.input_shape)
    atomic.write_text(out / "summary.txt", str(summary))
    summary.print()

    engine = Engine(model, loss=config.training.loss or task.default_loss(prepared),
                    optimizer=make_optimizer(config),
                    metrics=config.training.metrics if config.training.metrics is not None
                    else task.default_metrics(prepared),
                    device=config.training.device, precision=config.training.precision,
                    channels_last=config.training.channels_last)
    checkpoints = out / "checkpoints"
    callbacks = [CSVLogger(out / "history.csv", append=True),
                 ModelCheckpoint(checkpoints / "best", monitor="val_loss", save_best_only=True),
                 BackupAndRestore(checkpoints / "backup", save_freq="epoch")]
    if config.training.reduce_lr:
        callbacks.append(ReduceLROnPlateau(factor=0.5, patience=config.training.reduce_lr))
    if config.training.early_stopping:
        callbacks.append(EarlyStopping(patience=config.training.early_stopping, restore_best_weights=True))
    history = engine.fit(prepared.x["train"], prepared.y["train"], batch_size=config.training.batch_size,
                         epochs=config.training.epochs, verbose=verbose, callbacks=callbacks,
                         validation_data=(prepared.x["validation"], prepared.y["validation"]), seed=config.seed)
    best = checkpoints / "best" / serialization.WEIGHTS_FILE
    if best.is_file():  # evaluate and keep the best epoch, not the last
        serialization.load_weights(model, best)
    serialization.save_model(model, out)
    train_seconds = time.perf_counter() - started

    metrics = analyse(task, engine, prepared, out / "figures", verbose)
    metrics.update(task=config.task, device=str(engine.device), time_s=round(train_seconds, 1),
                   date=datetime.datetime.now().isoformat(timespec="seconds"), deepfield_version=__version__,
                   epochs_run=len(history.history.get("loss", [])))
    atomic.write_text(out / "metrics.json", json.dumps(jsonable(metrics), indent=2, allow_nan=False) + "\n")
    plot_learning_curves(out / "history.csv", out / "figures" / "learning_curves.png",
                         metric=next((m for m in ("accuracy", "mae") if m in history.history), None))
    if config.baselines.run:
        add_baselines(config, prepared, console)
    write_report(out)
    return out


BASELINE_KEYS = ("accuracy", "macro_auc", "sigma_nmad", "outlier_fraction_0.15", "bias_median")


def add_baselines(config: RunConfig, prepared: Prepared, console: Console) -> list[dict[str, Any]]:
    """Classical baselines on ``prepared`` (the network's split), beside the network, in RUN/metrics.json."""
    if config.task == "tabular":
        raise DeepfieldError("baselines: tabular runs compare feature groups instead (data.feature_groups)")
    options = config.baselines
    console.print(f"baselines: {', '.join(options.learners)} on "
                  f"{', '.join(options.features) if prepared.x['train'].ndim == 4 else 'catalogue features'}")
    if prepared.x["train"].ndim == 4:
        rows = image_baselines(prepared, options.features, options.learners, seed=config.seed)
    else:
        (y_train, kind), (y_test, _) = prepared_targets(prepared, "train"), prepared_targets(prepared, "test")
        rows = run_baselines(prepared.x["train"], y_train, prepared.x["test"], y_test, task=kind,
                             learners=options.learners, seed=config.seed, feature_name="catalogue")
    metrics = json.loads((Path(config.out) / "metrics.json").read_text(encoding="utf-8"))
    network = {"model": f"network ({config.model.preset})", "features": "learned",
               **{key: metrics[key] for key in BASELINE_KEYS if key in metrics}}
    append_rows(config.out, [network, *rows])
    return rows


def baselines_run(config: RunConfig, console: Console | None = None) -> Path:
    """Run the baselines of a trained run's config on its exact split; update its metrics and report."""
    out = Path(config.out)
    if not (out / "metrics.json").is_file():
        raise DeepfieldError(f"{out}: no trained run here yet; `deepfield train` this config first "
                             "(or set baselines.run: true to do both)")
    add_baselines(config, task_for(config).prepare(config), console or Console())
    write_report(out)
    return out


def analyse(task: Task, engine: Engine, prepared: Prepared, figures: Path, verbose: int = 0) -> dict[str, Any]:
    """Loss and metrics on the test part, plus the task's science metrics and figures (into ``figures``)."""
    scores = engine.evaluate(prepared.x["test"], prepared.y["test"], batch_size=256, verbose=verbose)
    outputs = engine.predict(prepared.x["test"], batch_size=256, verbose=0)
    science = task.analyse(outputs, prepared, "test", figures)
    return {"test": {k: float(v) for k, v in scores.items()}, **science}



def open_run(run: str | Path) -> tuple[RunConfig, dict[str, Any], torch.nn.Module, Task]:
    """The resolved config, the prepared-data record, the trained network and its task."""
    run = Path(run)
    if not (run / "config.yaml").is_file():
        raise DeepfieldError(f"{run}: not a run folder (no config.yaml); train one with `deepfield train CONFIG`")
    config = load_config(run / "config.yaml")
    try:
        info = json.loads((run / "prepared.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DeepfieldError(f"{run / 'prepared.json'}: unreadable ({exc})") from None
    return config, info, serialization.load_model(run), task_for(config)


def evaluate_run(run: str | Path, data: str | Path | None = None, console: Console | None = None) -> dict[str, Any]:
    """Metrics of a trained run on its own test part, or on the labelled file ``data``.

    The figures go to ``RUN/figures`` (own test part) or ``RUN/evaluations/<file stem>/``,
    and the metrics to ``metrics.json`` there (own test part: ``RUN/evaluation.json``).
    """
    config, info, model, task = open_run(run)
    engine = Engine(model, loss=config.training.loss or task.default_loss(Prepared({}, {}, info=info)),
                    metrics=config.training.metrics, device=config.training.device)
    if data is None:
        prepared, target = task.prepare(config), Path(run) / "evaluation.json"
        figures = Path(run) / "figures"
    else:
        new = task.read_new(config, info, Path(data), labelled=True)
        prepared = task.new_prepared(new, info)
        target = Path(run) / "evaluations" / Path(data).stem / "metrics.json"
        figures = target.parent / "figures"
    metrics = analyse(task, engine, prepared, figures, verbose=0)
    atomic.write_text(target, json.dumps(jsonable(metrics), indent=2, allow_nan=False) + "\n")
    return metrics


PREDICTION_FORMATS = {".csv": "ascii.csv", ".fits": "fits", ".fit": "fits", ".h5": "hdf5", ".hdf5": "hdf5"}


def table_format(out: Path, what: str) -> str:
    """The astropy format that ``out``'s suffix names; ``what`` (e.g. ``"predictions"``) for the error."""
    fmt = PREDICTION_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise DeepfieldError(f"{out}: write {what} as .csv, .fits or .h5")
    return fmt


def write_table(table: Table, out: Path, what: str) -> Path:
    """Write ``table`` to ``out`` atomically as CSV, FITS or HDF5 (by suffix; HDF5 path ``what``, with meta)."""
    fmt = table_format(out, what)
    options = {"path": what, "serialize_meta": True} if fmt == "hdf5" else {}
    atomic.write_with(out, lambda tmp: table.write(tmp, format=fmt, overwrite=True, **options))
    return out


def predict_run(run: str | Path, data: str | Path, out: str | Path) -> Path:
    """Write the network's predictions for every object of ``data`` to ``out`` (CSV, FITS or HDF5), with ids."""
    out = Path(out)
    table_format(out, "predictions")
    config, info, model, task = open_run(run)
    new = task.read_new(config, info, Path(data), labelled=False)
    outputs = Engine(model, device=config.training.device).predict(new.x, batch_size=256, verbose=0)
    table = Table({"id": np.asarray(new.ids).astype(str), **task.describe(outputs, info)})
    table.meta["run"] = str(run)
    return write_table(table, out, "predictions")


def features_run(run: str | Path, data: str | Path, out: str | Path, layer: str | None = None) -> Path:
    """Write the output of one layer of the run's network for every object of ``data`` to ``out``.

    ``layer``: a name from :func:`~deepfield.analysis.layer_features.layer_names`;
    ``None`` takes the layer before the head. The table has ``id`` and ``f0 .. f{F-1}``
    (the layer's output flattened, float32), and ``run`` and ``layer`` in its meta
    (kept by FITS and HDF5; CSV holds the columns only). FITS and HDF5 tables take at
    most 999 columns: a wider layer goes to CSV.
    """
    out = Path(out)
    fmt = table_format(out, "features")
    config, info, model, task = open_run(run)
    new = task.read_new(config, info, Path(data), labelled=False)
    name = default_layer(model) if layer is None else layer
    features = layer_features(model, new.x, name, batch_size=256, device=config.training.device)
    if fmt != "ascii.csv" and features.shape[1] + 1 > 999:
        raise DeepfieldError(f"{out}: layer {name!r} gives {features.shape[1]} features, more columns than a "
                             f"{out.suffix} table holds (999); write .csv or choose a narrower layer")
    table = Table({"id": np.asarray(new.ids).astype(str), **{f"f{i}": column for i, column in enumerate(features.T)}})
    table.meta.update(run=str(run), layer=name)
    return write_table(table, out, "features")
