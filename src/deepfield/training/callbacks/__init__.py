"""Callbacks with Keras's names, arguments and semantics (see :mod:`.base` for the hooks)."""
from deepfield.training.callbacks.base import Callback, CallbackList, History, Monitor
from deepfield.training.callbacks.csv_logger import CSVLogger
from deepfield.training.callbacks.gradient_norms import GradientNormLogger
from deepfield.training.callbacks.lambda_callback import LambdaCallback
from deepfield.training.callbacks.saving import BackupAndRestore, ModelCheckpoint
from deepfield.training.callbacks.schedules import KLAnnealing, LearningRateScheduler, ReduceLROnPlateau
from deepfield.training.callbacks.stopping import EarlyStopping, TerminateOnNaN, TrainingDiverged
from deepfield.training.callbacks.tensorboard import TensorBoard

__all__ = [
    "Callback", "CallbackList", "History", "Monitor", "CSVLogger", "BackupAndRestore", "GradientNormLogger",
    "ModelCheckpoint", "KLAnnealing", "LearningRateScheduler", "ReduceLROnPlateau", "EarlyStopping", "TerminateOnNaN",
    "TrainingDiverged", "LambdaCallback", "TensorBoard",
]
