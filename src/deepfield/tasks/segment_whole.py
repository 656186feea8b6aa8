"""Whole-image segmentation by tiles: ``deepfield predict RUN field.fits --out seg.fits`` for a ``segment`` run.

The run's networks read the raw image normalised as their training stamps were (:class:`Segmenting`); their
softmax probabilities are blended over overlapping tiles by the tiling weights
(:func:`~deepfield.analysis.tiling_fits.predict_fits_tiled`: each pixel's probabilities are the weighted mean of
its tiles', so they still sum to one; the margin bounds the U-Net's receptive field, so the tiled output equals one
pass over the whole image) and streamed into a FITS cube beside the output. From it the output file gets, each HDU
with the input's header cards (its WCS):

* ``CLASSES`` (H, W) int16: the most probable class of each pixel (computed by strips of rows);
* ``SOURCES`` (H, W) int32, for a run of background / source / boundary classes: the sources those probabilities
  delimit (0 background, 1..), by the seeded watershed of
  :func:`~deepfield.analysis.segmentation.instances_from_probabilities` at the run's seed level; the watershed
  runs over the whole image at once (about ``20 H W`` bytes: the probabilities are streamed, the instances are not);
* ``PROBABILITY`` (K, H, W) float32: the class probabilities, the class names in the ``CLASSn`` cards.
"""
from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from astropy.io import fits
from torch import nn

from deepfield.analysis.segmentation import INSTANCE_CLASSES, instances_from_probabilities
from deepfield.analysis.tiling_fits import predict_fits_tiled
from deepfield.atomic import atomic_path
from deepfield.data.images_core import fatal
from deepfield.data.images_fits import find_hdu, open_fits
from deepfield.data.transforms import AsinhStretch, RobustNormalize
from deepfield.errors import DeepfieldError
from deepfield.tasks.imaging import ASINH_SOFTENING
from deepfield.tasks.prepared_info import RobustStatistics, SegmentInfo

STRIP = 256
"""Rows of the probability cube read at a time for the class map."""


class Segmenting(nn.Module):
    """A run's networks as one module from raw images ``(N, C, h, w)`` in the file's flux unit (bands in the run's
    order) to class probabilities ``(N, K, h, w)``: normalised and stretched as the training stamps
    (:meth:`~deepfield.tasks.imaging.ImageClassification.transform`), the networks' softmax averaged over an
    ensemble."""

    def __init__(self, models: Sequence[nn.Module], info: SegmentInfo):
        super().__init__()
        self.networks = nn.ModuleList(models)
        self.bands = list(info.bands)
        stats = info.normalize
        self.normalize = RobustNormalize(stats.median, stats.sigma) if isinstance(stats, RobustStatistics) else None
        self.stretch = AsinhStretch(ASINH_SOFTENING) if info.stretch == "asinh" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != len(self.bands):
            raise DeepfieldError(f"the image has {x.shape[1]} band(s); the run segments {len(self.bands)} "
                                 f"({', '.join(self.bands)}): give a (C, H, W) cube in that order")
        for step in (self.normalize, self.stretch):
            x = x if step is None else step(x)
        return torch.stack([network(x) for network in self.networks]).mean(dim=0)


def segment_fits(models: Sequence[nn.Module], info: SegmentInfo, data: Path, out: Path, *, tile: int, overlap: int,
                 margin: int, multiple: int, seed_level: float, device: str | None = None) -> Path:
    """Segment the FITS image ``data`` (its first image HDU: ``(H, W)`` one band or a ``(C, H, W)`` cube) by tiles
    into the FITS file ``out`` as the module says; ``tile``, ``overlap``, ``margin``, ``multiple`` as
    :func:`~deepfield.analysis.tiling.predict_tiled` takes them; ``seed_level``: of the watershed's seeds. An
    existing ``out`` is replaced (the caller checks it may be: :func:`~deepfield.tasks.run.predict_run`)."""
    with fatal(), open_fits(str(data)) as hdul:
        cards = find_hdu(hdul, None, str(data)).header.copy(strip=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as folder:
        cube = predict_fits_tiled(Segmenting(models, info), data, Path(folder) / "probability.fits", tile=tile,
                                  overlap=overlap, margin=margin, multiple=multiple, device=device)
        with fits.open(cube, memmap=True) as written:
            probability = written[0].data.reshape(len(info.classes), *written[0].data.shape[-2:])
            classes = np.concatenate([np.argmax(probability[:, start:start + STRIP], axis=0).astype(np.int16)
                                      for start in range(0, probability.shape[1], STRIP)])
            hdus = [fits.PrimaryHDU(header=cards), _image(classes, cards, "CLASSES")]
            if info.label_map == "instances":
                sources = instances_from_probabilities(np.asarray(probability)[None],
                                                       INSTANCE_CLASSES.index("boundary"), seed_level)[0]
                hdus.append(_image(sources.astype(np.int32), cards, "SOURCES"))
            hdus.append(_image(probability, cards, "PROBABILITY", info.classes))
            with atomic_path(out) as temporary:
                fits.HDUList(hdus).writeto(temporary, overwrite=True)
    return out


def _image(data: np.ndarray, cards: fits.Header, name: str, classes: Sequence[str] = ()) -> fits.ImageHDU:
    """An image HDU ``name`` of ``data`` with the input's header ``cards`` (and ``CLASSn``: the class of plane n)."""
    hdu = fits.ImageHDU(data, cards.copy(), name=name)
    for k, label in enumerate(classes):
        hdu.header[f"CLASS{k}"] = (label, f"class of plane {k + 1}")
    return hdu
