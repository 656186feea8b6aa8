"""One source of known brightness, size and shape for the image-to-image simulators (denoise, blends).

A galaxy is one of the morphology recipes (``spheroid``, ``disk``, ``irregular``) shrunk, if
needed, to a largest half-light radius; a star is a point with a black-body colour. Its
brightness is an AB magnitude of the flux averaged over the simulated bands, drawn from the
galaxy number counts of the photo-z simulator; fluxes are in nJy. The depths of the noise are
LSST single-visit depths scaled by a number of visits (sky-limited: sigma ∝ 1 / sqrt(visits)).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import galsim
import numpy as np

from deepfield.data.simulate.galaxies import GSPARAMS, Component
from deepfield.data.simulate.morphology import RECIPES, REDSHIFT_RANGE
from deepfield.data.simulate.photoz import AB_NJY, REFERENCE_SEEING, draw_i_magnitudes
from deepfield.data.simulate.seds import STAR_TEMPERATURES, Colours

LSST_VISIT_DEPTHS = dict(u=23.9, g=25.0, r=24.7, i=24.0, z=23.3, y=22.1)
"""LSST single-visit (2 x 15 s) 5σ point-source depths (AB mag), Ivezić et al. 2019, table 1."""

GALAXY_KINDS = ("spheroid", "disk", "irregular")
"""The morphology recipes the image-to-image simulators draw galaxies from."""


@dataclass(frozen=True)
class Source:
    """A source before seeing: unit-less components scaled to nJy, and its truth.

    ``components``: fluxes (C,) in nJy; ``flux``: (C,) total flux per band in nJy;
    ``half_light_radius``: arcsec before seeing (0 for a star); ``e1``, ``e2``: reduced shear
    ``|g| (cos 2θ, sin 2θ)`` of the main component, θ its major axis from +x (0 for a star);
    ``bulge_fraction``: of the flux in de Vaucouleurs-like components (1 spheroid, 0 star or irregular).
    """

    components: tuple[Component, ...]
    kind: str
    mag: float
    flux: np.ndarray
    half_light_radius: float
    e1: float
    e2: float
    redshift: float
    bulge_fraction: float = 0.0


def flux_njy(mag: float | np.ndarray) -> float | np.ndarray:
    """nJy of an AB magnitude."""
    return 10.0 ** (-0.4 * (np.asarray(mag) - AB_NJY))


def visit_sigma(bands: Sequence[str], visits: float, pixel_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The 5σ depths (C,) in AB mag and the sky noise per pixel (C,) in nJy after ``visits`` visits.

    A point source at the depth, seen in ``REFERENCE_SEEING`` FWHM, has an optimal-aperture
    signal-to-noise of 5 (the convention of the photo-z stamps).
    """
    depths = np.array([LSST_VISIT_DEPTHS[b] for b in bands]) + 1.25 * math.log10(visits)
    pixels_per_psf = 4.0 * math.pi * (REFERENCE_SEEING / 2.3548 / pixel_scale) ** 2
    return depths, flux_njy(depths) / 5.0 / math.sqrt(pixels_per_psf)


def _scaled(components: Sequence[Component], mag: float, n_bands: int, shrink: float = 1.0) -> tuple[Component, ...]:
    """Components whose fluxes sum to 1 over bands, scaled so the band-averaged flux has AB magnitude ``mag``
    and their profiles shrunk by ``shrink``."""
    scale = n_bands * float(flux_njy(mag))
    return tuple(Component(c.profile if shrink == 1.0 else c.profile.dilate(shrink), c.flux * scale)
                 for c in components)


def galaxy(rng: np.random.Generator, colours: Colours, n_bands: int, mag_limit: float, max_hlr: float,
           kinds: Sequence[str] = GALAXY_KINDS) -> Source:
    """A random galaxy of one of ``kinds`` (equally likely), half-light radius at most ``max_hlr`` arcsec."""
    kind = kinds[int(rng.integers(len(kinds)))]
    z = rng.uniform(*REDSHIFT_RANGE)
    drawn = RECIPES[kind](rng, colours, z)
    mag = float(draw_i_magnitudes(rng, 1, mag_limit)[0])
    hlr, shrink = drawn.truth["half_light_radius"], 1.0
    if hlr > max_hlr:
        hlr, shrink = max_hlr, max_hlr / hlr
    components = _scaled(drawn.components, mag, n_bands, shrink)
    g, angle = drawn.truth["ellipticity"], math.radians(drawn.truth["position_angle"])
    return Source(components, kind, mag, sum(c.flux for c in components), hlr, g * math.cos(2 * angle),
                  g * math.sin(2 * angle), z, drawn.truth["bulge_fraction"])


def star(rng: np.random.Generator, colours: Colours, n_bands: int, mag_limit: float) -> Source:
    """A point source with a black-body colour (temperature from ``STAR_TEMPERATURES``)."""
    name = f"star_{rng.choice(STAR_TEMPERATURES):.0f}K"
    mag = float(draw_i_magnitudes(rng, 1, mag_limit)[0])
    components = _scaled((Component(galsim.DeltaFunction(gsparams=GSPARAMS), colours.point(name)),), mag, n_bands)
    return Source(components, "star", mag, components[0].flux, 0.0, 0.0, 0.0, 0.0)
