"""Losses by Keras name: callables ``loss(y_pred, y_true) -> scalar tensor``.

Argument order: deepfield's loss objects and any torch ``nn.Module`` loss take torch's
order (prediction first, ``(input, target)``); a plain Python function of yours is
written the Keras way, ``f(y_true, y_pred)``, and :func:`get` wraps it so
(:class:`KerasFunction`). Every loss is averaged over the
batch as Keras does (for per-sample losses summed over outputs, such as the
cross-entropies and ``half_sse``, the sum is taken first).

``loss.values(y_pred, y_true)`` gives the loss of each sample (or of each output, where the loss
averages over outputs), ``(N, ...)``, unreduced: its mean is the loss, and sample weights multiply
it (:mod:`deepfield.training.sample_weights`).

Shapes: ``y_pred`` is ``(N, outputs)`` (or ``(N,)``); ``y_true`` must have the
same shape, except that ``(N,)`` labels are accepted for ``(N, 1)`` predictions
and vice versa. The class axis of the categorical losses is axis 1 (deepfield
is channels-first), so ``(N, C, H, W)`` per-pixel classification works too.

>>> get("mse")(torch.tensor([[1.0], [3.0]]), torch.tensor([0.0, 1.0]))
tensor(2.5000)
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from deepfield.arguments import is_number
from deepfield.errors import DeepfieldError
from deepfield.registry import Registry

# Keras clips probabilities to [EPSILON, 1 - EPSILON] before taking logs.
EPSILON = 1e-7
# torch's losses skip labels equal to ignore_index, by default -100: a common
# missing-value sentinel in catalogues, which must be an error, not a silent skip.
# No real label is the most negative int64.
_NO_IGNORE = torch.iinfo(torch.int64).min

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def align_labels(name: str, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
    """``y_true`` reshaped to ``y_pred``'s shape, or a one-line error naming ``name``.

    Only the harmless mismatch is fixed: ``(N,)`` against ``(N, 1)`` either way.
    Broadcasting anything else (``(N, 3)`` against ``(N, 1)``) would silently
    compute the wrong thing, so it is refused.
    """
    if y_true.shape == y_pred.shape:
        return y_true
    if y_true.numel() == y_pred.numel() and (
        (y_pred.ndim == 2 and y_pred.shape[1] == 1 and y_true.ndim == 1)
        or (y_pred.ndim == 1 and y_true.ndim == 2 and y_true.shape[1] == 1)
    ):
        return y_true.reshape(y_pred.shape)
    raise DeepfieldError(
        f"{name}: labels of shape {tuple(y_true.shape)} do not match predictions of "
        f"shape {tuple(y_pred.shape)}"
    )


class Loss:
    """A named loss; ``loss(y_pred, y_true)`` checks shapes then computes the batch mean.

    A subclass gives ``elements`` (the unreduced loss) and may override ``call`` with a fused
    kernel for the mean, and ``prepare`` for its own label checks.
    """

    name: ClassVar[str] = ""
    registry: ClassVar[Registry[type[Loss]]] = Registry("loss", any_case=True, class_names=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            Loss.registry.add(cls.name, cls)

    def __call__(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return self.call(y_pred, self.prepare(y_pred, y_true))

    def values(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """The loss of each sample ``(N, ...)``, unreduced: its mean is ``self(y_pred, y_true)``."""
        return self.elements(y_pred, self.prepare(y_pred, y_true))

    def prepare(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """``y_true`` checked, shaped and typed like ``y_pred``."""
        y_true = align_labels(self.name, y_pred, y_true)
        return y_true if y_true.dtype == y_pred.dtype else y_true.to(y_pred.dtype)

    def call(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """The loss for labels already prepared: the mean of :meth:`elements`."""
        return self.elements(y_pred, y_true).mean()

    def elements(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """The unreduced loss ``(N, ...)`` for labels already prepared."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """The constructor's keyword arguments, JSON-ready."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class MeanSquaredError(Loss):
    """``mean((y_pred - y_true)**2)``."""

    name = "mse"

    def call(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(y_pred, y_true)

    def elements(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return torch.square(y_pred - y_true)


class MeanAbsoluteError(Loss):
    """``mean(|y_pred - y_true|)``."""

    name = "mae"

    def call(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(y_pred, y_true)

    def elements(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return torch.abs(y_pred - y_true)


class Huber(Loss):
    """Quadratic ``e**2 / 2`` for ``|e| <= delta``, linear ``delta * (|e| - delta / 2)`` beyond."""

    name = "huber"

    def __init__(self, delta: float = 1.0) -> None:
        if not delta > 0:
            raise DeepfieldError(f"huber: delta must be > 0, got {delta!r}")
        self.delta = float(delta)

    def call(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return F.huber_loss(y_pred, y_true, delta=self.delta)

    def elements(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return F.huber_loss(y_pred, y_true, delta=self.delta, reduction="none")

    def get_config(self) -> dict[str, Any]:
        return {"delta": self.delta}


class HalfSumSquaredError(Loss):
    """The course's ``L_total = sum(1/2 (target - output)**2)`` over outputs, averaged over the batch.

    For a batch of one sample this is exactly the ``L_total`` of the
    backpropagation worked example.
    """

    name = "half_sse"

    def call(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.sum(torch.square(y_true - y_pred)) / y_pred.shape[0]

    def elements(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.square(y_true - y_pred).reshape(y_pred.shape[0], -1).sum(dim=1)


class GaussianNLL(Loss):
    """Negative log-likelihood of a heteroscedastic head: ``y_pred`` is ``(N, 2D)`` = mean | log-variance.

    Per output ``0.5 (log 2π + s + (y − μ)² e^{−s})`` with ``s`` the predicted log-variance
    (Nix & Weigend 1994; Kendall & Gal 2017), averaged over the batch and the ``D`` outputs.
    ``y_true`` is ``(N, D)`` (or ``(N,)`` for ``D = 1``). The network learns its own
    aleatoric error: ``σ = exp(s / 2)`` in the target's units. Images: ``y_pred`` ``(N, 2C, H, W)``
    (means | log-variances on the channel axis, as the ``unet`` preset's heteroscedastic head) against
    ``y_true`` ``(N, C, H, W)``, averaged over every pixel.
    """

    name = "gaussian_nll"

    def __call__(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return F.gaussian_nll_loss(*self._parts(y_pred, y_true), full=True, eps=1e-12)

    def values(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return F.gaussian_nll_loss(*self._parts(y_pred, y_true), full=True, eps=1e-12, reduction="none")

    def _parts(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean, labels, variance), each ``(N, D)`` (images: ``(N, C, H, W)``)."""
        if y_pred.dim() not in (2, 4) or y_pred.shape[1] % 2:
            raise DeepfieldError(f"gaussian_nll: predictions must be (N, 2D) or (N, 2C, H, W) = mean and "
                                 f"log-variance, got shape {tuple(y_pred.shape)}")
        mean, log_var = y_pred.chunk(2, dim=1)
        return mean, align_labels(self.name, mean, y_true).to(mean.dtype), log_var.exp()


class _FromLogits(Loss):
    """A loss of predicted probabilities, or of logits when ``from_logits=True``."""

    def __init__(self, from_logits: bool = False) -> None:
        self.from_logits = bool(from_logits)

    def get_config(self) -> dict[str, Any]:
        return {"from_logits": self.from_logits}


def check_label_smoothing(owner: str, value: float) -> float:
    """Keras's ``label_smoothing``, a number in [0, 1]."""
    if not is_number(value) or not 0.0 <= value <= 1.0:
        raise DeepfieldError(f"{owner}: label_smoothing must be in [0, 1], got {value!r}")
    return float(value)


class BinaryCrossentropy(_FromLogits):
    """``-[y log p + (1 - y) log(1 - p)]`` per output, averaged.

    ``y_pred`` holds probabilities, clipped to ``[1e-7, 1 - 1e-7]`` as Keras does,
    or logits when ``from_logits=True`` (numerically safer: no clipping needed).
    ``label_smoothing`` ``s`` trains on ``y (1 - s) + s / 2`` (Keras's).
    """

    name = "binary_crossentropy"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0) -> None:
        super().__init__(from_logits)
        self.label_smoothing = check_label_smoothing(self.name, label_smoothing)

    def prepare(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        y_true = super().prepare(y_pred, y_true)
        s = self.label_smoothing
        return y_true * (1.0 - s) + 0.5 * s if s else y_true

    def elements(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        if self.from_logits:
            return F.binary_cross_entropy_with_logits(y_pred, y_true, reduction="none")
        p = y_pred.clamp(EPSILON, 1.0 - EPSILON)
        return -(y_true * torch.log(p) + (1.0 - y_true) * torch.log1p(-p))

    def get_config(self) -> dict[str, Any]:
        smoothing = {"label_smoothing": self.label_smoothing} if self.label_smoothing else {}
        return {**super().get_config(), **smoothing}


class CategoricalCrossentropy(_FromLogits):
    """``-sum_c y_c log p_c`` per sample for one-hot (or soft) ``y_true`` ``(N, C)``.

    Probabilities are renormalised to sum to one and clipped as in Keras;
    ``from_logits=True`` uses ``log_softmax`` instead. ``label_smoothing`` ``s`` trains
    on ``y (1 - s) + s / C`` (Keras's).
    """

    name = "categorical_crossentropy"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0) -> None:
        super().__init__(from_logits)
        self.label_smoothing = check_label_smoothing(self.name, label_smoothing)

    def prepare(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return one_hot_labels(self.name, y_pred, y_true, self.label_smoothing)

    def elements(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return -torch.sum(y_true * _log_probabilities(y_pred, self.from_logits), dim=1)

    def get_config(self) -> dict[str, Any]:
        smoothing = {"label_smoothing": self.label_smoothing} if self.label_smoothing else {}
        return {**super().get_config(), **smoothing}


def one_hot_labels(name: str, y_pred: torch.Tensor, y_true: torch.Tensor, smoothing: float) -> torch.Tensor:
    """One-hot (or soft) labels of ``y_pred``'s shape and dtype, smoothed to ``y (1 - s) + s / C``."""
    if y_true.shape != y_pred.shape:
        hint = ""
        if y_true.shape == y_pred.shape[:1] + y_pred.shape[2:]:
            hint = "; for integer class labels use sparse_categorical_crossentropy"
        raise DeepfieldError(
            f"{name}: labels of shape {tuple(y_true.shape)} do not match predictions "
            f"of shape {tuple(y_pred.shape)}{hint}"
        )
    if y_true.dtype != y_pred.dtype:
        y_true = y_true.to(y_pred.dtype)
    return y_true * (1.0 - smoothing) + smoothing / y_pred.shape[1] if smoothing else y_true


class SparseCategoricalCrossentropy(_FromLogits):
    """``-log p[label]`` per sample for integer labels ``(N,)`` in ``[0, C)``.

    Checks: integer dtype and shape on every call (free); the label range on
    the first call (one host sync) and, on CPU, whenever torch's own bounds
    check fails (so a later bad batch still gives this loss's message). On a
    GPU a bad label in a later batch reaches torch's device-side assert.
    """

    name = "sparse_categorical_crossentropy"

    def __init__(self, from_logits: bool = False) -> None:
        super().__init__(from_logits)
        self._range_checked = False

    def __call__(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return self._checked(self.call, y_pred, y_true)

    def values(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return self._checked(self.elements, y_pred, y_true)

    def _checked(self, fn: LossFn, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        labels = self._labels(y_pred, y_true)
        if not self._range_checked:
            self._check_range(labels, y_pred.shape[1])
            self._range_checked = True
        try:
            return fn(y_pred, labels)
        except (IndexError, RuntimeError):
            self._check_range(labels, y_pred.shape[1])
            raise

    def call(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        if self.from_logits:
            return F.cross_entropy(y_pred, y_true, ignore_index=_NO_IGNORE)
        return F.nll_loss(_log_probabilities(y_pred, False), y_true, ignore_index=_NO_IGNORE)

    def elements(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        if self.from_logits:
            return F.cross_entropy(y_pred, y_true, ignore_index=_NO_IGNORE, reduction="none")
        return F.nll_loss(_log_probabilities(y_pred, False), y_true, ignore_index=_NO_IGNORE, reduction="none")

    def _labels(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """``y_true`` as int64 of shape ``y_pred.shape`` without the class axis."""
        if y_pred.ndim < 2:
            raise DeepfieldError(
                f"{self.name}: predictions need a class axis, (N, n_classes); got shape "
                f"{tuple(y_pred.shape)}"
            )
        if y_true.dtype.is_floating_point or y_true.dtype.is_complex or y_true.dtype == torch.bool:
            raise DeepfieldError(
                f"{self.name}: labels must be integer class indices, got dtype "
                f"{str(y_true.dtype).removeprefix('torch.')}"
            )
        expected = y_pred.shape[:1] + y_pred.shape[2:]
        if y_true.shape != expected:
            if y_true.ndim == y_pred.ndim and y_true.shape[1] == 1:
                y_true = y_true.squeeze(1)  # Keras also takes (N, 1) labels
            if y_true.shape != expected:
                hint = ""
                if y_true.shape == y_pred.shape:
                    hint = " (one-hot labels? use categorical_crossentropy)"
                raise DeepfieldError(
                    f"{self.name}: expected one integer label per sample, shape "
                    f"{tuple(expected)}, got labels of shape {tuple(y_true.shape)}{hint}"
                )
        return y_true if y_true.dtype == torch.int64 else y_true.long()

    def _check_range(self, labels: torch.Tensor, n_classes: int) -> None:
        if labels.numel() == 0:
            return
        low, high = (int(v) for v in torch.aminmax(labels))
        if low < 0 or high >= n_classes:
            raise DeepfieldError(
                f"{self.name}: labels must be class indices in [0, {n_classes}) for "
                f"{n_classes} predicted classes, got values from {low} to {high}"
            )


class SmoothedSparseCrossentropy(SparseCategoricalCrossentropy):
    """``-sum_c K[label, c] log p_c`` per sample: integer labels ``(N,)`` spread over the classes by
    the rows of ``kernel (C, C)`` (each summing to one; the identity gives the sparse cross-entropy).

    Label smoothing for ordered classes such as redshift bins: a neighbouring bin is a smaller
    mistake than a far one. Not in the registry by name (it needs its kernel); built by a task.
    """

    def __init__(self, kernel: torch.Tensor, from_logits: bool = False) -> None:
        super().__init__(from_logits)
        if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
            raise DeepfieldError(f"{self.name}: the smoothing kernel must be square (C, C), got {tuple(kernel.shape)}")
        self.kernel = kernel

    def call(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return self.elements(y_pred, y_true).mean()

    def elements(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        weights = self.kernel.to(device=y_pred.device, dtype=y_pred.dtype)[y_true]  # (N, C)
        return -torch.sum(weights * _log_probabilities(y_pred, self.from_logits), dim=1)


def _log_probabilities(y_pred: torch.Tensor, from_logits: bool) -> torch.Tensor:
    """Log class probabilities along axis 1, from logits or (Keras-clipped) probabilities."""
    if from_logits:
        return F.log_softmax(y_pred, dim=1)
    p = y_pred / y_pred.sum(dim=1, keepdim=True)
    return torch.log(p.clamp(EPSILON, 1.0 - EPSILON))


class KerasFunction(Loss):
    """Your own loss written the Keras way, ``fn(y_true, y_pred) -> values``, reduced as Keras does.

    ``fn`` gets the labels first; they are cast to the predictions' dtype and, where the ranks
    differ by a trailing axis of 1, given the predictions' rank (Keras's ``squeeze_or_expand``).
    What it returns (per-sample values ``(N,)``, or any shape) is averaged: Keras's default
    ``sum_over_batch_size`` reduction.
    """

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        self.fn = fn
        self.name = getattr(fn, "__name__", type(fn).__name__)  # type: ignore[misc]  # shown in messages

    def __call__(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return self.values(y_pred, y_true).mean()

    def values(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """What ``fn`` returns for this batch, unreduced."""
        if y_true.ndim == y_pred.ndim - 1 and y_pred.shape[-1] == 1:
            y_true = y_true.unsqueeze(-1)
        elif y_pred.ndim == y_true.ndim - 1 and y_true.shape[-1] == 1:
            y_true = y_true.squeeze(-1)
        if y_pred.is_floating_point() and y_true.dtype != y_pred.dtype:
            y_true = y_true.to(y_pred.dtype)
        return torch.as_tensor(self.fn(y_true, y_pred))

    def __repr__(self) -> str:
        return f"KerasFunction({self.name})"


# The rest of Keras 3's losses live in their own module; importing it registers them.
from deepfield.training.keras_losses import (  # noqa: E402
    BinaryFocalCrossentropy,
    CategoricalFocalCrossentropy,
    Hinge,
    KLDivergence,
    LogCosh,
    Poisson,
)
from deepfield.training.flux_losses import FluxConservingMAE  # noqa: E402
from deepfield.training.diffusion_loss import DiffusionMSE  # noqa: E402
from deepfield.training.weighted_losses import ClassWeightedCrossentropy  # noqa: E402

Loss.registry.alias("mean_squared_error", "mse")
Loss.registry.alias("mean_absolute_error", "mae")
Loss.registry.alias("kld", "kl_divergence")
NAMES = Loss.registry.names()


def get(spec: str | LossFn | dict[str, Any]) -> LossFn:
    """A loss from a name (``"mse"``), a ``Loss`` or torch ``nn.Module`` (returned as is, called
    ``loss(y_pred, y_true)``), a function ``f(y_true, y_pred)`` (Keras's order, wrapped in
    :class:`KerasFunction`), or a config.

    A config is ``{"class_name": "CategoricalCrossentropy", "config": {"from_logits": true}}``;
    the registry name works as class name too.
    """
    if isinstance(spec, (Loss, nn.Module)):
        return spec
    if callable(spec):
        return KerasFunction(spec)
    if isinstance(spec, str):
        return Loss.registry.lookup(spec)()
    if isinstance(spec, dict) and "class_name" in spec:
        return Loss.registry.from_config(spec)
    raise DeepfieldError(
        f"loss must be a name, a callable or {{'class_name': ..., 'config': {{...}}}}, "
        f"got {type(spec).__name__}"
    )



__all__ = [
    "NAMES", "BinaryCrossentropy", "BinaryFocalCrossentropy", "CategoricalCrossentropy", "CategoricalFocalCrossentropy",
    "ClassWeightedCrossentropy",
    "FluxConservingMAE", "GaussianNLL", "HalfSumSquaredError", "Hinge", "Huber", "KLDivergence", "KerasFunction", "LogCosh", "Loss",
    "Poisson", "MeanAbsoluteError", "MeanSquaredError", "SmoothedSparseCrossentropy",
    "SparseCategoricalCrossentropy",
    "DiffusionMSE",
    "align_labels", "get",
]
