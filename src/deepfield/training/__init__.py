"""The ``training`` layer: the fit loop, losses, optimisers, metrics, callbacks, checkpoints.

>>> from deepfield.training import Sequential, Model, EarlyStopping
>>> model = Sequential([...], input_shape=(10,)).compile(optimizer="adam", loss="mse")
>>> model.fit(x, y, epochs=10, callbacks=[EarlyStopping(patience=3)])

``Engine`` runs fit/evaluate/predict on any ``nn.Module``; ``Sequential`` and ``Model``
are the Keras face over it.
"""
from deepfield.training import losses, metrics, optimizers
from deepfield.training.augment import BatchAugment
from deepfield.training.callbacks import (
    BackupAndRestore,
    Callback,
    CSVLogger,
    EarlyStopping,
    GradientNormLogger,
    History,
    KLAnnealing,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
    TerminateOnNaN,
    TrainingDiverged,
)
from deepfield.training.checkpoint import load_state, save_state
from deepfield.training.device import resolve_device
from deepfield.training.engine import Engine
from deepfield.training.keras import Functional, KerasModelMixin, Model, Sequential

__all__ = [
    "losses", "metrics", "optimizers", "BatchAugment", "Engine", "Functional", "KerasModelMixin", "Model", "Sequential",
    "Callback", "History", "EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateau", "CSVLogger",
    "TerminateOnNaN", "TrainingDiverged", "LearningRateScheduler", "KLAnnealing", "BackupAndRestore", "GradientNormLogger",
    "load_state", "save_state", "resolve_device",
]
