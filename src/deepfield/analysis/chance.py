"""Did a classifier learn anything that generalises? A run whose validation accuracy stayed near chance
while its training accuracy was high (memorised, or broken at evaluation) is flagged after training.

``chance_warning(history, chance)`` reads the epoch history (Keras's ``History.history`` or the columns
of ``history.csv``): a median ``val_accuracy`` over the later half of the epochs (robust to a small
validation part's lucky epochs) no further from ``chance`` than :data:`NEAR_CHANCE` of the way to 1,
while the best training ``accuracy`` reached :data:`HIGH_TRAINING`, is flagged, with the likely
cause when it can be told (batch normalisation whose running statistics come from few steps per epoch).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from torch import nn

NEAR_CHANCE = 0.25
"""Median validation accuracy (later half of the epochs) below ``chance + NEAR_CHANCE * (1 - chance)``
counts as near chance."""
HIGH_TRAINING = 0.9
"""Training accuracy at least this makes the gap a warning (a network that learnt nothing at all is not)."""
FEW_STEPS = 50
"""Fewer training steps per epoch than this leave batch-norm running statistics poorly estimated."""


def chance_level(labels: np.ndarray, n_classes: int) -> float:
    """The accuracy of guessing: the larger of ``1 / n_classes`` and the majority class's fraction of
    ``labels`` ``(N,)``."""
    labels = np.asarray(labels, dtype=np.int64)
    majority = np.bincount(labels, minlength=n_classes).max() / len(labels) if len(labels) else 0.0
    return float(max(1.0 / n_classes, majority))


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def chance_warning(history: Mapping[str, Sequence[float]], chance: float, *, batch_norm: bool = False,
                   steps_per_epoch: int | None = None) -> str | None:
    """A one-line warning when validation accuracy stayed near ``chance`` while training accuracy was high,
    else ``None``."""
    train = [float(v) for v in history.get("accuracy", []) if np.isfinite(float(v))]
    val = [float(v) for v in history.get("val_accuracy", []) if np.isfinite(float(v))]
    if not train or not val:
        return None
    typical, best_train = float(np.median(val[len(val) // 2:])), max(train)
    if best_train < HIGH_TRAINING or typical >= chance + NEAR_CHANCE * (1.0 - chance):
        return None
    line = (f"validation accuracy stayed near chance (median {typical:.2f} over the later epochs, best {max(val):.2f}, "
            f"chance {chance:.2f}) while training accuracy reached {best_train:.2f}: the network does not generalise")
    if batch_norm and steps_per_epoch is not None and steps_per_epoch < FEW_STEPS:
        line += (f"; likely cause: batch normalisation with only {steps_per_epoch} training steps per epoch, so its "
                 "running statistics (used at validation) are poorly estimated: use more data, a smaller "
                 "training.batch_size, or a model without batch normalisation")
    return line
