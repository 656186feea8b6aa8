"""deepfield: a deep-learning workbench for astronomers, on PyTorch.

>>> import deepfield as df
>>> from deepfield.layers import Conv2D, Dense, Flatten
>>> model = df.Sequential([Conv2D(32, 5, input_shape=(3, 64, 64)), Flatten(), Dense(1, activation="sigmoid")])
>>> model.compile(loss="binary_crossentropy", optimizer=df.optimizers.Adam(learning_rate=1e-3), metrics=["auc"])

A run folder written by ``deepfield train``, as the CLI sees it (its normalisation, draws, temperature):
``run = df.load_run("runs/morph"); run.predict(raw_stamps)`` (:class:`deepfield.tasks.run.Run`).

This module is only the public face: each name below is imported on first use, so importing a
part of the package (``deepfield.data.splits``) does not load the training engine, and a run's
task modules (readers, figures, the report) load only when a run is opened. Nothing inside the
package imports this module; the version lives in :mod:`deepfield.version`.
"""
import sys
import types

from deepfield.version import __version__

_FACE: dict[str, tuple[str, str | None]] = {
    "DeepfieldError": ("deepfield.errors", "DeepfieldError"),
    "Engine": ("deepfield.training", "Engine"),
    "Functional": ("deepfield.training", "Functional"),
    "Input": ("deepfield.models", "Input"),
    "Model": ("deepfield.training", "Model"),
    "Run": ("deepfield.tasks.run", "Run"),
    "Sequential": ("deepfield.training", "Sequential"),
    "callbacks": ("deepfield.training.callbacks", None),
    "constraints": ("deepfield.models.constraints", None),
    "layers": ("deepfield.layers", None),
    "load_keras": ("deepfield.models.keras_files", "load_keras"),
    "load_run": ("deepfield.tasks.run", "load_run"),
    "losses": ("deepfield.training.losses", None),
    "metrics": ("deepfield.training.metrics", None),
    "models": ("deepfield.models", None),
    "optimizers": ("deepfield.training.optimizers", None),
    "regularizers": ("deepfield.models.regularizers", None),
    "summarize": ("deepfield.models.summary", "summarize"),
    "zoo": ("deepfield.models.zoo", None),
}
"""Public name -> (module, attribute of it; ``None``: the module itself)."""
_AFTER_TRAINING = ("load_keras",)
"""Handed out once the training layer is imported: ``load_keras`` builds the classes the training layer
registers (the face's, with ``fit``), which the models layer may not import itself; ``models``: see
:class:`_Face`."""

__all__ = [*_FACE, "__version__"]


def __getattr__(name: str) -> object:
    if name not in _FACE:
        raise AttributeError(f"module 'deepfield' has no attribute {name!r}")
    from importlib import import_module

    module, attribute = _FACE[name]
    if name in _AFTER_TRAINING:
        import_module("deepfield.training")
    value = import_module(module)
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value  # found once, then an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_FACE})


class _Face(types.ModuleType):
    """This module's class: ``df.models`` is the models package with the training layer imported, even when
    ``deepfield.models`` was imported first (``from deepfield.layers import Dense``), when Python has set the
    package as this module's attribute and :func:`__getattr__` is no longer asked."""

    @property
    def models(self) -> types.ModuleType:
        from importlib import import_module

        import_module("deepfield.training")  # registers the classes load_keras builds (with fit)
        return import_module("deepfield.models")

    @models.setter
    def models(self, value: types.ModuleType) -> None:
        """The import system sets the subpackage here; the property hands it out."""


sys.modules[__name__].__class__ = _Face
