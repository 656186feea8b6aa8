"""What every feature extractor shares: the ``FeatureSet`` it returns, input checks, progress.

An extractor turns stamps ``images: (N, C, H, W)`` (float32; normalised as
:mod:`deepfield.tasks.imaging` does, or raw) into ``FeatureSet.values: (N, F)`` float64.
Objects it cannot measure are listed in ``FeatureSet.failed`` with a reason, never raised.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from rich.console import Console
from rich.progress import track

from deepfield.errors import DeepfieldError

T = TypeVar("T")


@dataclass
class FeatureSet:
    """Features of N objects.

    - ``values``: (N, F) float64; rows of failed objects hold NaN (all of it, or the
      features named in the reason).
    - ``names``: the F feature names, in column order.
    - ``failed``: ``(index, reason)`` for each object that could not be (fully) measured.
    """

    values: np.ndarray
    names: list[str]
    failed: list[tuple[int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float64)
        if self.values.ndim != 2 or self.values.shape[1] != len(self.names):
            raise DeepfieldError(f"FeatureSet: values of shape {self.values.shape} do not match "
                                 f"{len(self.names)} names")

    def __len__(self) -> int:
        return len(self.values)


class Extractor:
    """The contract: ``name``, ``get_config()``, ``fit(images)`` (a no-op unless the extractor
    learns something, like a vocabulary) and ``extract(images) -> FeatureSet``."""

    name: str = ""

    def get_config(self) -> dict[str, Any]:
        """The options that rebuild this extractor with ``features.get(name, **config)``."""
        raise NotImplementedError

    def fit(self, images: np.ndarray) -> Extractor:
        """Learn from training stamps ``(N, C, H, W)``; most extractors learn nothing."""
        check_images(images, self.name)
        return self

    def extract(self, images: np.ndarray) -> FeatureSet:
        """Features of stamps ``(N, C, H, W)``."""
        raise NotImplementedError


def check_images(images: np.ndarray, who: str) -> np.ndarray:
    """``images`` as a float array ``(N, C, H, W)``, or one clear error naming ``who``."""
    array = np.asarray(images)
    if array.ndim != 4 or not np.issubdtype(array.dtype, np.number):
        raise DeepfieldError(f"features {who}: expected numeric images of shape (N, C, H, W), "
                             f"got {array.dtype} {array.shape}")
    return array.astype(np.float64, copy=False)


def band_mean(images: np.ndarray) -> np.ndarray:
    """The band-mean image of each stamp: ``(N, C, H, W) -> (N, H, W)`` (NaN pixels ignored)."""
    with np.errstate(invalid="ignore"):
        return np.nanmean(images, axis=1) if np.isnan(images).any() else images.mean(axis=1)


def progress(items: Iterable[T], total: int, what: str) -> Iterator[T]:
    """``items`` with a transient rich progress bar (for the per-object loops); none off a terminal."""
    return iter(track(items, total=total, description=what, transient=True, disable=not Console().is_terminal))


def rescale_unit(image: np.ndarray) -> np.ndarray:
    """One image linearly mapped to [0, 1] by its own finite min and max (constant -> zeros)."""
    finite = np.isfinite(image)
    if not finite.any():
        return np.zeros_like(image)
    low, high = image[finite].min(), image[finite].max()
    return (np.where(finite, image, low) - low) / (high - low) if high > low else np.zeros_like(image)
