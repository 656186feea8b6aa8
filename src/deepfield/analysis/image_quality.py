"""How close restored images are to the truth: PSNR, SSIM, aperture photometry and shapes (the denoise metrics).

Every function takes stamps ``(N, C, H, W)`` in one flux unit (nJy per pixel for deepfield's files):
``truth`` (the noise-free or deep target), ``output`` (what a method made of the noisy input) and,
for the S/N gain, ``noisy`` (the input itself). Definitions:

* **PSNR** (dB), per stamp: ``10 log10(R² / MSE)`` over its pixels and bands, with the data range
  ``R = max(truth) − min(truth)`` of that stamp's truth (all bands), by
  :func:`skimage.metrics.peak_signal_noise_ratio`; ``inf`` when ``output == truth``.
* **SSIM**, per stamp: :func:`skimage.metrics.structural_similarity` of each band (7×7 uniform
  window, the same ``R``), averaged over the bands; 1 when ``output == truth``.
* **Aperture flux** ``F`` (flux unit · pixel², i.e. nJy), per stamp and band: the sum in a circle of
  radius ``r`` pixels centred on the source (``photutils.aperture.CircularAperture``, exact overlap).
* **Flux bias** and **scatter**: over the stamps and bands whose truth flux is positive, the median
  and the normalised MAD (1.4826 · MAD) of ``(F_output − F_truth) / F_truth``.
* **S/N gain** per band: the aperture noise ``σ_X`` of images ``X`` is the NMAD over the stamps of
  ``F_X − F_truth`` (residuals against the truth, so correlated noise and a method's own errors both
  count, and a constant bias does not); the S/N of a source of flux ``F`` is ``F / σ_X``, so the gain of
  the output over the noisy input is ``σ_noisy / σ_output`` whatever ``F``.
* **Shape error**: GalSim's adaptive moments (``galsim.hsm.FindAdaptiveMom``) of the band-summed
  output and truth give the distortions ``e1``, ``e2``; the error is their difference. A stamp where
  either fit fails is counted in ``shape_failures`` and left out of the error.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import galsim
import numpy as np
from photutils.aperture import CircularAperture
from photutils.profiles import CurveOfGrowth
from scipy.stats import median_abs_deviation
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from deepfield.errors import DeepfieldError


def _stamps(name: str, images: Any) -> np.ndarray:
    array = np.asarray(images, dtype=np.float64)
    if array.ndim != 4:
        raise DeepfieldError(f"{name}: expected stamps (N, C, H, W), got shape {array.shape}")
    return array


def _pair(truth: Any, output: Any) -> tuple[np.ndarray, np.ndarray]:
    truth, output = _stamps("truth", truth), _stamps("output", output)
    if truth.shape != output.shape:
        raise DeepfieldError(f"output of shape {output.shape} does not match the truth's {truth.shape}")
    return truth, output


def data_range(truth: Any) -> np.ndarray:
    """(N,) ``max − min`` of each truth stamp ``(N, C, H, W)`` over its bands and pixels (flux unit)."""
    truth = _stamps("truth", truth)
    return truth.max(axis=(1, 2, 3)) - truth.min(axis=(1, 2, 3))


def psnr(truth: Any, output: Any) -> np.ndarray:
    """(N,) peak signal-to-noise ratio in dB of each stamp (module docstring); ``inf`` for an exact output."""
    truth, output = _pair(truth, output)
    with np.errstate(divide="ignore"):  # an exact output: MSE 0, PSNR inf
        return np.array([peak_signal_noise_ratio(t, o, data_range=r)
                         for t, o, r in zip(truth, output, data_range(truth))])


def ssim(truth: Any, output: Any) -> np.ndarray:
    """(N,) structural similarity of each stamp, averaged over its bands (module docstring); needs H, W ≥ 7."""
    truth, output = _pair(truth, output)
    if min(truth.shape[2:]) < 7:
        raise DeepfieldError(f"ssim needs stamps of at least 7×7 pixels (its window), got {truth.shape[2:]}")
    return np.array([np.mean([structural_similarity(t[c], o[c], data_range=r) for c in range(len(t))])
                     for t, o, r in zip(truth, output, data_range(truth))])


def aperture_fluxes(images: Any, x: Sequence[float], y: Sequence[float], radius: Sequence[float]) -> np.ndarray:
    """(N, C) flux in a circle of ``radius[i]`` pixels centred on column ``x[i]``, row ``y[i]`` (0: the centre
    of the first pixel) of each stamp ``(N, C, H, W)``; flux unit per pixel × pixels (nJy for nJy/pixel)."""
    images = _stamps("images", images)
    fluxes = np.empty(images.shape[:2])
    for i, stamp in enumerate(images):
        mask = CircularAperture((float(x[i]), float(y[i])), r=float(radius[i])).to_mask(method="exact")
        fluxes[i] = [mask.multiply(band, fill_value=0.0).sum() for band in stamp]
    return fluxes


KRON_FACTOR = 2.5
"""SExtractor's ``PHOT_AUTOPARAMS`` factor: the Kron aperture's radius in first-moment radii."""


def kron_radii(truth: Any, x: Sequence[float], y: Sequence[float], factor: float = KRON_FACTOR) -> np.ndarray:
    """(N,) ``factor`` × the first-moment radius ``r_K = Σ r·I / Σ I`` (Kron 1980) of each band-summed stamp
    ``truth`` (N, C, H, W) about column ``x[i]``, row ``y[i]`` over the whole stamp, in pixels, at most the
    stamp's half-side ``(min(H, W) − 1) / 2``: the radius of SExtractor's ``FLUX_AUTO`` aperture measured on
    the noise-free image."""
    light = _stamps("truth", truth).sum(axis=1)
    rows, columns = np.indices(light.shape[1:])
    r = np.hypot(columns[None] - np.asarray(x, dtype=np.float64)[:, None, None],
                 rows[None] - np.asarray(y, dtype=np.float64)[:, None, None])
    first = (r * light).sum(axis=(1, 2)) / light.sum(axis=(1, 2))
    return np.minimum(factor * first, (min(light.shape[1:]) - 1) / 2)


def nmad(values: Any) -> float:
    """1.4826 · median absolute deviation from the median (σ for Gaussian values); NaN when empty."""
    values = np.asarray(values, dtype=np.float64).ravel()
    return float(median_abs_deviation(values, scale="normal")) if values.size else float("nan")


def flux_bias_scatter(f_output: Any, f_truth: Any) -> tuple[float, float]:
    """(median, NMAD) of ``(F_output − F_truth) / F_truth`` over the entries with ``F_truth > 0`` (any shape)."""
    f_output, f_truth = np.asarray(f_output, dtype=np.float64), np.asarray(f_truth, dtype=np.float64)
    positive = f_truth > 0
    relative = (f_output[positive] - f_truth[positive]) / f_truth[positive]
    return (float(np.median(relative)) if relative.size else float("nan")), nmad(relative)


def aperture_noise(f_images: Any, f_truth: Any) -> np.ndarray:
    """(C,) NMAD over the stamps of ``F_images − F_truth`` ((N, C) aperture fluxes): the aperture noise σ_X."""
    residual = np.asarray(f_images, dtype=np.float64) - np.asarray(f_truth, dtype=np.float64)
    return np.array([nmad(column) for column in residual.T])


def adaptive_moments(images: Any) -> np.ndarray:
    """(N, 3) GalSim's adaptive moments of each band-summed stamp ``(N, C, H, W)``: the distortions e1, e2
    and the size σ (pixels, ``moments_sigma``); NaN where the fit failed."""
    images = _stamps("images", images)
    moments = np.full((len(images), 3), np.nan)
    for i, stamp in enumerate(images):
        fit = galsim.hsm.FindAdaptiveMom(galsim.Image(stamp.sum(axis=0)), strict=False)
        if fit.moments_status == 0:
            moments[i] = fit.observed_shape.e1, fit.observed_shape.e2, fit.moments_sigma
    return moments


def half_light_radii(images: Any, step: float = 0.25) -> np.ndarray:
    """(N,) the half-light radius in pixels of each band-summed stamp ``(N, C, H, W)`` about the stamp's centre.

    The curve of growth (photutils' ``CurveOfGrowth``, exact pixel overlaps) in circles of radius ``step``,
    ``2·step`` ... up to the stamp's half-side; the total is the flux within the largest, and the radius is where
    the curve first reaches half of it, linearly interpolated (so a noisy tail that wiggles does not matter).
    Light beyond the stamp is not counted, alike for any two sets measured this way. NaN where that total is not
    positive. (GalSim's ``Image.calculateHLR`` steps by whole pixels' radii: ~10 % off on 2-pixel galaxies.)
    """
    images = _stamps("images", images)
    h, w = images.shape[2:]
    radii = np.arange(step, min(h, w) / 2 + step / 2, step)
    centre = ((w - 1) / 2, (h - 1) / 2)
    result = np.full(len(images), np.nan)
    for i, stamp in enumerate(images):
        enclosed = CurveOfGrowth(stamp.sum(axis=0), centre, radii).profile
        total = enclosed[-1]
        if total > 0:
            k = int(np.argmax(enclosed >= 0.5 * total))
            inner, inner_flux = (radii[k - 1], enclosed[k - 1]) if k else (0.0, 0.0)
            result[i] = inner + (radii[k] - inner) * (0.5 * total - inner_flux) / (enclosed[k] - inner_flux)
    return result


def adaptive_shapes(images: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(e, ok)``: (N, 2) distortions e1, e2 of GalSim's adaptive moments of each band-summed stamp
    ``(N, C, H, W)`` (NaN where the fit failed) and (N,) whether it succeeded."""
    shapes = adaptive_moments(images)[:, :2]
    return shapes, np.isfinite(shapes[:, 0])


def shape_errors(truth: Any, output: Any) -> dict[str, float]:
    """Adaptive-moment shape errors of ``output`` against ``truth`` (module docstring): ``shape_e1_bias``,
    ``shape_e2_bias`` (mean Δe), ``shape_e_rms`` (RMS of |Δe| over both components), ``shape_failures``."""
    truth, output = _pair(truth, output)
    (e_truth, ok_truth), (e_output, ok_output) = adaptive_shapes(truth), adaptive_shapes(output)
    both = ok_truth & ok_output
    delta = e_output[both] - e_truth[both]
    nan = float("nan")
    return {"shape_e1_bias": float(delta[:, 0].mean()) if both.any() else nan,
            "shape_e2_bias": float(delta[:, 1].mean()) if both.any() else nan,
            "shape_e_rms": float(np.sqrt(np.mean(np.sum(delta**2, axis=1)))) if both.any() else nan,
            "shape_failures": int((~both).sum())}


def image_quality(truth: Any, output: Any, noisy: Any, x: Sequence[float], y: Sequence[float],
                  radius: Sequence[float], bands: Sequence[str] | None = None) -> dict[str, Any]:
    """Every metric of the module docstring for ``output`` (and the noisy input's PSNR and SSIM beside it).

    ``truth``, ``output``, ``noisy``: (N, C, H, W) in one flux unit; ``x``, ``y``, ``radius``: (N,) the
    aperture's centre and radius in pixels; ``bands``: (C,) names for the per-band S/N gains.
    Returns ``psnr`` / ``ssim`` (means over the stamps; the input's as ``psnr_input`` / ``ssim_input``),
    ``snr_gain`` (mean over bands) and ``snr_gain_per_band``, ``aperture_noise_input`` / ``_output``
    per band (flux unit), ``flux_bias``, ``flux_scatter`` and the :func:`shape_errors`.
    """
    truth, output = _pair(truth, output)
    noisy = _pair(truth, noisy)[1]
    names = list(bands) if bands is not None else [str(c) for c in range(truth.shape[1])]
    f_truth, f_output, f_noisy = (aperture_fluxes(images, x, y, radius) for images in (truth, output, noisy))
    sigma_noisy, sigma_output = aperture_noise(f_noisy, f_truth), aperture_noise(f_output, f_truth)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = sigma_noisy / sigma_output
    bias, scatter = flux_bias_scatter(f_output, f_truth)
    return {"psnr": float(np.mean(psnr(truth, output))), "ssim": float(np.mean(ssim(truth, output))),
            "psnr_input": float(np.mean(psnr(truth, noisy))), "ssim_input": float(np.mean(ssim(truth, noisy))),
            "snr_gain": float(np.mean(gain)), "snr_gain_per_band": dict(zip(names, map(float, gain))),
            "aperture_noise_input": dict(zip(names, map(float, sigma_noisy))),
            "aperture_noise_output": dict(zip(names, map(float, sigma_output))),
            "flux_bias": bias, "flux_scatter": scatter, **shape_errors(truth, output)}
