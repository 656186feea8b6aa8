"""Apply an image-to-image network to an image of any size by overlapping tiles, blended without seams.

An image-to-image network maps ``(N, C, h, w)`` to ``(N, C', h, w)`` (a U-Net, a denoiser, a
segmenter). :func:`predict_tiled` applies it to a whole ``(C, H, W)`` image in ``tile x tile`` pieces;
:func:`stream_blocks` is the same engine reading and writing blocks of pixels through callables, which
:mod:`deepfield.analysis.tiling_fits` uses to stream a FITS file of any size (:func:`stream_tiles`: the
same, through callables that read and write whole rows).

**Layout.** Along each axis tiles start every ``tile - overlap`` pixels and the last one is anchored
at the far edge (it starts at ``H - tile``): every tile lies inside the image and is full-sized, so
there is no padding of ours; at the image border a tile sees what one pass over the whole image sees
(the network's own padding). An axis no longer than ``tile`` is one tile covering it.

**Any size** (``multiple``). A network that downsamples by ``f`` (a U-Net: ``f = 2**depth``) takes
only sizes that divide by ``f``. With ``multiple=f`` the image is first extended beyond its far edges
(bottom, right) to the next multiples of ``f`` by mirror reflection (numpy's ``"reflect"``: the sky
goes on with its own background and noise, where zeros would be a false edge), tiled as below, and
the output cropped back to ``H x W``. Extending at the far edges keeps the pooling grid anchored at
pixel 0, so the rule below holds for the extended image: the output equals one pass over it; and a
pixel farther than the receptive-field radius from the far edges never sees the extension, so there
the output is what any one pass over any image containing this one at its top left would give.

**Blending.** Each tile's output is weighted by a separable window ``w(y) w(x)``: along an axis it
is 1, except at an edge shared with a neighbour (an *inner* edge), where it is 0 over the outer
``margin`` pixels then rises as ``sin^2`` over the next ``overlap - 2 margin`` pixels. Two regular
neighbours' ramps lie on the same pixels and sum to 1 (``sin^2 + cos^2``); every output pixel is the
weighted sum divided by the sum of the weights, so a constant output stays exactly constant, and the
output changes smoothly from one tile to the next: no seams. Image border edges are not tapered.

**Exactness.** A tile's output at a pixel at least ``r`` pixels from the tile's inner edges equals
the one-pass output, for a network whose receptive-field radius is ``r`` (a stack of ``n`` 3x3,
stride-1 convolutions: ``r = n``). Tiles have zero weight within ``margin`` of their inner edges, so
**with margin >= r the tiled output equals one pass over the whole image everywhere** (to float
rounding; ~1e-6), borders included; with the default ``margin = overlap // 4`` that is
``overlap >= 4 r``. A network that downsamples by ``f`` (a U-Net: ``f = 2**depth``) is shift-
equivariant only by multiples of ``f``: tile starts then need to be multiples of ``f`` as well (tile,
overlap, H and W multiples of ``f``). Beyond the receptive field, the ramp hides what differs.

**Memory** (:func:`stream_blocks`), whatever ``H`` and ``W``: tiles go by bands of ``T = tile`` rows, and
within a band by batches of ``B = batch_size`` tiles: one block of ``T`` rows and
``Wb = min(W, (B - 1) (T - overlap) + T)`` columns is read at a time (float32, and the reader's copy while
it converts), its tiles' weighted outputs are added to the block's float64 sums, the pixels no later tile
reaches leave (float32), and the other sums (the rows shared with the next band, the columns shared with
the next batch) go back to a store of ``8 C' T W`` bytes: a temporary file with ``scratch`` (its pages are
the kernel's cache, not the process's memory), else in memory (:func:`predict_tiled`, whose image is in
memory anyway). Beside that store the numpy buffers stay under
``T Wb (8 C + 16 C') + 4 B C T^2 + 8 (C' + 1) T^2`` bytes, a bound that depends on neither the height
nor the width once the image is ``Wb`` wide (the lists of tile starts, ``(H + W) / (T - overlap)`` numbers,
are all that grows), and the network holds its activations for one batch of ``B`` tiles.

>>> out = predict_tiled(unet, image, tile=256, overlap=64)        # image (C, H, W) -> out (C', H, W)
"""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import nn

from deepfield.arguments import integer
from deepfield.errors import DeepfieldError
from deepfield.models.folding import fold_batch_norm

ReadRows = Callable[[int, int], np.ndarray]
"""``read(start, stop)``: rows ``start:stop`` of the input, ``(C, stop - start, W)``."""
WriteRows = Callable[[int, np.ndarray], None]
"""``write(start, rows)``: output rows from ``start`` on, ``(C', n, W)`` float32, called in row order."""
ReadBlock = Callable[[int, int, int, int], np.ndarray]
"""``read(top, bottom, left, right)``: rows ``top:bottom`` and columns ``left:right`` of the input,
``(C, bottom - top, right - left)``."""
WriteBlock = Callable[[int, int, np.ndarray], None]
"""``write(top, left, block)``: finished output pixels ``(C', h, w)`` float32 at rows ``top:top + h`` and columns
``left:left + w``; each pixel once, band after band, left to right within a band."""
Pair = int | Sequence[int]
Progress = Callable[[int, int], None]
"""``progress(rows_done, H)``: called after each band (for a progress bar)."""


def predict_tiled(network: nn.Module, image: Any, *, tile: Pair = 256, overlap: Pair = 64, margin: Pair | None = None,
                  multiple: Pair = 1, batch_size: int = 8, device: str | torch.device | None = None,
                  progress: Progress | None = None) -> np.ndarray:
    """The network's output over a whole image, computed by overlapping tiles (see the module's notes).

    Args:
        network: an image-to-image module, ``(N, C, h, w) -> (N, C', h, w)``; run in eval mode
            without gradients (each submodule's mode is restored afterwards).
        image: ``(C, H, W)`` (a numpy array or a tensor), or ``(H, W)``: one channel. NaN pixels (masked
            areas) reach the network as they are (fill them first if it was not trained with them); a
            tile's zero-weight margins are never added, so a NaN spreads over the receptive field only.
        tile: the tile size in pixels, ``int`` or ``(height, width)``.
        overlap: pixels shared by neighbouring tiles, ``0 <= overlap <= tile // 2``.
        margin: pixels at a tile's inner edges given zero weight, ``0 <= margin <= overlap // 2``
            (default ``overlap // 4``); the output equals one pass where ``margin`` >= the network's
            receptive-field radius.
        multiple: the sizes the network takes divide by this (``2**depth`` for a U-Net): the image is
            mirrored beyond its bottom and right edges to multiples of it, the output cropped (module notes);
            ``tile`` must be a multiple of it.
        batch_size: tiles per forward pass.
        device: where the network runs (it is moved there); default: where its parameters are.
        progress: called after each band of rows with ``(rows done, H)``.

    Returns:
        ``(C', H, W)`` float32.
    """
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3:
        raise DeepfieldError(f"predict_tiled: image must be (C, H, W) or (H, W), got shape {image.shape}")
    height, width = image.shape[1:]
    out: list[np.ndarray] = []

    def write(top: int, left: int, block: np.ndarray) -> None:
        if not out:
            out.append(np.empty((block.shape[0], height, width), np.float32))
        out[0][:, top:top + block.shape[1], left:left + block.shape[2]] = block

    stream_blocks(network, lambda top, bottom, left, right: image[:, top:bottom, left:right], height, width, write,
                  tile=tile, overlap=overlap, margin=margin, multiple=multiple, batch_size=batch_size, device=device,
                  progress=progress)
    return out[0]


def stream_tiles(network: nn.Module, read: ReadRows, height: int, width: int, write: WriteRows, *,
                 tile: Pair = 256, overlap: Pair = 64, margin: Pair | None = None, multiple: Pair = 1,
                 batch_size: int = 8, device: str | torch.device | None = None,
                 progress: Progress | None = None) -> None:
    """:func:`predict_tiled` on an image read by bands of rows: ``read`` is asked for at most ``tile`` rows
    at a time (one band, top to bottom, each once), ``write`` receives every output row once, in order.

    Memory: :func:`stream_blocks`' (its sums in memory), plus the band of input rows ``read`` returns and the
    strip of output rows given to ``write``: ``4 T W (C + C')`` bytes, which grow with the width (read and
    write by blocks with :func:`stream_blocks` for a bound that does not).
    """
    band: dict[tuple[int, int], np.ndarray] = {}  # the rows last read
    strip: list[np.ndarray] = []  # the output rows being assembled, (C', n, W)

    def read_block(top: int, bottom: int, left: int, right: int) -> np.ndarray:
        if (top, bottom) not in band:
            band.clear()
            band[top, bottom] = np.asarray(read(top, bottom), dtype=np.float32)
        return band[top, bottom][:, :, left:right]

    def write_block(top: int, left: int, block: np.ndarray) -> None:
        if left == 0:
            strip[:] = [np.empty((*block.shape[:2], width), np.float32)]
        strip[0][:, :, left:left + block.shape[2]] = block
        if left + block.shape[2] == width:
            write(top, strip[0])

    stream_blocks(network, read_block, height, width, write_block, tile=tile, overlap=overlap, margin=margin,
                  multiple=multiple, batch_size=batch_size, device=device, progress=progress)


def stream_blocks(network: nn.Module, read: ReadBlock, height: int, width: int, write: WriteBlock, *,
                  tile: Pair = 256, overlap: Pair = 64, margin: Pair | None = None, multiple: Pair = 1,
                  batch_size: int = 8, device: str | torch.device | None = None, progress: Progress | None = None,
                  scratch: str | os.PathLike[str] | None = None) -> None:
    """:func:`predict_tiled` on an image read and written by blocks: ``read`` is asked for at most ``tile``
    rows and one batch of tiles' columns at a time (bands top to bottom, left to right within a band);
    ``write`` receives every output pixel once, in blocks in the same order.

    Args:
        scratch: a folder for the temporary file (deleted at the end) holding the float64 sums of the rows a
            band shares with the next (``8 C' T W`` bytes): the process's memory then does not grow with the
            image's width. Default: those sums are kept in memory.
        the others: as for :func:`predict_tiled`.

    Memory: one block of input, one block of float64 sums, one batch of tiles (the module's notes).
    """
    (tile_h, tile_w), (over_h, over_w), (margin_h, margin_w) = settings(tile, overlap, margin)
    batch_size = integer("batch_size", batch_size, expected="a positive integer")
    if height < 1 or width < 1:
        raise DeepfieldError(f"tiled prediction: the image is {height}x{width} pixels; nothing to predict")
    # the tiles cover the image mirrored to multiples of ``multiple``; only the image is read and written
    extended_h, extended_w = (-(-n // m) * m for n, m in zip((height, width), extension(multiple, (tile_h, tile_w))))
    rows, cols = Axis(extended_h, tile_h, over_h, margin_h), Axis(extended_w, tile_w, over_w, margin_w)
    with contextlib.ExitStack() as stack:
        run = stack.enter_context(inference(network, device))
        store = stack.enter_context(io.BytesIO() if scratch is None else tempfile.TemporaryFile(dir=scratch))
        band: BandSums | None = None  # created at the first batch, when C' is known
        for k, top in enumerate(rows.starts):
            weights_y = rows.window(k)
            y0, y1 = support(weights_y)
            done = rows.reached(k) - top  # the band's rows no later band reaches
            for first in range(0, len(cols.starts), batch_size):
                chunk = range(first, min(first + batch_size, len(cols.starts)))
                left, right = cols.starts[first], cols.starts[chunk[-1]] + cols.size
                block = read_extended(read, (top, top + rows.size), (left, right), (height, width))
                outputs = run(np.stack([block[:, :, cols.starts[j] - left:cols.starts[j] - left + cols.size]
                                        for j in chunk]))
                if band is None:
                    band = BandSums(store, outputs.shape[1], rows.size, extended_w)
                sums = band.take(top, left, right)
                for output, j in zip(outputs, chunk):
                    (x0, x1), at = support(cols.window(j)), cols.starts[j] - left
                    weight = weights_y[y0:y1, None] * cols.window(j)[None, x0:x1]
                    sums[:, y0:y1, at + x0:at + x1] += output[:, y0:y1, x0:x1] * weight
                finished = sums[:, :done, :cols.reached(chunk[-1]) - left]  # no later tile reaches these
                bottom, end = min(top + done, height), min(left + finished.shape[2], width)
                pixels = finished[:, :bottom - top, :end - left]
                pixels /= rows.sums(top, bottom)[:, None]  # in place, one axis at a time: no block-sized temporaries
                pixels /= cols.sums(left, end)
                write(top, left, pixels.astype(np.float32))
                finished[...] = 0.0  # their slots start the rows of a later band
                band.keep(top, left, sums)
            if progress is not None:
                progress(min(top + done, height), height)


class Axis:
    """The tiles along one axis of the (extended) image: where they start, their windows (:func:`window`),
    and the sums of those windows."""

    def __init__(self, length: int, tile: int, overlap: int, margin: int):
        self.length, self.size, self.starts = length, min(tile, length), tile_starts(length, tile, overlap)
        last = len(self.starts) - 1  # the first, the second and the last tile show every kind of window
        self.kinds = {(k > 0, k < last): window(self.size, k > 0, k < last, overlap, margin)
                      for k in {0, min(1, last), last}}

    def window(self, k: int) -> np.ndarray:
        """The ``k``-th tile's weights, ``(size,)``: tapered at its inner edges only."""
        return self.kinds[k > 0, k < len(self.starts) - 1]

    def reached(self, k: int) -> int:
        """The first pixel that a tile after the ``k``-th reaches (the pixels before it are finished)."""
        return self.starts[k + 1] if k + 1 < len(self.starts) else self.length

    def sums(self, first: int, stop: int) -> np.ndarray:
        """The sum of the tiles' windows over pixels ``first:stop``, ``(stop - first,)``, added in tile order:
        > 0 everywhere when ``overlap >= 2 margin``."""
        total = np.zeros(stop - first)
        for k, start in enumerate(self.starts):
            low, high = max(start, first), min(start + self.size, stop)
            if low < high:
                total[low - first:high - first] += self.window(k)[low - start:high - start]
        return total


class BandSums:
    """The float64 weighted sums of the outputs over the rows of the current band, ``(C', T, W)`` in a file,
    row ``y`` in slot ``y % T``: a block of them is taken for a batch of tiles and kept back after. Read and
    written by rows (hand-written: a memory map would count the pages it touches as the process's memory)."""

    def __init__(self, file: BinaryIO, channels: int, rows: int, width: int):
        self.file, self.channels, self.rows, self.width = file, channels, rows, width
        file.seek(8 * channels * rows * width - 1)
        file.write(b"\0")  # zeros before it (a sparse file on disk)

    def take(self, top: int, left: int, right: int) -> np.ndarray:
        """The sums of the band's rows ``top:top + T`` and columns ``left:right``, ``(C', T, right - left)``."""
        sums = np.empty((self.channels, self.rows, right - left))
        for channel, row in np.ndindex(self.channels, self.rows):
            self.file.seek(self.offset(channel, top + row, left))
            self.file.readinto(sums[channel, row])
        return sums

    def keep(self, top: int, left: int, sums: np.ndarray) -> None:
        """Store ``sums`` (as :meth:`take` returned them) back."""
        for channel, row in np.ndindex(self.channels, self.rows):
            self.file.seek(self.offset(channel, top + row, left))
            self.file.write(sums[channel, row])

    def offset(self, channel: int, row: int, column: int) -> int:
        return 8 * ((channel * self.rows + row % self.rows) * self.width + column)


def read_extended(read: ReadBlock, rows: tuple[int, int], columns: tuple[int, int], size: tuple[int, int],
                  ) -> np.ndarray:
    """Rows ``rows[0]:rows[1]`` and columns ``columns[0]:columns[1]`` of the image of ``size = (H, W)`` mirrored
    beyond its far edges (:func:`mirrored`), ``(C, n, m)`` float32, by one call to ``read``."""
    ys, xs = (mirrored(*span, length) for span, length in zip((rows, columns), size))
    (top, bottom), (left, right) = ((int(v.min()), int(v.max()) + 1) for v in (ys, xs))
    block = np.asarray(read(top, bottom, left, right), dtype=np.float32)
    if block.ndim != 3 or block.shape[1:] != (bottom - top, right - left):
        raise DeepfieldError(f"tiled prediction: rows {top}:{bottom}, columns {left}:{right} read as shape "
                             f"{block.shape}, expected (C, {bottom - top}, {right - left})")
    if rows[1] <= size[0] and columns[1] <= size[1]:
        return block
    return block[:, ys - top][:, :, xs - left]


def mirrored(first: int, stop: int, length: int) -> np.ndarray:
    """The pixels of an axis of ``length`` that its extension's pixels ``first:stop`` show: numpy's
    ``np.pad(..., mode="reflect")`` beyond the far edge (a triangle wave of period ``2 (length - 1)``)."""
    index = np.arange(first, stop)
    if length == 1:
        return np.zeros_like(index)
    phase = index % (2 * (length - 1))
    return np.where(phase < length, phase, 2 * (length - 1) - phase)


def settings(tile: Pair, overlap: Pair, margin: Pair | None) -> tuple[tuple[int, int], ...]:
    """``(tile, overlap, margin)`` checked, each as ``(rows, columns)``."""
    tiles = pair("tile", tile, 1, (2**31, 2**31), "a positive integer")
    overlaps = pair("overlap", overlap, 0, (tiles[0] // 2, tiles[1] // 2), "an integer from 0 to tile // 2")
    if margin is None:
        return tiles, overlaps, (overlaps[0] // 4, overlaps[1] // 4)
    margins = pair("margin", margin, 0, (overlaps[0] // 2, overlaps[1] // 2), "an integer from 0 to overlap // 2")
    return tiles, overlaps, margins


def extension(multiple: Pair, tiles: tuple[int, int]) -> tuple[int, int]:
    """``multiple`` checked, as ``(rows, columns)``: each divides the tile's size along its axis (so that
    every band of the extended image holds a row of the image, and tiles start on multiples of it)."""
    multiples = pair("multiple", multiple, 1, (2**31, 2**31), "a positive integer")
    for axis, size, step in zip(("rows", "columns"), tiles, multiples):
        if size % step:
            raise DeepfieldError(f"tile must divide by multiple; got {size} {axis}, multiple {step}")
    return multiples


def pair(name: str, value: Pair, minimum: int, maximum: tuple[int, int], expected: str) -> tuple[int, int]:
    """``value`` (one int, or one per axis) as ``(rows, columns)``, each in ``[minimum, maximum[axis]]``."""
    values = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value, value]
    if len(values) != 2:
        raise DeepfieldError(f"{name} must be one integer or (rows, columns), got {value!r}")
    rows, columns = (integer(name, v, minimum, most, expected=expected) for v, most in zip(values, maximum))
    return rows, columns


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where tiles start along an axis of ``length`` pixels: every ``tile - overlap`` pixels, the last one
    anchored at the far edge (``length - tile``); ``[0]`` (one tile of ``length``) if ``length <= tile``."""
    if length <= tile:
        return [0]
    return [*range(0, length - tile, tile - overlap), length - tile]


def window(size: int, inner_before: bool, inner_after: bool, overlap: int, margin: int) -> np.ndarray:
    """One tile's weights along an axis, ``(size,)`` float64: 1, except at an inner edge (shared with a
    neighbour): 0 over ``margin`` pixels, then a ``sin^2`` ramp over ``overlap - 2 margin`` pixels (its
    values at pixel centres, all > 0); the falling ramp of one tile and the rising ramp of its regular
    neighbour lie on the same pixels and sum to 1."""
    weights = np.ones(size)
    length = overlap - 2 * margin
    ramp = np.sin(0.5 * np.pi * (np.arange(length) + 0.5) / max(length, 1)) ** 2
    if inner_before:
        weights[:margin] = 0.0
        weights[margin:margin + length] *= ramp
    if inner_after:
        weights[size - margin:] = 0.0
        weights[size - margin - length:size - margin] *= ramp[::-1]
    return weights


def support(weights: np.ndarray) -> tuple[int, int]:
    """The pixels ``[first, last + 1)`` where ``weights`` is not 0 (only those of a tile are added up)."""
    nonzero = np.flatnonzero(weights)
    return int(nonzero[0]), int(nonzero[-1]) + 1


@contextlib.contextmanager
def inference(network: nn.Module, device: str | torch.device | None) -> Iterator[Callable[[np.ndarray], np.ndarray]]:
    """A function running ``network`` on a batch of tiles ``(B, C, h, w)`` float32 -> ``(B, C', h, w)``
    float32, in eval mode without gradients; every submodule's mode is restored on leaving."""
    if device is not None:
        network.to(device)
    where = next((t.device for t in (*network.parameters(), *network.buffers())), torch.device("cpu"))
    modes = [(module, module.training) for module in network.modules()]
    network.eval()
    folded = fold_batch_norm(network)  # batch norms folded into their convolutions; ``network`` is untouched

    def run(tiles: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            output = folded(torch.from_numpy(tiles).to(where))
        if not isinstance(output, torch.Tensor) or output.ndim != 4 or output.shape[0] != len(tiles) \
                or tuple(output.shape[2:]) != tiles.shape[2:]:
            got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise DeepfieldError(f"tiled prediction: the network turned tiles of shape {tiles.shape} into {got}; "
                                 "it must keep (N, ., H, W) (a network that downsamples by f needs tile sizes "
                                 "divisible by f)")
        return output.float().cpu().numpy()

    try:
        yield run
    finally:
        for module, training in modes:
            module.training = training
