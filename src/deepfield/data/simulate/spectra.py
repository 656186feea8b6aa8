"""Simulated optical spectra of three classes at random redshift, with noise.

The recipe, per object (vectorised numpy; 10,000 spectra of 400 pixels take a few seconds):

* ``emission``: a star-forming galaxy: a blue CWW continuum (``Sbc``, ``Scd``, ``Im``) plus
  narrow emission lines ([O II], Hβ, [O III], Hα, [N II], [S II]) of random equivalent width,
  z uniform in ``GALAXY_Z``;
* ``absorption``: a passive galaxy: the CWW ``E`` continuum (its 4000 Å break) deepened by
  absorption lines (Ca II K and H, Hδ, G band, Mg b, Na D) of random depth, z in ``GALAXY_Z``;
* ``qso``: a quasar: a power law ``f_nu ∝ nu**alpha`` with broad emission lines (Lyα, C IV,
  C III], Mg II, Hβ, Hα; σ_v of thousands of km/s) and the mean Lyα-forest absorption
  ``exp(-0.0036 (1 + z)**3.46)`` blueward of Lyα (Madau 1995), z uniform in ``QSO_Z``.

Each spectrum is sampled on one log-spaced observed grid (``wavelength``, nm), scaled
to a random brightness (log-uniform over ``BRIGHTNESS``, in 1e-17 erg s⁻¹ cm⁻² Å⁻¹) and
given Gaussian noise of one ``1/snr`` of its median continuum per pixel, ``snr``
log-uniform in the given range. Lines are Gaussians in log wavelength of width
``sqrt(σ_v² + σ_instrument²)``, σ_instrument = one pixel.

The file (:mod:`deepfield.data.simulate.writer`): ``spectra`` (N, 1, L) float32 with attrs
``bands = ["flux"]`` and ``unit``; ``wavelength`` (L,) nm; ``labels`` (N,) with ``classes``;
``truth/`` columns ``redshift``, ``snr``, ``brightness``, ``template``.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from deepfield import arguments
from deepfield.data.simulate.seds import galaxy_sed
from deepfield.data.simulate.writer import ColumnInfo, sim_file, write_columns, write_labels
from deepfield.errors import DeepfieldError

CLASSES = ("emission", "absorption", "qso")
"""Class names, in label order."""

GALAXY_Z = (0.0, 0.5)
QSO_Z = (0.3, 2.5)
BRIGHTNESS = (1.0, 100.0)
"""Median continuum flux range, 1e-17 erg s⁻¹ cm⁻² Å⁻¹."""

WAVELENGTH_RANGE = (380.0, 920.0)
"""Observed grid, nm (an SDSS-like optical spectrograph)."""

C_KMS = 299792.458

EMISSION_LINES = {"[OII]": 372.7, "Hbeta": 486.1, "[OIII]4959": 495.9, "[OIII]5007": 500.7, "Halpha": 656.3,
                  "[NII]": 658.4, "[SII]6717": 671.7, "[SII]6731": 673.1}
"""Narrow lines of star-forming galaxies, rest nm; equivalent widths relative to Hα below."""
EMISSION_RATIOS = np.array([1.0, 0.35, 0.3, 0.9, 1.0, 0.3, 0.15, 0.12])

ABSORPTION_LINES = {"CaK": 393.4, "CaH": 396.8, "Hdelta": 410.2, "G": 430.4, "Mgb": 517.5, "NaD": 589.3}
"""Absorption lines of old stellar populations, rest nm."""

QSO_LINES = {"Lyalpha": 121.6, "CIV": 154.9, "CIII]": 190.9, "MgII": 279.8, "Hbeta": 486.1, "Halpha": 656.3}
"""Broad quasar lines, rest nm, and their rest equivalent widths (nm) relative scale below."""
QSO_EW = np.array([9.0, 3.5, 2.0, 3.0, 6.0, 30.0])

LYMAN_ALPHA = 121.6

NARROW_KMS, ABSORPTION_KMS = 100.0, 250.0
"""Velocity dispersions (km/s) of the narrow emission lines and of the absorption lines; quasar
lines draw theirs from ``BROAD_KMS``."""
BROAD_KMS = (1500.0, 4000.0)

REST_GRID = np.geomspace(WAVELENGTH_RANGE[0] / (1.0 + GALAXY_Z[1]), WAVELENGTH_RANGE[1], 8192)
"""Rest-frame nm where the CWW templates are tabulated (finer than any observed pixel)."""

CHUNK = 1024
"""Spectra computed at a time (bounds the (chunk, L, lines) intermediate arrays)."""


def simulate_spectra(n: int, out: str | Path, *, length: int = 400, seed: int = 0,
                     snr: tuple[float, float] = (3.0, 30.0)) -> Path:
    """Write ``n`` spectra of ``length`` pixels to the HDF5 file ``out`` (module docstring); returns its path."""
    if not (arguments.is_integer(n) and arguments.is_integer(length, 16)):
        raise DeepfieldError(f"simulate spectra: need n >= 1 and length >= 16, got n={n}, length={length}")
    n, length = int(n), int(length)
    if not 0 < snr[0] <= snr[1]:
        raise DeepfieldError(f"simulate spectra: --snr must be two increasing positive numbers, got {snr}")
    rng = np.random.default_rng(seed)
    wavelength = np.geomspace(*WAVELENGTH_RANGE, length)
    labels = rng.integers(0, len(CLASSES), n)
    qso = labels == 2
    draws = {
        "z": np.where(qso, rng.uniform(*QSO_Z, n), rng.uniform(*GALAXY_Z, n)),
        "template": np.where(labels == 1, "E", np.where(qso, "qso", rng.choice(["Sbc", "Scd", "Im"], n))),
        "alpha": rng.uniform(-1.0, 0.0, n),
        "strength": np.exp(rng.uniform(np.log(0.5), np.log(8.0), n)),  # Hα equivalent width, nm
        "depth": rng.uniform(0.1, 0.5, (n, len(ABSORPTION_LINES))),
        "width": rng.uniform(*BROAD_KMS, n),
        "ew": QSO_EW * np.exp(rng.normal(0.0, 0.3, (n, len(QSO_LINES)))),
        "brightness": np.exp(rng.uniform(*np.log(BRIGHTNESS), n)),
        "snr": np.exp(rng.uniform(*np.log(snr), n)),
    }
    noise = rng.normal(size=(n, length)).astype(np.float32)
    flux = np.empty((n, length), np.float32)
    for start in range(0, n, CHUNK):
        rows = slice(start, start + CHUNK)
        flux[rows] = _spectra(wavelength, labels[rows], {k: v[rows] for k, v in draws.items()})
    flux += noise * (draws["brightness"] / draws["snr"])[:, None]
    z, signal_to_noise, brightness, templates = (draws[k] for k in ("z", "snr", "brightness", "template"))

    info: ColumnInfo = {"redshift": ("", "true redshift"),
                        "snr": ("", "continuum signal-to-noise per pixel"),
                        "brightness": ("1e-17 erg s-1 cm-2 Angstrom-1", "median continuum flux"),
                        "template": ("", "continuum: CWW template or qso power law")}
    config = {"n": n, "length": length, "seed": seed, "snr": list(snr)}
    out = Path(out)
    with sim_file(out, "spectra", seed, config) as h5:
        spectra = h5.create_dataset("spectra", data=flux[:, None, :])
        spectra.attrs["bands"] = ["flux"]
        spectra.attrs["unit"] = "1e-17 erg s-1 cm-2 Angstrom-1"
        h5.create_dataset("wavelength", data=wavelength).attrs["unit"] = "nm"
        write_labels(h5, labels, CLASSES)
        write_columns(h5.create_group("truth"), {
            "redshift": z, "snr": signal_to_noise, "brightness": brightness,
            "template": templates}, info)
    return out


def _spectra(wavelength: np.ndarray, labels: np.ndarray, draws: dict[str, np.ndarray]) -> np.ndarray:
    """(n, L) noiseless spectra of ``labels`` (n,) from their parameters ``draws`` (module docstring)."""
    pixel = np.log(wavelength[1] / wavelength[0])  # log-wavelength step
    z = draws["z"]
    rest = wavelength[None, :] / (1.0 + z[:, None])  # (n, L) rest-frame nm
    log_rest = np.log(rest)
    flux = np.empty(rest.shape)
    for name in ("E", "Sbc", "Scd", "Im"):
        rows = draws["template"] == name
        if rows.any():
            flux[rows] = np.interp(rest[rows], REST_GRID, _template(name))
    qso = labels == 2
    flux[qso] = (rest[qso] / 300.0) ** (-2.0 - draws["alpha"][qso, None])  # f_lambda of f_nu ∝ nu**alpha
    flux /= np.median(flux, axis=1, keepdims=True)
    starforming = labels == 0
    flux[starforming] += _lines(log_rest[starforming], EMISSION_LINES,
                                draws["strength"][starforming, None] * EMISSION_RATIOS, NARROW_KMS, pixel,
                                flux[starforming])
    flux[qso] += _lines(log_rest[qso], QSO_LINES, draws["ew"][qso], draws["width"][qso, None], pixel, flux[qso])
    passive = labels == 1
    dips = _profiles(log_rest[passive], ABSORPTION_LINES, ABSORPTION_KMS, pixel) * draws["depth"][passive, None, :]
    flux[passive] *= np.prod(1.0 - dips, axis=-1)
    forest = np.where(rest[qso] < LYMAN_ALPHA, np.exp(-0.0036 * (1.0 + z[qso, None]) ** 3.46), 1.0)
    flux[qso] *= forest
    return flux * draws["brightness"][:, None]


@functools.cache
def _template(name: str) -> np.ndarray:
    """CWW template ``name`` (f_lambda) on ``REST_GRID``, evaluated once."""
    return galaxy_sed(name)(REST_GRID)


def _profiles(log_rest: np.ndarray, lines: dict[str, float], sigma_kms: float | np.ndarray,
              pixel: float) -> np.ndarray:
    """(n, L, lines) unit-peak Gaussians in log wavelength at each line's rest wavelength."""
    sigma = np.sqrt((np.asarray(sigma_kms, dtype=float) / C_KMS) ** 2 + pixel**2)
    centres = np.log(np.fromiter(lines.values(), float))
    offset = (log_rest[:, :, None] - centres) / np.reshape(sigma, (-1, 1, 1) if np.ndim(sigma) else ())
    return np.exp(-0.5 * offset**2)


def _lines(log_rest: np.ndarray, lines: dict[str, float], ew: np.ndarray, sigma_kms: float | np.ndarray,
           pixel: float, continuum: np.ndarray) -> np.ndarray:
    """(n, L) emission lines of rest equivalent widths ``ew`` (n, lines) nm on ``continuum`` (n, L).

    A Gaussian of σ_λ = λ σ_ln carries ``ew × continuum`` of flux: peak ``ew / (sqrt(2π) σ_λ)`` × continuum.
    """
    sigma = np.sqrt((np.asarray(sigma_kms, dtype=float) / C_KMS) ** 2 + pixel**2)
    centres = np.fromiter(lines.values(), float)
    peak = ew / (np.sqrt(2.0 * np.pi) * np.reshape(sigma, (-1, 1) if np.ndim(sigma) else ()) * centres)
    return np.einsum("nlk,nk->nl", _profiles(log_rest, lines, sigma_kms, pixel), peak) * continuum
