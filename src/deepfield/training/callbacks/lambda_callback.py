"""LambdaCallback: hooks given as functions, with Keras's argument names."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deepfield.errors import DeepfieldError, unknown_name
from deepfield.training.callbacks.base import Callback

# Keras's argument -> the hook it sets. on_batch_begin/end are Keras 2's names, which Keras 3 still honours.
_HOOKS = {
    "on_train_begin": "on_train_begin", "on_train_end": "on_train_end",
    "on_epoch_begin": "on_epoch_begin", "on_epoch_end": "on_epoch_end",
    "on_train_batch_begin": "on_train_batch_begin", "on_train_batch_end": "on_train_batch_end",
    "on_batch_begin": "on_train_batch_begin", "on_batch_end": "on_train_batch_end",
}


class LambdaCallback(Callback):
    """A callback made of functions, as Keras's ``LambdaCallback``.

    Each argument is a function called at that point of ``fit`` with Keras's arguments:
    ``on_train_begin(logs)``, ``on_train_end(logs)``, ``on_epoch_begin(epoch, logs)``,
    ``on_epoch_end(epoch, logs)``, ``on_train_batch_begin(batch, logs)`` and
    ``on_train_batch_end(batch, logs)`` (also spelt ``on_batch_begin`` / ``on_batch_end``).
    Only the hooks given are called; without a batch hook it costs nothing per step.

    >>> LambdaCallback(on_epoch_end=lambda epoch, logs: print(epoch, logs["loss"]))
    """

    def __init__(self, **hooks: Callable[..., Any] | None) -> None:
        super().__init__()
        for argument, function in hooks.items():
            if argument not in _HOOKS:
                raise unknown_name("LambdaCallback argument", argument, _HOOKS)
            if function is None:
                continue
            if not callable(function):
                raise DeepfieldError(f"LambdaCallback: {argument} must be a function, got {function!r}")
            hook = _HOOKS[argument]
            if hook in vars(self):
                raise DeepfieldError(f"LambdaCallback: {argument.replace('train_', '')} and "
                                     f"{hook} are one hook; give one of them")
            setattr(self, hook, function)  # seen by CallbackList as an overridden hook
