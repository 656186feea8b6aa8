"""The training pipeline of a run: prepare the data, check, fit every network, analyse, finish.

``train(config)`` locks the run folder (:mod:`deepfield.folder_lock`), decides what a train into it does
(:mod:`~deepfield.tasks.rerun`), checks the config, the data and the network before anything in the
folder changes, then writes ``config.yaml``, ``prepared.json``, ``summary.txt``, ``history.csv``,
``checkpoints/`` (best, the last epoch's backup from which a rerun resumes or continues, ``elapsed.json``,
``trained.json``), ``model.json`` + ``weights.safetensors``, ``figures/*.png`` and ``metrics.json`` (last:
the run is finished); the files and states are :mod:`~deepfield.tasks.run_folder`'s. Reading a finished
run back is :mod:`deepfield.tasks.run`.
"""
from __future__ import annotations

import contextlib
import csv
import datetime
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape

from deepfield import atomic, folder_lock
from deepfield.analysis.chance import chance_level, chance_warning, has_batch_norm
from deepfield.analysis.classification import jsonable
from deepfield.analysis.uncertainty import predictive
from deepfield.data.images import Skipped, write_skip_report
from deepfield.errors import DeepfieldError
from deepfield.models import serialization
from deepfield.models.summary import summarize
from deepfield.models.test_time import with_tta
from deepfield.plots import plot_gradient_norms, plot_learning_curves
from deepfield.registry import Registry
from deepfield.tasks import rerun, run_paths
from deepfield.tasks.base import Calibration, Prepared, Task, make_optimizer
from deepfield.tasks.baselines.runner import append_rows, image_baselines, merge_rows, prepared_targets, run_baselines
from deepfield.tasks.config import RunConfig
from deepfield.tasks.deblend import Deblend
from deepfield.tasks.denoise import Denoise
from deepfield.tasks.explain import explain
from deepfield.tasks.explain_region import source_apertures
from deepfield.tasks.generate import Generate
from deepfield.tasks.imaging import Morphology, Quality
from deepfield.tasks.photoz import PhotoZ
from deepfield.tasks.prepared_info import PreparedInfo
from deepfield.tasks.rerun import Plan
from deepfield.tasks.run_folder import (CALIBRATION_FILE, CONFIG_FILE, ELAPSED_FILE, METRICS_FILE, PREPARED_FILE,
                                        REPORT_FILE, TRAINED_FILE, history_rows, is_done, member_folders)
from deepfield.tasks.segment import Segment
from deepfield.tasks.tabular import Tabular
from deepfield.tasks.uncertainty import fit_run_temperature
from deepfield.training import (BackupAndRestore, Callback, CSVLogger, EarlyStopping, Engine, GradientNormLogger,
                                KLAnnealing, ModelCheckpoint, ReduceLROnPlateau, TerminateOnNaN, TrainingDiverged,
                                distributed, resolve_device)
from deepfield.training.augment import BatchAugment
from deepfield.training.mc_dropout import MCPrediction
from deepfield.version import __version__

TASKS: Registry[type[Task]] = Registry("task", {task.name: task
                                                for task in (Morphology, PhotoZ, Quality, Tabular, Denoise,
                                                             Deblend, Segment, Generate)})
"""The tasks ``task:`` in a config names (their names also in :class:`~deepfield.tasks.config.RunConfig`)."""


def prepare(task: Task, config: RunConfig) -> Prepared:
    """The task's prepared data, with the run's choices that shape the network's head in ``info``."""
    prepared = task.prepare(config)
    if config.uncertainty.heteroscedastic:
        if task.output_kind(prepared.info) == "probabilities":
            raise DeepfieldError(f"uncertainty.heteroscedastic: a mean and log-variance head is for regression; "
                                 f"this {config.task} run is a classification")
        prepared.info.heteroscedastic = True
    return prepared


def task_for(config: RunConfig) -> Task:
    return TASKS.lookup(config.task)()


def train(config: RunConfig, console: Console | None = None, verbose: int = 1, restart: bool = False,
          report: Callable[[Path], object] | None = None) -> Path:
    """Run ``config`` end to end; returns the run folder.

    Into a folder that already holds a run, :mod:`~deepfield.tasks.rerun` decides: the same config
    resumes an interrupted run (or leaves a finished one), more epochs continue it, anything else is
    refused unless ``restart`` (train it again from scratch). The config, the data and the network are
    checked before anything in the folder changes, and the folder is locked
    (:mod:`~deepfield.folder_lock`) while this runs: a second writer is refused.

    ``report``: called with the run folder once the run is finished, still holding its lock (the command
    line passes :func:`deepfield.report.html.write_report`; tasks sit below the report and do not import it).

    Under a process group (``deepfield train --devices N``, torchrun) every process prepares
    the data and trains its shards; rank 0 alone locks and writes the run folder and, once the
    networks are trained, analyses them alone while the others return.
    """
    main = distributed.is_main()
    console = console or Console()
    if not main:
        console, verbose = Console(quiet=True), 0
    out = Path(config.out)
    task = task_for(config)
    with contextlib.ExitStack() as stack:
        decision = agreed(lambda: claim(stack, config, restart))
        if decision.kind == "finished":
            console.print(escape(decision.line or ""), highlight=False)
            if main and report is not None and not (out / REPORT_FILE).is_file():
                report(out)
            return out
        prepared = prepare(task, config)
        check_network(task, config, prepared)
        if main:  # everything checked: only now does the folder change
            decision.apply()
            if decision.line:
                console.print(escape(decision.line), highlight=False)
            atomic.write_text(out / CONFIG_FILE, run_paths.saved_config(config).to_yaml())
            skipped = prepared.info.skipped
            if skipped:
                report = write_skip_report([Skipped(*row) for row in skipped], out / "data")
                console.print(f"[yellow]{len(skipped)} bad objects skipped[/], listed in {report}")
            atomic.write_text(out / PREPARED_FILE, prepared.info.to_json())
        train_prepared(config, task, prepared, console, verbose)
        if main and report is not None:
            report(out)
        return out


def claim(stack: contextlib.ExitStack, config: RunConfig, restart: bool) -> Plan:
    """Lock ``config.out`` for the rest of ``stack`` (rank 0 only), clean what killed writers left there,
    and decide what the train does (:func:`~deepfield.tasks.rerun.plan`)."""
    out = Path(config.out)
    stack.enter_context(folder_lock.hold(out, "deepfield train"))
    atomic.remove_leftovers(out)
    return rerun.plan(config, restart)


def agreed(decide: Callable[[], Plan]) -> Plan:
    """``decide()`` on rank 0, the same answer (or error) on every process."""
    plan, error = None, None
    if distributed.is_main():
        try:
            plan = decide()
        except DeepfieldError as exc:
            error = str(exc)
    plan, error = distributed.broadcast_object((plan, error))
    if error is not None:
        raise DeepfieldError(error)
    return plan


def check_network(task: Task, config: RunConfig, prepared: Prepared) -> None:
    """Build the run's network once and pass one sample through it, before anything is written: a
    network its options cannot build, or that does not fit the data's shape, fails here. The global
    random state is left as it was (the networks trained after follow the seed)."""
    with torch.random.fork_rng(devices=[]):
        summarize(task.build_model(config, prepared), prepared.input_shape)


def train_prepared(config: RunConfig, task: Task, prepared: Prepared, console: Console, verbose: int) -> Path:
    """Train (or load, when done) every network of the run on ``prepared``, then :func:`finish_run`."""
    main = distributed.is_main()
    out = Path(config.out)
    clock = RunClock(out / ELAPSED_FILE)
    console.print(f"task {config.task}: " + ", ".join(f"{part} {len(x)}" for part, x in prepared.x.items())
                  + f" samples of shape {prepared.input_shape}"
                  + (f", on {distributed.world_size()} processes" if distributed.is_distributed() else ""))

    models, epochs_run = [], []
    setup = {"processes": distributed.world_size()}
    for k, (folder, seed) in enumerate(member_folders(config)):
        if config.ensemble > 1:
            console.print(f"ensemble member {k + 1} of {config.ensemble} (seed {seed})")
        model, epochs, settings = fit_network(config, task, prepared, folder, seed, console if k == 0 else None,
                                              verbose, extra_callbacks=[clock])
        models.append(model)
        epochs_run.append(epochs)
        setup.update(settings)
    if not main:
        return out
    train_seconds = clock.save()
    with distributed.local_only():  # rank 0 (or the only process): analysis, figures, report
        return finish_run(config, task, prepared, models, epochs_run, train_seconds, console, setup)


def finish_run(config: RunConfig, task: Task, prepared: Prepared, models: list[torch.nn.Module],
               epochs_run: list[int], train_seconds: float, console: Console,
               setup: dict[str, Any] | None = None) -> Path:
    """After training: calibration, test metrics, figures, explanations, baselines; ``metrics.json`` last.

    ``setup``: how the networks were trained (processes, device, precision, channels_last,
    jit_compile), recorded in ``metrics.json["training"]``.
    """
    out = Path(config.out)

    calibration = fit_calibration(task, models, prepared, config)
    if calibration is not None:
        record = {"temperature": calibration} if isinstance(calibration, float) else calibration
        atomic.write_text(out / CALIBRATION_FILE, json.dumps(record, indent=2) + "\n")
    prepared.info = task.calibrated_info(prepared.info, calibration)
    metrics = analyse(task, models, prepared, out / "figures", config, calibration)
    metrics.update(task=config.task, device=str(resolve_device(config.training.device)), time_s=round(train_seconds, 1),
                   date=datetime.datetime.now().isoformat(timespec="seconds"), deepfield_version=__version__,
                   epochs_run=epochs_run[0] if len(epochs_run) == 1 else epochs_run)
    if setup:
        metrics["training"] = setup
    history = member_folders(config)[0][0] / "history.csv"  # an ensemble shows its first member's
    warning = near_chance(config, task, prepared, models[0], history)
    if warning is not None:
        metrics["warnings"] = [warning]
        console.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False)
    columns = history.read_text(encoding="utf-8").splitlines()[0].split(",")
    plot_learning_curves(history, out / "figures" / "learning_curves.png",
                         metric=next((m for m in ("accuracy", "mae") if m in columns), None))
    if config.explain.run:
        explain(models[0], prepared.x["test"], out / "explain", config.explain, labels=class_labels(task, prepared),
                class_names=prepared.info.classes, band_names=prepared.info.bands,
                figures=out / "figures", seed=config.seed, task=task, info=prepared.info,
                apertures=source_apertures(prepared))
    if config.baselines.run:
        merge_rows(metrics, baseline_rows(config, prepared, console, metrics))
    # last: metrics.json marks the run finished (deepfield.tasks.run_folder)
    atomic.write_text(out / METRICS_FILE, json.dumps(jsonable(metrics), indent=2, allow_nan=False) + "\n")
    return out


def near_chance(config: RunConfig, task: Task, prepared: Prepared, model: torch.nn.Module, history: Path) -> str | None:
    """A classification run's warning (:func:`~deepfield.analysis.chance.chance_warning`) when its validation
    accuracy stayed near chance while its training accuracy was high; ``None`` otherwise."""
    if task.output_kind(prepared.info) != "probabilities" or not prepared.info.classes:
        return None
    columns: dict[str, list[float]] = {}
    with history.open(encoding="utf-8", newline="") as stream:
        for row in csv.DictReader(stream):
            for key in ("accuracy", "val_accuracy"):
                with contextlib.suppress(TypeError, ValueError):
                    columns.setdefault(key, []).append(float(row.get(key)))  # type: ignore[arg-type]
    chance = chance_level(class_labels(task, prepared, "validation"), len(prepared.info.classes))
    return chance_warning(columns, chance, batch_norm=has_batch_norm(model),
                          steps_per_epoch=steps_per_epoch(config, len(prepared.x["train"])))


BAYESIAN_DRAWS = 30
"""Draws of a variational network when ``uncertainty.mc_samples`` is 0."""


class RunClock(Callback):
    """Adds this session's seconds to those recorded in ``path`` by earlier sessions of the run (a resumed
    run's ``time_s`` covers all of them); records the sum at each epoch's end and on :meth:`save`."""

    writes_files = True  # rank 0 only

    def __init__(self, path: Path):
        super().__init__()
        self.path, self.started = path, time.perf_counter()
        try:
            self.before = float(json.loads(path.read_text(encoding="utf-8"))["seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            self.before = 0.0

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.save()

    def save(self) -> float:
        """Record and return the run's seconds so far."""
        seconds = self.before + time.perf_counter() - self.started
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(self.path, json.dumps({"seconds": round(seconds, 3)}) + "\n")
        return seconds


def fit_network(config: RunConfig, task: Task, prepared: Prepared, folder: Path, seed: int,
                console: Console | None, verbose: int, extra_callbacks: Sequence[Callback] = (),
                ) -> tuple[torch.nn.Module, int, dict[str, Any]]:
    """Build, train and save one network into ``folder`` (its weights follow ``seed``); returns it, its
    epochs and the engine's :meth:`~deepfield.training.Engine.settings` (empty for a loaded member).

    A network already done there (:func:`~deepfield.tasks.run_folder.is_done`: a finished member of an
    interrupted ensemble, a network whose analysis was interrupted) is loaded, not retrained; one saved for
    fewer epochs continues from its backup, which stays after training for that.
    ``console``: where to print the model summary (``None``: quiet); ``extra_callbacks``: added to the run's.
    """
    main = distributed.is_main()
    if distributed.broadcast_object(is_done(folder, config.training.epochs) if main else None):
        epochs = history_rows(folder) if main else 0
        return (serialization.load_network(folder) if main else None), epochs, {}  # type: ignore[return-value]
    torch.manual_seed(seed)  # the weights of the new network follow the seed
    model = task.build_model(config, prepared)
    summary = summarize(model, prepared.input_shape)
    if main:
        atomic.write_text(folder / "summary.txt", str(summary))
    if console is not None and main:
        summary.print()
    engine = Engine(model, loss=task.loss(config, prepared),
                    optimizer=make_optimizer(config),
                    metrics=config.training.metrics if config.training.metrics is not None
                    else task.default_metrics(prepared),
                    device=config.training.device, precision=config.training.precision,
                    channels_last=config.training.channels_last, jit_compile=config.training.jit_compile)
    checkpoints = folder / "checkpoints"
    backup = BackupAndRestore(checkpoints / "backup", save_freq="epoch", delete_checkpoint=False)
    callbacks: list[Any] = [CSVLogger(folder / "history.csv"),  # a resume cuts it back to the backup's epochs
                 ModelCheckpoint(checkpoints / "best", monitor="val_loss", save_best_only=True),
                 backup, TerminateOnNaN(raise_error=True), *extra_callbacks]
    if config.training.reduce_lr:
        callbacks.append(ReduceLROnPlateau(factor=0.5, patience=config.training.reduce_lr))
    anneal = config.training.kl_anneal_epochs or (config.model.bayesian and config.model.bayesian.kl_anneal_epochs)
    if anneal:
        callbacks.append(KLAnnealing(anneal))
    if config.training.early_stopping:
        callbacks.append(EarlyStopping(patience=config.training.early_stopping, restore_best_weights=True))
    norms = gradient_norm_logger(config, len(prepared.x["train"]))
    if norms is not None:
        callbacks.append(norms)
    x_train, y_train = task.training_data(prepared)
    try:
        history = engine.fit(x_train, y_train, batch_size=config.training.batch_size,
                             epochs=config.training.epochs, verbose=verbose, callbacks=callbacks,
                             validation_data=(prepared.x["validation"], prepared.y["validation"]), seed=seed,
                             augment=BatchAugment(config.training.augment, name="training.augment",
                                                  targets=task.augments_targets))
    except TrainingDiverged as exc:
        raise DeepfieldError(diverged_message(exc, folder, config)) from None
    epochs = len(history.history.get("loss", []))
    if not main:  # the other processes only train
        return model, epochs, engine.settings()
    if norms is not None:  # into the report's figures; an ensemble member's stays in its folder
        plot_gradient_norms(norms.steps, norms.history(),
                            (folder / "figures" if folder == Path(config.out) else folder) / "gradient_norms.png")
    best = checkpoints / "best" / serialization.WEIGHTS_FILE
    if best.is_file():  # evaluate and keep the best epoch, not the last
        serialization.load_weights(model, best)
    serialization.save_model(model, folder)
    atomic.write_text(folder / TRAINED_FILE, json.dumps({"epochs": config.training.epochs}) + "\n")
    return model, epochs, engine.settings()


def diverged_message(exc: TrainingDiverged, folder: Path, config: RunConfig) -> str:
    """The line for a run whose loss went NaN or infinite: where, the best finite epoch kept, what to try."""
    best = best_finite_epoch(folder / "history.csv")
    kept = (f"the best finite epoch was {best} (kept in {folder / 'checkpoints'})" if best is not None
            else "no epoch finished with a finite loss")
    return (f"{config.out}: {exc}; {kept}; no model was saved; try a smaller learning rate "
            "(training.learning_rate=..., with --restart to train the folder again)")


def best_finite_epoch(history: Path) -> int | None:
    """The 1-based epoch of ``history.csv`` with the lowest finite ``val_loss`` (``None``: none)."""
    if not history.is_file():
        return None
    with history.open(encoding="utf-8", newline="") as stream:
        rows = [(float(row["val_loss"]), int(row["epoch"])) for row in csv.DictReader(stream) if row.get("val_loss")]
    finite = [(loss, epoch) for loss, epoch in rows if math.isfinite(loss)]
    return min(finite)[1] + 1 if finite else None


def gradient_norm_logger(config: RunConfig, samples: int) -> GradientNormLogger | None:
    """With ``training.gradient_norms``, a logger recording about 8 steps per epoch."""
    if not config.training.gradient_norms:
        return None
    return GradientNormLogger(every=max(1, steps_per_epoch(config, samples) // 8))


def steps_per_epoch(config: RunConfig, samples: int) -> int:
    """Training steps of one epoch over ``samples`` (one process)."""
    batch = samples if config.training.batch_size == "full" else config.training.batch_size
    return math.ceil(samples / batch)


def draws_per_network(config: RunConfig) -> int:
    """MC draws per network: ``uncertainty.mc_samples``, else :data:`BAYESIAN_DRAWS` for a variational one."""
    return config.uncertainty.mc_samples or (BAYESIAN_DRAWS if config.model.bayesian is not None else 0)


def run_predictive(config: RunConfig, task: Task, models: list[torch.nn.Module], x: np.ndarray,
                   info: PreparedInfo, keep_samples: bool = False) -> MCPrediction:
    """The run's prediction for ``x``: every network's draws pooled (:func:`~deepfield.analysis.uncertainty.predictive`),
    each network averaged over the views of ``model.tta`` (:mod:`deepfield.models.test_time`) where it is set, then
    finished by the task (:meth:`~deepfield.tasks.base.Task.finish_prediction`)."""
    models = [with_tta(model, config.model.tta) for model in models]
    pooled = predictive(models, x, mc_samples=draws_per_network(config), kind=task.output_kind(info),
                        seed=config.seed, device=config.training.device, keep_samples=keep_samples)
    return task.finish_prediction(pooled, x, info)


def fit_calibration(task: Task, models: list[torch.nn.Module], prepared: Prepared, config: RunConfig) -> Calibration:
    """The temperature fitted on the validation part, where the task calibrates and the config asks for it;
    else, where the task recalibrates a prediction that carries σ, its :meth:`~Task.fit_calibration` there."""
    if config.uncertainty.temperature and task.calibrates(prepared.info):
        validation = run_predictive(config, task, models, prepared.x["validation"], prepared.info)
        return fit_run_temperature(prepared.y["validation"], validation.mean)
    if task.recalibrates and (task.chooses_on_validation or prepared.info.heteroscedastic
                              or len(models) * max(draws_per_network(config), 1) > 1):
        validation = run_predictive(config, task, models, prepared.x["validation"], prepared.info, task.keeps_draws)
        return task.fit_calibration(validation, prepared)
    return None


BASELINE_KEYS = ("accuracy", "macro_auc", "sigma_nmad", "outlier_fraction_0.15", "bias_median")


def baseline_rows(config: RunConfig, prepared: Prepared, console: Console,
                  metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Classical baselines on ``prepared`` (the network's split): the network's row (from its
    ``metrics``) then one per features and learner, for ``metrics.json["baselines"]``."""
    if config.task == "tabular":
        raise DeepfieldError("baselines: tabular runs compare feature groups instead (data.feature_groups)")
    own = task_for(config).classical_baselines(config, prepared, dict(metrics))
    if own is not None:
        console.print(f"baselines: {', '.join(row['model'] for row in own[1:])}")
        return own
    options = config.baselines
    console.print(f"baselines: {', '.join(options.learners)} on "
                  f"{', '.join(options.features) if prepared.x['train'].ndim == 4 else 'catalogue features'}")
    if prepared.x["train"].ndim == 4:
        rows = image_baselines(prepared, options.features, options.learners, seed=config.seed,
                               failures=Path(config.out) / "baselines")
    else:
        (y_train, kind), (y_test, _) = prepared_targets(prepared, "train"), prepared_targets(prepared, "test")
        rows = run_baselines(prepared.x["train"], y_train, prepared.x["test"], y_test, task=kind,
                             learners=options.learners, seed=config.seed, feature_name="catalogue")
    network = {"model": f"network ({config.model.preset})", "features": "learned",
               **{key: metrics[key] for key in BASELINE_KEYS if key in metrics}}
    return [network, *rows]


def baselines_run(config: RunConfig, console: Console | None = None,
                  report: Callable[[Path], object] | None = None) -> Path:
    """Run the baselines of a trained run's config on its exact split; update its metrics (holding the run's
    lock, as a train does) and then, still holding it, call ``report`` with the run folder (see :func:`train`)."""
    out = Path(config.out)
    if not (out / METRICS_FILE).is_file():
        raise DeepfieldError(f"{out}: no trained run here yet; `deepfield train` this config first "
                             "(or set baselines.run: true to do both)")
    with folder_lock.hold(out, "deepfield baseline"):
        metrics = json.loads((out / METRICS_FILE).read_text(encoding="utf-8"))
        append_rows(out, baseline_rows(config, prepare(task_for(config), config), console or Console(), metrics))
        if report is not None:
            report(out)
    return out


def analyse(task: Task, models: list[torch.nn.Module], prepared: Prepared, figures: Path, config: RunConfig,
            calibration: Calibration = None) -> dict[str, Any]:
    """Loss and metrics on the test part, the task's science metrics of the run's prediction and
    its uncertainty section, with their figures (into ``figures``). Silent: the one number a
    person reads is the report's headline (:func:`~deepfield.report.html.headline`).

    ``test`` holds the loss and training metrics (an ensemble: their mean over members, each
    member's in ``members``); the science metrics score the mean of every draw (MC dropout,
    variational layers, ensemble members), and ``uncertainty`` says how far to trust it.
    """
    loss = task.loss(config, prepared)
    metrics = config.training.metrics if config.training.metrics is not None else task.default_metrics(prepared)
    members = [Engine(m, loss=loss, metrics=metrics, device=config.training.device)
               .evaluate(prepared.x["test"], prepared.y["test"], batch_size=256, verbose=0) for m in models]
    prediction = run_predictive(config, task, models, prepared.x["test"], prepared.info, task.keeps_draws)
    science = task.analyse(prediction.mean, prepared, "test", figures)
    science.update(task.analyse_models(models, prepared, "test", figures, config))
    uncertainty = task.analyse_uncertainty(prediction, prepared, "test", figures, calibration)
    if uncertainty:
        draws = len(models) * max(draws_per_network(config), 1)
        science["uncertainty"] = {"draws": draws, **uncertainty}
    result = {"test": {k: float(np.mean([m[k] for m in members])) for k in members[0]}, **science}
    if len(members) > 1:
        result["members"] = [{k: float(v) for k, v in m.items()} for m in members]
    return result


def class_labels(task: Task, prepared: Prepared, part: str = "test") -> np.ndarray:
    """``(N,)`` class labels of ``part`` to choose stamps by; a regression's are all 0 (one group)."""
    y = prepared.y[part]
    if task.output_kind(prepared.info) == "probabilities" and prepared.info.classes is not None:
        return np.asarray(y).reshape(len(y), -1)[:, 0].astype(np.int64)
    return np.zeros(len(y), dtype=np.int64)
