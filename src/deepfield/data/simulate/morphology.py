"""Galaxy morphology stamps: five classes drawn with GalSim, for classification.

Classes (label = index in ``CLASSES``):

- ``spheroid``: a Sérsic n in {3.5, 4, 4.5} profile, red (CWW ``E``), rounder (q in [0.5, 1]);
- ``disk``: a red de Vaucouleurs bulge (bulge fraction 0.05–0.5) plus a blue exponential
  disk (``Sbc`` or ``Scd``) seen at a random inclination;
- ``irregular``: blue star-forming knots (``galsim.RandomKnots``, ``Im``) on a faint ``Scd`` disk;
- ``point``: a star (black body) or an AGN (power law, with a faint host 5–30% of the flux);
- ``merger``: two overlapping spheroids/disks at one redshift, flux ratio 1:1 to 1:3.

Every object has a random size, shape, orientation, sub-pixel position, redshift for its
colours (z in [0.05, 0.8]), Moffat seeing, sky level and target signal-to-noise; stamps
are sky-subtracted electrons with Poisson noise.
"""
from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import galsim
import numpy as np

from deepfield import arguments
from deepfield.data.simulate.galaxies import (GSPARAMS, Component, StampDrawer, add_poisson_noise, log_uniform,
                                              moffat_psf, snr_scale)
from deepfield.data.simulate.parallel import CLASSES_STREAM, GALAXY_STREAM, run_chunks, stream_rng
from deepfield.data.simulate.seds import AGN_SLOPES, STAR_TEMPERATURES, Colours, parse_bands
from deepfield.data.simulate.writer import (ChunkSink, ColumnInfo, create_images, sim_file, stack_rows, write_columns,
                                           write_labels)
from deepfield.errors import DeepfieldError, unknown_name
from deepfield.outputs import output_file

CLASSES = ("spheroid", "disk", "irregular", "point", "merger")
"""Morphological classes in label order."""

SPHEROID_N = (3.5, 4.0, 4.5)
"""Sérsic indices of spheroids: a few fixed values, so GalSim builds each profile table once."""

REDSHIFT_RANGE = (0.05, 0.8)
"""Redshifts (uniform) at which the colour templates are evaluated."""

SKY_LEVEL = (100.0, 1000.0)
"""Sky background per pixel and band in electrons (log-uniform)."""

DISK_THICKNESS = 0.15
"""Axis ratio of a disk seen edge-on."""


@dataclass(frozen=True)
class Galaxy:
    """An object before seeing: components (fluxes summing to 1 over bands) and its truth.

    ``truth`` keys: ``sersic_n``, ``half_light_radius`` (arcsec), ``ellipticity`` (|g|),
    ``position_angle`` (deg), ``bulge_fraction``, ``redshift`` — of the main component.
    """

    components: tuple[Component, ...]
    truth: dict[str, float]


def _ellipticity(q: float) -> float:
    """|g| = (1 - q) / (1 + q) of axis ratio q."""
    return (1.0 - q) / (1.0 + q)


def _oriented(profile: galsim.GSObject, q: float, angle: float) -> galsim.GSObject:
    """``profile`` squashed to axis ratio ``q``, major axis ``angle`` deg counter-clockwise from +x."""
    return profile.shear(q=q, beta=angle * galsim.degrees)


def spheroid(rng: np.random.Generator, colours: Colours, z: float) -> Galaxy:
    """A red Sérsic n≈4 spheroid, half-light radius 0.3–1.5 arcsec."""
    n, hlr = float(rng.choice(SPHEROID_N)), log_uniform(rng, 0.3, 1.5)
    q, angle = rng.uniform(0.5, 1.0), rng.uniform(0.0, 180.0)
    profile = _oriented(galsim.Sersic(n, half_light_radius=hlr, gsparams=GSPARAMS), q, angle)
    return Galaxy((Component(profile, colours.galaxy("E", z)),),
                  dict(sersic_n=n, half_light_radius=hlr, ellipticity=_ellipticity(q), position_angle=angle,
                       bulge_fraction=1.0, redshift=z))


def disk(rng: np.random.Generator, colours: Colours, z: float) -> Galaxy:
    """A red bulge plus a blue exponential disk (half-light radius 0.5–2 arcsec), randomly inclined."""
    hlr, cos_i, angle = log_uniform(rng, 0.5, 2.0), rng.uniform(0.0, 1.0), rng.uniform(0.0, 180.0)
    q = math.sqrt(DISK_THICKNESS**2 + (1.0 - DISK_THICKNESS**2) * cos_i**2)
    bulge_fraction = rng.uniform(0.05, 0.5)
    bulge = galsim.DeVaucouleurs(half_light_radius=hlr * rng.uniform(0.15, 0.4), gsparams=GSPARAMS)
    disk_profile = galsim.Exponential(half_light_radius=hlr, gsparams=GSPARAMS)
    template = "Sbc" if rng.random() < 0.5 else "Scd"
    return Galaxy((Component(_oriented(bulge, max(q, 0.6), angle), bulge_fraction * colours.galaxy("E", z)),
                   Component(_oriented(disk_profile, q, angle), (1.0 - bulge_fraction) * colours.galaxy(template, z))),
                  dict(sersic_n=1.0, half_light_radius=hlr, ellipticity=_ellipticity(q), position_angle=angle,
                       bulge_fraction=bulge_fraction, redshift=z))


def irregular(rng: np.random.Generator, colours: Colours, z: float) -> Galaxy:
    """10–40 blue star-forming knots (half-light radius 0.5–1.8 arcsec) on a faint exponential disk."""
    hlr, q, angle = log_uniform(rng, 0.5, 1.8), rng.uniform(0.4, 1.0), rng.uniform(0.0, 180.0)
    knots = galsim.RandomKnots(int(rng.integers(10, 41)), half_light_radius=hlr,
                               rng=galsim.BaseDeviate(int(rng.integers(1, 2**31 - 1))), gsparams=GSPARAMS)
    faint = galsim.Exponential(half_light_radius=hlr * rng.uniform(0.8, 1.5), gsparams=GSPARAMS)
    knot_fraction = rng.uniform(0.6, 0.9)
    return Galaxy((Component(_oriented(knots, q, angle), knot_fraction * colours.galaxy("Im", z)),
                   Component(_oriented(faint, q, angle), (1.0 - knot_fraction) * colours.galaxy("Scd", z))),
                  dict(sersic_n=math.nan, half_light_radius=hlr, ellipticity=_ellipticity(q), position_angle=angle,
                       bulge_fraction=0.0, redshift=z))


def point(rng: np.random.Generator, colours: Colours, z: float) -> Galaxy:
    """A star (black body, z = 0) or an AGN (power law) with a faint blue host: PSF-like."""
    nucleus = galsim.DeltaFunction(gsparams=GSPARAMS)
    truth = dict(sersic_n=math.nan, half_light_radius=0.0, ellipticity=0.0, position_angle=math.nan,
                 bulge_fraction=0.0, redshift=0.0)
    if rng.random() < 0.5:
        star = f"star_{rng.choice(STAR_TEMPERATURES):.0f}K"
        return Galaxy((Component(nucleus, colours.point(star)),), truth)
    agn, host_fraction = f"agn_{rng.choice(AGN_SLOPES):+.1f}", rng.uniform(0.05, 0.3)
    host = galsim.Exponential(half_light_radius=log_uniform(rng, 0.2, 0.6), gsparams=GSPARAMS)
    return Galaxy((Component(nucleus, (1.0 - host_fraction) * colours.point(agn)),
                   Component(host, host_fraction * colours.galaxy("Sbc", z))), truth | dict(redshift=z))


def merger(rng: np.random.Generator, colours: Colours, z: float) -> Galaxy:
    """Two overlapping spheroids or disks, separated by 0.5–1.2 times the sum of their half-light radii.

    The truth describes the brighter (primary) galaxy; ``bulge_fraction`` is the pair's.
    """
    primary, secondary = ((spheroid, disk)[rng.integers(2)](rng, colours, z) for _ in range(2))
    ratio = rng.uniform(1.0 / 3.0, 1.0)
    w1, w2 = 1.0 / (1.0 + ratio), ratio / (1.0 + ratio)
    separation = rng.uniform(0.5, 1.2) * (primary.truth["half_light_radius"] + secondary.truth["half_light_radius"])
    direction = rng.uniform(0.0, 2.0 * math.pi)
    dx, dy = separation * math.cos(direction), separation * math.sin(direction)
    components = ([c.moved(-w2 * dx, -w2 * dy, w1) for c in primary.components]  # light centroid at the centre
                  + [c.moved(w1 * dx, w1 * dy, w2) for c in secondary.components])
    bulge_fraction = w1 * primary.truth["bulge_fraction"] + w2 * secondary.truth["bulge_fraction"]
    return Galaxy(tuple(components), primary.truth | dict(bulge_fraction=bulge_fraction))


RECIPES: dict[str, Callable[[np.random.Generator, Colours, float], Galaxy]] = dict(
    spheroid=spheroid, disk=disk, irregular=irregular, point=point, merger=merger)


@dataclass(frozen=True)
class StampJob:
    """Everything a worker needs to draw objects of a run (picklable)."""

    seed: int
    bands: tuple[str, ...]
    size: int
    pixel_scale: float
    snr: tuple[float, float]
    psf_fwhm: tuple[float, float]
    colours: Colours


def draw_object(job: StampJob, index: int, label: int, drawer: StampDrawer) -> tuple[np.ndarray, dict[str, float]]:
    """Object ``index`` of class ``CLASSES[label]``: its (C, H, W) float32 stamp and truth row.

    Depends only on ``(job.seed, index, label)`` and the job's settings.
    """
    rng = stream_rng(job.seed, GALAXY_STREAM, index)
    galaxy = RECIPES[CLASSES[label]](rng, job.colours, rng.uniform(*REDSHIFT_RANGE))
    psf = moffat_psf(rng, job.psf_fwhm)
    snr, sky = log_uniform(rng, *job.snr), log_uniform(rng, *SKY_LEVEL)
    light = drawer.draw(galaxy.components, psf, tuple(rng.uniform(-0.5, 0.5, 2)))
    scale = snr_scale(light, snr, sky)
    flux = scale * sum(c.flux for c in galaxy.components)
    truth = galaxy.truth | dict(snr=snr, psf_fwhm=psf.fwhm, psf_beta=psf.beta, sky_level=sky) | {
        f"flux_{b}": float(f) for b, f in zip(job.bands, flux)}
    return add_poisson_noise(scale * light, sky, rng), truth


def draw_chunk(task: tuple[StampJob, range, np.ndarray]) -> dict[str, np.ndarray]:
    """Worker: objects ``rows`` with labels (k,): ``images`` (k, C, H, W) float32 and truth columns (k,)."""
    job, rows, labels = task
    drawer = StampDrawer(len(job.bands), job.size, job.pixel_scale)
    stamps, truths = zip(*(draw_object(job, index, label, drawer) for index, label in zip(rows, labels)))
    return {"images": np.stack(stamps), **stack_rows(truths)}


def class_labels(n: int, proportions: Mapping[str, float] | None, seed: int) -> np.ndarray:
    """(n,) int64 labels with class counts as close to ``proportions`` as integers allow, shuffled.

    ``proportions``: class name -> weight (normalised; absent classes get none); ``None``: equal.
    """
    weights = np.ones(len(CLASSES)) if proportions is None else _class_weights(proportions)
    exact = n * weights / weights.sum()
    counts = np.floor(exact).astype(int)
    counts[np.argsort(counts - exact, kind="stable")[: n - counts.sum()]] += 1  # largest remainders
    labels = np.repeat(np.arange(len(CLASSES)), counts)
    return stream_rng(seed, CLASSES_STREAM).permutation(labels).astype(np.int64)


def _class_weights(proportions: Mapping[str, float]) -> np.ndarray:
    if not isinstance(proportions, Mapping):
        raise DeepfieldError(f"proportions must map class names to weights, got {proportions!r}")
    for name, weight in proportions.items():
        if name not in CLASSES:
            raise unknown_name("morphology class", name, CLASSES)
        if not isinstance(weight, numbers.Real) or not weight >= 0:
            raise DeepfieldError(f"proportions[{name!r}] must be a number >= 0, got {weight!r}")
    weights = np.array([float(proportions.get(name, 0.0)) for name in CLASSES])
    if weights.sum() <= 0:
        raise DeepfieldError(f"proportions must give some class a positive weight, got {dict(proportions)}")
    return weights


def truth_info(bands: Sequence[str]) -> ColumnInfo:
    """Units and descriptions of the ``truth/`` columns of the stamp simulators."""
    return {
        "class": ("", "morphological class name"),
        "sersic_n": ("", "Sersic index of the main component (NaN: not a Sersic profile)"),
        "half_light_radius": ("arcsec", "half-light radius of the main component before seeing (0: point)"),
        "ellipticity": ("", "|g| = (1 - q) / (1 + q) of the main component"),
        "position_angle": ("deg", "major axis of the main component, counter-clockwise from +x (NaN: point)"),
        "bulge_fraction": ("", "fraction of the band-summed flux in de Vaucouleurs-like components"),
        "redshift": ("", "redshift at which the colour templates are evaluated (0: star)"),
        "snr": ("", "matched-filter signal-to-noise of the band-summed stamp"),
        "psf_fwhm": ("arcsec", "FWHM of the Moffat seeing PSF"),
        "psf_beta": ("", "index beta of the Moffat seeing PSF"),
        "sky_level": ("electron", "sky per pixel and band, subtracted (its Poisson noise remains)"),
        "mag": ("mag", "-2.5 log10 of the band-summed flux in electrons (zero point: 1 electron)"),
    } | {f"flux_{b}": ("electron", f"total flux in band {b} before noise") for b in bands}


def stamp_job(size: int, bands: str | Sequence[str], seed: int, snr: object, pixel_scale: float,
              psf_fwhm: object) -> StampJob:
    """Validate the common stamp arguments and build the job (with its colour tables)."""
    bands = parse_bands(bands)
    return StampJob(seed=arguments.integer("seed", seed, 0, math.inf, expected="an integer >= 0"), bands=bands,
                    size=arguments.integer("size", size, 8, expected="an integer >= 8"),
                    pixel_scale=arguments.number_range("pixel_scale", pixel_scale)[0],
                    snr=arguments.number_range("snr", snr), psf_fwhm=arguments.number_range("psf_fwhm", psf_fwhm),
                    colours=Colours.build(bands))


def job_config(job: StampJob) -> dict[str, object]:
    """The arguments of a stamp job as JSON-ready values."""
    return dict(seed=job.seed, bands=list(job.bands), size=job.size, pixel_scale=job.pixel_scale,
                snr=list(job.snr), psf_fwhm=list(job.psf_fwhm))


def simulate_morphology(n: int, out: str | os.PathLike[str], *, size: int = 64,
                        bands: str | Sequence[str] = ("g", "r", "i"), seed: int = 0,
                        snr: float | tuple[float, float] = (20.0, 200.0),
                        proportions: Mapping[str, float] | None = None, pixel_scale: float = 0.2,
                        psf_fwhm: float | tuple[float, float] = (0.5, 1.1), workers: int | None = None,
                        progress: bool = True) -> Path:
    """Write ``n`` multi-band galaxy stamps in ``CLASSES`` to the HDF5 file ``out``; return its path.

    ``size``: stamp side in pixels of ``pixel_scale`` arcsec; ``bands``: LSST band names;
    ``snr``: target band-summed signal-to-noise, a number or a (low, high) range drawn
    log-uniformly; ``proportions``: class name -> weight (default: equal numbers);
    ``psf_fwhm``: seeing FWHM range in arcsec; ``workers``: processes (``None``: all cores).

    File: ``images`` (n, C, size, size) float32 (attrs ``bands``, ``pixel_scale``, ``unit``),
    ``labels`` (n,) int64 (attr ``classes``), ``truth/<column>`` (n,) (see ``truth_info``),
    attrs ``simulator``, ``seed``, ``config`` (JSON of the arguments that shape the data).
    The same arguments give the same arrays for any ``workers``.
    """
    out, workers = output_file(out), arguments.workers(workers)
    n = arguments.integer("n", n, expected="an integer >= 1")
    job = stamp_job(size, bands, seed, snr, pixel_scale, psf_fwhm)
    labels = class_labels(n, proportions, job.seed)
    config = job_config(job) | dict(n=n, proportions=None if proportions is None else dict(proportions))
    with sim_file(out, "morphology", job.seed, config) as h5:
        sink = ChunkSink(n, create_images(h5, n, job.bands, job.size, job.pixel_scale, "electron"))
        run_chunks(draw_chunk, lambda rows: (job, rows, labels[rows.start:rows.stop]), n, sink,
                   workers=workers, progress=progress, description="morphology stamps")
        write_labels(h5, labels, CLASSES)
        truth = {"class": np.array(CLASSES)[labels], **sink.columns}
        truth["mag"] = instrumental_magnitude(truth, job.bands)
        write_columns(h5.create_group("truth", track_order=True), truth, truth_info(job.bands))
    return out


def instrumental_magnitude(truth: Mapping[str, np.ndarray], bands: Sequence[str]) -> np.ndarray:
    """(n,) ``-2.5 log10`` of the band-summed ``flux_<band>`` columns (electrons): a magnitude with zero point
    1 electron, for conditioning generative models on brightness (``truth/mag``)."""
    return -2.5 * np.log10(np.sum([truth[f"flux_{b}"] for b in bands], axis=0))
