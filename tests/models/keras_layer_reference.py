"""What the Keras-comparison tests share: Keras 3 on its torch backend (a test-only dependency), and running
a Keras layer on numpy inputs."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")


def run_keras(layer, x: np.ndarray, training: bool = False) -> np.ndarray:
    """``layer(x)`` as a numpy array (built on ``x``'s shape)."""
    return keras.ops.convert_to_numpy(layer(x, training=training))


def keras_params(layer, input_shape: tuple[int, ...]) -> int:
    """What Keras's summary counts for ``layer`` built on samples of ``input_shape``."""
    layer.build((None, *input_shape))
    return int(layer.count_params())
