"""benchmarks/RESULTS.md: one file, newest section first, written by every benchmark script."""
from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import torch

from deepfield.atomic import write_text
from deepfield.training.device import resolve_device

RESULTS = Path(__file__).with_name("RESULTS.md")
TITLE = ("# Benchmark results\n\n"
         "Each section is written by the script it names (`--write`), newest first. Ratios are measured "
         "in one process against a plain PyTorch loop, never against figures from another machine.\n")


def cpu_name() -> str:
    """The processor's model name (Linux), or what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_arguments(parser: argparse.ArgumentParser) -> None:
    """``--threads`` and ``--device``, the options of every benchmark that times a network."""
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, one per core)")
    parser.add_argument("--device", help="cpu, cuda, ... (default: the best present)")


def placed(args: argparse.Namespace) -> torch.device:
    """Apply ``--threads`` and resolve ``--device`` (:func:`device_arguments`); the device to time on."""
    if args.threads:
        torch.set_num_threads(args.threads)
    return resolve_device(args.device)


def machine() -> str:
    return f"{cpu_name()}, {os.cpu_count()} cores, python {platform.python_version()}"


def device_name(device: torch.device) -> str:
    """What a benchmark ran on: the GPU's model and CUDA version, or "CPU"."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return device.type.upper()


def add_section(section: str) -> None:
    """Put ``section`` (markdown starting with a ``## `` heading) first under the title, replacing
    an older section with the same heading (a rerun of a benchmark keeps its newest figures only)."""
    old = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    heading = section.strip().splitlines()[0]
    kept = [part for part in old.split("\n## ")[1:] if "## " + part.splitlines()[0] != heading]
    write_text(RESULTS, TITLE + "\n" + section.strip() + "\n" + "".join("\n## " + part for part in kept))


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work (a timer must not stop while kernels still run)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
