"""A 1-D convolutional network for spectra (and other sampled 1-D signals)."""
from __future__ import annotations

from collections.abc import Sequence

from deepfield.models.conv import Conv1D
from deepfield.models.core import Activation, Dense, Flatten
from deepfield.models.normalization import BatchNormalization
from deepfield.models.pooling import GlobalAveragePooling1D, MaxPooling1D
from deepfield.models.presets.base import check_fits, dense_layers, sample_shape
from deepfield.models.sequential import Sequential


def spectra1d(input_shape: Sequence[int] = (1, 1024), n_outputs: int = 1,
              filters: Sequence[int] = (16, 32, 64, 128), kernel_size: int = 7, pool_size: int = 2,
              hidden: Sequence[int] = (64,), dropout: float = 0.0, batch_norm: bool = True,
              activation: str = "relu", output_activation: str | None = None,
              global_pool: bool = True) -> Sequential:
    """Convolution blocks along the wavelength axis, global pooling, a dense head.

    ``(N, C, L) -> (N, n_outputs)``; ``C`` may be 1 (flux) or more (flux, inverse variance,
    mask, ...). One block per entry of ``filters`` (the depth):
    ``Conv1D(f, kernel_size, 'same') [→ BatchNormalization] → activation → MaxPool(pool_size)``;
    then global average pooling, so any length of at least ``pool_size ** depth`` pixels
    works with the same weights, and the dense head of :func:`~deepfield.models.presets.base.dense_layers`.

    Global pooling forgets *where* along the spectrum a feature was found: right for a
    class, wrong for a redshift, which on a log-wavelength grid is exactly a shift.
    ``global_pool=False`` flattens the last feature maps instead, so the head sees the
    position of every line (the length is then fixed).

    The pattern of the 1-D CNNs for stellar spectra (StarNet, Fabbro et al. 2018, MNRAS 475,
    2978; astroNN, Leung & Bovy 2019, MNRAS 483, 3255), with global pooling (Lin, Chen &
    Yan 2014) in place of a flatten. On ``(1, 1024)`` it has 84,657 parameters (84,177 trainable).
    """
    preset = "spectra1d"
    shape = sample_shape(preset, input_shape, 1)
    layers = []
    for f in filters:
        layers.append(Conv1D(f, kernel_size, padding="same", use_bias=not batch_norm))
        if batch_norm:
            layers.append(BatchNormalization())
        layers += [Activation(activation), MaxPooling1D(pool_size)]
    layers.append(GlobalAveragePooling1D() if global_pool else Flatten())
    layers += dense_layers(hidden, activation, dropout)
    layers.append(Dense(n_outputs, activation=output_activation))
    model = Sequential(layers, name=preset, input_shape=shape)
    check_fits(preset, shape, layers, f"{len(filters)} max-poolings of {pool_size}")
    return model
