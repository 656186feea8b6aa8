"""Spectra (``data.kind: spectra``) in the tasks: which reader, which normalisation, what to record.

The classification tasks (``morphology``, ``quality``) and ``photoz`` take spectra
``(N, C, L)`` where they take stamps: the same split, labels, heads and analysis, with
:func:`~deepfield.data.spectra.open_spectra` as the reader and
:func:`~deepfield.data.spectra.normalize_spectra` (per spectrum, nothing fitted) in place
of the images' robust normalisation and asinh stretch. ``prepared.info``
(:class:`~deepfield.tasks.prepared_info.StampsInfo`) records ``kind: spectra``, ``length`` (L),
``normalize`` and the ``wavelength`` grid when the file has one, so ``evaluate`` and ``predict``
prepare new files the same way.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deepfield.data.images_core import ImageReader
from deepfield.data.spectra import normalize_spectra
from deepfield.errors import DeepfieldError
from deepfield.tasks.config import DataConfig
from deepfield.tasks.prepared_info import SpectrumNormalization, StampsInfo

NORMALIZE = SpectrumNormalization(method="median_abs", per="spectrum and channel")
"""What ``info.normalize`` holds for spectra (``data.normalize: robust``)."""


def spectra_info(data: DataConfig, reader: ImageReader) -> dict[str, Any]:
    """The :class:`StampsInfo` keys of a spectra run: kind, length, stretch (none), normalisation,
    wavelength grid (if any)."""
    info: dict[str, Any] = {"kind": "spectra", "length": int(reader.shape[-1]), "stretch": "none"}
    if data.normalize == "robust":
        info["normalize"] = NORMALIZE.model_copy()
    if reader.wavelength is not None:
        info["wavelength"] = reader.wavelength.tolist()
    return info


def transform_spectra(spectra: np.ndarray, info: StampsInfo) -> np.ndarray:
    """Raw spectra (N, C, L) → the network's input, as ``info`` records (float32, same shape)."""
    if info.normalize is not None:
        return normalize_spectra(spectra)
    return np.ascontiguousarray(spectra, dtype=np.float32)


def check_grid(spectra: np.ndarray, wavelength: np.ndarray | None, info: StampsInfo, path: Path) -> None:
    """New spectra must be sampled as the run's were: ``info.length`` samples, on its wavelength grid."""
    if not info.is_spectra:
        return
    if spectra.shape[-1] != info.length:
        raise DeepfieldError(f"{path}: spectra of {spectra.shape[-1]} samples; this run was trained on "
                             f"{info.length} (resample them onto the training grid)")
    if wavelength is not None and info.wavelength is not None and not np.allclose(wavelength, info.wavelength,
                                                                                  rtol=1e-6, atol=0.0):
        raise DeepfieldError(f"{path}: its wavelength grid differs from the one this run was trained on "
                             "(resample the spectra onto the training grid)")
