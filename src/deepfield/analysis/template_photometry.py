"""Template photometry: a denoiser's output gives a source's shape, the noisy data its flux.

Forced photometry with a model template (SExtractor's model fitting, scarlet's re-weighting): per stamp and
band, the template ``T`` (a denoised stamp) is scaled to the noisy data ``x`` by the least-squares amplitude

    A = Σ x·T / Σ T²

over the stamp's pixels (or a ``mask`` of them), the minimum-variance unbiased amplitude of ``x = A·T + n`` for
white noise ``n`` of σ per pixel: its error is ``σ / sqrt(Σ T²)``, the matched filter's noise, whatever error
the denoiser made in the total flux of ``T``. Stamps ``(N, C, H, W)``, any one flux unit for ``x`` and ``T``
(nJy per pixel for deepfield's files); ``A`` is dimensionless.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from deepfield.errors import DeepfieldError


def template_amplitudes(noisy: Any, template: Any, mask: Any = None) -> np.ndarray:
    """(N, C) least-squares amplitude ``A = Σ x·T / Σ T²`` of the ``noisy`` stamps on the ``template`` stamps
    (both (N, C, H, W), one flux unit), per stamp and band, over the pixels where ``mask`` (boolean,
    broadcastable to the stamps) is true, else the whole stamp.

    A template without flux to fit (``Σ T² = 0`` over the pixels, or ``Σ T ≤ 0``: all zeros or no positive
    light, so no source shape) gets ``A = 1``: it is left as the denoiser made it.
    """
    noisy, template = np.asarray(noisy, dtype=np.float64), np.asarray(template, dtype=np.float64)
    if noisy.ndim != 4 or noisy.shape != template.shape:
        raise DeepfieldError(f"template photometry: noisy {noisy.shape} and template {template.shape} must be "
                             "stamps (N, C, H, W) of one shape")
    weight = np.ones(template.shape, dtype=bool) if mask is None else np.broadcast_to(mask, template.shape)
    fitted = np.where(weight, template, 0.0)
    power = (fitted**2).sum(axis=(2, 3))
    shaped = (power > 0) & (fitted.sum(axis=(2, 3)) > 0)
    return np.divide((noisy * fitted).sum(axis=(2, 3)), power, out=np.ones_like(power), where=shaped)


def template_fluxes(noisy: Any, template: Any, mask: Any = None) -> np.ndarray:
    """(N, C, H, W) ``A·T``: each template stamp and band scaled by its :func:`template_amplitudes` on ``noisy``
    (the flux unit of both)."""
    template = np.asarray(template, dtype=np.float64)
    return template_amplitudes(noisy, template, mask)[:, :, None, None] * template
