"""Photometric-redshift catalogues: true redshifts and noisy LSST AB magnitudes, optionally stamps.

The recipe, per galaxy:

1. an apparent i magnitude from galaxy number counts, ``dN/dm ∝ 10**(0.31 m)``, between
   ``BRIGHT_LIMIT`` and ``mag_limit`` (the catalogue is i-selected);
2. a redshift from the LSST Science Book n(z | i), ``p(z) ∝ z**2 exp(-z / z0)`` with
   ``z0 = 0.0417 i - 0.744``, kept in [0.01, 3] (peaking near 0.6 at i = 25);
3. a CWW template (``E``, ``Sbc``, ``Scd``, ``Im`` in proportions ``TEMPLATE_FRACTIONS``);
4. true magnitudes in every band: i plus the template's colours at z, interpolated in a
   (template, z, band) table computed once with ``galsim.SED.calculateMagnitude``;
5. observed magnitudes: Gaussian flux noise of one fifth of the band's 5σ depth flux, so
   ``mag_err = 2.5 / ln 10 / SNR`` grows with magnitude; a flux below 5σ (a magnitude
   fainter than the depth) is a non-detection, written as 99 with error 99.
"""
from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import galsim
import h5py
import numpy as np
from astropy.cosmology import Planck18

from deepfield import arguments
from deepfield.data.simulate.galaxies import (GSPARAMS, Component, StampDrawer, add_gaussian_noise, log_uniform,
                                              moffat_psf)
from deepfield.data.simulate.parallel import CATALOGUE_STREAM, STAMP_STREAM, run_chunks, stream_rng
from deepfield.data.simulate.seds import GALAXY_TEMPLATES, LSST_BANDS, MagnitudeTable, galaxy_sed, parse_bands
from deepfield.data.simulate.writer import ChunkSink, ColumnInfo, create_images, sim_file, stack_rows, write_columns
from deepfield.errors import DeepfieldError
from deepfield.outputs import output_file

LSST_DEPTHS = dict(u=26.1, g=27.4, r=27.5, i=26.8, z=26.1, y=24.9)
"""LSST 10-year 5σ point-source depths (AB mag), from the Science Requirements Document."""

TEMPLATE_FRACTIONS = dict(E=0.15, Sbc=0.25, Scd=0.35, Im=0.25)
"""How often each CWW template is drawn."""

BULGE_FRACTIONS = dict(E=(0.7, 1.0), Sbc=(0.2, 0.5), Scd=(0.05, 0.2), Im=(0.0, 0.05))
"""Range of the bulge fraction of the stamps, per template."""

BRIGHT_LIMIT = 18.0
"""Brightest i magnitude in the catalogue."""

COUNT_SLOPE = 0.31
"""d log10 N / dm of the i-band galaxy counts."""

Z_RANGE = (0.01, 3.0)
"""Redshifts kept."""

NON_DETECTION = 99.0
"""Magnitude and error of a non-detection."""

AB_NJY = 31.4
"""AB magnitude of 1 nJy: ``m = 31.4 - 2.5 log10(f / nJy)``."""

REFERENCE_SEEING = 0.7
"""FWHM (arcsec) at which the depths convert to the stamps' sky noise per pixel."""

DISK_SIZE_KPC = (1.5, 6.0)
"""Range (log-uniform) of the disks' physical half-light radius in kpc."""


def _flux(mag: np.ndarray | float) -> np.ndarray:
    """nJy of an AB magnitude."""
    return 10.0 ** (-0.4 * (np.asarray(mag) - AB_NJY))


def draw_i_magnitudes(rng: np.random.Generator, n: int, faint: float) -> np.ndarray:
    """(n,) i magnitudes between ``BRIGHT_LIMIT`` and ``faint`` with ``dN/dm ∝ 10**(COUNT_SLOPE m)``."""
    low, high = 10.0 ** (COUNT_SLOPE * BRIGHT_LIMIT), 10.0 ** (COUNT_SLOPE * faint)
    return np.log10(low + rng.uniform(0.0, 1.0, n) * (high - low)) / COUNT_SLOPE


def draw_redshifts(rng: np.random.Generator, i_mag: np.ndarray) -> np.ndarray:
    """(n,) redshifts from ``p(z | i) ∝ z**2 exp(-z / z0(i))`` restricted to ``Z_RANGE``."""
    scale = np.maximum(0.0417 * i_mag - 0.744, 0.02)
    z = rng.gamma(3.0, scale)
    while np.any(bad := (z < Z_RANGE[0]) | (z > Z_RANGE[1])):
        z[bad] = rng.gamma(3.0, scale[bad])
    return z


def observe(true_mag: np.ndarray, depth: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Noisy magnitudes and errors (n,) of ``true_mag`` (n,) in a band of 5σ ``depth``; 99 where not detected."""
    sigma = _flux(depth) / 5.0
    flux = _flux(true_mag) + rng.normal(0.0, sigma, true_mag.shape)
    detected = flux >= 5.0 * sigma
    measured = np.maximum(flux, 5.0 * sigma)
    mag = np.where(detected, AB_NJY - 2.5 * np.log10(measured), NON_DETECTION)
    err = np.where(detected, 2.5 / math.log(10.0) * sigma / measured, NON_DETECTION)
    return mag, err


def catalogue(n: int, bands: Sequence[str], mag_limit: float, depths: Mapping[str, float], seed: int,
              table: MagnitudeTable) -> dict[str, np.ndarray]:
    """The catalogue columns, (n,) each: ``id``, ``redshift``, ``template`` (names), per band
    ``mag_{b}_lsst``, ``mag_err_{b}_lsst`` and the noiseless ``mag_{b}_true``."""
    rng = stream_rng(seed, CATALOGUE_STREAM)
    i_mag = draw_i_magnitudes(rng, n, mag_limit)
    z = draw_redshifts(rng, i_mag)
    template = rng.choice(len(GALAXY_TEMPLATES), n, p=[TEMPLATE_FRACTIONS[t] for t in GALAXY_TEMPLATES])
    colours = table.magnitudes(template, z)  # (n, 6), meaningful up to a constant per object
    true = i_mag[:, None] + colours - colours[:, [table.bands.index("i")]]
    columns = dict(id=np.arange(n, dtype=np.int64), redshift=z, template=np.array(GALAXY_TEMPLATES)[template])
    for band in bands:
        mag, err = observe(true[:, table.bands.index(band)], depths[band], rng)
        columns |= {f"mag_{band}_lsst": mag, f"mag_err_{band}_lsst": err}
    return columns | {f"mag_{band}_true": true[:, table.bands.index(band)] for band in bands}


def catalogue_info(bands: Sequence[str], depths: Mapping[str, float]) -> ColumnInfo:
    """Units and descriptions of the ``photometry/`` columns."""
    info = {"id": ("", "object index"), "redshift": ("", "true redshift"),
            "template": ("", "CWW template of the spectrum: E, Sbc, Scd or Im"),
            "half_light_radius": ("arcsec", "half-light radius of the stamp's disk (the bulge's is half of it)"),
            "bulge_fraction": ("", "fraction of the stamp's flux in its de Vaucouleurs bulge"),
            "ellipticity": ("", "|g| = (1 - q) / (1 + q) of the stamp's galaxy"),
            "position_angle": ("deg", "major axis of the stamp's galaxy, counter-clockwise from +x"),
            "psf_fwhm": ("arcsec", "FWHM of the stamp's Moffat seeing PSF"),
            "psf_beta": ("", "index beta of the stamp's Moffat seeing PSF")}
    for b in bands:
        info[f"mag_{b}_lsst"] = ("mag", f"LSST {b} AB magnitude with noise; 99: not detected (5-sigma depth "
                                        f"{depths[b]})")
        info[f"mag_err_{b}_lsst"] = ("mag", f"1-sigma error of mag_{b}_lsst; 99: not detected")
        info[f"mag_{b}_true"] = ("mag", f"noiseless LSST {b} AB magnitude")
    return info


@dataclass(frozen=True)
class PhotozStampJob:
    """What a worker needs to draw the catalogue's stamps (picklable).

    ``noise``: (C,) sky sigma per pixel in nJy; ``kpc_z``, ``arcsec_per_kpc``: a grid of
    the angular scale (Planck18) against redshift.
    """

    seed: int
    size: int
    pixel_scale: float
    psf_fwhm: tuple[float, float]
    noise: np.ndarray
    kpc_z: np.ndarray
    arcsec_per_kpc: np.ndarray

    @classmethod
    def build(cls, seed: int, bands: Sequence[str], depths: Mapping[str, float], size: int, pixel_scale: float,
              psf_fwhm: tuple[float, float]) -> PhotozStampJob:
        """The job, with the sky noise per pixel that gives a point source at ``REFERENCE_SEEING``
        an optimal-aperture SNR of 5 at each band's depth."""
        pixels_per_psf = 4.0 * math.pi * (REFERENCE_SEEING / 2.3548 / pixel_scale) ** 2
        noise = np.array([_flux(depths[b]) / 5.0 / math.sqrt(pixels_per_psf) for b in bands])
        kpc_z = np.linspace(*Z_RANGE, 300)
        return cls(seed, size, pixel_scale, psf_fwhm, noise, kpc_z, Planck18.arcsec_per_kpc_proper(kpc_z).value)


def draw_stamp_chunk(task: tuple[PhotozStampJob, range, np.ndarray, np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
    """Worker: stamps of catalogue rows with templates (k,) names, redshifts (k,) and true fluxes
    (k, C) nJy: ``images`` (k, C, H, W) float32 in nJy and the stamps' truth columns (k,)."""
    job, rows, templates, redshifts, fluxes = task
    drawer = StampDrawer(fluxes.shape[1], job.size, job.pixel_scale)
    stamps, truths = [], []
    for index, template, z, flux in zip(rows, templates, redshifts, fluxes):
        rng = stream_rng(job.seed, STAMP_STREAM, index)
        bulge_fraction = rng.uniform(*BULGE_FRACTIONS[template])
        size_limit = job.size * job.pixel_scale / 8.0
        hlr = min(log_uniform(rng, *DISK_SIZE_KPC) * np.interp(z, job.kpc_z, job.arcsec_per_kpc), size_limit)
        q, angle = rng.uniform(0.3, 1.0), rng.uniform(0.0, 180.0)
        galaxy = galsim.Add([galsim.DeVaucouleurs(half_light_radius=0.5 * hlr, flux=bulge_fraction, gsparams=GSPARAMS),
                             galsim.Exponential(half_light_radius=hlr, flux=1.0 - bulge_fraction, gsparams=GSPARAMS)])
        psf = moffat_psf(rng, job.psf_fwhm)
        light = drawer.draw([Component(galaxy.shear(q=q, beta=angle * galsim.degrees), flux)], psf,
                            tuple(rng.uniform(-0.5, 0.5, 2)))
        stamps.append(add_gaussian_noise(light, job.noise, rng))
        truths.append(dict(half_light_radius=hlr, bulge_fraction=bulge_fraction,
                           ellipticity=(1.0 - q) / (1.0 + q), position_angle=angle, psf_fwhm=psf.fwhm,
                           psf_beta=psf.beta))
    return {"images": np.stack(stamps), **stack_rows(truths)}


def _check_depths(depths: Mapping[str, float] | None) -> dict[str, float]:
    if depths is None:
        return dict(LSST_DEPTHS)
    if not isinstance(depths, Mapping):
        raise DeepfieldError(f"depths must map band names to 5-sigma depths, got {depths!r}")
    for band, depth in depths.items():
        parse_bands([band])
        if not isinstance(depth, numbers.Real) or not 10.0 < depth < 40.0:
            raise DeepfieldError(f"depths[{band!r}] must be an AB magnitude between 10 and 40, got {depth!r}")
    return LSST_DEPTHS | {band: float(depth) for band, depth in depths.items()}


def simulate_photoz(n: int, out: str | os.PathLike[str], *, seed: int = 0, bands: str | Sequence[str] = "ugrizy",
                    mag_limit: float = 25.3, depths: Mapping[str, float] | None = None, stamps: bool = False,
                    size: int = 32, pixel_scale: float = 0.2, psf_fwhm: float | tuple[float, float] = (0.5, 1.1),
                    workers: int | None = None, progress: bool = True) -> Path:
    """Write a catalogue of ``n`` galaxies (and their stamps if ``stamps``) to ``out``; return its path.

    ``bands``: LSST band names (``"ugrizy"`` or a list); ``mag_limit``: faintest true i
    magnitude; ``depths``: band -> 5σ depth (AB mag), defaults ``LSST_DEPTHS``; stamps of
    ``size`` pixels of ``pixel_scale`` arcsec, seeing FWHM in ``psf_fwhm`` arcsec, drawn with
    ``workers`` processes (``None``: all cores).

    File: the column group ``photometry/`` (see ``catalogue`` and ``catalogue_info``; stamp
    shape columns too when ``stamps``), each column with ``unit`` and ``description`` attrs;
    with ``stamps``: ``images`` (n, C, size, size) float32 in nJy per pixel, sky-subtracted
    with Gaussian sky noise matching the depths at 0.7 arcsec seeing; attrs ``simulator``,
    ``seed``, ``config``.
    """
    n = arguments.integer("n", n, expected="an integer >= 1")
    seed, bands = arguments.integer("seed", seed, 0, math.inf, expected="an integer >= 0"), parse_bands(bands)
    mag_limit = arguments.number_range("mag_limit", mag_limit, BRIGHT_LIMIT)[0]
    depths = _check_depths(depths)
    size = arguments.integer("size", size, 8, expected="an integer >= 8")
    pixel_scale = arguments.number_range("pixel_scale", pixel_scale)[0]
    psf_fwhm = arguments.number_range("psf_fwhm", psf_fwhm)
    out, workers = output_file(out), arguments.workers(workers)
    table = MagnitudeTable.build({t: galaxy_sed(t) for t in GALAXY_TEMPLATES}, LSST_BANDS,
                                 np.linspace(0.0, Z_RANGE[1], 301))
    columns = catalogue(n, bands, mag_limit, depths, seed, table)
    config = dict(n=n, seed=seed, bands=list(bands), mag_limit=mag_limit, depths={b: depths[b] for b in bands},
                  stamps=stamps) | (dict(size=size, pixel_scale=pixel_scale, psf_fwhm=list(psf_fwhm)) if stamps else {})
    with sim_file(out, "photoz", seed, config) as h5:
        if stamps:
            job = PhotozStampJob.build(seed, bands, depths, size, pixel_scale, psf_fwhm)
            columns |= _draw_stamps(h5, job, columns, bands, workers, progress)
        write_columns(h5.create_group("photometry", track_order=True), columns, catalogue_info(bands, depths))
    return out


def _draw_stamps(h5: h5py.File, job: PhotozStampJob, columns: Mapping[str, np.ndarray], bands: Sequence[str],
                 workers: int, progress: bool) -> dict[str, np.ndarray]:
    """Draw the catalogue's stamps into ``images`` of ``h5``; return their truth columns."""
    n = len(columns["id"])
    fluxes = _flux(np.stack([columns[f"mag_{b}_true"] for b in bands], axis=1))
    templates, redshifts = columns["template"], columns["redshift"]
    sink = ChunkSink(n, create_images(h5, n, bands, job.size, job.pixel_scale, "nJy"))
    run_chunks(draw_stamp_chunk,
               lambda rows: (job, rows, templates[rows.start:rows.stop], redshifts[rows.start:rows.stop],
                             fluxes[rows.start:rows.stop]),
               n, sink, workers=workers, progress=progress, description="photo-z stamps")
    return sink.columns
