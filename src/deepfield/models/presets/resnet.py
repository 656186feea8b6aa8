"""A small residual network for stamps (He et al. 2016)."""
from __future__ import annotations

from collections.abc import Sequence

from deepfield.models.blocks import ResidualBlock
from deepfield.models.conv import Conv2D
from deepfield.models.core import Activation, Dense, Dropout
from deepfield.models.normalization import BatchNormalization
from deepfield.models.pooling import GlobalAveragePooling2D
from deepfield.models.presets.base import sample_shape
from deepfield.models.sequential import Sequential


def resnet(input_shape: Sequence[int] = (1, 64, 64), n_outputs: int = 1,
           filters: Sequence[int] = (16, 32, 64), blocks: int = 3,
           output_activation: str | None = None, dropout: float = 0.0) -> Sequential:
    """The CIFAR-style ResNet of He, Zhang, Ren & Sun (2016, §4.2), for stamps of any size.

    Stem ``Conv2D(filters[0], 3, 'same')`` → BN → ReLU; then one stage per entry of
    ``filters``, each of ``blocks`` :class:`~deepfield.models.blocks.ResidualBlock` s (the
    first block of every stage after the first halves H and W with stride 2, and its
    shortcut is a 1×1 projection); global average pooling; [``Dropout(dropout)``, for MC
    dropout: the convolutions then run once for all draws]; ``Dense(n_outputs)``.
    The defaults are the paper's ResNet-20 (6 × 3 + 2 layers); on ``(1, 64, 64)`` it has
    273,169 parameters (271,601 trainable). ``(N, C, H, W) -> (N, n_outputs)``; all
    convolutions are 'same', so any stamp size works.
    """
    shape = sample_shape("resnet", input_shape, 2)
    layers = [Conv2D(filters[0], 3, padding="same", use_bias=False, kernel_initializer="he_normal"),
              BatchNormalization(), Activation("relu")]
    for stage, width in enumerate(filters, start=1):
        for block in range(1, blocks + 1):
            strides = 2 if stage > 1 and block == 1 else 1
            layers.append(ResidualBlock(width, strides=strides, name=f"stage{stage}_block{block}"))
    layers.append(GlobalAveragePooling2D())
    if dropout:
        layers.append(Dropout(dropout))
    layers.append(Dense(n_outputs, activation=output_activation))
    return Sequential(layers, name="resnet", input_shape=shape)
