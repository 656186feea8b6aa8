"""Scenes of generated galaxies: samples drawn with GalSim into larger images with sky noise, in the blends layout.

Scene ``i`` (``size`` x ``size`` pixels of the samples' pixel scale) holds a number of sources
uniform in ``sources`` (low, high), or the finite rows of ``positions``; each is a sample chosen
uniformly, drawn at a uniformly random position (its centre anywhere in the image; light falling
off the edge is lost, so ``sources`` holds what landed) by
:func:`~deepfield.data.simulate.generated.draw_sample`: as it is (its own PSF), or convolved to
the broader PSF ``psf_fwhm`` by :func:`~deepfield.data.simulate.generated.matching_kernel`.
The noise is Gaussian sky of ``visits`` LSST visits per band (``sources.visit_sigma``: nJy
samples in LSST bands), or ``noise_sigma`` (C,) in the samples' unit. Scene ``i`` depends only
on ``(seed, i)`` and the arguments: its placement and its noise have their own random streams.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import galsim
import numpy as np

from deepfield import arguments
from deepfield.data.simulate.blends import SEGMENTATION_RULE, segmentation
from deepfield.data.simulate.galaxies import GSPARAMS, add_gaussian_noise
from deepfield.data.simulate.generated import Samples, draw_sample, matching_kernel
from deepfield.data.simulate.parallel import NOISE_STREAM, PLACEMENT_STREAM, run_chunks, stream_rng
from deepfield.data.simulate.seds import parse_bands
from deepfield.data.simulate.sources import visit_sigma
from deepfield.data.simulate.writer import ChunkSink, ColumnInfo, create_array, create_images, sim_file, write_columns
from deepfield.errors import DeepfieldError
from deepfield.outputs import output_file


@dataclass(frozen=True)
class Placement:
    """The sources of one scene: ``sample`` (k,) rows of the samples, ``xy`` (k, 2) centres (column, row) in
    pixels, ``stamps`` (k, C, H, W) the chosen samples."""

    sample: np.ndarray
    xy: np.ndarray
    stamps: np.ndarray


@dataclass(frozen=True)
class SceneJob:
    """What a worker needs (picklable): ``sigma`` (C,) noise per pixel in the samples' unit; ``kernel_fwhm``
    the extra Gaussian's FWHM in arcsec (0: drawn as they are)."""

    seed: int
    bands: tuple[str, ...]
    size: int
    pixel_scale: float
    most: int
    kernel_fwhm: float
    sigma: np.ndarray
    floor: float


def place(samples: Samples, n: int, size: int, seed: int, sources: tuple[int, int],
          positions: np.ndarray | None) -> list[Placement]:
    """The placement of each of the ``n`` scenes (module docstring)."""
    plans = []
    for index in range(n):
        rng = stream_rng(seed, PLACEMENT_STREAM, index)
        if positions is None:
            count = int(rng.integers(sources[0], sources[1] + 1))
            xy = rng.uniform(-0.5, size - 0.5, (count, 2))
        else:
            xy = positions[index % len(positions)]
            xy = xy[np.isfinite(xy[:, 0])]
        chosen = rng.integers(len(samples.stamps), size=len(xy))
        plans.append(Placement(chosen, xy, samples.stamps[chosen]))
    return plans


def draw_scenes(task: tuple[SceneJob, range, list[Placement]]) -> dict[str, np.ndarray]:
    """Worker: scenes ``rows``: ``images``, ``noiseless`` (k, C, size, size), ``sources`` (k, S, C, size, size)
    float32, ``segmentation`` (k, size, size) int64 and the truth arrays (k, S)."""
    job, rows, plans = task
    kernel = galsim.Gaussian(fwhm=job.kernel_fwhm, gsparams=GSPARAMS) if job.kernel_fwhm > 0 else None
    scenes = []
    for index, plan in zip(rows, plans):
        bands = len(job.bands)
        isolated = np.zeros((job.most, bands, job.size, job.size))
        for k, (stamp, (x, y)) in enumerate(zip(plan.stamps, plan.xy)):
            isolated[k] = draw_sample(stamp, job.pixel_scale, (job.size, job.size), x, y, kernel)
        noiseless = isolated.sum(axis=0)
        flux = np.full((job.most, bands), np.nan)
        flux[:len(plan.stamps)] = plan.stamps.sum(axis=(2, 3), dtype=np.float64)
        scenes.append(dict(images=add_gaussian_noise(noiseless, job.sigma, stream_rng(job.seed, NOISE_STREAM, index)),
                           noiseless=noiseless.astype(np.float32), sources=isolated.astype(np.float32),
                           n_sources=np.int64(len(plan.xy)), x=_padded(plan.xy[:, 0], job.most, np.nan),
                           y=_padded(plan.xy[:, 1], job.most, np.nan), sample=_padded(plan.sample, job.most, -1),
                           flux=flux))
    chunk = {name: np.stack([scene[name] for scene in scenes]) for name in scenes[0]}
    chunk["segmentation"] = segmentation(chunk["sources"], job.floor)
    flux = chunk.pop("flux")
    return chunk | {f"flux_{b}": flux[..., c] for c, b in enumerate(job.bands)}


def _padded(values: np.ndarray, length: int, fill: float) -> np.ndarray:
    out = np.full(length, fill, dtype=np.result_type(values, type(fill)))
    out[:len(values)] = values
    return out


def truth_info(bands: Sequence[str], unit: str) -> ColumnInfo:
    """Units and descriptions of the ``truth/`` arrays of a scene file, (N, S) each."""
    return {
        "x": ("pixel", "centre of the sample's stamp, column index (0 = centre of the first pixel); NaN: no source"),
        "y": ("pixel", "centre of the sample's stamp, row index (0 = centre of the first pixel); NaN: no source"),
        "sample": ("", "row of the source in the samples (-1: no source)"),
    } | {f"flux_{b}": (unit, f"total flux in band {b} of the stamp (its pixel sum); NaN: no source") for b in bands}


def simulate_scene(samples: Samples, n: int, out: str | os.PathLike[str], *, size: int = 256, seed: int = 0,
                   sources: int | tuple[int, int] = (5, 15), positions: np.ndarray | None = None,
                   psf_fwhm: float | None = None, visits: float = 100.0, noise_sigma: Sequence[float] | None = None,
                   threshold: float = 1.0, workers: int | None = None, progress: bool = True) -> Path:
    """Write ``n`` scenes of the generated ``samples`` to the HDF5 file ``out``; return its path.

    ``sources``: sources per scene, a count or (low, high); ``positions``: (S, 2) or (n, S, 2) centres
    (x = column, y = row, pixels; rows of NaN are no source) instead of random ones (an (S, 2) array
    serves every scene); ``psf_fwhm``: a target PSF FWHM (arcsec) broader than the samples' own
    (``None``: the stamps as they are); ``visits``: LSST visits of the noise, or ``noise_sigma`` (C,)
    per pixel in the samples' unit; ``threshold``: of the segmentation, in sigmas of the band-summed noise.

    File (the blends layout; S = the most sources a scene holds): ``images`` (n, C, size, size) float32
    with noise and ``noiseless`` (attrs ``bands``, ``pixel_scale``, ``unit``; ``images`` also
    ``noise_sigma``), ``sources`` (n, S, C, size, size) float32 each source alone as drawn (zeros past
    ``n_sources`` (n,) int64), ``segmentation`` (n, size, size) int64 (blends' rule), ``truth/<name>``
    (n, S) (see ``truth_info``); attrs ``simulator`` ("scene"), ``seed``, ``config``. ``sources`` takes
    S x C x size**2 float32 per scene: 12 MB for 15 sources of 3 bands at 256 x 256.
    """
    out, workers = output_file(out), arguments.workers(workers)
    n = arguments.integer("n", n, expected="an integer >= 1")
    size = arguments.integer("size", size, 8, expected="an integer >= 8")
    seed = arguments.integer("seed", seed, 0, math.inf, expected="an integer >= 0")
    counts = (sources,) if np.ndim(sources) == 0 else tuple(sources)
    if len(counts) not in (1, 2):
        raise DeepfieldError(f"sources must be a count or (low, high), got {sources!r}")
    low = arguments.integer("sources", counts[0], 1, 1000, expected="an integer >= 1")
    high = arguments.integer("sources", counts[-1], low, 1000, expected=f"an integer >= {low} (low, high)")
    positions = _positions(positions, n)
    sigma = _sigma(samples, visits, noise_sigma)
    kernel = matching_kernel(samples.psf_fwhm, psf_fwhm)
    job = SceneJob(seed=seed, bands=samples.bands, size=size, pixel_scale=samples.pixel_scale,
                   most=high if positions is None else positions.shape[1],
                   kernel_fwhm=0.0 if kernel is None else float(kernel.fwhm), sigma=sigma,
                   floor=arguments.number_range("threshold", threshold)[0] * float(np.sqrt(np.sum(sigma**2))))
    plans = place(samples, n, size, seed, (low, high), positions)
    config = dict(n=n, seed=seed, size=size, sources=[low, high], given_positions=positions is not None,
                  psf_fwhm=psf_fwhm, stamp_psf_fwhm=samples.psf_fwhm, visits=None if noise_sigma else visits,
                  noise_sigma=sigma.tolist(), threshold=threshold, samples=len(samples.stamps))
    bands, unit = samples.bands, samples.unit
    with sim_file(out, "scene", seed, config) as h5:
        shape = (n, bands, size, samples.pixel_scale, unit)
        streamed = dict(
            noiseless=create_images(h5, *shape, name="noiseless", description="the scene without noise"),
            sources=create_array(h5, "sources", (n, job.most, len(bands), size, size), np.float32, bands=list(bands),
                                 pixel_scale=samples.pixel_scale, unit=unit,
                                 description="each source alone as drawn, without noise; zeros past n_sources"),
            segmentation=create_array(h5, "segmentation", (n, size, size), np.int64, threshold=job.floor,
                                      description=SEGMENTATION_RULE))
        sink = ChunkSink(n, create_images(h5, *shape, noise_sigma=sigma, description="the scene with Gaussian sky "
                                          "noise"), **streamed)
        run_chunks(draw_scenes, lambda rows: (job, rows, plans[rows.start:rows.stop]), n, sink, workers=workers,
                   progress=progress, description="scenes")
        h5.create_dataset("n_sources", data=sink.columns.pop("n_sources"))
        write_columns(h5.create_group("truth", track_order=True), sink.columns, truth_info(bands, unit))
    return out


def _positions(positions: np.ndarray | None, n: int) -> np.ndarray | None:
    """``positions`` as (n or 1, S, 2) float64, checked."""
    if positions is None:
        return None
    given = np.asarray(positions, dtype=np.float64)
    given = given[None] if given.ndim == 2 else given
    if given.ndim != 3 or given.shape[-1] != 2 or given.shape[1] == 0 or len(given) not in (1, n):
        raise DeepfieldError(f"positions have shape {np.shape(positions)}; expected (S, 2) or ({n}, S, 2) "
                             "centres (x, y) in pixels")
    if np.any(np.isfinite(given[..., 0]) != np.isfinite(given[..., 1])):
        raise DeepfieldError("positions: a row has one of x, y finite and the other not")
    return given


def _sigma(samples: Samples, visits: float, noise_sigma: Sequence[float] | None) -> np.ndarray:
    """(C,) noise per pixel in the samples' unit: ``noise_sigma``, else ``visits`` LSST visits (nJy)."""
    if noise_sigma is not None:
        sigma = np.asarray(noise_sigma, dtype=np.float64).reshape(-1)
        if len(sigma) != len(samples.bands) or not np.all(sigma >= 0):
            raise DeepfieldError(f"noise_sigma {sigma.tolist()} must be {len(samples.bands)} numbers >= 0, one per "
                                 f"band {list(samples.bands)}")
        return sigma
    if samples.unit != "nJy":
        raise DeepfieldError(f"samples are in {samples.unit!r}, not nJy: LSST-like noise needs nJy; give the noise "
                             "per band in their unit (noise_sigma / --noise-sigma)")
    return visit_sigma(parse_bands(samples.bands), arguments.number_range("visits", visits)[0],
                       samples.pixel_scale)[1]
