"""Recurrent layers with Keras 3's arguments, weights and numbers: ``SimpleRNN``, ``LSTM``, ``GRU``.

SEQUENCE LAYOUT: the recurrent layers take ``(N, T, F)``: samples, time steps, features, as Keras and
``torch.nn.LSTM(batch_first=True)`` do. This is the one place in deepfield where the feature axis is
last: a light curve or spectrum stored channels first, ``(N, C, L)`` (C bands, L epochs or wavelength
bins), is transposed before the recurrent layer with ``Permute((2, 1))`` (or ``x.transpose(1, 2)``), so the
L steps are the time axis and the C bands the features. ``Embedding`` and ``Masking`` give ``(N, T, F)``
already. Outputs are ``(N, units)`` (the last step) or, with ``return_sequences``, ``(N, T, units)``; a
``Dense`` after them acts on the last axis, per time step, as in Keras.

WEIGHTS: stored exactly as Keras 3 stores them (no transposition, Keras's gate order), so a Keras
layer's weights copy over unchanged:

=========  ==========================  ==============================  ================================
layer      ``kernel``                  ``recurrent_kernel``            ``bias``
=========  ==========================  ==============================  ================================
SimpleRNN  (F, units)                  (units, units)                  (units,)
LSTM       (F, 4 units): i, f, c, o    (units, 4 units): i, f, c, o    (4 units,): i, f, c, o
GRU        (F, 3 units): z, r, h       (units, 3 units): z, r, h       (2, 3 units) with ``reset_after``
                                                                       (row 0 input, row 1 recurrent);
                                                                       (3 units,) without
=========  ==========================  ==============================  ================================

(i input, f forget, c/h candidate, o output, z update, r reset.) The forward pass uses PyTorch's fused
kernels (``torch.lstm``, ``torch.gru``, ``torch.rnn_tanh``/``rnn_relu``, the functions behind
``torch.nn.LSTM`` and cuDNN) wherever their math is Keras's: tanh/sigmoid activations (tanh or relu for
``SimpleRNN``), GRU with ``reset_after=True`` (PyTorch's GRU is that variant; its gate order r, z, n
is Keras's z, r, h reordered at each call), no recurrent dropout while training. LSTM's gate order i, f, g, o
equals Keras's i, f, c, o; Keras's one bias is PyTorch's input bias with a zero recurrent bias. Other
settings run a step loop over time written here with the same math (a Python loop of T steps).

MASKS: a mask ``(N, T)`` (True = data) from ``Masking``, ``Embedding(mask_zero=True)`` or ``mask=``
makes the layer skip the masked steps as Keras does: the state is carried over them unchanged, the
output at a masked step repeats the previous output (0 before the first data step), and the last output
and the returned states are those of the last data step. The fused kernels do this too: each
sequence's data steps are moved to its front, run, and the outputs scattered back, so a mask costs a
sort, a gather and a scatter, not a step loop (an LSTM returning its states runs the data steps as a
packed sequence, which PyTorch's CPU kernel runs 3 to 5 times slower than a plain batch).

ARGUMENTS: Keras 3's names and defaults. ``dropout`` (on the inputs) and ``recurrent_dropout`` (on the
state entering the recurrent product) draw one mask per sequence, kept over time, while training only
(``seed`` seeds them). ``unroll`` and ``use_cudnn`` are accepted so Keras configs load, and change
nothing (the numbers are the same); ``stateful=True`` is refused. ``kernel_regularizer``,
``recurrent_regularizer``, ``bias_regularizer``, ``activity_regularizer`` (on the output, and on the returned
states too, as Keras), ``kernel_constraint``, ``recurrent_constraint``, ``bias_constraint``: Keras 3's, on the
weights as stored (Keras's layout, so a constraint's axes mean what they mean in Keras).

With ``return_sequences`` the output sequence carries the input's mask on, as in Keras, so stacked
recurrent layers (``Embedding(mask_zero=True)``, ``LSTM(return_sequences=True)``, ``LSTM``) all skip the
padding.

``go_backwards`` reads the sequence from its end; as in Keras, the returned sequence is in the order
processed (reversed). ``return_state`` returns ``(output, h)`` (``(output, h, c)`` for LSTM), a tuple.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.models import activations, batch_noise, constraints, initializers, regularizers
from deepfield.models.base import Layer
from deepfield.models.core import keep_mask
from deepfield.models.masking import attach, mask_of

Initializer = str | initializers.Initializer | dict
PENALTIES = ("kernel_regularizer", "recurrent_regularizer", "bias_regularizer", "activity_regularizer",
             "kernel_constraint", "recurrent_constraint", "bias_constraint")
"""Keras 3's regularisers and constraints of a recurrent layer, as each layer's keyword arguments."""


class _Recurrent(Layer):
    """The common part: weights, dropout, masks, the fused and the looped pass. Subclasses set ``gates``."""

    gates: ClassVar[int]

    def __init__(self, units: int, activation: str | None, recurrent_activation: str | None, use_bias: bool,
                 kernel_initializer: Initializer, recurrent_initializer: Initializer,
                 bias_initializer: Initializer, dropout: float, recurrent_dropout: float, seed: int | None,
                 return_sequences: bool, return_state: bool, go_backwards: bool, stateful: bool,
                 zero_output_for_mask: bool, name: str | None, input_shape: tuple[int, ...] | None,
                 penalties: dict[str, Any]):
        super().__init__(name=name, input_shape=input_shape)
        kind = type(self).__name__
        # as Keras: the weights are stored in Keras's layout, so constraints act on them as they are (no layout)
        regularizers.attach(self, {"kernel": penalties["kernel_regularizer"],
                                   "recurrent_kernel": penalties["recurrent_regularizer"],
                                   "bias": penalties["bias_regularizer"]}, penalties["activity_regularizer"])
        constraints.attach(self, {"kernel": (penalties["kernel_constraint"], None),
                                  "recurrent_kernel": (penalties["recurrent_constraint"], None),
                                  "bias": (penalties["bias_constraint"], None)})
        self.units = arguments.integer(f"{kind} units", units)
        if stateful:
            raise DeepfieldError(f"{kind}: stateful=True is not supported (each batch starts from zero states)")
        self.dropout = arguments.fraction(f"{kind} dropout", dropout)
        self.recurrent_dropout = arguments.fraction(f"{kind} recurrent_dropout", recurrent_dropout)
        self._names = (str(activation or "linear").lower(), str(recurrent_activation or "linear").lower())
        self.activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.seed = None if seed is None else arguments.integer(f"{kind} seed", seed, minimum=0)
        self._generator: torch.Generator | None = None
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.kernel: nn.Parameter | None = None
        self.recurrent_kernel: nn.Parameter | None = None
        self.bias: nn.Parameter | None = None

    # -- weights ------------------------------------------------------------------
    def _check_layout(self, sample_shape: tuple[int, ...]) -> None:
        if len(sample_shape) != 2:
            got = ", ".join(["N", *map(str, sample_shape)])
            raise DeepfieldError(f"{self.label}: expects sequences (N, T, F) (time steps, then features), got "
                                 f"({got}); a spectrum or light curve (N, C, L) needs Permute((2, 1)) first")

    def build(self, input_shape: tuple[int, ...]) -> None:
        self._check_layout(input_shape)
        features, width = input_shape[-1], self.gates * self.units
        self.kernel = nn.Parameter(torch.empty(features, width))
        self.kernel_initializer(self.kernel, features, width)
        self.recurrent_kernel = nn.Parameter(torch.empty(self.units, width))
        self.recurrent_initializer(self.recurrent_kernel, self.units, width)
        if self.use_bias:
            self.bias = nn.Parameter(self._initial_bias())

    def _initial_bias(self) -> torch.Tensor:
        bias = torch.empty(self.gates * self.units)
        self.bias_initializer(bias, self.gates * self.units, self.gates * self.units)
        return bias

    # -- the pass -----------------------------------------------------------------
    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                initial_state: list[torch.Tensor] | tuple[torch.Tensor, ...] | None = None) -> Any:
        """``x`` (N, T, F); ``mask`` (N, T) bool, by default the one ``x`` carries; ``initial_state``: a list of
        (N, units) tensors (h, and c for LSTM), zeros by default."""
        if x.dim() != 3:
            self._check_layout(tuple(x.shape[1:]))
        if mask is None:
            mask = mask_of(x)
        given_mask, n = mask, x.shape[0]
        states = (list(initial_state) if initial_state is not None
                  else [x.new_zeros(n, self.units) for _ in range(self._state_count)])
        if len(states) != self._state_count:
            raise DeepfieldError(f"{self.label}: initial_state takes {self._state_count} tensors, got {len(states)}")
        if self.training and 0 < self.dropout < 1:
            x = x * self._dropout_mask((n, 1, x.shape[2]), self.dropout, x)
        if self.go_backwards:
            x = x.flip(1)
            mask = None if mask is None else mask.flip(1)
        if mask is not None:
            mask = mask.to(device=x.device, dtype=torch.bool)
        recurrent_dropout = self.training and 0 < self.recurrent_dropout < 1
        if self._fused_kernel() is not None and not recurrent_dropout:
            sequences, states = self._fused(x, mask, states)
        else:
            sequences, states = self._loop(x, mask, states)
        if mask is not None and self.zero_output_for_mask:
            sequences = sequences * mask.unsqueeze(-1).to(sequences.dtype)
        output = sequences if self.return_sequences else sequences[:, -1]
        if given_mask is not None and self.return_sequences:
            attach(output, given_mask)  # as Keras, the sequence passes the mask on (to a stacked recurrent layer)
        return (output, *states) if self.return_state else output

    def _dropout_mask(self, shape: tuple[int, ...], rate: float, like: torch.Tensor) -> torch.Tensor:
        """A dropout mask of ``shape`` scaled by 1 / (1 - rate), one per sequence (Keras's: fixed over time),
        drawn on the CPU from the layer's generator when it has a ``seed``, else as ``Dropout`` draws."""
        if self.seed is None:
            keep = batch_noise.draw(shape, lambda s, gen: keep_mask(s, rate, gen), torch.device("cpu"))
        else:
            if self._generator is None:
                self._generator = torch.Generator().manual_seed(self.seed)
            keep = keep_mask(shape, rate, self._generator)
        return keep.to(device=like.device, dtype=like.dtype) / (1.0 - rate)

    # -- the fused kernels ----------------------------------------------------------
    _state_count: ClassVar[int] = 1

    def _fused_kernel(self) -> Any:
        """The torch function computing this layer's math, or ``None``."""
        raise NotImplementedError

    def _torch_weights(self) -> list[torch.Tensor]:
        """``[w_ih (G*U, F), w_hh (G*U, U), b_ih, b_hh]`` in PyTorch's layout and gate order."""
        weights = [self.kernel.t(), self.recurrent_kernel.t()]
        if self.use_bias:
            weights += [self.bias, torch.zeros_like(self.bias)]
        return weights

    def _fused(self, x: torch.Tensor, mask: torch.Tensor | None,
               states: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        kernel, weights = self._fused_kernel(), self._torch_weights()
        hx = [s.unsqueeze(0) for s in states]
        hx_arg: Any = tuple(hx) if len(hx) > 1 else hx[0]
        flags = (self.use_bias, 1, 0.0, self.training, False)  # biases, layers, dropout, train, bidirectional
        if mask is None:
            out, *final = kernel(x, hx_arg, weights, *flags, True)
            return out, [s[0] for s in final]
        # Keras skips masked steps: move each sequence's data steps to its front (stable order), run them,
        # then give every step the output of the last data step up to it. The kernel runs on the whole
        # compacted batch (its outputs up to each sequence's length are causal, so exact); only the LSTM's
        # cell state at the last data step is not an output: then the data steps run packed (3 to 5 times
        # slower on the CPU, PyTorch's packed kernel steps through the varying batch sizes).
        n, steps, features = x.shape
        order = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices
        compact = x.gather(1, order.unsqueeze(-1).expand(n, steps, features))
        lengths = mask.sum(1)
        last_data = mask.cumsum(1) - 1  # (N, T): index in `front` of the last data step so far, -1 before any
        if len(hx) == 1 or not self.return_state:
            front, *_ = kernel(compact, hx_arg, weights, *flags, True)
            final = [front.gather(1, (lengths - 1).clamp(min=0).view(n, 1, 1).expand(n, 1, self.units))[:, 0]]
            final += states[1:]  # an LSTM's cell state stands unchanged: it is not returned (no return_state)
        else:
            packed = pack_padded_sequence(compact, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
            hx_sorted = [h.index_select(1, packed.sorted_indices) for h in hx]
            out, *packed_final = kernel(packed.data, packed.batch_sizes, tuple(hx_sorted), weights, *flags)
            front, _ = pad_packed_sequence(PackedSequence(out, packed.batch_sizes, packed.sorted_indices,
                                                          packed.unsorted_indices), batch_first=True,
                                           total_length=steps)
            final = [f.index_select(1, packed.unsorted_indices)[0] for f in packed_final]
        sequences = front.gather(1, last_data.clamp(min=0).unsqueeze(-1).expand(n, steps, self.units))
        sequences = sequences * (last_data >= 0).unsqueeze(-1).to(sequences.dtype)
        empty = (lengths == 0).unsqueeze(-1)  # a sequence without data keeps its initial states
        return sequences, [torch.where(empty, s, f) for s, f in zip(states, final)]

    # -- the step loop ----------------------------------------------------------------
    def _project(self, x: torch.Tensor) -> torch.Tensor:
        """The input part of every step at once: ``x @ kernel (+ input bias)``, (N, T, G*U)."""
        projected = x @ self.kernel
        return projected + self.bias if self.use_bias else projected

    def _step(self, projected: torch.Tensor, states: list[torch.Tensor],
              recurrent_mask: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One step: ``projected`` (N, G*U) the input part, ``states`` at t - 1 -> output, states at t."""
        raise NotImplementedError

    def _loop(self, x: torch.Tensor, mask: torch.Tensor | None,
              states: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        projected = self._project(x)
        recurrent_mask = None
        if self.training and 0 < self.recurrent_dropout < 1:
            recurrent_mask = self._dropout_mask((x.shape[0], self.units), self.recurrent_dropout, x)
        outputs, previous = [], x.new_zeros(x.shape[0], self.units)
        for t in range(x.shape[1]):
            output, new_states = self._step(projected[:, t], states, recurrent_mask)
            if mask is not None:
                keep = mask[:, t].unsqueeze(-1)
                output = torch.where(keep, output, previous)
                new_states = [torch.where(keep, new, old) for new, old in zip(new_states, states)]
            outputs.append(output)
            previous, states = output, new_states
        return torch.stack(outputs, 1), states


def _dropped(h: torch.Tensor, recurrent_mask: torch.Tensor | None) -> torch.Tensor:
    return h if recurrent_mask is None else h * recurrent_mask


class SimpleRNN(_Recurrent):
    """Fully connected recurrence: ``h_t = activation(x_t @ kernel + bias + h_{t-1} @ recurrent_kernel)``.

    Input ``(N, T, F)`` (see the module docstring: a spectrum ``(N, C, L)`` needs ``Permute((2, 1))``);
    output ``(N, units)``, ``(N, T, units)`` with ``return_sequences``. Weights as Keras: ``kernel (F, units)``,
    ``recurrent_kernel (units, units)``, ``bias (units,)``. Fused kernel for tanh and relu.
    """

    gates = 1

    def __init__(self, units: int, activation: str | None = "tanh", use_bias: bool = True,
                 kernel_initializer: Initializer = "glorot_uniform", recurrent_initializer: Initializer = "orthogonal",
                 bias_initializer: Initializer = "zeros", dropout: float = 0.0, recurrent_dropout: float = 0.0,
                 return_sequences: bool = False, return_state: bool = False, go_backwards: bool = False,
                 stateful: bool = False, unroll: bool = False, seed: int | None = None,
                 zero_output_for_mask: bool = False, name: str | None = None,
                 input_shape: tuple[int, ...] | None = None, kernel_regularizer: regularizers.Spec = None,
                 recurrent_regularizer: regularizers.Spec = None, bias_regularizer: regularizers.Spec = None,
                 activity_regularizer: regularizers.Spec = None, kernel_constraint: constraints.Spec = None,
                 recurrent_constraint: constraints.Spec = None, bias_constraint: constraints.Spec = None):
        super().__init__(units, activation, None, use_bias, kernel_initializer, recurrent_initializer,
                         bias_initializer, dropout, recurrent_dropout, seed, return_sequences, return_state,
                         go_backwards, stateful, zero_output_for_mask, name, input_shape,
                         {k: v for k, v in locals().items() if k in PENALTIES})

    def _fused_kernel(self) -> Any:
        return {"tanh": torch.rnn_tanh, "relu": torch.rnn_relu}.get(self._names[0])

    def _step(self, projected: torch.Tensor, states: list[torch.Tensor],
              recurrent_mask: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h = self.activation(projected + _dropped(states[0], recurrent_mask) @ self.recurrent_kernel)
        return h, [h]


class LSTM(_Recurrent):
    """Long short-term memory (Hochreiter & Schmidhuber 1997), Keras 3's.

    ``i, f, o = recurrent_activation(...)``, ``c_t = f * c_{t-1} + i * activation(x_t K_c + h_{t-1} R_c + b_c)``,
    ``h_t = o * activation(c_t)``. Input ``(N, T, F)`` (a spectrum ``(N, C, L)`` needs ``Permute((2, 1))``);
    output ``(N, units)``, ``(N, T, units)`` with ``return_sequences``; ``return_state`` adds ``h`` and ``c``
    ``(N, units)``. Weights as Keras, gates i, f, c, o: ``kernel (F, 4 units)``, ``recurrent_kernel
    (units, 4 units)``, ``bias (4 units,)``; ``unit_forget_bias`` starts the forget gate's bias at 1.
    """

    gates = 4
    _state_count = 2

    def __init__(self, units: int, activation: str | None = "tanh", recurrent_activation: str | None = "sigmoid",
                 use_bias: bool = True, kernel_initializer: Initializer = "glorot_uniform",
                 recurrent_initializer: Initializer = "orthogonal", bias_initializer: Initializer = "zeros",
                 unit_forget_bias: bool = True, dropout: float = 0.0, recurrent_dropout: float = 0.0,
                 seed: int | None = None, return_sequences: bool = False, return_state: bool = False,
                 go_backwards: bool = False, stateful: bool = False, unroll: bool = False,
                 use_cudnn: str | bool = "auto", zero_output_for_mask: bool = False, name: str | None = None,
                 input_shape: tuple[int, ...] | None = None, kernel_regularizer: regularizers.Spec = None,
                 recurrent_regularizer: regularizers.Spec = None, bias_regularizer: regularizers.Spec = None,
                 activity_regularizer: regularizers.Spec = None, kernel_constraint: constraints.Spec = None,
                 recurrent_constraint: constraints.Spec = None, bias_constraint: constraints.Spec = None):
        self.unit_forget_bias = bool(unit_forget_bias)
        super().__init__(units, activation, recurrent_activation, use_bias, kernel_initializer,
                         recurrent_initializer, bias_initializer, dropout, recurrent_dropout, seed,
                         return_sequences, return_state, go_backwards, stateful, zero_output_for_mask, name,
                         input_shape, {k: v for k, v in locals().items() if k in PENALTIES})

    def _initial_bias(self) -> torch.Tensor:
        bias = super()._initial_bias()
        if self.unit_forget_bias:  # Keras: bias_initializer for i, then ones for f, then c, o
            bias[self.units:2 * self.units] = 1.0
        return bias

    def _fused_kernel(self) -> Any:
        return torch.lstm if self._names == ("tanh", "sigmoid") else None

    def _step(self, projected: torch.Tensor, states: list[torch.Tensor],
              recurrent_mask: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h, c = states
        i, f, candidate, o = (projected + _dropped(h, recurrent_mask) @ self.recurrent_kernel).chunk(4, dim=-1)
        gate = self.recurrent_activation
        c = gate(f) * c + gate(i) * self.activation(candidate)
        h = gate(o) * self.activation(c)
        return h, [h, c]


class GRU(_Recurrent):
    """Gated recurrent unit (Cho et al. 2014), Keras 3's, by default with ``reset_after=True``.

    ``z, r = recurrent_activation(...)``; with ``reset_after``: ``hh = activation(x_t K_h + b_h + r * (h_{t-1}
    R_h + b'_h))`` (PyTorch's and cuDNN's GRU); without: ``hh = activation(x_t K_h + b_h + (r * h_{t-1}) R_h)``;
    ``h_t = z * h_{t-1} + (1 - z) * hh``. Input ``(N, T, F)`` (a spectrum ``(N, C, L)`` needs
    ``Permute((2, 1))``); output ``(N, units)``, ``(N, T, units)`` with ``return_sequences``; ``return_state``
    adds ``h``. Weights as Keras, gates z, r, h: ``kernel (F, 3 units)``, ``recurrent_kernel (units, 3 units)``,
    ``bias (2, 3 units)`` (input bias, recurrent bias) with ``reset_after``, ``(3 units,)`` without.
    """

    gates = 3

    def __init__(self, units: int, activation: str | None = "tanh", recurrent_activation: str | None = "sigmoid",
                 use_bias: bool = True, kernel_initializer: Initializer = "glorot_uniform",
                 recurrent_initializer: Initializer = "orthogonal", bias_initializer: Initializer = "zeros",
                 dropout: float = 0.0, recurrent_dropout: float = 0.0, seed: int | None = None,
                 return_sequences: bool = False, return_state: bool = False, go_backwards: bool = False,
                 stateful: bool = False, unroll: bool = False, reset_after: bool = True,
                 use_cudnn: str | bool = "auto", zero_output_for_mask: bool = False, name: str | None = None,
                 input_shape: tuple[int, ...] | None = None, kernel_regularizer: regularizers.Spec = None,
                 recurrent_regularizer: regularizers.Spec = None, bias_regularizer: regularizers.Spec = None,
                 activity_regularizer: regularizers.Spec = None, kernel_constraint: constraints.Spec = None,
                 recurrent_constraint: constraints.Spec = None, bias_constraint: constraints.Spec = None):
        self.reset_after = bool(reset_after)
        super().__init__(units, activation, recurrent_activation, use_bias, kernel_initializer,
                         recurrent_initializer, bias_initializer, dropout, recurrent_dropout, seed,
                         return_sequences, return_state, go_backwards, stateful, zero_output_for_mask, name,
                         input_shape, {k: v for k, v in locals().items() if k in PENALTIES})

    def _initial_bias(self) -> torch.Tensor:
        if not self.reset_after:
            return super()._initial_bias()
        bias = torch.empty(2, 3 * self.units)
        self.bias_initializer(bias, 2, 3 * self.units)  # Keras's fans of the (2, 3 units) bias
        return bias

    def _fused_kernel(self) -> Any:
        return torch.gru if self.reset_after and self._names == ("tanh", "sigmoid") else None

    def _torch_weights(self) -> list[torch.Tensor]:
        z, r, h = slice(0, self.units), slice(self.units, 2 * self.units), slice(2 * self.units, None)

        def reorder(w: torch.Tensor) -> torch.Tensor:  # Keras z, r, h -> PyTorch r, z, n along the last axis
            return torch.cat([w[..., r], w[..., z], w[..., h]], dim=-1)

        weights = [reorder(self.kernel).t(), reorder(self.recurrent_kernel).t()]
        return weights + ([*reorder(self.bias)] if self.use_bias else [])

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        projected = x @ self.kernel
        if not self.use_bias:
            return projected
        return projected + (self.bias[0] if self.reset_after else self.bias)

    def _step(self, projected: torch.Tensor, states: list[torch.Tensor],
              recurrent_mask: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h = states[0]
        dropped = _dropped(h, recurrent_mask)
        x_z, x_r, x_h = projected.chunk(3, dim=-1)
        if self.reset_after:
            inner = dropped @ self.recurrent_kernel
            if self.use_bias:
                inner = inner + self.bias[1]
            r_z, r_r, r_h = inner.chunk(3, dim=-1)
        else:
            r_z, r_r = (dropped @ self.recurrent_kernel[:, :2 * self.units]).chunk(2, dim=-1)
        z = self.recurrent_activation(x_z + r_z)
        r = self.recurrent_activation(x_r + r_r)
        if self.reset_after:
            candidate = self.activation(x_h + r * r_h)
        else:
            candidate = self.activation(x_h + (r * dropped) @ self.recurrent_kernel[:, 2 * self.units:])
        h = z * h + (1 - z) * candidate
        return h, [h]
