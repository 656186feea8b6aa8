"""The depth study: do gradients reach the first layers of a deep stack?

>>> study = depth_study(*make_toy("moons", n=256), depth=10)
>>> study.runs["sigmoid"].first_to_last      # ~1e-5: the first layers hardly learn
>>> study.runs["relu+he"].first_to_last      # order one

Each variant is a stack of ``depth`` hidden :class:`~deepfield.models.core.Dense` layers of
``width`` units and a classification head, trained briefly with deepfield's ``fit`` and a
:class:`~deepfield.training.callbacks.GradientNormLogger` (each layer's gradient L2
norm after every backward pass). A variant is named ``activation[+initialiser][+bn]``:

``sigmoid``       sigmoid units, Glorot-uniform weights (Keras's default): each layer
                  multiplies the backward signal by sigma' <= 1/4, so it fades geometrically;
``relu``          ReLU with Glorot weights: variance 2/(in+out) is half what ReLU needs,
                  the signal shrinks by about 1/sqrt(2) per layer;
``relu+he``       ReLU with He-normal weights (variance 2/fan_in): the signal keeps its size;
``relu+he+bn``    plus BatchNormalization before each activation;
``sigmoid+bn``    sigmoid with batch norm: the normalisation rescales what each sigmoid
                  squeezed, and most of the vanishing goes.

``he``, ``glorot`` and ``lecun`` stand for the ``*_normal``/``*_uniform`` initialisers as
above (he → he_normal, glorot → glorot_uniform, lecun → lecun_normal); any other Keras
initialiser name may be written in full (``tanh+he_uniform``).

The data: the caller's points, e.g. 256 of the ``moons`` set (:func:`deepfield.data.toy2d.make_toy`,
the playground's default), a two-input problem a shallow network solves, so what differs between
variants is the depth's effect alone; plain SGD (no per-weight rescaling, which in Adam would hide the
vanishing from the updates, though not from the gradients).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepfield import arguments
from deepfield.analysis.learning.playground import check_points, classifier, compile_classifier, few_threads
from deepfield.errors import DeepfieldError
from deepfield.models import activations
from deepfield.models import initializers as initializer_registry
from deepfield.models.core import Dense
from deepfield.training.batches import BatchSize
from deepfield.training.callbacks import GradientNormLogger

DEFAULT_VARIANTS = ("sigmoid", "relu", "relu+he", "relu+he+bn", "sigmoid+bn")
SHORT_INITIALIZERS = {"he": "he_normal", "glorot": "glorot_uniform", "lecun": "lecun_normal"}


def parse_variant(variant: str) -> tuple[str, str, bool]:
    """``"relu+he+bn"`` → ``("relu", "he_normal", True)``: activation, kernel initialiser, batch norm."""
    if not isinstance(variant, str) or not variant.strip():
        raise DeepfieldError(f"depth_study: a variant is a name like 'relu+he+bn', got {variant!r}")
    parts = [p.strip().lower() for p in variant.split("+")]
    activation, init, batch_norm = parts[0], "glorot_uniform", False
    activations.get(activation)  # an unknown activation is an error naming the choices
    for part in parts[1:]:
        if part == "bn":
            batch_norm = True
        else:
            init = SHORT_INITIALIZERS.get(part, part)
            try:
                initializer_registry.get(init)
            except DeepfieldError:
                raise DeepfieldError(
                    f"depth_study: variant {variant!r}: {part!r} is neither 'bn' nor an initializer "
                    f"(he, glorot, lecun or a Keras initializer name)"
                ) from None
    return activation, init, batch_norm


@dataclass
class DepthRun:
    """One variant: ``names`` of the Dense layers (input → output, the head last), the recorded
    ``steps`` ``(S,)`` and gradient ``norms`` ``(S, layers)``; ``final_loss``/``final_accuracy``
    on the whole set after training, in evaluation mode (``model.evaluate``); ``history_loss``
    Keras's per-epoch training loss.

    With batch norm and brief training the two disagree: evaluation normalises with the
    moving statistics, which at Keras's momentum 0.99 have moved only ``1 - 0.99**steps`` of
    the way from their start (mean 0, variance 1) to the batches' values, an error each of
    the ``depth`` layers passes on. ``train_loss`` is the one to compare then.
    """

    variant: str
    activation: str
    initializer: str
    batch_norm: bool
    names: list[str]
    steps: np.ndarray
    norms: np.ndarray
    final_loss: float
    final_accuracy: float
    history_loss: np.ndarray

    @property
    def train_loss(self) -> float:
        """The last epoch's training loss (batch statistics, running mean over the epoch)."""
        return float(self.history_loss[-1])

    @property
    def mean_norms(self) -> np.ndarray:
        """``(layers,)``: each layer's gradient norm averaged over the steps."""
        return self.norms.mean(axis=0)

    @property
    def first_to_last(self) -> float:
        """Mean gradient norm of the first layer over that of the last hidden layer: far below 1
        when gradients vanish on their way back."""
        mean = self.mean_norms
        return float(mean[0] / mean[-2]) if len(mean) > 1 else 1.0


@dataclass
class DepthStudy:
    """The variants' runs (``runs[variant]``, in the order asked) and the network's shape."""

    depth: int
    width: int
    runs: dict[str, DepthRun]
    settings: dict[str, Any]

    @property
    def variants(self) -> tuple[str, ...]:
        return tuple(self.runs)


def depth_study(x: Any, y: Any, depth: int = 10, width: int = 32,
                variants: Sequence[str] = DEFAULT_VARIANTS, epochs: int = 5, batch_size: BatchSize = 32,
                optimizer: str = "sgd", learning_rate: float = 0.1, seed: int = 0,
                device: Any = "cpu") -> DepthStudy:
    """Train a ``depth``-deep, ``width``-wide stack per variant, logging every layer's gradient norm.

    Args:
        x, y: points ``(N, 2)`` and their class labels ``(N,)``.
        depth: hidden Dense layers (each followed by its activation, and preceded by batch norm
            in ``+bn`` variants).
        variants: ``activation[+initialiser][+bn]`` names (see the module doc).
        epochs, batch_size, optimizer, learning_rate: the brief training (5 epochs of 8 batches:
            40 steps by default); every variant is seeded alike.
    """
    x, y, classes = check_points(x, y, "depth_study")
    for name, value in (("depth", depth), ("width", width), ("epochs", epochs)):
        if not arguments.is_integer(value):
            raise DeepfieldError(f"depth_study: {name} must be a positive integer, got {value!r}")
    variants = tuple(variants)
    if not variants or len(set(variants)) != len(variants):
        raise DeepfieldError(f"depth_study: variants must be distinct names, got {list(variants)}")
    runs: dict[str, DepthRun] = {}
    with few_threads(device):
        for variant in variants:
            activation, init, batch_norm = parse_variant(variant)
            model = classifier(classes, (int(width),) * int(depth), activation, init, batch_norm)
            compile_classifier(model, classes, optimizer, learning_rate, device)
            logger = GradientNormLogger()
            history = model.fit(x, y, batch_size=batch_size, epochs=int(epochs), verbose=0, callbacks=[logger],
                                seed=seed)
            scores = model.evaluate(x, y, batch_size="full", verbose=0)
            dense = {name for name, m in model.named_modules() if isinstance(m, Dense)}
            keep = [j for j, name in enumerate(logger.names) if name in dense]
            runs[variant] = DepthRun(
                variant=variant, activation=activation, initializer=init, batch_norm=batch_norm,
                names=[logger.names[j] for j in keep], steps=logger.steps, norms=logger.norms[:, keep],
                final_loss=float(scores["loss"]), final_accuracy=float(scores["accuracy"]),
                history_loss=np.asarray(history.history["loss"], dtype=np.float64),
            )
    return DepthStudy(depth=int(depth), width=int(width), runs=runs,
                      settings=dict(epochs=int(epochs), batch_size=batch_size, optimizer=optimizer,
                                    learning_rate=float(learning_rate), seed=seed, samples=len(x)))
