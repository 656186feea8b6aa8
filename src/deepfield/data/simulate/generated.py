"""Generated galaxies (a generative model's samples) as GalSim profiles: the bridge to scenes and simulators.

A sample is a (C, H, W) stamp in a flux unit per pixel (nJy for the simulated sky) on pixels of
``pixel_scale`` arcsec. Each band becomes one ``galsim.InterpolatedImage`` (quintic interpolant,
GalSim's default) whose flux is the stamp's sum, so drawing it conserves the stamp's flux.

Negative pixels (the noise a model learnt, or sky-subtraction residuals) are kept as they are:
the profile's flux is the plain sum of the stamp, negatives included, and they are drawn like
any other pixel. Nothing is clipped, so a scene's total flux is the sum of its stamps' sums.

The PSF: a generated stamp already contains the PSF (and pixel) of its training stamps, so it
is drawn as it is, with no further convolution and no pixel response (GalSim's
``method="no_pixel"``): at an integer pixel offset the drawn image IS the stamp. To reach a
broader target PSF, an extra kernel convolves it: :func:`matching_kernel` gives the Gaussian of
FWHM ``sqrt(target**2 - stamp**2)`` (exact when both PSFs are Gaussian, a close approximation
for Moffat seeing); a target sharper than the stamps' PSF is refused (no deconvolution).
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import galsim
import h5py
import numpy as np

from deepfield.data.simulate.galaxies import GSPARAMS
from deepfield.data.simulate.photoz import AB_NJY
from deepfield.data.simulate.seds import parse_bands
from deepfield.data.simulate.sources import Source
from deepfield.data.hdf5_files import find_dataset, open_hdf5
from deepfield.errors import DeepfieldError

INTERPOLANT_PAD = 3
"""Pixels the quintic interpolant spreads light beyond a stamp's edge when drawn off the pixel grid."""

KERNEL_REACH = 4.0
"""Half-widths of a drawn region beyond the stamp, in kernel FWHMs (a Gaussian holds all but 1e-20 within)."""


@dataclass(frozen=True)
class Samples:
    """Generated stamps: ``stamps`` (N, C, H, W) float32 in ``unit`` per pixel, ``bands`` (C,) names,
    ``pixel_scale`` arcsec; ``psf_fwhm``: the FWHM (arcsec) of the PSF already in the stamps, or
    ``None`` when unknown (then no target PSF can be asked for)."""

    stamps: np.ndarray
    bands: tuple[str, ...]
    pixel_scale: float
    unit: str
    psf_fwhm: float | None = None

    def __post_init__(self) -> None:
        if self.stamps.ndim != 4 or 0 in self.stamps.shape:
            raise DeepfieldError(f"samples have shape {self.stamps.shape}; expected (N, C, H, W) stamps")
        if len(self.bands) != self.stamps.shape[1]:
            raise DeepfieldError(f"samples name {len(self.bands)} bands {list(self.bands)} for "
                                 f"{self.stamps.shape[1]} channels")
        if not np.all(np.isfinite(self.stamps)):
            raise DeepfieldError("samples hold NaN or infinite pixels")
        if not self.pixel_scale > 0:
            raise DeepfieldError(f"samples' pixel_scale must be > 0 arcsec, got {self.pixel_scale}")

    @property
    def flux(self) -> np.ndarray:
        """(N, C) float64: each stamp's total flux per band (the sum of its pixels), in ``unit``."""
        return self.stamps.sum(axis=(2, 3), dtype=np.float64)


def read_samples(path: str | os.PathLike[str], dataset: str = "samples", *, bands: Sequence[str] | None = None,
                 pixel_scale: float | None = None, psf_fwhm: float | None = None) -> Samples:
    """The stamps ``dataset`` (N, C, H, W) of the HDF5 file ``path`` (``deepfield sample``'s samples.h5 or any
    simulator's file) with what they need for GalSim.

    ``bands``, ``pixel_scale`` (arcsec), ``unit`` come from the dataset's attributes (else the file's);
    the arguments give them where the file does not. ``psf_fwhm`` (arcsec): the argument, else the
    dataset's finite ``psf_fwhm`` attribute (the largest of a range), else the largest ``truth/psf_fwhm`` of the file (a
    simulator's file: the broadest PSF among its stamps), else unknown.
    """
    path = Path(path)
    if not path.is_file():
        raise DeepfieldError(f"{path}: no such file")
    with open_hdf5(path) as h5:
        data = find_dataset(h5, path, dataset, "of stamps")
        if data.ndim != 4 or data.dtype.kind not in "fiu":
            raise DeepfieldError(f"{path}: {dataset!r} has shape {data.shape} ({data.dtype}); expected numeric "
                                 "(N, C, H, W) stamps")

        def attr(name: str) -> object:
            return data.attrs.get(name, h5.attrs.get(name))

        given = attr("bands")
        names = tuple(bands) if bands else () if given is None else tuple(str(b) for b in np.atleast_1d(given))
        if not names:
            raise DeepfieldError(f"{path}: {dataset!r} does not name its bands; give them (--bands g,r,i)")
        scale = pixel_scale if pixel_scale is not None else attr("pixel_scale")
        if scale is None:
            raise DeepfieldError(f"{path}: {dataset!r} does not give its pixel_scale; give it in arcsec "
                                 "(--pixel-scale 0.2)")
        own = np.asarray(attr("psf_fwhm") if attr("psf_fwhm") is not None else np.nan, dtype=np.float64)
        if psf_fwhm is None and own.size and np.all(np.isfinite(own)):
            psf_fwhm = float(np.max(own))
        if psf_fwhm is None and isinstance(h5.get("truth/psf_fwhm"), h5py.Dataset):
            psf_fwhm = float(np.nanmax(h5["truth/psf_fwhm"][()]))
        stamps, unit = np.asarray(data[()], dtype=np.float32), str(attr("unit") if attr("unit") is not None else "")
    try:
        return Samples(stamps, names, float(scale), unit, psf_fwhm)
    except DeepfieldError as exc:
        raise DeepfieldError(f"{path}: {dataset!r}: {exc}") from None


def interpolated_images(stamp: np.ndarray, pixel_scale: float) -> list[galsim.InterpolatedImage]:
    """One ``galsim.InterpolatedImage`` per band of ``stamp`` (C, H, W), centred on the stamp's centre, its
    flux the band's pixel sum (negatives included), sizes in arcsec for pixels of ``pixel_scale`` arcsec."""
    return [galsim.InterpolatedImage(galsim.ImageD(np.asarray(band, dtype=np.float64), scale=pixel_scale),
                                     gsparams=GSPARAMS) for band in stamp]


def matching_kernel(stamp_fwhm: float | None, target_fwhm: float | None) -> galsim.Gaussian | None:
    """The Gaussian that takes stamps seen with a PSF of ``stamp_fwhm`` to a ``target_fwhm`` PSF (arcsec),
    FWHM ``sqrt(target**2 - stamp**2)``; ``None`` (draw as they are) without a target or when the two agree."""
    if target_fwhm is None:
        return None
    if stamp_fwhm is None:
        raise DeepfieldError(f"a target PSF of {target_fwhm:g} arcsec needs the stamps' own PSF FWHM, which is not "
                             "known; give it (psf_fwhm / --stamp-psf-fwhm)")
    if target_fwhm < stamp_fwhm:
        raise DeepfieldError(f"target PSF FWHM {target_fwhm:g} arcsec is sharper than the stamps' PSF "
                             f"({stamp_fwhm:g} arcsec): generated stamps cannot be deconvolved; ask for "
                             f"{stamp_fwhm:g} or more")
    width = math.sqrt(target_fwhm**2 - stamp_fwhm**2)
    return galsim.Gaussian(fwhm=width, gsparams=GSPARAMS) if width > 0 else None


def draw_sample(stamp: np.ndarray, pixel_scale: float, shape: tuple[int, int], x: float, y: float,
                kernel: galsim.GSObject | None = None) -> np.ndarray:
    """(C, *shape) float64: ``stamp`` (C, H, W) drawn with its centre at column ``x``, row ``y`` (pixels,
    0 = the centre of the first pixel) of an image of ``shape``, convolved with ``kernel`` if given.

    Drawn with no pixel response (the stamp has it) into a region around the source only (the stamp
    plus the interpolant's and the kernel's reach), then pasted: light falling off the image is lost.
    At a position on the stamp's pixel grid and without a kernel the stamp is reproduced exactly.
    """
    pad = INTERPOLANT_PAD + (0 if kernel is None else math.ceil(KERNEL_REACH * _fwhm(kernel) / pixel_scale))
    height, width = stamp.shape[1] + 2 * pad, stamp.shape[2] + 2 * pad
    row0, col0 = round(y - (height - 1) / 2), round(x - (width - 1) / 2)
    offset = (x - col0 - (width - 1) / 2, y - row0 - (height - 1) / 2)  # within half a pixel of the region's centre
    out = np.zeros((len(stamp), *shape))
    rows = slice(max(row0, 0), min(row0 + height, shape[0]))
    cols = slice(max(col0, 0), min(col0 + width, shape[1]))
    if rows.start >= rows.stop or cols.start >= cols.stop:
        return out
    region = galsim.ImageD(width, height, scale=pixel_scale)
    for band, profile in enumerate(interpolated_images(stamp, pixel_scale)):
        drawn = profile if kernel is None else galsim.Convolve(profile, kernel, gsparams=GSPARAMS)
        drawn.drawImage(image=region, offset=offset, method="no_pixel")
        out[band, rows, cols] = region.array[rows.start - row0:rows.stop - row0, cols.start - col0:cols.stop - col0]
    return out


def _fwhm(kernel: galsim.GSObject) -> float:
    """A kernel's FWHM in arcsec (GalSim profiles that do not know theirs: twice the half-light radius)."""
    return float(getattr(kernel, "fwhm", None) or 2.0 * kernel.calculateHLR())


@dataclass(frozen=True)
class GeneratedSource(Source):
    """A generated stamp taking a simulated source's place: ``stamp`` (C, H, W) in nJy per pixel, ``sample``
    its row in the samples."""

    stamp: np.ndarray = field(kw_only=True)
    sample: int = field(kw_only=True)


@dataclass(frozen=True)
class Population:
    """Generated stamps as an extra population of a simulator: each source is, with probability
    ``fraction``, one of ``stamps`` (N, C, H, W) nJy per pixel (uniformly chosen) instead of what the
    simulator drew, at the simulated source's position."""

    stamps: np.ndarray
    fraction: float

    @staticmethod
    def of(samples: Samples, fraction: float, bands: Sequence[str], pixel_scale: float) -> Population:
        """``samples`` checked against the simulator's ``bands``, ``pixel_scale`` and nJy."""
        if tuple(samples.bands) != tuple(parse_bands(bands)):
            raise DeepfieldError(f"population bands {list(samples.bands)} differ from the simulated "
                                 f"{list(bands)}")
        if not math.isclose(samples.pixel_scale, pixel_scale, rel_tol=1e-6):
            raise DeepfieldError(f"population pixel_scale {samples.pixel_scale:g} arcsec differs from the "
                                 f"simulated {pixel_scale:g} (resample the stamps first)")
        if samples.unit != "nJy":
            raise DeepfieldError(f"population unit {samples.unit!r} is not the simulated 'nJy'")
        return Population(samples.stamps, fraction)

    def replace(self, rng: np.random.Generator, placed: list[tuple[Source, np.ndarray]]) -> list[
            tuple[Source, np.ndarray]]:
        """``placed`` (source, offset) with each source, with probability ``fraction``, a generated one
        at the same offset. Two draws per source from ``rng``, whatever the outcome."""
        out = []
        for source, offset in placed:
            chosen, sample = rng.random() < self.fraction, int(rng.integers(len(self.stamps)))
            out.append((generated_source(self.stamps[sample], sample) if chosen else source, offset))
        return out


def generated_source(stamp: np.ndarray, sample: int) -> GeneratedSource:
    """A stamp (C, H, W) nJy as a source: its flux the band sums, its AB magnitude that of their mean;
    size and shape unknown (NaN: the stamp holds no light profile before seeing)."""
    flux = stamp.sum(axis=(1, 2), dtype=np.float64)
    mean = float(np.mean(flux))
    mag = AB_NJY - 2.5 * math.log10(mean) if mean > 0 else math.nan
    return GeneratedSource((), "generated", mag, flux, math.nan, math.nan, math.nan, math.nan, math.nan, stamp=stamp,
                           sample=sample)
