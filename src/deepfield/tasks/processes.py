"""The processes of ``deepfield train``: this one, N on this machine (data-parallel), or one of a torchrun launch.

>>> out = train_processes(Path("run.yaml"), ["training.epochs=3"], devices=2)   # the run folder

The work of every process is :func:`deepfield.tasks.pipeline.train`; how processes share it is
:mod:`deepfield.training.distributed`. Importing this module is light (the command line
reads :data:`TORCHRUN` for its help): the engine loads when a training starts.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from deepfield.errors import DeepfieldError
from deepfield.tasks.config import load_config

TORCHRUN = ("torchrun --nnodes {nodes} --nproc-per-node {devices} --node-rank K --master-addr HOST0 "
            "--master-port 29500 -m deepfield.cli.app train CONFIG key=value...")
"""The command that starts ``deepfield train`` on each of several machines (K = 0 .. M-1)."""


def _train_process(config: str, overrides: list[str], restart: bool = False,
                   report: Callable[[Path], object] | None = None) -> str | None:
    """One process of ``deepfield train --devices N``: train; a user error comes back as its message."""
    from deepfield.tasks.pipeline import train

    try:
        train(load_config(Path(config), overrides), console=Console(soft_wrap=True),  # the command line's console
              restart=restart, report=report)
    except DeepfieldError as exc:
        return str(exc)
    return None


def train_processes(config: Path, overrides: list[str], *, devices: int = 1, nodes: int = 1,
                    console: Console | None = None, restart: bool = False,
                    report: Callable[[Path], object] | None = None) -> Path | None:
    """Train as the YAML file ``config`` with ``key=value`` ``overrides`` says, in as many processes as asked.

    Started by torchrun (its environment set), this is one process of the launch; otherwise
    ``devices > 1`` spawns that many local processes (one per GPU, or CPU processes sharing the
    cores) with the same results as one. ``nodes > 1`` needs torchrun on each machine: an error
    saying how. ``restart``: train a folder holding a run of another config again from scratch
    (:mod:`deepfield.tasks.rerun`); ``report``: called with the finished run folder by the process that
    writes it (:func:`deepfield.tasks.pipeline.train`; a module-level function, as the processes are spawned).
    Returns the run folder, or ``None`` in a torchrun process other than the first
    (only the first writes the run folder).
    """
    run_config = load_config(config, overrides)  # first: a bad config is said before torch is imported (~5 s)
    from deepfield.tasks.pipeline import train
    from deepfield.training import distributed

    if distributed.under_launcher():  # started by torchrun: this is one of the processes
        distributed.setup()
        try:
            main_process = distributed.is_main()
            out = train(run_config, console=console, restart=restart, report=report)
        finally:
            distributed.teardown()
        return out if main_process else None
    if nodes > 1:
        raise DeepfieldError(f"--nodes {nodes}: start the training on each machine with torchrun: "
                             + TORCHRUN.format(nodes=nodes, devices=devices))
    if devices > 1:
        import torch

        if torch.cuda.is_available() and devices > torch.cuda.device_count():
            raise DeepfieldError(f"--devices {devices}: this machine has {torch.cuda.device_count()} GPUs")
        if console is not None:
            console.print(f"training in {devices} processes")
        errors = [e for e in distributed.launch(devices, _train_process, str(config), overrides, restart, report) if e]
        if errors:
            raise DeepfieldError(errors[0])
        return Path(run_config.out)
    return train(run_config, console=console, restart=restart, report=report)
