"""The files of a run folder and the states they mark (the contract of DESIGN.md's run folder).

A run folder holds one network (``ensemble: 1``) or one per member under ``members/<k>``. A
network's folder is *done* when its model is saved (``model.json`` + weights) for the epochs the
run's config asks: ``checkpoints/trained.json`` records them, written after the model. Its backup
(``checkpoints/backup``) stays after training: it is the last epoch's whole state, from which a
rerun with more ``training.epochs`` continues.

The run is *finished* when every network is done and ``metrics.json`` is written: the analysis
writes it last, after calibration, figures, explanations and baselines (the report comes after
and is rewritten when missing). Anything less is an interrupted run, which ``deepfield train``
resumes (:mod:`~deepfield.tasks.rerun` says when).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from deepfield.models import serialization
from deepfield.tasks.config import RunConfig

CONFIG_FILE = "config.yaml"
PREPARED_FILE = "prepared.json"
"""The task's record of its prepared data (:mod:`~deepfield.tasks.prepared_info`)."""
METRICS_FILE = "metrics.json"
"""Written last by the analysis: its presence marks a finished run."""
REPORT_FILE = "report.html"
CALIBRATION_FILE = "calibration.json"
"""Fitted on the validation part, applied by ``evaluate`` and ``predict``: a classifier's ``{"temperature": T}``,
or a task's own record (:meth:`~deepfield.tasks.base.Task.fit_calibration`: denoising's ``{"intervals": ...}``)."""
ELAPSED_FILE = Path("checkpoints") / "elapsed.json"
"""The seconds a run has spent preparing and training, over all its sessions (``time_s`` of metrics.json)."""
TRAINED_FILE = Path("checkpoints") / "trained.json"
"""In a network's folder: the epochs its saved model was trained for (``{"epochs": N}``)."""
BACKUP_FILE = Path("checkpoints") / "backup" / "backup.safetensors"

WRITTEN = ("config.yaml", "prepared.json", "summary.txt", "history.csv", "model.json", "weights.safetensors",
           "calibration.json", "metrics.json", "report.html", "checkpoints", "figures", "explain", "baselines",
           "members", "data.skipped.csv")
"""Everything ``deepfield train`` writes in a run folder: what ``--restart`` removes (nothing else)."""


def member_folders(config: RunConfig) -> list[tuple[Path, int]]:
    """Where each network of the run lives, with its seed: the run folder itself, or
    ``members/<k>`` seeded ``seed + k`` for an ensemble (the data split keeps ``seed``)."""
    out = Path(config.out)
    if config.ensemble == 1:
        return [(out, config.seed)]
    return [(out / "members" / str(k), config.seed + k) for k in range(config.ensemble)]


def trained_epochs(folder: Path) -> int | None:
    """The epochs the saved model in ``folder`` was trained for; ``None`` when none is saved.

    A model saved by a deepfield that wrote no record and kept no backup counts as trained for as
    many epochs as its history holds (it cannot be continued anyway)."""
    if not serialization.is_saved(folder):
        return None
    try:
        return int(json.loads((folder / TRAINED_FILE).read_text(encoding="utf-8"))["epochs"])
    except FileNotFoundError:
        return None if (folder / BACKUP_FILE).exists() else history_rows(folder)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def history_rows(folder: Path) -> int:
    """The epochs ``folder/history.csv`` records (0 without one)."""
    try:
        return max(len((folder / "history.csv").read_text(encoding="utf-8").splitlines()) - 1, 0)
    except OSError:
        return 0


def is_done(folder: Path, epochs: int) -> bool:
    """Whether the network in ``folder`` is saved, trained for ``epochs``."""
    return trained_epochs(folder) == epochs


def is_finished(config: RunConfig) -> bool:
    """Whether the run of ``config`` (at ``config.out``) is finished: every network done, metrics written."""
    return (Path(config.out) / METRICS_FILE).is_file() and all(
        trained_epochs(folder) is not None for folder, _ in member_folders(config))


def remove_written(run: Path) -> None:
    """Delete every file and folder ``deepfield train`` writes in ``run`` (:data:`WRITTEN`), nothing else."""
    for name in WRITTEN:
        path = run / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
