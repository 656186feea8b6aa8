"""What each process runs in test_distributed.py (spawned by ``launch``, so it must be importable).

``fit_small(folder, ...)`` trains a small Dense + BatchNormalization + Dropout network on
samples read as one-channel spectra (N, 1, F), augmented (shift, noise), with a validation set and a CSVLogger into ``folder`` and returns the history, the final weights
(as numpy) and the predictions and evaluation on the validation set. Without a process
group it is the single-process reference run.
"""
from __future__ import annotations

from pathlib import Path

import torch

from deepfield.models import Activation, BatchNormalization, Dense, Dropout, Flatten
from deepfield.training import BackupAndRestore, Callback, CSVLogger, Sequential, distributed

AUGMENT = [{"name": "shift", "max_shift": 1}, {"name": "gaussian_noise", "sigma": 0.1}]
SAMPLES, FEATURES, BATCH, EPOCHS = 45, 6, 8, 4  # 5 global batches of 8 (4 + 4) and one of 5 (3 + 2)


def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(123)
    x = torch.randn(SAMPLES + 13, FEATURES, generator=gen) * 2.0 + 1.0
    y = x[:, :2].sum(dim=1, keepdim=True) - x[:, 2:3] ** 2
    x = x.unsqueeze(1)  # (N, 1, F): spectra, so that the augmentation applies
    return x[:SAMPLES], y[:SAMPLES], x[SAMPLES:], y[SAMPLES:]


class StopAt(Callback):
    """Kills the process at the end of epoch ``epoch`` (after the backup) to test resuming."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt("stopped for the test")


def fit_small(folder: str, stop_after: int | None = None, backup: bool = False) -> dict:
    """Train (with dropout and augmentation: each sample's mask and draws are the ones a single
    process gives it; no bias
    before the batch norm: its gradient is 0 up to rounding, which Adam would blow up to lr-sized steps)."""
    torch.manual_seed(0)
    x, y, x_val, y_val = data()
    model = Sequential([Flatten(), Dense(16, use_bias=False), BatchNormalization(momentum=0.9), Activation("relu"),
                        Dropout(0.3), Dense(1)], input_shape=(1, FEATURES))
    model.compile(optimizer="adam", loss="mse", metrics=["mae"], device="cpu")
    callbacks: list = [CSVLogger(Path(folder) / "history.csv")]
    if backup:
        callbacks.append(BackupAndRestore(Path(folder) / "backup", save_freq=5))
    if stop_after is not None:
        callbacks.append(StopAt(stop_after))
    try:
        history = model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, seed=7, verbose=0, augment=AUGMENT,
                            validation_data=(x_val, y_val), callbacks=callbacks)
    except KeyboardInterrupt:
        return {"stopped": True}
    return {
        "rank": distributed.rank(),
        "world": distributed.world_size(),
        "history": history.history,
        "weights": {k: v.detach().numpy().copy() for k, v in model.state_dict().items()},
        "predict": model.predict(x_val, batch_size=4, verbose=0),
        "evaluate": model.evaluate(x_val, y_val, batch_size=4, verbose=0),
        "bn_class": type(model[2]).__qualname__,  # back to the plain layer after fit
    }
