"""What ``deepfield train`` does with a folder that already holds a run, said in one line.

The rule (README, "What deepfield promises about your files"):

* an empty or new folder: a new run;
* the same config as the run's ``config.yaml`` (``name`` and ``training.device`` aside): an
  interrupted run resumes where it stopped; a finished run is left as it is ("nothing to train");
* the same config but more ``training.epochs``: the run continues from its last epoch (a finished
  run is extended; its history goes on, no epoch twice);
* any other difference, or fewer epochs: refused, listing the differences, with the two ways on:
  ``--restart`` (the folder's run is discarded and trained again from scratch) or a new ``out=``.

:func:`plan` decides, reading only; :meth:`Plan.apply` makes the folder ready, and runs only
after the new config, its data and its network have been checked (nothing is touched before).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from deepfield.errors import DeepfieldError
from deepfield.tasks import run_paths
from deepfield.tasks.config import RunConfig, load_config
from deepfield.tasks.run_folder import (BACKUP_FILE, CONFIG_FILE, METRICS_FILE, REPORT_FILE, is_finished,
                                        member_folders, remove_written, trained_epochs)

FREE_KEYS = ("out", "name", "data_from_run", "training.device")
"""Config keys a rerun may change without changing what is trained (``data_from_run`` is derived)."""
SHOWN = 40
"""Characters of a value shown in a difference (a value can be huge)."""

Kind = Literal["new", "resume", "extend", "finished", "restart"]


@dataclass(frozen=True)
class Plan:
    """What a ``train`` into ``run`` does: ``kind``, and the line said to the user (``None``: nothing to say)."""

    kind: Kind
    run: Path
    line: str | None = None

    def apply(self) -> None:
        """Make the folder ready for training: ``restart`` removes the old run's files (only those
        ``train`` writes); ``extend`` and ``resume`` unmark the finished state (metrics first, so that a
        kill leaves an unfinished run, which the next ``train`` resumes)."""
        if self.kind == "restart":
            remove_written(self.run)
        elif self.kind in ("extend", "resume"):
            (self.run / METRICS_FILE).unlink(missing_ok=True)
            (self.run / REPORT_FILE).unlink(missing_ok=True)


def plan(config: RunConfig, restart: bool = False) -> Plan:
    """The rule of the module docstring for training ``config`` into ``config.out``; raises a
    ``DeepfieldError`` listing the differences when the folder holds a run of another config."""
    run = Path(config.out)
    if not (run / CONFIG_FILE).is_file():
        return Plan("new", run)
    if restart:
        return Plan("restart", run, f"{run}: --restart: the run in this folder is discarded and trained again "
                                    "from scratch")
    try:
        saved = load_config(run / CONFIG_FILE)
    except DeepfieldError as exc:
        raise DeepfieldError(f"{exc}; this run cannot be resumed: --restart trains it again from scratch, "
                             "or choose a new out=") from None
    saved = saved.model_copy(update={"out": run})
    before, after = saved.training.epochs, config.training.epochs
    differences = [f"{key}: {shown(old)} -> {shown(new)}" for key, old, new in differ(saved, config)]
    if after < before:
        differences.append(f"training.epochs: {before} -> {after} (a run's epochs can grow, not shrink)")
    if differences:
        raise DeepfieldError(f"{run} holds a run trained with another config ({'; '.join(differences)}); "
                             f"resuming needs the same config: --restart trains this folder again from scratch, "
                             f"or train into a new folder (out={run}-2)")
    finished = is_finished(saved)
    if after > before:
        stuck = [folder for folder, _ in member_folders(config)
                 if trained_epochs(folder) is not None and not (folder / BACKUP_FILE).is_file()]
        if stuck:
            raise DeepfieldError(f"{run}: training.epochs {before} -> {after}: {stuck[0]} was saved without its "
                                 f"last training state ({BACKUP_FILE}), so it cannot continue; --restart trains "
                                 f"the run again from scratch, or train into a new folder (out={run}-2)")
        verb = "extending the finished run" if finished else "resuming the interrupted run"
        return Plan("extend", run, f"{run}: {verb} from {before} to {after} epochs (it continues from its last "
                                   "epoch)")
    if finished:
        return Plan("finished", run, f"{run}: finished with this config ({before} epochs); nothing to train "
                                     f"(--restart trains it again from scratch; training.epochs={2 * before} "
                                     "trains it longer)")
    return Plan("resume", run, f"{run}: resuming the interrupted run (same config)")


def differ(saved: RunConfig, config: RunConfig) -> list[tuple[str, Any, Any]]:
    """``(dotted key, saved value, new value)`` for every key the two configs set differently, apart
    from :data:`FREE_KEYS` and ``training.epochs``; data paths compare as the files they name."""
    saved, _ = run_paths.find_data(saved, Path(saved.out))
    old = flatten(run_paths.saved_config(saved).model_dump(mode="json"))
    new = flatten(run_paths.saved_config(config).model_dump(mode="json"))
    skip = (*FREE_KEYS, "training.epochs")
    return [(key, old.get(key), new.get(key)) for key in sorted(old.keys() | new.keys())
            if old.get(key) != new.get(key) and not any(key == k or key.startswith(f"{k}.") for k in skip)]


def flatten(document: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` as ``{"a.b": 1}`` (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in document.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def shown(value: Any) -> str:
    """``value`` for a message, at most :data:`SHOWN` characters."""
    text = "unset" if value is None else str(value)
    return text if len(text) <= SHOWN else text[:SHOWN - 3] + "..."

