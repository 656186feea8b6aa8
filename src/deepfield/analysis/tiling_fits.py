"""Tiled prediction streamed through FITS files: an image of any size in, the network's output out.

The input HDU is read by blocks of ``tile`` rows and one batch of tiles' columns (``hdu.section``, the
file opened without a memory map, so nothing stays resident), each block by runs of whole rows holding no
more pixels than the block (one row at least; the block's columns kept): a band is read ``W / Wb`` times
over from the page cache, which costs less than astropy's per-row reads of a narrower section; a
tile-compressed HDU decompresses the compression tiles those rows touch); the output is written
by blocks of finished pixels, at their places, into a new FITS file carrying the input's header (its WCS,
its cards) with ``BITPIX = -32``. The float64 sums that a band shares with the next wait in a temporary
file beside the output. Memory is that of :func:`~deepfield.analysis.tiling.stream_blocks`, whatever the
height and the width: numpy buffers under ``T Wb (8 C + 16 C') + 4 B C T^2 + 8 (C' + 1) T^2`` bytes
(``T = tile``, ``B = batch_size``, ``Wb = min(W, (B - 1) (T - overlap) + T)`` columns a block) and the
network's activations for one batch.

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

from deepfield.analysis.tiling import Pair, Progress, stream_blocks
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

        def read(top: int, bottom: int, left: int, right: int) -> np.ndarray:
            # whole rows, a block's worth of pixels at a time: astropy reads a section narrower than the image
            # row by row, at ~0.5 ms of Python a row (8x the time of a fast network's tiles)
            block = np.empty((image.shape[0] if len(shape) == 3 else 1, bottom - top, right - left), np.float32)
            step = max(1, (bottom - top) * (right - left) // width)
            for first in range(top, bottom, step):
                rows = image.section[..., first:min(first + step, bottom), :]
                block[:, first - top:first - top + rows.shape[-2]] = np.asarray(rows, np.float32).reshape(
                    -1, rows.shape[-2], width)[:, :, left:right]
            return block

        with atomic_path(out) as temporary, FitsBlocks(temporary, image.header, height, width,
                                                       cube=len(shape) == 3) as writer:
            stream_blocks(network, read, height, width, writer.write, tile=tile, overlap=overlap, margin=margin,
                          multiple=multiple, batch_size=batch_size, device=device, progress=progress,
                          scratch=temporary.parent)
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


class FitsBlocks:
    """Writes a FITS file of float32 pixels block by block, each at its place: ``write(top, left, block)`` with
    ``block`` ``(C', h, w)``. The file (header and zero-filled data) is laid out at the first block, when
    ``C'`` is known. Hand-written because astropy's ``StreamingHDU`` writes the data in file order only, and
    a block lies in ``C' h`` places of the file (row segments, channel after channel); a memory map would
    keep the pages written as the process's memory."""

    def __init__(self, path: Path, header: fits.Header, height: int, width: int, *, cube: bool):
        self.path, self.header, self.height, self.width, self.cube = path, header, height, width, cube
        self.file: BinaryIO | None = None
        self.data_at = 0

    def write(self, top: int, left: int, block: np.ndarray) -> None:
        channels, rows, _ = block.shape
        if self.file is None:
            shape = (channels, self.height, self.width) if self.cube or channels > 1 else (self.height, self.width)
            header = output_header(self.header, shape).tostring().encode("ascii")
            self.file = open(self.path, "wb")
            self.file.write(header)
            self.data_at = len(header)
            size = 4 * channels * self.height * self.width
            self.file.truncate(self.data_at + -(-size // BLOCK) * BLOCK)  # FITS pads the data with zeros
        pixels = block.astype(">f4")
        for channel, row in np.ndindex(channels, rows):
            self.file.seek(self.data_at + 4 * ((channel * self.height + top + row) * self.width + left))
            self.file.write(pixels[channel, row])

    def __enter__(self) -> FitsBlocks:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None,
                 ) -> Any:
        if self.file is not None:
            self.file.close()
