"""Named model presets ("zoo"): the networks of the course, ready to train.

``get(name, input_shape=None, **overrides)`` returns a fresh, unbuilt
:class:`~deepfield.models.sequential.Sequential`.
"""
from __future__ import annotations

from collections.abc import Callable

from deepfield.errors import unknown_name
from deepfield.models.conv import Conv2D
from deepfield.models.core import Activation, Dense, Dropout, Flatten
from deepfield.models.pooling import MaxPooling2D
from deepfield.models.sequential import Sequential


def lecture_cnn(input_shape: tuple[int, ...] = (1, 64, 64), n_outputs: int = 1,
                output_activation: str = "sigmoid") -> Sequential:
    """The course's galaxy CNN (Dominguez-Sanchez+18 style), in the course's Keras order.

    Conv 32 6×6 → ReLU → Dropout .5 → Conv 64 5×5 → ReLU → MaxPool 2 → Dropout .25 →
    Conv 128 2×2 → ReLU → MaxPool 2 → Dropout .25 → Conv 128 3×3 → ReLU → Dropout .25 →
    Flatten → Dense 64 relu → Dropout .5 → Dense 1 sigmoid (``init='uniform'``).
    All convolutions 'same'. On ``(1, 64, 64)`` it has 2,330,209 parameters.
    """
    return Sequential([
        Conv2D(32, 6, padding="same", input_shape=input_shape),
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
    ], name="lecture_cnn", input_shape=input_shape)


def quality_cnn(input_shape: tuple[int, ...] = (1, 150, 150), n_outputs: int = 1,
                output_activation: str = "sigmoid") -> Sequential:
    """The course's image data-quality classifier (Euclid, after H. McCracken).

    3 × (Conv 3×3 relu → MaxPool 2) with 32, 64, 64 filters → Flatten → Dense 128 relu → Dense 1 sigmoid.
    """
    return Sequential([
        Conv2D(32, 3, activation="relu", input_shape=input_shape),
        MaxPooling2D(2),
        Conv2D(64, 3, activation="relu"),
        MaxPooling2D(2),
        Conv2D(64, 3, activation="relu"),
        MaxPooling2D(2),
        Flatten(),
        Dense(128, activation="relu"),
        Dense(n_outputs, activation=output_activation),
    ], name="quality_cnn", input_shape=input_shape)


def mlp(input_shape: tuple[int, ...] = (10,), hidden: tuple[int, ...] = (64, 64), n_outputs: int = 1,
        activation: str = "relu", output_activation: str | None = None) -> Sequential:
    """A fully connected network for catalogue features (photometric redshifts, forecasts)."""
    layers = [Dense(units, activation=activation) for units in hidden]
    layers.append(Dense(n_outputs, activation=output_activation))
    return Sequential(layers, name="mlp", input_shape=input_shape)


PRESETS: dict[str, Callable[..., Sequential]] = {
    "lecture-cnn": lecture_cnn,
    "quality-cnn": quality_cnn,
    "mlp": mlp,
}


def get(name: str, **kwargs: object) -> Sequential:
    """A fresh preset by name, e.g. ``get("lecture-cnn", input_shape=(3, 64, 64))``."""
    if name not in PRESETS:
        raise unknown_name("model preset", name, PRESETS)
    return PRESETS[name](**kwargs)
