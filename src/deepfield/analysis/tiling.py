"""Apply an image-to-image network to an image of any size by overlapping tiles, blended without seams.

An image-to-image network maps ``(N, C, h, w)`` to ``(N, C', h, w)`` (a U-Net, a denoiser, a
segmenter). :func:`predict_tiled` applies it to a whole ``(C, H, W)`` image in ``tile x tile`` pieces;
:func:`stream_tiles` is the same engine reading and writing rows through callables, which
:mod:`deepfield.analysis.tiling_fits` uses to stream a FITS file of any height.

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

**Memory** (:func:`stream_tiles`), whatever ``H``: one band of ``T = tile`` rows is read at a time
(``T x W x C`` float32, and the reader's copy while it converts), outputs accumulate over one band
(``T x W x C'`` float64) and leave as strips of finished rows (float32): the numpy buffers stay under
``T W (8 C + 12 C' + 4) + 4 B C T^2`` bytes (``B = batch_size``; plus ``8 (H + W)`` for the weight
sums), and the network holds its activations for one batch of ``B`` tiles.

>>> out = predict_tiled(unet, image, tile=256, overlap=64)        # image (C, H, W) -> out (C', H, W)
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

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

    def write(start: int, rows: np.ndarray) -> None:
        if not out:
            out.append(np.empty((rows.shape[0], height, width), np.float32))
        out[0][:, start:start + rows.shape[1]] = rows

    stream_tiles(network, lambda start, stop: image[:, start:stop], height, width, write, tile=tile,
                 overlap=overlap, margin=margin, multiple=multiple, batch_size=batch_size, device=device,
                 progress=progress)
    return out[0]


def stream_tiles(network: nn.Module, read: ReadRows, height: int, width: int, write: WriteRows, *,
                 tile: Pair = 256, overlap: Pair = 64, margin: Pair | None = None, multiple: Pair = 1,
                 batch_size: int = 8, device: str | torch.device | None = None,
                 progress: Progress | None = None) -> None:
    """:func:`predict_tiled` on an image read by bands of rows: ``read`` is asked for at most ``tile`` rows
    at a time (one band, top to bottom, each once), ``write`` receives every output row once, in order.

    Memory: one input band, one band of float64 sums, one output strip and one batch (the module's notes).
    """
    (tile_h, tile_w), (over_h, over_w), (margin_h, margin_w) = settings(tile, overlap, margin)
    batch_size = integer("batch_size", batch_size, expected="a positive integer")
    if height < 1 or width < 1:
        raise DeepfieldError(f"tiled prediction: the image is {height}x{width} pixels; nothing to predict")
    image_h, image_w = height, width  # read and written; the tiles cover the mirrored extension
    height, width = (-(-n // m) * m for n, m in zip((height, width), extension(multiple, (tile_h, tile_w))))
    rows, cols = tile_starts(height, tile_h, over_h), tile_starts(width, tile_w, over_w)
    band_h, band_w = min(tile_h, height), min(tile_w, width)
    window_y = [window(band_h, k > 0, k < len(rows) - 1, over_h, margin_h) for k in range(len(rows))]
    window_x = [window(band_w, k > 0, k < len(cols) - 1, over_w, margin_w) for k in range(len(cols))]
    sum_y, sum_x = weight_sum(height, rows, window_y), weight_sum(width, cols, window_x)
    span_x = [support(w) for w in window_x]
    sums: np.ndarray | None = None  # (C', band_h, W): weighted outputs of the rows of the current band
    with inference(network, device) as run:
        for k, top in enumerate(rows):
            stop = min(top + band_h, image_h)
            band = np.asarray(read(top, stop), dtype=np.float32)
            if band.ndim != 3 or band.shape[1:] != (stop - top, image_w):
                raise DeepfieldError(f"tiled prediction: rows {top}:{stop} read as shape {band.shape}, "
                                     f"expected (C, {stop - top}, {image_w})")
            if band.shape[1:] != (band_h, width):
                band = np.pad(band, ((0, 0), (0, band_h - band.shape[1]), (0, width - image_w)), mode="reflect")
            y0, y1 = support(window_y[k])
            for first in range(0, len(cols), batch_size):
                chunk = range(first, min(first + batch_size, len(cols)))
                outputs = run(np.stack([band[:, :, cols[j]:cols[j] + band_w] for j in chunk]))
                if sums is None:
                    sums = np.zeros((outputs.shape[1], band_h, width))
                for output, j in zip(outputs, chunk):
                    (x0, x1), left = span_x[j], cols[j]
                    weight = window_y[k][y0:y1, None] * window_x[j][None, x0:x1]
                    sums[:, y0:y1, left + x0:left + x1] += output[:, y0:y1, x0:x1] * weight
            assert sums is not None
            done = (rows[k + 1] if k + 1 < len(rows) else height) - top  # rows no later band reaches
            finished = sums[:, :done]
            finished /= sum_y[top:top + done, None]  # in place, one axis at a time: no band-sized temporaries
            finished /= sum_x
            write(top, finished[:, :image_h - top, :image_w].astype(np.float32))
            if progress is not None:
                progress(min(top + done, image_h), image_h)
            sums[:, :band_h - done] = sums[:, done:]
            sums[:, band_h - done:] = 0.0


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


def weight_sum(length: int, starts: Sequence[int], windows: Sequence[np.ndarray]) -> np.ndarray:
    """The sum of the tiles' windows along an axis, ``(length,)``: > 0 everywhere when ``overlap >= 2 margin``."""
    total = np.zeros(length)
    for start, weights in zip(starts, windows):
        total[start:start + len(weights)] += weights
    return total


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
