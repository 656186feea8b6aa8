"""Spectra and LSST AB magnitudes: the colours of everything the simulators draw.

Galaxy colours come from the Coleman, Wu & Weedman (1980) templates shipped with GalSim
(``E``, ``Sbc``, ``Scd``, ``Im``, extended to the UV/IR by Bolzonella et al. 2000),
redshifted and integrated through the LSST ``ugrizy`` throughputs
(``galsim.Bandpass("LSST_x.dat", "nm")`` with an AB zero point). Stars are black bodies,
AGN power laws ``f_nu ∝ nu**alpha``. No IGM absorption is applied.

``calculateMagnitude`` is called once per (spectrum, redshift, band) on a grid when a
``MagnitudeTable`` is built; every object after that is a linear interpolation in redshift.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import galsim
import numpy as np

from deepfield.errors import DeepfieldError

LSST_BANDS = ("u", "g", "r", "i", "z", "y")
"""The band names the simulators know, blue to red."""

GALAXY_TEMPLATES = ("E", "Sbc", "Scd", "Im")
"""CWW template names, red to blue."""

STAR_TEMPERATURES = (3500.0, 4500.0, 5500.0, 6500.0, 8000.0, 10000.0)
"""Black-body temperatures (K) of the simulated stars."""

AGN_SLOPES = (-1.0, -0.5, 0.0)
"""Spectral indices ``alpha`` of the simulated AGN, ``f_nu ∝ nu**alpha``."""

_HC_OVER_K = 1.438777e7
"""h c / k_B in nm K."""


def parse_bands(bands: str | Sequence[str]) -> tuple[str, ...]:
    """LSST band names as a tuple: ``"gri"`` and ``("g", "r", "i")`` both give ``("g", "r", "i")``."""
    names = tuple(bands)
    unknown = [b for b in names if b not in LSST_BANDS]
    if not names or unknown or len(set(names)) != len(names):
        raise DeepfieldError(
            f"bands must be distinct LSST band names from {''.join(LSST_BANDS)}, got {list(names)}")
    return names


def bandpass(band: str) -> galsim.Bandpass:
    """The LSST throughput of ``band`` (wavelengths in nm) with the AB zero point."""
    return galsim.Bandpass(f"LSST_{parse_bands([band])[0]}.dat", wave_type="nm").withZeropoint("AB")


def galaxy_sed(template: str) -> galsim.SED:
    """A CWW galaxy template at rest frame (f_lambda, wavelengths in nm)."""
    if template not in GALAXY_TEMPLATES:
        raise DeepfieldError(f"unknown galaxy template {template!r}; expected one of: {', '.join(GALAXY_TEMPLATES)}")
    path = os.path.join(galsim.meta_data.share_dir, "SEDs", f"CWW_{template}_ext.sed")
    return galsim.SED(path, wave_type="Ang", flux_type="flambda")


def star_sed(temperature: float) -> galsim.SED:
    """A black body of ``temperature`` kelvin (f_lambda, arbitrary normalisation)."""
    return galsim.SED(lambda w: (w / 500.0) ** -5 / np.expm1(_HC_OVER_K / (w * temperature)),
                      wave_type="nm", flux_type="flambda")


def agn_sed(alpha: float) -> galsim.SED:
    """A power law ``f_nu ∝ nu**alpha`` (arbitrary normalisation)."""
    return galsim.SED(lambda w: (w / 500.0) ** -alpha, wave_type="nm", flux_type="fnu")


def point_seds() -> dict[str, galsim.SED]:
    """The point-source spectra by name: ``star_<T>K`` then ``agn_<alpha>``."""
    stars = {f"star_{t:.0f}K": star_sed(t) for t in STAR_TEMPERATURES}
    return stars | {f"agn_{a:+.1f}": agn_sed(a) for a in AGN_SLOPES}


@dataclass(frozen=True)
class MagnitudeTable:
    """AB magnitudes of a set of spectra on a redshift grid.

    ``mags``: (n_spectra, n_z, n_bands) AB magnitudes of the spectra as normalised by
    their files or functions (only differences between bands, i.e. colours, mean anything);
    ``redshifts``: (n_z,) increasing grid. Picklable, so worker processes get it cheaply.
    """

    names: tuple[str, ...]
    bands: tuple[str, ...]
    redshifts: np.ndarray
    mags: np.ndarray

    @classmethod
    def build(cls, seds: Mapping[str, galsim.SED], bands: Sequence[str],
              redshifts: Sequence[float] = (0.0,)) -> MagnitudeTable:
        """Integrate every spectrum at every redshift through every band (the slow part, done once)."""
        passbands = [bandpass(b) for b in bands]
        mags = np.array([[[sed.atRedshift(z).calculateMagnitude(bp) for bp in passbands]
                          for z in redshifts] for sed in seds.values()])
        return cls(tuple(seds), tuple(bands), np.asarray(redshifts, dtype=float), mags)

    def magnitudes(self, index: np.ndarray | int, z: np.ndarray | float = 0.0) -> np.ndarray:
        """Magnitudes of spectra ``index`` at redshifts ``z`` (clipped to the grid), linear in z.

        ``index`` and ``z`` broadcast to (n,) (or are scalars); returns (n, n_bands) (or (n_bands,)).
        """
        position = np.interp(z, self.redshifts, np.arange(len(self.redshifts)))
        low = np.minimum(np.floor(position).astype(int), max(len(self.redshifts) - 2, 0))
        high = np.minimum(low + 1, len(self.redshifts) - 1)
        weight = np.asarray(position - low)[..., None]
        return (1.0 - weight) * self.mags[index, low] + weight * self.mags[index, high]

    def flux_ratios(self, index: int, z: float = 0.0) -> np.ndarray:
        """(n_bands,) flux densities of spectrum ``index`` at ``z`` per band, summing to 1."""
        flux = 10.0 ** (-0.4 * self.magnitudes(index, z))
        return flux / flux.sum()


@dataclass(frozen=True)
class Colours:
    """Per-band flux ratios for galaxy components and point sources in the simulated bands."""

    galaxies: MagnitudeTable
    points: MagnitudeTable

    @classmethod
    def build(cls, bands: Sequence[str], z_max: float = 1.0, dz: float = 0.02) -> Colours:
        """Tables for ``bands``; galaxy templates on ``z`` in [0, z_max] step ``dz``."""
        grid = np.linspace(0.0, z_max, round(z_max / dz) + 1)
        return cls(MagnitudeTable.build({t: galaxy_sed(t) for t in GALAXY_TEMPLATES}, bands, grid),
                   MagnitudeTable.build(point_seds(), bands))

    def galaxy(self, template: str, z: float) -> np.ndarray:
        """(n_bands,) flux ratios (sum 1) of CWW ``template`` at redshift ``z``."""
        return self.galaxies.flux_ratios(self.galaxies.names.index(template), z)

    def point(self, name: str) -> np.ndarray:
        """(n_bands,) flux ratios (sum 1) of point source ``name`` (see ``point_seds``)."""
        return self.points.flux_ratios(self.points.names.index(name))
