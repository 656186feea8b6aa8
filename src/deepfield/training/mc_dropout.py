"""Monte-Carlo dropout: T network draws for every input in as few forward passes as memory allows.

Gal & Ghahramani (2016): keeping dropout on at prediction time samples networks from an
approximate posterior; the spread of their outputs is the network's (epistemic) uncertainty.
Only dropout is switched on (and the noise layers of :mod:`deepfield.models.noise`, each draw
with its own noise): batch normalisation stays in inference mode.

How the T draws are computed (:func:`sample_outputs`):

* **Shared masks.** Draw ``t`` of dropout layer ``k`` is one mask of a sample's shape,
  made by its own generator seeded from ``(seed, t, k)`` and used for every input: a draw is
  one sampled *network*, so the draws of a set of inputs are joint samples, and the result
  does not depend on how draws or inputs are grouped into forward passes (the batched result
  equals T separate passes, draw for draw; the first 10 of 50 draws are the draws of T=10).
* **Shared prefix.** The layers before the first dropout are deterministic, so they run once
  per input; a pre-hook on the first dropout layer repeats its input T times (draw-major),
  and only what follows runs on ``T × batch`` rows. A network whose dropout sits in its dense
  head pays for its convolutional trunk once. Where the repeated tensor meets one computed
  before it (a skip connection around dropout), a probe on two inputs notices and the input
  itself is repeated instead.
* **Memory.** A probe on one input measures each layer's output size per row before and
  after the repetition; the number of inputs per forward (and, when T rows of one input do
  not fit, the number of draws per forward) keeps the estimated activations under ``memory_mb``.

Variational layers (:mod:`deepfield.models.bayesian`) sample in the same passes, by local
reparameterisation: one weight draw per row (from the torch RNG seeded by ``seed``, restored
afterwards), so their draws are right for each input but not joint across inputs.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.models.bayesian import is_stochastic_layer
from deepfield.models.core import Dropout, SpatialDropout
from deepfield.models.noise import is_noise_layer

_ELEMENTWISE = (Dropout, nn.Dropout)
_CHANNELWISE = (SpatialDropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
ACTIVATION_FACTOR = 3
"""Estimated live activations of a no-grad forward, in units of its largest layer output."""


def dropout_rate(module: nn.Module) -> float:
    """The rate of a dropout layer (deepfield's or torch's), 0 for any other module."""
    if isinstance(module, (Dropout, SpatialDropout)):
        return module.rate
    return float(module.p) if isinstance(module, _ELEMENTWISE + _CHANNELWISE) else 0.0


def stochastic_layers(model: nn.Module) -> list[nn.Module]:
    """The dropout and noise layers (rate > 0) and variational layers of ``model``, in registration order."""
    return [m for m in model.modules() if dropout_rate(m) > 0 or is_noise_layer(m) or is_stochastic_layer(m)]


def _draw_generator(seed: int, draw: int, layer: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, draw, layer]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


@dataclass
class _Draws:
    """The masks of the network draws and where the current forward pass stands."""

    seed: int
    layers: dict[nn.Module, int]
    variational: list[nn.Module] = field(default_factory=list)
    draws: range = range(0)
    repeat_at_first: bool = True   # shared prefix: the first stochastic layer repeats its input
    repeated: bool = False         # set once the rows of this forward are draw-major repeated
    masks: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)
    sizes: list[tuple[bool, int]] | None = None  # probe: (after repetition?, numel per row) per layer output

    def mask(self, module: nn.Module, output: torch.Tensor) -> torch.Tensor:
        """``(T_c, 1, *mask_shape)``: this forward's draws' masks for dropout ``module`` (for a noise
        layer, its noise)."""
        index = self.layers[module]
        shape = tuple(output.shape[1:])
        if isinstance(module, _CHANNELWISE):
            shape = shape[:1] + (1,) * (len(shape) - 1)
        keep = 1.0 - dropout_rate(module)
        rows = []
        for t in self.draws:
            key = (t, index)
            if key not in self.masks:
                generator = _draw_generator(self.seed, t, index)
                if is_noise_layer(module):
                    noise_shape = module.noise_shape(output.shape)[1:]
                    self.masks[key] = module.sample(noise_shape, generator, torch.empty(0))
                else:
                    self.masks[key] = torch.bernoulli(torch.full(shape, keep), generator=generator).div_(keep)
            rows.append(self.masks[key])
        return torch.stack(rows).unsqueeze(1).to(output.device, output.dtype)


def _sample_weights(state: _Draws, on: bool) -> None:
    for module in state.variational:
        module.stochastic = on


def _repeat_rows(x: torch.Tensor, times: int) -> torch.Tensor:
    """``(B, ...)`` → ``(times·B, ...)`` draw-major: rows ``t·B .. t·B+B-1`` are copy ``t``."""
    return x.repeat(times, *([1] * (x.dim() - 1)))


@contextmanager
def mc_mode(model: nn.Module, seed: int = 0) -> Iterator[_Draws]:
    """``model`` in eval mode without gradients, its dropout layers applying the draws' masks.

    Yields the :class:`_Draws` state; set ``state.draws`` before each forward pass and
    ``state.repeated = False`` (see :func:`forward_draws`). Variational layers sample.
    Afterwards every module's mode and flags are back and the hooks are removed.
    """
    layers = stochastic_layers(model)
    if not layers:
        raise DeepfieldError(f"model {type(model).__name__} has no dropout or variational layer (nor a noise "
                             "layer): MC sampling needs one (its draws would all be the same network)")
    state = _Draws(seed=seed, layers={m: k for k, m in enumerate(layers)},
                   variational=[m for m in layers if is_stochastic_layer(m)])

    def repeat_input(module: nn.Module, inputs: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if state.repeated or not state.repeat_at_first:
            return None
        state.repeated = True
        return (_repeat_rows(inputs[0], len(state.draws)), *inputs[1:])

    def apply_mask(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        draws = len(state.draws)
        rows, masks = output.reshape(draws, -1, *output.shape[1:]), state.mask(module, output)
        masked = module.apply(rows, masks) if is_noise_layer(module) else rows * masks
        return masked.reshape(output.shape)

    def measure(module: nn.Module, inputs: Any, output: Any) -> None:
        if state.sizes is not None and isinstance(output, torch.Tensor) and output.dim() > 0 and output.shape[0]:
            state.sizes.append((state.repeated, output.numel() // output.shape[0]))

    handles = [m.register_forward_pre_hook(repeat_input) for m in layers]
    handles += [m.register_forward_hook(apply_mask) for m in layers if dropout_rate(m) > 0 or is_noise_layer(m)]
    handles += [m.register_forward_hook(measure) for m in model.modules()]
    was_training = model.training
    model.eval()
    _sample_weights(state, True)
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield state
    finally:
        for handle in handles:
            handle.remove()
        _sample_weights(state, False)
        model.train(was_training)


def forward_draws(model: Callable[[torch.Tensor], torch.Tensor], state: _Draws, x: torch.Tensor,
                  draws: range) -> torch.Tensor:
    """Draws ``draws`` of the network for the inputs ``x`` ``(B, ...)``: ``(len(draws), B, ...)``."""
    state.draws, state.repeated = draws, not state.repeat_at_first
    inputs = x if state.repeat_at_first else _repeat_rows(x, len(draws))
    out = model(inputs)
    if out.shape[0] != len(draws) * x.shape[0]:
        raise DeepfieldError(f"MC sampling: the model returned {out.shape[0]} rows for {len(draws)} draws of "
                             f"{x.shape[0]} inputs; its dropout must act on each input separately")
    return out.reshape(len(draws), x.shape[0], *out.shape[1:])


@dataclass(frozen=True)
class Plan:
    """How the draws are grouped: ``inputs`` per forward, ``draws`` per forward, shared prefix or not."""

    inputs: int
    draws: int
    shared_prefix: bool


def plan(model: Callable[[torch.Tensor], torch.Tensor], state: _Draws, example: torch.Tensor, samples: int,
         memory_mb: float) -> Plan:
    """Probe ``model`` on ``example`` (≥ 1 input) and choose the grouping (module doc)."""
    two = _repeat_rows(example[:1], 2) if len(example) < 2 else example[:2]
    _sample_weights(state, False)  # compare like with like: dropout masks are seeded, weight noise is not
    try:
        prefix_result = forward_draws(model, state, two, range(2))
    except (RuntimeError, DeepfieldError):
        shared = False
    else:
        state.repeat_at_first = False
        shared = torch.allclose(prefix_result, forward_draws(model, state, two, range(2)), rtol=1e-4, atol=1e-5)
    finally:
        _sample_weights(state, True)
    state.repeat_at_first = shared
    state.sizes = []
    try:
        forward_draws(model, state, example[:1], range(1))
        before = max((n for after, n in state.sizes if not after), default=0)
        after = max((n for after, n in state.sizes if after), default=0)
    finally:
        state.sizes = None
    if not shared:  # the whole network runs on the repeated rows
        before, after = 0, max(before, after)
    budget = memory_mb * 2**20 / (4 * ACTIVATION_FACTOR)  # float32 elements
    inputs = int(budget // max(samples * after + before, 1))
    if inputs >= 1:
        return Plan(inputs=min(inputs, len(example)), draws=samples, shared_prefix=shared)
    draws = int(max(budget - before, 0) // max(after, 1))
    return Plan(inputs=1, draws=max(1, min(draws, samples)), shared_prefix=shared)


def sample_outputs(model: nn.Module, batches: Iterable[torch.Tensor], samples: int, *, seed: int = 0,
                   memory_mb: float = 512.0) -> torch.Tensor:
    """``(samples, N, ...)`` outputs of ``samples`` network draws for every input of ``batches``.

    Args:
        model: the network (any ``nn.Module`` with at least one dropout or variational layer).
        batches: input batches ``(B, ...)`` on the model's device, in order; a forward pass
            takes at most one batch's inputs (fewer when memory says so).
        samples: T, the number of network draws.
        seed: fixes the draws (masks and variational noise); the global RNG is left untouched.
        memory_mb: the activation budget of one forward pass (module doc).
    """
    samples = arguments.integer("mc_samples", samples, expected="a positive number of draws")
    outputs: list[torch.Tensor] = []
    with mc_mode(model, seed) as state:
        grouping: Plan | None = None
        for x in batches:
            if grouping is None:
                grouping = plan(model, state, x, samples, memory_mb)
                state.repeat_at_first = grouping.shared_prefix
            for chunk in x.split(grouping.inputs):
                starts = range(0, samples, grouping.draws)
                parts = [forward_draws(model, state, chunk, range(t, min(t + grouping.draws, samples)))
                         for t in starts]
                outputs.append(parts[0] if len(parts) == 1 else torch.cat(parts))
    if not outputs:
        raise DeepfieldError("MC sampling: no inputs")
    return torch.cat(outputs, dim=1)



# -- what the draws say ------------------------------------------------------------------------

KINDS = ("auto", "probabilities", "values", "gaussian")


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy in nats over the last axis of class probabilities ``(..., K)`` (0 log 0 = 0)."""
    return torch.special.entr(p).sum(dim=-1)


def two_class(p: torch.Tensor) -> torch.Tensor:
    """Class probabilities ``(..., K)``: a binary model's ``(..., 1)`` probability ``p`` becomes ``[1 − p, p]``."""
    return torch.cat([1.0 - p, p], dim=-1) if p.shape[-1] == 1 else p


def output_kind(samples: torch.Tensor, kind: str) -> str:
    """``kind``, with ``"auto"`` resolved: probabilities when every row is a softmax (≥ 0, sums to 1)."""
    if kind not in KINDS:
        raise DeepfieldError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind != "auto":
        return kind
    rows = samples.reshape(-1, samples.shape[-1]) if samples.dim() > 2 else samples.reshape(-1, 1)
    softmax = rows.shape[1] > 1 and bool((rows >= 0).all()) and bool(torch.allclose(rows.sum(1), rows.new_ones(1),
                                                                                     atol=1e-4))
    return "probabilities" if softmax else "values"


def _host(t: torch.Tensor) -> np.ndarray:
    return t.float().cpu().numpy()


@dataclass
class MCPrediction:
    """A prediction with its uncertainty, from ``T`` network draws (MC dropout or ensemble members).

    Attributes (numpy, on the host; ``N`` inputs):
        kind: ``"probabilities"`` (classification), ``"values"`` (regression) or
            ``"gaussian"`` (a heteroscedastic head: mean | log-variance per output, split on the
            outputs' axis 1: ``(N, 2D)`` rows or ``(N, 2C, H, W)`` images, means first).
        mean: ``(N, ...)`` the mean over draws: class probabilities (a binary model's
            ``(N, 1)`` stays so), values, or the mean part of a Gaussian head ``(N, D)`` / ``(N, C, H, W)``.
        std: ``(N, ...)`` the spread of the draws (the epistemic part), same shape as ``mean``.
        entropy: ``(N,)`` predictive entropy of ``mean`` in nats (probabilities only).
        mutual_information: ``(N,)`` ``entropy − mean_t H[p_t]``, the epistemic part of
            the entropy (probabilities only).
        aleatoric: ``(N, D)`` (or ``(N, C, H, W)``) ``sqrt(mean_t σ_t²)`` from the log-variance head
            (gaussian only).
        total: like ``aleatoric``, ``sqrt(std² + aleatoric²)`` (gaussian); ``std`` for values.
        samples: ``(T, N, ...)`` the draws themselves, when asked for.
    """

    kind: str
    mean: np.ndarray
    std: np.ndarray
    entropy: np.ndarray | None = None
    mutual_information: np.ndarray | None = None
    aleatoric: np.ndarray | None = None
    total: np.ndarray | None = None
    samples: np.ndarray | None = None

    @classmethod
    def from_samples(cls, samples: torch.Tensor, kind: str = "auto", keep_samples: bool = False) -> MCPrediction:
        """Summarise draws ``(T, N, ...)`` (see the class doc for ``kind``)."""
        samples = torch.as_tensor(samples).double()
        kind = output_kind(samples, kind)
        kept = samples.float().cpu().numpy() if keep_samples else None
        if kind == "gaussian":
            if samples.dim() < 3 or samples.shape[2] % 2:
                raise DeepfieldError(f"a Gaussian head outputs (N, 2D) or (N, 2C, H, W) = mean | log-variance; got "
                                     f"draws of shape {tuple(samples.shape[1:])}")
            means, log_var = samples.chunk(2, dim=2)  # each output's axis 1: rows (N, 2D), images (N, 2C, H, W)
            epistemic = means.std(dim=0, unbiased=False)
            aleatoric = log_var.exp().mean(dim=0).sqrt()
            return cls(kind, _host(means.mean(0)), _host(epistemic), aleatoric=_host(aleatoric),
                       total=_host(torch.sqrt(epistemic**2 + aleatoric**2)), samples=kept)
        mean, std = samples.mean(0), samples.std(dim=0, unbiased=False)
        if kind == "values":
            return cls(kind, _host(mean), _host(std), total=_host(std), samples=kept)
        classes = two_class(samples if samples.dim() == 3 else samples.unsqueeze(-1))
        predictive = entropy(classes.mean(0))
        information = (predictive - entropy(classes).mean(0)).clamp_min(0.0)
        return cls(kind, _host(mean), _host(std), entropy=_host(predictive), mutual_information=_host(information),
                   samples=kept)
