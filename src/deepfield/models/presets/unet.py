"""The U-Net of Ronneberger, Fischer & Brox (2015) for image-to-image work: denoising, deblending, segmentation.

A functional model of deepfield layers (so ``model.json`` holds the graph and ``summary()`` shows
each skip connection in its "Connected to" column). Channels first, ``(N, C, H, W) -> (N, C', H, W)``:
every convolution is 'same', so the output has the input's height and width (the paper's
convolutions are 'valid' and its output smaller; 'same' is what image-to-image work on stamps needs).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.models.conv import Conv2D
from deepfield.models.conv_transpose import Conv2DTranspose
from deepfield.models.core import Activation, Dense, Dropout
from deepfield.models.functional import Functional, Input
from deepfield.models.merge import Add, Concatenate
from deepfield.models.normalization import BatchNormalization, GroupNormalization
from deepfield.models.pooling import MaxPooling2D
from deepfield.models.presets.base import sample_shape
from deepfield.models.reshaping import Reshape, UpSampling2D
from deepfield.models.symbolic import SymbolicTensor

PRESET = "unet"
NORMALIZATIONS = ("batch", "group", None)
UPSAMPLINGS = ("transpose", "resize")


def one_of(name: str, value: Any, allowed: tuple[Any, ...], preset: str = PRESET) -> Any:
    """``value`` if it is among ``allowed``, else one line naming the preset's option and the choices."""
    if value not in allowed:
        shown = ", ".join("null" if a is None else repr(a) for a in allowed)
        raise DeepfieldError(f"preset {preset!r} {name} must be one of {shown}; got {value!r}")
    return value


def _largest_depth(height: int, width: int, depth: int) -> int:
    """The largest depth below ``depth`` whose poolings the stamp takes (0: none)."""
    for k in range(depth - 1, 0, -1):
        if height % 2**k == 0 and width % 2**k == 0 and min(height, width) >= 2 ** (k + 1):
            return k
    return 0


def check_stamp_size(height: int, width: int, depth: int, preset: str = PRESET) -> None:
    """Refuse, with what would work, stamps that ``depth`` 2×2 poolings cannot halve exactly down to
    at least 2×2 (a 1×1 bottleneck has one value per channel: batch statistics of one sample are void)."""
    step = 2**depth
    other = _largest_depth(height, width, depth)
    shallower = f", or use depth {other}" if other else ""
    got = f"got {height}×{width}"
    if min(height, width) < 2 * step:
        raise DeepfieldError(f"preset {preset!r} depth {depth} needs stamps of at least {2 * step}×{2 * step} pixels "
                             f"({depth} 2×2 poolings down to 2×2); {got}{shallower}")
    if height % step or width % step:
        down = [n // step * step for n in (height, width)]
        up = [-(-n // step) * step for n in (height, width)]
        raise DeepfieldError(f"preset {preset!r} depth {depth} needs stamps whose height and width divide by {step}; "
                             f"{got}: crop to {down[0]}×{down[1]} or pad to {up[0]}×{up[1]}{shallower}")


class UNetBuilder:
    """Names and makes the layers of one U-Net (the options are the :func:`unet` arguments); the
    ``diffusion`` preset builds its noise predictor with it, an embedding added into every block."""

    def __init__(self, normalization: str | None, groups: int, residual: bool, initializer: Any):
        self.normalization, self.groups, self.residual, self.initializer = normalization, groups, residual, initializer

    def conv(self, x: SymbolicTensor, filters: int, kernel: int, name: str) -> SymbolicTensor:
        """``Conv2D`` 'same' (no bias when a normalisation follows: its beta is the bias) [→ normalisation]."""
        x = Conv2D(filters, kernel, padding="same", use_bias=self.normalization is None,
                   kernel_initializer=self.initializer, name=name)(x)
        if self.normalization == "batch":
            x = BatchNormalization(name=f"{name}_bn")(x)
        elif self.normalization == "group":
            x = GroupNormalization(self.groups, name=f"{name}_gn")(x)
        return x

    def block(self, x: SymbolicTensor, filters: int, name: str,
              embedding: SymbolicTensor | None = None) -> SymbolicTensor:
        """Two 3×3 convolutions with ReLU; residual: the second's output plus a 1×1 projection of the input
        (He et al. 2016, option B: the channel count changes in every U-Net block), then ReLU.

        ``embedding`` ``(D,)``: a ``Dense`` projection of it to ``filters`` is added to every pixel of the first
        convolution's output, before its ReLU (Ho et al. 2020's time embedding in each block)."""
        y = self.conv(x, filters, 3, f"{name}_conv1")
        if embedding is not None:
            shift = Dense(filters, kernel_initializer=self.initializer, name=f"{name}_embedding")(embedding)
            y = Add(name=f"{name}_embed")([y, Reshape((filters, 1, 1), name=f"{name}_embedding_map")(shift)])
        y = Activation("relu", name=f"{name}_relu1")(y)
        y = self.conv(y, filters, 3, f"{name}_conv2")
        if self.residual:
            y = Add(name=f"{name}_add")([y, self.conv(x, filters, 1, f"{name}_shortcut")])
        return Activation("relu", name=f"{name}_relu2")(y)

    def up(self, x: SymbolicTensor, filters: int, upsampling: str, name: str) -> SymbolicTensor:
        """Double H and W, to ``filters`` channels: a 2×2 transposed convolution of stride 2, or a nearest
        resize then a 2×2 convolution (the paper's "up-convolution"; same parameter count either way)."""
        if upsampling == "transpose":
            return Conv2DTranspose(filters, 2, strides=2, padding="same", kernel_initializer=self.initializer,
                                   name=name)(x)
        x = UpSampling2D(2, name=f"{name}_resize")(x)
        return Conv2D(filters, 2, padding="same", kernel_initializer=self.initializer, name=name)(x)

    def features(self, x: SymbolicTensor, depth: int, filters: int, upsampling: str, dropout: float,
                 embedding: SymbolicTensor | None = None) -> SymbolicTensor:
        """The encoder, bottleneck and decoder of :func:`unet` on ``x``: its last decoder block's output,
        ``(filters, H, W)``; ``embedding`` goes into every block (:meth:`block`)."""
        skips = []
        for level in range(1, depth + 1):
            skips.append(self.block(x, filters * 2 ** (level - 1), f"down{level}", embedding))
            x = MaxPooling2D(2, name=f"pool{level}")(skips[-1])
        x = self.block(x, filters * 2**depth, "bottleneck", embedding)
        if dropout:
            x = Dropout(dropout, name="bottleneck_dropout")(x)
        for level in range(depth, 0, -1):
            width = filters * 2 ** (level - 1)
            x = Concatenate(axis=1, name=f"concat{level}")([skips[level - 1], self.up(x, width, upsampling,
                                                                                        f"up{level}")])
            x = self.block(x, width, f"up{level}_block", embedding)
            if dropout:
                x = Dropout(dropout, name=f"up{level}_dropout")(x)
        return x


def unet(input_shape: Sequence[int] = (3, 64, 64), depth: int = 4, filters: int = 16,
         normalization: str | None = "batch", groups: int = 8, residual: bool = False, dropout: float = 0.0,
         upsampling: str = "transpose", output_channels: int | None = None, output_activation: str | None = None,
         heteroscedastic: bool = False, input_skip: bool = False,
         kernel_initializer: str | dict = "he_normal") -> Functional:
    """U-Net (Ronneberger et al. 2015): ``(N, C, H, W) -> (N, output_channels [× 2], H, W)``.

    Encoder: ``depth`` levels of a block (two 3×3 convolutions → [norm] → ReLU) of ``filters · 2^l``
    channels, whose output is kept for the skip, then 2×2 max pooling; bottleneck: a block of
    ``filters · 2^depth``; decoder, per level from the deepest: up-convolution to ``filters · 2^l``
    channels (``upsampling`` 'transpose': ``Conv2DTranspose`` 2×2 stride 2; 'resize': nearest
    ``UpSampling2D`` then a 2×2 ``Conv2D``), ``Concatenate`` with the skip (channels axis), a block;
    output: a 1×1 convolution to ``output_channels`` (default: the input's channels) with
    ``output_activation`` (None for denoising and deblending, 'softmax' or 'sigmoid' for segmentation).

    Args:
        input_shape: ``(C, H, W)``; H and W must divide by ``2**depth`` and be at least ``2**(depth+1)``.
        depth: the number of poolings (down-steps).
        filters: the first level's channels, doubled per level. 16 by default, not the paper's 64: on 64×64
            stamps that is 190 million mult-adds per stamp, 106 to 159 stamps/s of inference measured on one
            CPU core (channels_last, as ``predict`` runs it); 32 quadruples the work (bench_unet.py).
        normalization: 'batch', 'group' (``groups`` groups, Wu & He 2018) or None, after every 3×3
            convolution (which then has no bias).
        residual: each block adds a 1×1 projection of its input before its last ReLU.
        dropout: rate of a ``Dropout`` after the bottleneck (the paper's place, the end of the contracting
            path) and after every decoder block (Bayesian SegNet, Kendall et al. 2017, drops in its decoder),
            so that MC dropout at prediction time samples every output pixel; 0: none.
        heteroscedastic: a second 1×1 convolution gives a per-pixel log-variance for each output
            channel, concatenated after the outputs: ``(N, 2 · output_channels, H, W)``, means first.
            Its kernel starts at zero (unit variance everywhere at the start of training).
        input_skip: the output is the input plus the network's (``Add``): it learns the correction (for
            denoising the noise, residual learning as DnCNN, Zhang et al. 2017), so a bright source passes
            through unchanged instead of being rebuilt over hundreds of σ. Needs ``output_channels`` equal to
            the input's channels and no ``output_activation``. On 3,000 simulated g, r, i pairs (20 epochs,
            ``examples/denoise.yaml``) it lifted the aperture S/N gain of galaxies above input S/N 50 from 0.17
            to 0.63 but lowered it on faint ones (1.50 to 1.30 below S/N 5): 0.86 overall against 1.01, so the
            example leaves it off.
        kernel_initializer: of every convolution but the log-variance one.

    Default on ``(3, 64, 64)``: 1,945,555 parameters (1,942,611 trainable), 190 million mult-adds per stamp.
    """
    shape = sample_shape(PRESET, input_shape, 2)
    depth = arguments.integer(f"preset {PRESET!r} depth", depth)
    filters = arguments.integer(f"preset {PRESET!r} filters", filters)
    groups = arguments.integer(f"preset {PRESET!r} groups", groups)
    one_of("normalization", normalization, NORMALIZATIONS)
    one_of("upsampling", upsampling, UPSAMPLINGS)
    one_of("residual", residual, (False, True))
    one_of("heteroscedastic", heteroscedastic, (False, True))
    if not arguments.is_number(dropout) or not 0.0 <= dropout < 1.0:
        raise DeepfieldError(f"preset {PRESET!r} dropout must be a rate in [0, 1); got {dropout!r}")
    out_channels = shape[0] if output_channels is None else \
        arguments.integer(f"preset {PRESET!r} output_channels", output_channels)
    if normalization == "group" and filters % groups:
        raise DeepfieldError(f"preset {PRESET!r} normalization 'group' with {groups} groups needs filters that divide "
                             f"by {groups}; got filters {filters}")
    check_stamp_size(shape[1], shape[2], depth)
    one_of("input_skip", input_skip, (False, True))
    if input_skip and (out_channels != shape[0] or output_activation is not None):
        raise DeepfieldError(f"preset {PRESET!r} input_skip adds the input to the output: it needs output_channels "
                             f"{shape[0]} (the input's) and no output_activation; got {out_channels} and "
                             f"{output_activation!r}")

    image = Input(shape, name="image")
    x = UNetBuilder(normalization, groups, residual, kernel_initializer).features(image, depth, filters, upsampling,
                                                                                 dropout)
    y = Conv2D(out_channels, 1, activation=output_activation, kernel_initializer=kernel_initializer,
               name="output")(x)
    if input_skip:
        y = Add(name="input_skip")([image, y])
    if heteroscedastic:
        log_variance = Conv2D(out_channels, 1, kernel_initializer="zeros", name="log_variance")(x)
        y = Concatenate(axis=1, name="output_and_log_variance")([y, log_variance])
    return Functional(image, y, name=PRESET)
