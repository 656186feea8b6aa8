"""Dense networks for catalogue features (magnitudes, colours, sizes)."""
from __future__ import annotations

from collections.abc import Sequence

from deepfield.models.core import Dense
from deepfield.models.presets.base import dense_layers, sample_shape
from deepfield.models.sequential import Sequential


def mlp(input_shape: Sequence[int] = (10,), hidden: Sequence[int] = (64, 64), n_outputs: int = 1,
        activation: str = "relu", output_activation: str | None = None, dropout: float = 0.0,
        batch_norm: bool = False) -> Sequential:
    """A multilayer perceptron for catalogue rows (photometric redshifts, forecasts).

    ``(N, features) -> (N, n_outputs)``. Per hidden width: ``Dense [→ BatchNormalization]
    → activation [→ Dropout(dropout)]``; then ``Dense(n_outputs, output_activation)``.
    On ``(10,)`` with the default ``hidden=(64, 64)`` it has 4,929 parameters.
    """
    shape = sample_shape("mlp", input_shape, 0)
    layers = dense_layers(hidden, activation, dropout, batch_norm)
    layers.append(Dense(n_outputs, activation=output_activation))
    return Sequential(layers, name="mlp", input_shape=shape)
