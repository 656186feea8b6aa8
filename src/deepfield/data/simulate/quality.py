"""Data-quality stamps: the morphology galaxies, clean or spoiled by detector and sky artefacts.

With the same arguments, object ``i`` is the very galaxy ``simulate_morphology`` draws
(same class, shape and noise); a spoiled object then gets one artefact chosen uniformly
from ``artefacts`` plus each other one with probability ``EXTRA_ARTEFACT`` (so several
may co-occur). Artefact strengths are in units of the sky noise ``sqrt(sky_level)``.
Single-exposure defects (cosmic rays, satellite trails, bad columns, hot/dead pixels) hit
one random band; a saturated star and scattered light hit every band.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepfield import arguments
from deepfield.data.simulate import artefacts as art
from deepfield.data.simulate.galaxies import StampDrawer, log_uniform
from deepfield.data.simulate.morphology import (CLASSES, StampJob, class_labels, draw_object, job_config, stamp_job,
                                                truth_info)
from deepfield.data.simulate.parallel import ARTEFACT_STREAM, SPOIL_STREAM, run_chunks, stream_rng
from deepfield.data.simulate.writer import ChunkSink, create_images, sim_file, stack_rows, write_columns, write_labels
from deepfield.errors import DeepfieldError, unknown_name
from deepfield.outputs import output_file

QUALITY_CLASSES = ("clean", "spoiled")
"""Labels of the quality file: 0 = clean, 1 = spoiled."""

EXTRA_ARTEFACT = 0.15
"""Probability that a spoiled stamp also carries each of the other artefacts."""

FULL_WELL = 30000.0
"""Saturation level in electrons before the sky is subtracted."""


@dataclass(frozen=True)
class Artefact:
    """How the simulator applies one artefact function: to every band or one, with which options.

    ``options(rng, sky, fwhm)`` gives the function's keyword arguments from the sky level
    (electrons per pixel) and the seeing FWHM (pixels) of the stamp.
    """

    add: Callable[..., np.ndarray]
    every_band: bool
    options: Callable[[np.random.Generator, float, float], dict[str, object]]


def _hot_or_dead(rng: np.random.Generator, sky: float) -> float:
    """A hot level (100–1000 sky sigmas) or, half the time, a dead pixel's zero signal (minus the sky)."""
    return -sky if rng.random() < 0.5 else math.sqrt(sky) * log_uniform(rng, 100.0, 1000.0)


ARTEFACTS: dict[str, Artefact] = {
    "cosmic_rays": Artefact(art.add_cosmic_rays, False,
                            lambda rng, sky, fwhm: dict(amplitude=(30 * math.sqrt(sky), 300 * math.sqrt(sky)))),
    "satellite_trail": Artefact(art.add_satellite_trail, False,
                                lambda rng, sky, fwhm: dict(amplitude=(5 * math.sqrt(sky), 50 * math.sqrt(sky)))),
    "bad_column": Artefact(art.add_bad_column, False, lambda rng, sky, fwhm: dict(value=_hot_or_dead(rng, sky))),
    "hot_pixels": Artefact(art.add_hot_pixels, False, lambda rng, sky, fwhm: dict(value=_hot_or_dead(rng, sky))),
    "saturation": Artefact(art.add_saturated_star, True, lambda rng, sky, fwhm: dict(level=FULL_WELL - sky, fwhm=fwhm)),
    "ghost": Artefact(art.add_ghost, True,
                      lambda rng, sky, fwhm: dict(amplitude=(1 * math.sqrt(sky), 5 * math.sqrt(sky)))),
}
"""The artefact types by name, in the order of the ``artefacts/`` flags."""


def spoil(stamp: np.ndarray, names: Sequence[str], rng: np.random.Generator, sky: float,
          fwhm: float) -> np.ndarray:
    """``stamp`` (C, H, W) with the artefacts ``names`` added, in order; ``sky`` in electrons, ``fwhm`` in pixels."""
    out = stamp.copy()
    for name in names:
        artefact = ARTEFACTS[name]
        band = slice(None) if artefact.every_band else int(rng.integers(len(out)))
        out[band] = artefact.add(out[band], rng, **artefact.options(rng, sky, fwhm))
    return out


@dataclass(frozen=True)
class QualityJob:
    """A stamp job plus which artefacts may appear (picklable)."""

    stamps: StampJob
    artefacts: tuple[str, ...]


def spoil_chunk(task: tuple[QualityJob, range, np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
    """Worker: objects ``rows`` with galaxy labels and spoiled flags (k,): ``images``, truth columns
    and ``artefacts`` (k, len(ARTEFACTS)) bool."""
    job, rows, labels, spoiled = task
    drawer = StampDrawer(len(job.stamps.bands), job.stamps.size, job.stamps.pixel_scale)
    stamps, truths = [], []
    flags = np.zeros((len(rows), len(ARTEFACTS)), dtype=bool)
    for row, (index, label, bad) in enumerate(zip(rows, labels, spoiled)):
        stamp, truth = draw_object(job.stamps, index, label, drawer)
        if bad:
            rng = stream_rng(job.stamps.seed, ARTEFACT_STREAM, index)
            names = _choose(rng, job.artefacts)
            stamp = spoil(stamp, names, rng, truth["sky_level"], truth["psf_fwhm"] / job.stamps.pixel_scale)
            flags[row] = [name in names for name in ARTEFACTS]
        stamps.append(stamp)
        truths.append(truth)
    return {"images": np.stack(stamps), "artefacts": flags, **stack_rows(truths)}


def _choose(rng: np.random.Generator, allowed: Sequence[str]) -> list[str]:
    """One artefact uniformly from ``allowed``, plus each other with probability ``EXTRA_ARTEFACT``."""
    first = allowed[int(rng.integers(len(allowed)))]
    extra = [name for name in allowed if rng.random() < EXTRA_ARTEFACT and name != first]
    return [first, *extra]


def simulate_quality(n: int, out: str | os.PathLike[str], *, size: int = 64,
                     bands: str | Sequence[str] = ("g", "r", "i"), seed: int = 0,
                     snr: float | tuple[float, float] = (20.0, 200.0), spoiled_fraction: float = 0.5,
                     artefacts: Sequence[str] = tuple(ARTEFACTS), pixel_scale: float = 0.2,
                     psf_fwhm: float | tuple[float, float] = (0.5, 1.1), workers: int | None = None,
                     progress: bool = True) -> Path:
    """Write ``n`` galaxy stamps, ``spoiled_fraction`` of them with artefacts, to ``out``; return its path.

    Arguments as ``simulate_morphology`` (galaxy classes in equal numbers), plus
    ``spoiled_fraction`` (exactly ``round(n * spoiled_fraction)`` objects are spoiled) and
    ``artefacts``: the names (from ``ARTEFACTS``) that may appear.

    File: ``images`` (n, C, size, size) float32, ``labels`` (n,) int64 (0 clean, 1 spoiled;
    attr ``classes``), ``artefacts/<name>`` (n,) bool for every name in ``ARTEFACTS`` (group
    attr ``names``), ``truth/<column>`` as in the morphology file; attrs ``simulator``,
    ``seed``, ``config``.
    """
    out, workers = output_file(out), arguments.workers(workers)
    fraction = arguments.fraction("spoiled_fraction", spoiled_fraction)
    n = arguments.integer("n", n, expected="an integer >= 1")
    job = QualityJob(stamp_job(size, bands, seed, snr, pixel_scale, psf_fwhm), _check_artefacts(artefacts))
    galaxies = class_labels(n, None, job.stamps.seed)
    spoiled = np.zeros(n, dtype=bool)
    spoiled[stream_rng(job.stamps.seed, SPOIL_STREAM).permutation(n)[:round(n * fraction)]] = True
    config = job_config(job.stamps) | dict(n=n, spoiled_fraction=fraction, artefacts=list(job.artefacts))
    with sim_file(out, "quality", job.stamps.seed, config) as h5:
        sink = ChunkSink(n, create_images(h5, n, job.stamps.bands, job.stamps.size, job.stamps.pixel_scale,
                                          "electron"))
        run_chunks(spoil_chunk, lambda rows: (job, rows, galaxies[rows.start:rows.stop], spoiled[rows.start:rows.stop]),
                   n, sink, workers=workers, progress=progress, description="quality stamps")
        flags = sink.columns.pop("artefacts")
        write_labels(h5, flags.any(axis=1), QUALITY_CLASSES)
        group = h5.create_group("artefacts", track_order=True)
        group.attrs["names"] = list(ARTEFACTS)
        write_columns(group, dict(zip(ARTEFACTS, flags.T)),
                      {name: ("", f"the stamp shows {name.replace('_', ' ')}") for name in ARTEFACTS})
        truth = {"class": np.array(CLASSES)[galaxies], **sink.columns}
        write_columns(h5.create_group("truth", track_order=True), truth, truth_info(job.stamps.bands))
    return out


def _check_artefacts(names: Sequence[str]) -> tuple[str, ...]:
    names = (names,) if isinstance(names, str) else tuple(names)
    for name in names:
        if name not in ARTEFACTS:
            raise unknown_name("artefact", name, ARTEFACTS)
    if not names or len(set(names)) != len(names):
        raise DeepfieldError(f"artefacts must be distinct names from {', '.join(ARTEFACTS)}, got {list(names)}")
    return names
