"""Denoising (and deconvolution) pairs: the same galaxies seen shallow (input) and noise-free or deep (target).

Every object is one galaxy (``sources.galaxy``: a spheroid, disk or irregular of AB magnitude
18 to ``mag_limit``, its flux averaged over the bands) at a sub-pixel offset from the stamp
centre, seen through a random Moffat seeing PSF (the same in every band). The input carries
Gaussian sky noise of ``visits`` LSST visits per band; the target is the same noise-free
light (``target="noiseless"``) or the same light with the noise of ``deep_visits`` visits
(``target="deep"``). With ``target_psf`` the target is drawn through a sharper Gaussian PSF
of that FWHM instead (deconvolution). Inputs and targets are aligned pixel for pixel; both
are sky-subtracted nJy per pixel. The input and its noise do not depend on the target kind.
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
from deepfield.data.simulate.galaxies import GSPARAMS, StampDrawer, add_gaussian_noise, moffat_psf
from deepfield.data.simulate.parallel import GALAXY_STREAM, run_chunks, stream_rng
from deepfield.data.simulate.photoz import BRIGHT_LIMIT
from deepfield.data.simulate.reading import open_simulated, read_columns
from deepfield.data.simulate.seds import Colours, parse_bands
from deepfield.data.simulate.sources import galaxy, visit_sigma
from deepfield.data.simulate.writer import ChunkSink, ColumnInfo, create_images, sim_file, stack_rows, write_columns
from deepfield.errors import DeepfieldError, unknown_name
from deepfield.outputs import output_file

TARGETS = ("noiseless", "deep")
"""What the target of a denoising pair is: the noise-free light, or a deeper noisy observation."""

APERTURE_SCALE = 2.0
"""The aperture radius in units of ``sqrt(hlr**2 + (FWHM / 2)**2)``: the galaxy's size after seeing."""


@dataclass(frozen=True)
class DenoiseJob:
    """What a worker needs (picklable). ``input_sigma``, ``target_sigma``: (C,) nJy per pixel
    (``target_sigma`` zeros for a noise-free target); ``target_psf``: Gaussian FWHM in arcsec, or
    ``None`` for the input's PSF."""

    seed: int
    bands: tuple[str, ...]
    size: int
    pixel_scale: float
    psf_fwhm: tuple[float, float]
    mag_limit: float
    input_sigma: np.ndarray
    target_sigma: np.ndarray
    target: str
    target_psf: float | None
    colours: Colours


def draw_pair(job: DenoiseJob, index: int, drawer: StampDrawer) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Object ``index``: its input and target (C, H, W) float32 nJy per pixel and truth row."""
    rng = stream_rng(job.seed, GALAXY_STREAM, index)
    source = galaxy(rng, job.colours, len(job.bands), job.mag_limit, max_hlr=job.size * job.pixel_scale / 8.0)
    psf = moffat_psf(rng, job.psf_fwhm)
    offset = tuple(rng.uniform(-0.5, 0.5, 2))
    light = drawer.draw(source.components, psf, offset)
    noisy = add_gaussian_noise(light, job.input_sigma, rng)
    if job.target_psf is not None:
        light = drawer.draw(source.components, galsim.Gaussian(fwhm=job.target_psf, gsparams=GSPARAMS), offset)
    target = add_gaussian_noise(light, job.target_sigma, rng) if job.target == "deep" else light.astype(np.float32)
    hlr = source.half_light_radius / job.pixel_scale
    seeing = psf.fwhm / job.pixel_scale
    truth = dict(kind=source.kind, redshift=source.redshift, mag=source.mag, half_light_radius=hlr,
                 e1=source.e1, e2=source.e2, x=(job.size - 1) / 2 + offset[0], y=(job.size - 1) / 2 + offset[1],
                 psf_fwhm=psf.fwhm, psf_beta=psf.beta,
                 aperture_radius=min(APERTURE_SCALE * math.hypot(hlr, seeing / 2), (job.size - 1) / 2))
    return noisy, target, truth | {f"flux_{b}": float(f) for b, f in zip(job.bands, source.flux)}


def draw_chunk(task: tuple[DenoiseJob, range]) -> dict[str, np.ndarray]:
    """Worker: objects ``rows``: ``images`` and ``targets`` (k, C, H, W) float32 and truth columns (k,)."""
    job, rows = task
    drawer = StampDrawer(len(job.bands), job.size, job.pixel_scale)
    inputs, targets, truths = zip(*(draw_pair(job, index, drawer) for index in rows))
    columns = stack_rows([{k: v for k, v in t.items() if k != "kind"} for t in truths])
    kinds = np.array([t["kind"] for t in truths], dtype="U16")  # one width for every chunk
    return {"images": np.stack(inputs), "targets": np.stack(targets), "kind": kinds, **columns}


def truth_info(bands: Sequence[str]) -> ColumnInfo:
    """Units and descriptions of the ``truth/`` columns of the denoise file."""
    return {
        "kind": ("", "galaxy recipe: spheroid, disk or irregular"),
        "redshift": ("", "redshift at which the colour templates are evaluated"),
        "mag": ("mag", "AB magnitude of the flux averaged over the bands"),
        "half_light_radius": ("pixel", "half-light radius of the main component before seeing"),
        "e1": ("", "reduced shear |g| cos(2 theta) of the main component before seeing (theta from +x)"),
        "e2": ("", "reduced shear |g| sin(2 theta) of the main component before seeing"),
        "x": ("pixel", "centre of the galaxy, column index (0 = centre of the first pixel)"),
        "y": ("pixel", "centre of the galaxy, row index (0 = centre of the first pixel)"),
        "psf_fwhm": ("arcsec", "FWHM of the input's Moffat seeing PSF (same in every band)"),
        "psf_beta": ("", "index beta of the input's Moffat seeing PSF"),
        "aperture_radius": ("pixel", f"radius of the circular photometry aperture centred on (x, y): "
                                     f"{APERTURE_SCALE} sqrt(hlr**2 + (psf_fwhm / 2)**2), at most (size - 1) / 2"),
    } | {f"flux_{b}": ("nJy", f"total flux in band {b} before seeing and noise") for b in bands}


def simulate_denoise(n: int, out: str | os.PathLike[str], *, size: int = 64,
                     bands: str | Sequence[str] = ("g", "r", "i"), seed: int = 0, target: str = "noiseless",
                     visits: float = 1.0, deep_visits: float = 100.0, target_psf: float | None = None,
                     mag_limit: float = 23.5, pixel_scale: float = 0.2,
                     psf_fwhm: float | tuple[float, float] = (0.6, 1.0), workers: int | None = None,
                     progress: bool = True) -> Path:
    """Write ``n`` denoising pairs to the HDF5 file ``out``; return its path.

    ``size``: stamp side in pixels of ``pixel_scale`` arcsec; ``bands``: LSST band names;
    ``target``: ``"noiseless"`` or ``"deep"``; ``visits``, ``deep_visits``: LSST visits of the
    input and the deep target (noise sigma ∝ 1 / sqrt(visits)); ``target_psf``: FWHM (arcsec) of
    a Gaussian PSF for the target, sharper than the seeing (``None``: the input's PSF);
    ``mag_limit``: faintest band-averaged AB magnitude; ``psf_fwhm``: seeing FWHM range (arcsec).

    File: ``images`` (n, C, size, size) float32 inputs and ``targets`` (n, C, size, size)
    float32, both nJy per pixel (attrs ``bands``, ``pixel_scale``, ``unit``, ``noise_sigma`` (C,)
    nJy per pixel (zeros: noise-free), ``depth`` (C,) 5σ AB mag (inf: noise-free), ``visits``;
    ``targets`` also ``kind`` and ``psf_fwhm``: the Gaussian FWHM in arcsec, NaN for the input's PSF);
    ``truth/<column>`` (n,) (see ``truth_info``); attrs ``simulator``, ``seed``, ``config``.
    The same arguments give the same arrays for any ``workers``; read it with ``read_denoise``.
    """
    out, workers = output_file(out), arguments.workers(workers)
    n = arguments.integer("n", n, expected="an integer >= 1")
    job = _job(size, bands, seed, target, visits, deep_visits, target_psf, mag_limit, pixel_scale, psf_fwhm)
    depth, _ = visit_sigma(job.bands, visits, job.pixel_scale)
    deep = job.target == "deep"
    target_depth = visit_sigma(job.bands, deep_visits, job.pixel_scale)[0] if deep else np.full(len(job.bands), np.inf)
    config = dict(n=n, seed=job.seed, bands=list(job.bands), size=job.size, pixel_scale=job.pixel_scale,
                  target=job.target, visits=visits, deep_visits=deep_visits if deep else None, target_psf=target_psf,
                  mag_limit=job.mag_limit, psf_fwhm=list(job.psf_fwhm))
    with sim_file(out, "denoise", job.seed, config) as h5:
        shape = (n, job.bands, job.size, job.pixel_scale, "nJy")
        images = create_images(h5, *shape, noise_sigma=job.input_sigma, depth=depth, visits=visits)
        targets = create_images(h5, *shape, name="targets", noise_sigma=job.target_sigma, depth=target_depth,
                                visits=deep_visits if deep else np.inf, kind=job.target,
                                psf_fwhm=np.nan if target_psf is None else job.target_psf)
        sink = ChunkSink(n, images, targets=targets)
        run_chunks(draw_chunk, lambda rows: (job, rows), n, sink, workers=workers, progress=progress,
                   description="denoise pairs")
        write_columns(h5.create_group("truth", track_order=True), sink.columns, truth_info(job.bands))
    return out


def _job(size: int, bands: str | Sequence[str], seed: int, target: str, visits: float, deep_visits: float,
         target_psf: float | None, mag_limit: float, pixel_scale: float, psf_fwhm: object) -> DenoiseJob:
    """Validate the arguments and build the job (with its colour tables)."""
    bands = parse_bands(bands)
    if target not in TARGETS:
        raise unknown_name("denoise target", target, TARGETS)
    visits = arguments.number_range("visits", visits)[0]
    deep_visits = arguments.number_range("deep_visits", deep_visits)[0]
    if target == "deep" and deep_visits <= visits:
        raise DeepfieldError(f"deep_visits ({deep_visits:g}) must be more than visits ({visits:g}) for a deep target")
    pixel_scale = arguments.number_range("pixel_scale", pixel_scale)[0]
    psf_fwhm = arguments.number_range("psf_fwhm", psf_fwhm)
    if target_psf is not None and not arguments.number_range("target_psf", target_psf)[0] < psf_fwhm[0]:
        raise DeepfieldError(f"target_psf ({target_psf:g} arcsec) must be sharper than the seeing, below the "
                             f"smallest psf_fwhm {psf_fwhm[0]:g} arcsec")
    target_sigma = visit_sigma(bands, deep_visits, pixel_scale)[1] if target == "deep" else np.zeros(len(bands))
    return DenoiseJob(seed=arguments.integer("seed", seed, 0, math.inf, expected="an integer >= 0"), bands=bands,
                      size=arguments.integer("size", size, 8, expected="an integer >= 8"), pixel_scale=pixel_scale,
                      psf_fwhm=psf_fwhm, mag_limit=arguments.number_range("mag_limit", mag_limit, BRIGHT_LIMIT)[0],
                      input_sigma=visit_sigma(bands, visits, pixel_scale)[1], target_sigma=target_sigma,
                      target=target, target_psf=None if target_psf is None else float(target_psf),
                      colours=Colours.build(bands))


@dataclass(frozen=True)
class DenoiseData:
    """A denoise file in memory.

    ``inputs``, ``targets``: (N, C, H, W) float32 in ``unit`` (nJy per pixel); ``noise_sigma``,
    ``target_noise_sigma``: (C,) nJy per pixel (zeros: noise-free target); ``target_psf_fwhm``:
    the target's Gaussian PSF FWHM in arcsec (NaN: the input's PSF, ``truth["psf_fwhm"]``);
    ``truth``: column name -> (N,) array (see ``truth_info``; ``kind`` as str).
    """

    inputs: np.ndarray
    targets: np.ndarray
    bands: tuple[str, ...]
    pixel_scale: float
    unit: str
    noise_sigma: np.ndarray
    target_noise_sigma: np.ndarray
    target_psf_fwhm: float
    truth: dict[str, np.ndarray]


def read_denoise(path: str | os.PathLike[str], rows: slice = slice(None)) -> DenoiseData:
    """The denoise file ``path`` (rows ``rows`` of it) as written by ``simulate_denoise``."""
    with open_simulated(path, "denoise") as h5:
        images, targets = h5["images"], h5["targets"]
        return DenoiseData(images[rows], targets[rows], tuple(images.attrs["bands"]),
                           float(images.attrs["pixel_scale"]), str(images.attrs["unit"]),
                           images.attrs["noise_sigma"], targets.attrs["noise_sigma"],
                           float(targets.attrs["psf_fwhm"]), read_columns(h5["truth"], rows))
