"""``Bidirectional``: a recurrent layer run forwards and backwards over a sequence, Keras 3's."""
from __future__ import annotations

from typing import Any

import torch

from deepfield.errors import DeepfieldError
from deepfield.models.base import Layer, layer_from_config, snake_case
from deepfield.models.masking import attach, mask_of
from deepfield.models.recurrent import _Recurrent

MERGE_MODES = ("concat", "sum", "ave", "mul", None)


def _copy(layer: Layer | dict[str, Any], name: str, go_backwards: bool) -> _Recurrent:
    """A fresh, unbuilt recurrent layer from ``layer``'s config (as Keras copies it), renamed."""
    spec = layer if isinstance(layer, dict) else {"class_name": type(layer).__name__, "config": layer.get_config()}
    cls = Layer.registry.lookup(spec.get("class_name"))
    if not issubclass(cls, _Recurrent):
        raise DeepfieldError(f"Bidirectional wraps a recurrent layer (SimpleRNN, LSTM, GRU), got {cls.__name__}")
    config = dict(spec.get("config", {}))
    config.update(name=name, go_backwards=go_backwards)
    return layer_from_config({"class_name": spec.get("class_name"), "config": config})  # type: ignore[return-value]


class Bidirectional(Layer):
    """Runs ``layer`` over the sequence and a copy of it backwards, and merges the two outputs.

    Input ``(N, T, F)`` as the recurrent layers take it (a spectrum ``(N, C, L)`` needs
    ``Permute((2, 1))`` first). The two layers are fresh copies of ``layer``'s config (Keras does the
    same): ``forward_layer`` (named ``forward_<name>``) and ``backward_layer`` (``backward_<name>``, with
    ``go_backwards`` flipped; or a copy of ``backward_layer`` when given), each with its own weights in
    Keras's layout. With ``return_sequences`` the backward outputs are turned back to the input's time order,
    and masked steps give 0 (Keras's ``zero_output_for_mask``). ``merge_mode``: ``"concat"`` (features
    ``2 units``), ``"sum"``, ``"ave"``, ``"mul"``, or ``None`` for the tuple ``(forward, backward)``.
    ``return_state`` appends the forward layer's states, then the backward layer's. A mask (``Masking``,
    ``Embedding(mask_zero=True)``, ``mask=``) reaches both layers.
    """

    def __init__(self, layer: Layer | dict[str, Any], merge_mode: str | None = "concat",
                 backward_layer: Layer | dict[str, Any] | None = None, name: str | None = None,
                 input_shape: tuple[int, ...] | None = None):
        super().__init__(name=name, input_shape=input_shape)
        if merge_mode not in MERGE_MODES:
            raise DeepfieldError(f"Bidirectional merge_mode {merge_mode!r}; expected one of: "
                                 f"{', '.join(map(str, MERGE_MODES))}")
        self.merge_mode = merge_mode
        inner = layer.get("config", {}) if isinstance(layer, dict) else layer.get_config()
        base = inner.get("name") or snake_case(layer.get("class_name", "") if isinstance(layer, dict)
                                               else type(layer).__name__)
        go_backwards = bool(inner.get("go_backwards", False))
        self.forward_layer = _copy(layer, f"forward_{base}", go_backwards)
        self.backward_layer = _copy(backward_layer if backward_layer is not None else layer, f"backward_{base}",
                                    not go_backwards)
        self.return_sequences = self.forward_layer.return_sequences
        self.return_state = self.forward_layer.return_state
        for inner_layer in (self.forward_layer, self.backward_layer):
            inner_layer.zero_output_for_mask = self.return_sequences

    def build(self, input_shape: tuple[int, ...]) -> None:
        # Both layers now, as Keras builds them, so their weights exist before any pass (a functional
        # model's shape pass runs on the meta device and must not be the one that creates them).
        for inner in (self.forward_layer, self.backward_layer):
            inner.build_for(input_shape)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                initial_state: list[torch.Tensor] | tuple[torch.Tensor, ...] | None = None) -> Any:
        """``x`` (N, T, F); ``initial_state``: the forward layer's states, then the backward layer's."""
        if mask is None:
            mask = mask_of(x)
        forward_state = backward_state = None
        if initial_state is not None:
            half = len(initial_state) // 2
            forward_state, backward_state = list(initial_state[:half]), list(initial_state[half:])
        y = self.forward_layer(x, mask=mask, initial_state=forward_state)
        y_rev = self.backward_layer(x, mask=mask, initial_state=backward_state)
        states: tuple[torch.Tensor, ...] = ()
        if self.return_state:
            states = (*y[1:], *y_rev[1:])
            y, y_rev = y[0], y_rev[0]
        if self.return_sequences:
            y_rev = y_rev.flip(1)
        merged: Any
        if self.merge_mode == "concat":
            merged = (torch.cat([y, y_rev], dim=-1),)
        elif self.merge_mode == "sum":
            merged = (y + y_rev,)
        elif self.merge_mode == "ave":
            merged = ((y + y_rev) / 2,)
        elif self.merge_mode == "mul":
            merged = (y * y_rev,)
        else:
            merged = (y, y_rev)
        if mask is not None and self.return_sequences:
            for sequence in merged:
                attach(sequence, mask)  # passed on, as Keras does
        out = merged + states
        return out[0] if len(out) == 1 else out
