"""GradientNormLogger: each layer's gradient L2 norm at every step, to see vanishing/exploding gradients.

A "layer" is every named module that owns trainable parameters directly (a Dense,
a Conv2D, a BatchNormalization...); its norm is ``sqrt(sum of squared gradient
entries over its own parameters)``. Per step this costs one ``torch._foreach_norm``
over all gradients and an ``index_add_`` on the device; the values come to the host
every ``sync_every`` steps and at each epoch end.

>>> logger = GradientNormLogger()
>>> model.fit(x, y, epochs=5, callbacks=[logger])
>>> plot_gradient_norms(logger.steps, logger.history(), "figures/gradient_norms.png")  # deepfield.plots
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.training.callbacks.base import Callback, Logs


def layer_parameters(model: nn.Module) -> tuple[list[str], list[torch.Tensor], list[int]]:
    """``(layer names, trainable parameters, layer index of each parameter)``, input to output."""
    names: list[str] = []
    params: list[torch.Tensor] = []
    owner: list[int] = []
    for qualified, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if own:
            owner.extend([len(names)] * len(own))
            params.extend(own)
            names.append(qualified or type(module).__name__)
    return names, params, owner


class GradientNormLogger(Callback):
    """Record per-layer gradient norms after every backward pass (before the optimiser step).

    Args:
        every: record one step in ``every`` (1: all of them).
        sync_every: recorded steps kept on the device before one copy to the host.

    After training: ``names`` (layers, input to output), ``steps`` ``(S,)`` (global
    step numbers, from 0) and ``norms`` ``(S, layers)``, also as ``history()``.
    """

    def __init__(self, every: int = 1, sync_every: int = 64):
        super().__init__()
        if not (arguments.is_integer(every) and arguments.is_integer(sync_every)):
            raise DeepfieldError(f"GradientNormLogger: every and sync_every must be >= 1, got {every}, {sync_every}")
        self.every, self.sync_every = int(every), int(sync_every)
        self.names: list[str] = []
        self._params: list[torch.Tensor] = []
        self._owner: list[int] = []
        self._owner_index: torch.Tensor | None = None
        self._pending: list[torch.Tensor] = []
        self._rows: list[np.ndarray] = []
        self._steps: list[int] = []
        self._step = 0

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.names, self._params, self._owner = layer_parameters(self.model)
        device = self._params[0].device if self._params else None
        self._owner_index = torch.tensor(self._owner, device=device)

    def on_after_backward(self, model: nn.Module) -> None:
        step, self._step = self._step, self._step + 1
        if step % self.every:
            return
        grads = [p.grad for p in self._params if p.grad is not None]
        if not grads:
            return
        owner = self._owner_index
        if len(grads) != len(self._params):  # some parameters got no gradient this step
            present = [i for i, p in zip(self._owner, self._params) if p.grad is not None]
            owner = torch.tensor(present, device=grads[0].device)
        squares = torch.stack(torch._foreach_norm(grads)).float().square()
        per_layer = squares.new_zeros(len(self.names)).index_add_(0, owner, squares).sqrt_()
        self._pending.append(per_layer)
        self._steps.append(step)
        if len(self._pending) >= self.sync_every:
            self._flush()

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self._flush()

    def on_train_end(self, logs: Logs | None = None) -> None:
        self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._rows.append(torch.stack(self._pending).cpu().numpy())
            self._pending = []

    @property
    def steps(self) -> np.ndarray:
        return np.asarray(self._steps[: sum(len(r) for r in self._rows)], dtype=np.int64)

    @property
    def norms(self) -> np.ndarray:
        """``(steps, layers)`` gradient L2 norms recorded so far."""
        return np.concatenate(self._rows) if self._rows else np.zeros((0, len(self.names)))

    def history(self) -> dict[str, np.ndarray]:
        """Layer name → its norms per recorded step."""
        norms = self.norms
        return {name: norms[:, j] for j, name in enumerate(self.names)}

    def state_dict(self) -> dict[str, Any]:
        self._flush()
        return {"step": self._step, "steps": self.steps.tolist(), "norms": torch.from_numpy(self.norms)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._step, self._steps = state["step"], list(state["steps"])
        norms = state["norms"].numpy()
        self._rows = [norms] if len(norms) else []
