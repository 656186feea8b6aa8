"""Tiled prediction streamed through FITS files: an image of any height in, the network's output out.

The input HDU is read by bands of ``tile`` rows (``hdu.section``, the file opened without a memory
map, so only those rows' bytes are read and nothing stays resident); the output is written by
strips of finished rows into a new FITS file carrying the input's header (its WCS, its cards) with
``BITPIX = -32``. Memory is that of :func:`~deepfield.analysis.tiling.stream_tiles`, whatever the
height: numpy buffers under ``T W (8 C + 12 C' + 4) + 4 B C T^2`` bytes (``T = tile``, ``B = batch_size``)
and the network's activations for one batch.

>>> predict_fits_tiled(unet, "field.fits", "cleaned.fits", tile=256, overlap=64)
"""
from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import numpy as np
import torch
from astropy.io import fits
from torch import nn

from deepfield.analysis.tiling import Pair, Progress, stream_tiles
from deepfield.atomic import atomic_path
from deepfield.data.images_core import fatal
from deepfield.data.images_fits import BLOCK, HduKey, find_hdu, open_fits
from deepfield.errors import DeepfieldError
from deepfield.outputs import check_output

STRUCTURAL = {"SIMPLE", "XTENSION", "BITPIX", "NAXIS", "EXTEND", "PCOUNT", "GCOUNT", "GROUPS", "BZERO", "BSCALE",
              "BLANK", "CHECKSUM", "DATASUM", "END"}
"""Cards that describe the input's data layout, not the image: rewritten for the float32 output."""


def predict_fits_tiled(network: nn.Module, in_path: str | os.PathLike[str], out_path: str | os.PathLike[str], *,
                       hdu: HduKey | None = None, tile: Pair = 256, overlap: Pair = 64, margin: Pair | None = None,
                       multiple: Pair = 1, batch_size: int = 8, device: str | torch.device | None = None,
                       overwrite: bool = False, progress: Progress | None = None) -> Path:
    """Apply ``network`` to the image HDU ``hdu`` of ``in_path`` by tiles; write the output to ``out_path``.

    Args:
        network: an image-to-image module, ``(N, C, h, w) -> (N, C', h, w)``.
        in_path: a FITS file; its HDU ``hdu`` (index or name; default: the first image) holds
            ``(H, W)`` (one channel) or a cube ``(C, H, W)``.
        out_path: the FITS file written: one primary HDU, ``(H, W)`` when the input is 2-d and
            ``C' = 1``, else ``(C', H, W)``, float32, with the input HDU's header cards (WCS
            included). It may not be the input; an existing file needs ``overwrite``. It appears
            whole or not at all (written beside, then renamed).
        tile, overlap, margin, multiple, batch_size, device, progress: as for
            :func:`~deepfield.analysis.tiling.predict_tiled`.

    Returns:
        ``out_path`` as a ``Path``.
    """
    out = check_output(out_path, inputs=(in_path,), overwrite=overwrite)
    source = os.fspath(in_path)
    with fatal(), open_fits(source, memmap=False) as hdul:
        image = find_hdu(hdul, hdu, source)
        shape = tuple(image.shape)
        if len(shape) not in (2, 3):
            raise DeepfieldError(f"{source}: HDU {image.name!r} has shape {shape}; tiled prediction takes "
                                 "an image (H, W) or a cube (C, H, W)")
        height, width = shape[-2:]

        def read(start: int, stop: int) -> np.ndarray:
            rows = image.section[start:stop] if len(shape) == 2 else image.section[:, start:stop]
            return np.asarray(rows, dtype=np.float32).reshape(-1, stop - start, width)

        with atomic_path(out) as temporary, FitsRows(temporary, image.header, height, width,
                                                     cube=len(shape) == 3) as writer:
            stream_tiles(network, read, height, width, writer.write, tile=tile, overlap=overlap, margin=margin,
                         multiple=multiple, batch_size=batch_size, device=device, progress=progress)
    return out


def output_header(header: fits.Header, shape: tuple[int, ...]) -> fits.Header:
    """A primary header for float32 data of ``shape`` carrying every card of ``header`` that is not
    about the data's layout (WCS, units, history, ...)."""
    layout = fits.PrimaryHDU(np.zeros((1,) * len(shape), np.float32)).header
    for axis, size in enumerate(reversed(shape), start=1):
        layout[f"NAXIS{axis}"] = size
    layout.extend(card for card in header.cards
                  if card.keyword not in STRUCTURAL and not card.keyword.startswith("NAXIS"))
    return layout


class FitsRows:
    """Writes a FITS file of float32 rows, strip by strip, in row order: ``write(start, rows)`` with
    ``rows`` ``(C', n, W)``. The file (header and zero-filled data) is laid out at the first strip,
    when ``C'`` is known. Hand-written because astropy's ``StreamingHDU`` writes the data in file order
    only, and a cube's strip lies in ``C'`` places of the file (channel after channel)."""

    def __init__(self, path: Path, header: fits.Header, height: int, width: int, *, cube: bool):
        self.path, self.header, self.height, self.width, self.cube = path, header, height, width, cube
        self.file: BinaryIO | None = None
        self.data_at = 0

    def write(self, start: int, rows: np.ndarray) -> None:
        channels = rows.shape[0]
        if self.file is None:
            shape = (channels, self.height, self.width) if self.cube or channels > 1 else (self.height, self.width)
            header = output_header(self.header, shape).tostring().encode("ascii")
            self.file = open(self.path, "wb")
            self.file.write(header)
            self.data_at = len(header)
            size = 4 * channels * self.height * self.width
            self.file.truncate(self.data_at + -(-size // BLOCK) * BLOCK)  # FITS pads the data with zeros
        for channel in range(channels):
            self.file.seek(self.data_at + 4 * (channel * self.height + start) * self.width)
            rows[channel].astype(">f4").tofile(self.file)

    def __enter__(self) -> FitsRows:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None,
                 ) -> Any:
        if self.file is not None:
            self.file.close()
