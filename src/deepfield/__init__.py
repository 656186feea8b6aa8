"""deepfield: a deep-learning workbench for astronomers, on PyTorch.

>>> import deepfield as df
>>> from deepfield.layers import Conv2D, Dense, Flatten
>>> model = df.Sequential([Conv2D(32, 5, input_shape=(3, 64, 64)), Flatten(), Dense(1, activation="sigmoid")])
>>> model.compile(loss="binary_crossentropy", optimizer=df.optimizers.Adam(learning_rate=1e-3), metrics=["auc"])

A run folder written by ``deepfield train``, as the CLI sees it (its normalisation, draws, temperature):
``run = df.load_run("runs/morph"); run.predict(raw_stamps)`` (:class:`deepfield.tasks.run.Run`).
"""
__version__ = "0.1.0"  # first: submodules (model.json writer) read it during import

from deepfield import layers
from deepfield.errors import DeepfieldError
from deepfield.models import zoo
from deepfield.models.summary import summarize
from deepfield.training import Engine, Model, Sequential, callbacks, losses, metrics, optimizers

__all__ = [
    "DeepfieldError", "Engine", "Model", "Run", "Sequential", "callbacks", "layers", "load_run", "losses", "metrics",
    "optimizers", "summarize", "zoo", "__version__",
]

RUN_NAMES = ("Run", "load_run")
"""Imported on first use: the task modules (readers, figures, the report) load only when a run is opened."""


def __getattr__(name: str) -> object:
    if name in RUN_NAMES:
        from deepfield.tasks import run

        return getattr(run, name)
    raise AttributeError(f"module 'deepfield' has no attribute {name!r}")
