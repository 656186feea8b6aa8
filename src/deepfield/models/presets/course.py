"""The course's image networks, as its Keras code writes them: the galaxy-morphology CNN of
Dominguez Sanchez et al. (2018) and the Euclid data-quality classifier.
"""
from __future__ import annotations

from collections.abc import Sequence

from deepfield.models.conv import Conv2D
from deepfield.models.core import Activation, Dense, Dropout, Flatten
from deepfield.models.pooling import MaxPooling2D
from deepfield.models.presets.base import check_fits, sample_shape
from deepfield.models.sequential import Sequential


def _morphology_cnn(preset: str, input_shape: Sequence[int], n_outputs: int,
                    output_activation: str | None) -> Sequential:
    """Conv 32 6×6 → Dropout .5 → Conv 64 5×5 → MaxPool 2 → Dropout .25 → Conv 128 2×2 →
    MaxPool 2 → Dropout .25 → Conv 128 3×3 → Dropout .25 → Flatten → Dense 64 relu →
    Dropout .5 → Dense ``n_outputs`` (``init='uniform'``); convolutions 'same' with ReLU.
    """
    shape = sample_shape(preset, input_shape, 2)
    model = Sequential([
        Conv2D(32, 6, padding="same", input_shape=shape),
        Activation("relu"),
        Dropout(0.5),
        Conv2D(64, 5, padding="same"),
        Activation("relu"),
        MaxPooling2D(2),
        Dropout(0.25),
        Conv2D(128, 2, padding="same"),
        Activation("relu"),
        MaxPooling2D(2),
        Dropout(0.25),
        Conv2D(128, 3, padding="same"),
        Activation("relu"),
        Dropout(0.25),
        Flatten(),
        Dense(64, activation="relu"),
        Dropout(0.5),
        Dense(n_outputs, activation=output_activation, kernel_initializer="random_uniform"),
    ], name=preset.replace("-", "_"), input_shape=shape)
    check_fits(preset, shape, list(model), "two 2×2 max-poolings")
    return model


def lecture_cnn(input_shape: Sequence[int] = (1, 64, 64), n_outputs: int = 1,
                output_activation: str | None = "sigmoid") -> Sequential:
    """The course's galaxy CNN, in the course's Keras order (the Dominguez-Sanchez+18 network).

    Layers as :func:`dominguez_sanchez`; the course shows it on one-band 64×64 stamps,
    where it has 2,330,209 parameters. Any stamp of at least 4×4 pixels, any band count.
    """
    return _morphology_cnn("lecture-cnn", input_shape, n_outputs, output_activation)


def dominguez_sanchez(input_shape: Sequence[int] = (3, 69, 69), n_outputs: int = 1,
                      output_activation: str | None = "sigmoid") -> Sequential:
    """The morphology CNN of Dominguez Sanchez, Huertas-Company, Bernardi et al. (2018, MNRAS 476, 3661).

    Matched to their §3 and the course's Keras code: four 'same' convolutions, 32 6×6,
    64 5×5, 128 2×2, 128 3×3, with ReLU; 2×2 max pooling after the second and third;
    dropout 0.5 after the first and 0.25 after the others; Dense 64 relu, dropout 0.5;
    a sigmoid output (they train one network per Galaxy Zoo 2 question). Their inputs are
    SDSS gri cutouts downsampled to 69×69, hence ``(3, 69, 69)``, where it has 2,602,849
    parameters.

    ``(N, C, H, W) -> (N, n_outputs)``; needs stamps of at least 4×4 pixels.
    """
    return _morphology_cnn("dominguez-sanchez", input_shape, n_outputs, output_activation)


def euclid_quality(input_shape: Sequence[int] = (1, 150, 150), n_outputs: int = 1,
                   output_activation: str | None = "sigmoid") -> Sequential:
    """The course's image data-quality classifier for Euclid (after H. McCracken).

    3 × (Conv 3×3 'valid' relu → MaxPool 2) with 32, 64, 64 filters → Flatten →
    Dense 128 relu → Dense ``n_outputs`` sigmoid. On ``(1, 150, 150)`` it has 2,423,489
    parameters. ``(N, C, H, W) -> (N, n_outputs)``; needs stamps of at least 22×22 pixels.
    """
    preset = "euclid-quality"
    shape = sample_shape(preset, input_shape, 2)
    model = Sequential([
        Conv2D(32, 3, activation="relu", input_shape=shape),
        MaxPooling2D(2),
        Conv2D(64, 3, activation="relu"),
        MaxPooling2D(2),
        Conv2D(64, 3, activation="relu"),
        MaxPooling2D(2),
        Flatten(),
        Dense(128, activation="relu"),
        Dense(n_outputs, activation=output_activation),
    ], name="euclid_quality", input_shape=shape)
    check_fits(preset, shape, list(model), "three 3×3 convolutions and 2×2 poolings")
    return model
