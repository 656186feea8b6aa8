"""Drawing one object's multi-band stamp with GalSim.

An object is a few achromatic ``Component``s (a light profile of unit flux plus its flux
in each band), so every component is convolved with the PSF and drawn ONCE, then added
into every band with that band's flux: a bulge + disk costs two draws for any number of
bands. The seeing PSF is one Moffat per object, the same in every band.

Units: angles and sizes in arcsec, positions in pixels, fluxes in whatever unit the
caller scales the noise-free stamp to (electrons for Poisson noise, nJy for the
Gaussian sky noise of ``add_gaussian_noise``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import galsim
import numpy as np

GSPARAMS = galsim.GSParams(folding_threshold=1e-2)
"""Shared accuracy settings: up to 1% of the flux may fold (alias) back into the FFT box
(GalSim's default is 0.5%), which shrinks the FFTs of large de Vaucouleurs profiles:
about 15% faster overall."""

MOFFAT_BETAS = (2.5, 3.5, 4.5)
"""Moffat indices of the seeing PSF, one drawn per object. Half-integers only: GalSim's
Fourier transform of such a Moffat is elementary, four times faster than for a general beta."""


@dataclass(frozen=True)
class Component:
    """One achromatic light profile and its flux per band.

    ``profile``: a GalSim profile of unit flux (sizes in arcsec, centred on the object);
    ``flux``: (C,) the component's flux in each band, in the object's flux units.
    """

    profile: galsim.GSObject
    flux: np.ndarray

    def moved(self, dx: float, dy: float, scale: float) -> Component:
        """This component shifted by (dx, dy) arcsec with its fluxes multiplied by ``scale``."""
        return Component(self.profile.shift(dx, dy), self.flux * scale)


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A number between ``low`` and ``high`` with a uniform logarithm."""
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def moffat_psf(rng: np.random.Generator, fwhm_range: tuple[float, float]) -> galsim.Moffat:
    """A random Moffat seeing PSF: FWHM (arcsec) uniform in ``fwhm_range``, beta from ``MOFFAT_BETAS``."""
    fwhm, beta = float(rng.uniform(*fwhm_range)), float(rng.choice(MOFFAT_BETAS))
    return galsim.Moffat(beta=beta, fwhm=fwhm, gsparams=GSPARAMS)


class StampDrawer:
    """Draws components into (C, size, size) stamps through one preallocated ``galsim.ImageF``."""

    def __init__(self, n_bands: int, size: int, pixel_scale: float):
        self.n_bands = n_bands
        self.buffer = galsim.ImageF(size, size, scale=pixel_scale)

    def draw(self, components: Sequence[Component], psf: galsim.GSObject,
             offset: tuple[float, float]) -> np.ndarray:
        """The noise-free (C, size, size) float64 stamp: each component convolved with ``psf``
        and integrated over pixels, centred ``offset`` pixels from the stamp centre."""
        stamp = np.zeros((self.n_bands, *self.buffer.array.shape))
        for component in components:
            galsim.Convolve(component.profile, psf, gsparams=GSPARAMS).drawImage(
                image=self.buffer, offset=offset, method="auto")
            stamp += component.flux[:, None, None] * self.buffer.array
        return stamp


def snr_scale(stamp: np.ndarray, snr: float, sky: float) -> float:
    """The factor that gives ``stamp`` (C, H, W) a band-summed signal-to-noise of ``snr``.

    The signal-to-noise is the matched-filter one of GalSim's ``addNoiseSNR``,
    ``sqrt(sum(I**2) / var)``, for the band-summed image ``I`` and sky-limited noise of
    variance ``sky`` per pixel per band (so ``var = C * sky``).
    """
    coadd = stamp.sum(axis=0)
    return float(snr * np.sqrt(stamp.shape[0] * sky / np.sum(coadd**2)))


def add_poisson_noise(stamp: np.ndarray, sky: float, rng: np.random.Generator) -> np.ndarray:
    """(C, H, W) float32: Poisson counts of ``stamp + sky`` (electrons) minus the sky level."""
    return (rng.poisson(np.maximum(stamp + sky, 0.0)) - sky).astype(np.float32)


def add_gaussian_noise(stamp: np.ndarray, sigma: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(C, H, W) float32: ``stamp`` plus Gaussian sky noise of ``sigma`` (C,) per pixel in each band."""
    return (stamp + rng.normal(0.0, 1.0, stamp.shape) * sigma[:, None, None]).astype(np.float32)
