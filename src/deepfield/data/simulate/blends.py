"""Blended stamps: 2 to 4 overlapping sources, each also drawn alone, with their truth and a segmentation map.

A stamp holds ``min_sources`` to ``max_sources`` sources (uniform count). Source 0 is a galaxy
near the stamp centre (sub-pixel offset); every other one is a star with probability
``star_fraction``, else a galaxy (``sources.galaxy``: spheroid or disk, symmetric so its light
centroid is its centre), placed in a random direction from source 0 at a separation drawn
uniformly in ``separation`` (pixels, or with ``separation_unit="hlr"`` in units of the sum of the
two sources' half-light radii, each counted as at least half the PSF FWHM) and pulled in along
that direction where needed to keep its centre ``MARGIN`` pixels inside the stamp. All sources
share one Moffat seeing PSF (the same in every band). The blend is the sum of the sources plus
Gaussian sky noise of ``visits`` LSST visits; fluxes in nJy. With a ``population`` of generated
stamps, each source is with probability ``population_fraction`` one of them instead, at the same
place, drawn as it is (its own PSF, not the stamp's Moffat; ``generated.Population``).

Segmentation rule: pixel p gets label k + 1 (source k, 0-based) where source k has the largest
band-summed noise-free flux of all sources at p and that flux exceeds ``threshold`` times the
noise sigma of the band-summed image, ``sqrt(sum_b sigma_b**2)``; else 0 (background). The
``morphology`` map gives those pixels their source's Morpheus class instead
(:mod:`~deepfield.data.simulate.morpheus`).
"""
from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepfield import arguments
from deepfield.data.simulate.galaxies import StampDrawer, add_gaussian_noise, moffat_psf
from deepfield.data.simulate.generated import GeneratedSource, Population, Samples, draw_sample
from deepfield.data.simulate.morpheus import MORPHOLOGY_CLASSES, morphology_class, morphology_map
from deepfield.data.simulate.parallel import GALAXY_STREAM, POPULATION_STREAM, run_chunks, stream_rng
from deepfield.data.simulate.photoz import BRIGHT_LIMIT
from deepfield.data.simulate.reading import open_simulated, read_columns
from deepfield.data.simulate.seds import Colours, parse_bands
from deepfield.data.simulate.sources import GALAXY_KINDS, Source, galaxy, star, visit_sigma
from deepfield.data.simulate.writer import ChunkSink, ColumnInfo, create_array, create_images, sim_file, write_columns
from deepfield.errors import DeepfieldError, unknown_name
from deepfield.outputs import output_file

SEPARATION_UNITS = ("pixels", "hlr")
"""How ``separation`` is measured: in pixels, or in units of the sum of the two half-light radii."""

MARGIN = 2.0
"""Pixels between every source centre and the stamp's edge at least."""

BLEND_KINDS = ("spheroid", "disk")
"""The galaxy recipes of blends by default: point-symmetric, so the recorded centre is the light centroid
(``galaxy_kinds`` may add ``irregular``, whose knots put its light centroid off its recorded centre)."""

SEGMENTATION_RULE = ("k + 1 where source k (0-based) has the most band-summed noise-free flux of all sources and "
                     "more than `threshold` (nJy per pixel), else 0")
"""The segmentation map's rule, as its ``description`` attribute states it."""

MORPHOLOGY_RULE = ("the Morpheus class (see `classes`) of the source that labels the pixel in `segmentation`, "
                   "0 (background) where it has none")
"""The morphology map's rule, as its ``description`` attribute states it."""

MAX_SOURCES = 10
"""The most sources one stamp may hold."""


@dataclass(frozen=True)
class BlendJob:
    """What a worker needs (picklable). ``sigma``: (C,) sky noise per pixel in nJy."""

    seed: int
    bands: tuple[str, ...]
    size: int
    pixel_scale: float
    psf_fwhm: tuple[float, float]
    mag_limit: float
    sigma: np.ndarray
    sources: tuple[int, int]
    star_fraction: float
    separation: tuple[float, float]
    separation_unit: str
    threshold: float
    colours: Colours
    galaxy_kinds: tuple[str, ...] = BLEND_KINDS
    population: Population | None = None


def _position(rng: np.random.Generator, job: BlendJob, first: np.ndarray, distance: float) -> np.ndarray:
    """(x, y) offset from the stamp centre at ``distance`` pixels from ``first`` in a random direction,
    pulled in along it to stay ``MARGIN`` pixels inside the stamp."""
    direction = np.array([math.cos(angle := rng.uniform(0.0, 2.0 * math.pi)), math.sin(angle)])
    room = (job.size - 1) / 2 - MARGIN
    with np.errstate(divide="ignore"):  # along an axis the direction does not move: no limit (inf)
        reach = (room - np.sign(direction) * first) / np.abs(direction)
    return first + min(distance, float(np.min(reach))) * direction


def place_sources(rng: np.random.Generator, job: BlendJob, seeing_hlr: float) -> list[tuple[Source, np.ndarray]]:
    """The sources of one stamp and their (x, y) offsets from the stamp centre in pixels; ``seeing_hlr``:
    half the PSF FWHM in pixels, the least size a source counts with in ``hlr`` separations."""
    placed: list[tuple[Source, np.ndarray]] = []
    for k in range(int(rng.integers(job.sources[0], job.sources[1] + 1))):
        if k > 0 and rng.random() < job.star_fraction:
            source = star(rng, job.colours, len(job.bands), job.mag_limit)
        else:
            source = galaxy(rng, job.colours, len(job.bands), job.mag_limit, job.size * job.pixel_scale / 8.0,
                            kinds=job.galaxy_kinds)
        if k == 0:
            placed.append((source, rng.uniform(-0.5, 0.5, 2)))
            continue
        first, offset = placed[0]
        sizes = (max(s.half_light_radius / job.pixel_scale, seeing_hlr) for s in (first, source))
        unit = sum(sizes) if job.separation_unit == "hlr" else 1.0
        placed.append((source, _position(rng, job, offset, rng.uniform(*job.separation) * unit)))
    return placed


def _padded(values: Sequence[object], length: int, fill: object) -> np.ndarray:
    """``values`` (k, ...) as an array of ``length`` rows, the rows past ``k`` set to ``fill``."""
    values = np.asarray(values)
    padded = np.full((length, *values.shape[1:]), fill, dtype=values.dtype)
    padded[:len(values)] = values
    return padded


def draw_blend(job: BlendJob, index: int, drawer: StampDrawer) -> dict[str, np.ndarray]:
    """Stamp ``index``: ``sources`` (S_max, C, H, W) each source alone (zeros past the count), ``noiseless`` and
    the noisy ``images`` (C, H, W) float32, and the truth: (S_max,) per source (NaN / False past the count),
    ``flux`` (S_max, C) nJy, the count and the PSF."""
    rng = stream_rng(job.seed, GALAXY_STREAM, index)
    psf = moffat_psf(rng, job.psf_fwhm)
    placed = place_sources(rng, job, psf.fwhm / 2 / job.pixel_scale)
    if job.population is not None:
        placed = job.population.replace(stream_rng(job.seed, POPULATION_STREAM, index), placed)
    isolated = np.zeros((job.sources[1], len(job.bands), job.size, job.size))
    centre, s_max = (job.size - 1) / 2, job.sources[1]
    for k, (source, offset) in enumerate(placed):
        isolated[k] = (draw_sample(source.stamp, job.pixel_scale, (job.size,) * 2, *(centre + offset))
                       if isinstance(source, GeneratedSource) else drawer.draw(source.components, psf, tuple(offset)))
    noiseless = isolated.sum(axis=0)
    rows = [dict(x=centre + offset[0], y=centre + offset[1], half_light_radius=source.half_light_radius
                 / job.pixel_scale, e1=source.e1, e2=source.e2, mag=source.mag) for source, offset in placed]
    truth = {name: _padded([row[name] for row in rows], s_max, np.nan) for name in rows[0]}
    if job.population is not None:
        truth["generated"] = _padded([getattr(source, "sample", -1) for source, _ in placed], s_max, -1)
    return dict(images=add_gaussian_noise(noiseless, job.sigma, rng), noiseless=noiseless.astype(np.float32),
                sources=isolated.astype(np.float32), n_sources=np.int64(len(placed)),
                is_star=_padded([source.kind == "star" for source, _ in placed], s_max, False),
                morphology=_padded([morphology_class(source) for source, _ in placed], s_max, 0).astype(np.uint8),
                bulge_fraction=_padded([source.bulge_fraction for source, _ in placed], s_max, np.nan),
                psf_fwhm=np.float64(psf.fwhm), psf_beta=np.float64(psf.beta),
                flux=_padded([source.flux for source, _ in placed], s_max, np.nan), **truth)


def segmentation(sources: np.ndarray, floor: float) -> np.ndarray:
    """(k, H, W) int64 labels of isolated noise-free sources (k, S, C, H, W): k + 1 where source k has
    the most band-summed flux of all, if that flux exceeds ``floor``, else 0."""
    coadd = sources.sum(axis=2)
    labels = np.argmax(coadd, axis=1) + 1
    return np.where(np.max(coadd, axis=1) > floor, labels, 0).astype(np.int64)


def draw_chunk(task: tuple[BlendJob, range]) -> dict[str, np.ndarray]:
    """Worker: stamps ``rows``: ``images``, ``noiseless`` (k, C, H, W), ``sources`` (k, S_max, C, H, W)
    float32, ``segmentation`` (k, H, W) int64 and the truth arrays (k, ...)."""
    job, rows = task
    drawer = StampDrawer(len(job.bands), job.size, job.pixel_scale)
    blends = [draw_blend(job, index, drawer) for index in rows]
    chunk = {name: np.stack([blend[name] for blend in blends]) for name in blends[0]}
    chunk["segmentation"] = segmentation(chunk["sources"], job.threshold * float(np.sqrt(np.sum(job.sigma**2))))
    chunk["morphology_map"] = morphology_map(chunk["segmentation"], chunk["morphology"])
    flux = chunk.pop("flux")
    return chunk | {f"flux_{b}": flux[..., c] for c, b in enumerate(job.bands)}


def truth_info(bands: Sequence[str]) -> ColumnInfo:
    """Units and descriptions of the ``truth/`` arrays of the blends file, (N, S_max) each."""
    return {
        "x": ("pixel", "centre of the source, column index (0 = centre of the first pixel); NaN: no source"),
        "y": ("pixel", "centre of the source, row index (0 = centre of the first pixel); NaN: no source"),
        "half_light_radius": ("pixel", "half-light radius before seeing (0: star); NaN: no source"),
        "e1": ("", "reduced shear |g| cos(2 theta) before seeing, theta from +x (0: star); NaN: no source"),
        "e2": ("", "reduced shear |g| sin(2 theta) before seeing (0: star); NaN: no source"),
        "mag": ("mag", "AB magnitude of the flux averaged over the bands; NaN: no source"),
        "is_star": ("", "the source is a star (False also where there is no source)"),
        "generated": ("", "row of the generated stamp the source is (-1: a simulated source or none)"),
        "morphology": ("", "Morpheus class of the source, 1 to 4: " + ", ".join(MORPHOLOGY_CLASSES[1:])
                       + " (deepfield.data.simulate.morpheus); 0: no source"),
        "bulge_fraction": ("", "fraction of the flux in de Vaucouleurs-like components (0: star); NaN: no source"),
    } | {f"flux_{b}": ("nJy", f"total flux in band {b} before seeing and noise; NaN: no source") for b in bands}


def simulate_blends(n: int, out: str | os.PathLike[str], *, size: int = 64,
                    bands: str | Sequence[str] = ("g", "r", "i"), seed: int = 0, min_sources: int = 2,
                    max_sources: int = 4, star_fraction: float = 0.2, separation: float | tuple[float, float] = (1, 3),
                    separation_unit: str = "hlr", visits: float = 100.0, mag_limit: float = 25.0,
                    threshold: float = 1.0, pixel_scale: float = 0.2,
                    psf_fwhm: float | tuple[float, float] = (0.6, 1.0), workers: int | None = None,
                    progress: bool = True, galaxy_kinds: Sequence[str] = BLEND_KINDS, population: Samples | None = None,
                    population_fraction: float = 0.5) -> Path:
    """Write ``n`` blended stamps to the HDF5 file ``out``; return its path.

    ``min_sources``, ``max_sources``: sources per stamp (uniform); ``star_fraction``: chance that
    a source other than the first is a star; ``separation`` (low, high) from source 0 in
    ``separation_unit`` (``"pixels"`` or ``"hlr"``); ``visits``: LSST visits of the noise;
    ``mag_limit``: faintest band-averaged AB magnitude; ``threshold``: of the segmentation, in
    sigmas of the band-summed noise; ``galaxy_kinds``: the galaxy recipes drawn (of ``spheroid``,
    ``disk``, ``irregular``); ``population``: generated stamps (nJy, the same bands and pixel
    scale), each source one of them with probability ``population_fraction`` (``truth/generated``
    says which); without it the file is what it always was. The rest as ``simulate_denoise``.

    File (S = ``max_sources``): ``images`` (n, C, H, W) float32 noisy blends and ``noiseless``
    (n, C, H, W) float32 (the sum of the sources), nJy per pixel (attrs ``bands``, ``pixel_scale``,
    ``unit``; ``images`` also ``noise_sigma`` (C,) nJy and ``depth`` (C,) 5σ AB mag); ``sources``
    (n, S, C, H, W) float32 each source alone, noise-free, zeros past ``n_sources``; ``n_sources``
    (n,) int64; ``segmentation`` (n, H, W) int64 (0 background, k + 1 source k; attr ``threshold``
    in nJy per pixel of the band-summed image); ``morphology`` (n, H, W) uint8 the Morpheus class map
    (attr ``classes``: :data:`~deepfield.data.simulate.morpheus.MORPHOLOGY_CLASSES`, 0 background);
    ``truth/<name>`` (n, S) (see ``truth_info``) and
    ``truth/psf_fwhm`` (arcsec), ``truth/psf_beta`` (n,); attrs ``simulator``, ``seed``, ``config``.
    The same arguments give the same arrays for any ``workers``; read it with ``read_blends``.
    """
    out, workers = output_file(out), arguments.workers(workers)
    n = arguments.integer("n", n, expected="an integer >= 1")
    job = _job(size, bands, seed, min_sources, max_sources, star_fraction, separation, separation_unit, visits,
               mag_limit, threshold, pixel_scale, psf_fwhm, galaxy_kinds)
    if population is not None:
        job = dataclasses.replace(job, population=Population.of(
            population, arguments.fraction("population_fraction", population_fraction), job.bands, job.pixel_scale))
    depth, _ = visit_sigma(job.bands, visits, job.pixel_scale)
    config = dict(n=n, seed=job.seed, bands=list(job.bands), size=job.size, pixel_scale=job.pixel_scale,
                  min_sources=job.sources[0], max_sources=job.sources[1], star_fraction=job.star_fraction,
                  separation=list(job.separation), separation_unit=job.separation_unit, visits=visits,
                  mag_limit=job.mag_limit, threshold=job.threshold, psf_fwhm=list(job.psf_fwhm),
                  galaxy_kinds=list(job.galaxy_kinds))
    if population is not None:
        config |= dict(population=len(population.stamps), population_fraction=population_fraction)
    s_max, shape = job.sources[1], (n, job.bands, job.size, job.pixel_scale, "nJy")
    with sim_file(out, "blends", job.seed, config) as h5:
        streamed = dict(
            noiseless=create_images(h5, *shape, name="noiseless", description="the blend without noise"),
            sources=create_array(h5, "sources", (n, s_max, len(job.bands), job.size, job.size), np.float32,
                                 bands=list(job.bands), pixel_scale=job.pixel_scale, unit="nJy",
                                 description="each source alone without noise; zeros past n_sources"),
            segmentation=create_array(h5, "segmentation", (n, job.size, job.size), np.int64,
                                      threshold=job.threshold * float(np.sqrt(np.sum(job.sigma**2))),
                                      description=SEGMENTATION_RULE),
            morphology_map=create_array(h5, "morphology", (n, job.size, job.size), np.uint8,
                                        classes=list(MORPHOLOGY_CLASSES), description=MORPHOLOGY_RULE))
        sink = ChunkSink(n, create_images(h5, *shape, noise_sigma=job.sigma, depth=depth, visits=visits,
                                          description="the blend with Gaussian sky noise"), **streamed)
        run_chunks(draw_chunk, lambda rows: (job, rows), n, sink, workers=workers, progress=progress,
                   description="blends")
        h5.create_dataset("n_sources", data=sink.columns.pop("n_sources"))
        info = truth_info(job.bands) | {"psf_fwhm": ("arcsec", "FWHM of the Moffat seeing PSF of the stamp"),
                                        "psf_beta": ("", "index beta of the Moffat seeing PSF of the stamp")}
        write_columns(h5.create_group("truth", track_order=True), sink.columns, info)
    return out


def _job(size: int, bands: str | Sequence[str], seed: int, min_sources: int, max_sources: int, star_fraction: float,
         separation: object, separation_unit: str, visits: float, mag_limit: float, threshold: float,
         pixel_scale: float, psf_fwhm: object, galaxy_kinds: Sequence[str] = BLEND_KINDS) -> BlendJob:
    """Validate the arguments and build the job (with its colour tables)."""
    bands = parse_bands(bands)
    low = arguments.integer("min_sources", min_sources, 1, MAX_SOURCES)
    high = arguments.integer("max_sources", max_sources, 1, MAX_SOURCES)
    if low > high:
        raise DeepfieldError(f"min_sources ({low}) must be at most max_sources ({high})")
    if separation_unit not in SEPARATION_UNITS:
        raise unknown_name("separation unit", separation_unit, SEPARATION_UNITS)
    pixel_scale = arguments.number_range("pixel_scale", pixel_scale)[0]
    for kind in galaxy_kinds:
        if kind not in GALAXY_KINDS:
            raise unknown_name("galaxy kind", kind, GALAXY_KINDS)
    if not galaxy_kinds:
        raise DeepfieldError(f"galaxy_kinds: give at least one of {', '.join(GALAXY_KINDS)}")
    return BlendJob(seed=arguments.integer("seed", seed, 0, math.inf, expected="an integer >= 0"), bands=bands,
                    size=arguments.integer("size", size, 8, expected="an integer >= 8"), pixel_scale=pixel_scale,
                    psf_fwhm=arguments.number_range("psf_fwhm", psf_fwhm),
                    mag_limit=arguments.number_range("mag_limit", mag_limit, BRIGHT_LIMIT)[0],
                    sigma=visit_sigma(bands, arguments.number_range("visits", visits)[0], pixel_scale)[1],
                    sources=(low, high), star_fraction=arguments.fraction("star_fraction", star_fraction),
                    separation=arguments.number_range("separation", separation),
                    separation_unit=separation_unit, threshold=arguments.number_range("threshold", threshold)[0],
                    colours=Colours.build(bands), galaxy_kinds=tuple(galaxy_kinds))


@dataclass(frozen=True)
class BlendsData:
    """A blends file in memory (S = the file's ``max_sources``).

    ``images``, ``noiseless``: (N, C, H, W) float32 in ``unit`` (nJy per pixel); ``sources``:
    (N, S, C, H, W) float32, zeros past ``n_sources`` (N,) int64; ``segmentation``: (N, H, W) int64
    (0 background, k + 1 source k); ``noise_sigma``: (C,) nJy per pixel; ``truth``: name -> (N, S)
    arrays (NaN / False past the count; see ``truth_info``) and ``psf_fwhm``, ``psf_beta`` (N,); ``morphology``:
    (N, H, W) uint8 Morpheus class maps (``None`` in a file written before they were).
    """

    images: np.ndarray
    noiseless: np.ndarray
    sources: np.ndarray
    n_sources: np.ndarray
    segmentation: np.ndarray
    bands: tuple[str, ...]
    pixel_scale: float
    unit: str
    noise_sigma: np.ndarray
    truth: dict[str, np.ndarray]
    morphology: np.ndarray | None = None


def read_blends(path: str | os.PathLike[str], rows: slice = slice(None)) -> BlendsData:
    """The blends file ``path`` (rows ``rows`` of it) as written by ``simulate_blends``."""
    with open_simulated(path, "blends") as h5:
        images = h5["images"]
        return BlendsData(images[rows], h5["noiseless"][rows], h5["sources"][rows], h5["n_sources"][rows],
                          h5["segmentation"][rows], tuple(images.attrs["bands"]), float(images.attrs["pixel_scale"]),
                          str(images.attrs["unit"]), images.attrs["noise_sigma"], read_columns(h5["truth"], rows),
                          h5["morphology"][rows] if "morphology" in h5 else None)
