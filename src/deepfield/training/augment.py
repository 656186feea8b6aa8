"""Random augmentation of the training batches, on their device, seeded per batch.

``fit(x, y, augment=["dihedral", {"name": "shift", "max_shift": 2}])`` (in a run config:
``training.augment``) passes every TRAINING batch through the random transforms of
:mod:`deepfield.data.transforms` (``dihedral``, ``shift``, ``gaussian_noise``), on the
training device, one independent draw per sample and no Python loop over samples.
Validation, ``evaluate`` and ``predict`` see the data as they are.

Draws come from a private generator on the batch's device, seeded from ``(seed, epoch,
step)`` of the fit: the same seed gives the same augmented batches, a fit resumed
mid-epoch (:class:`~deepfield.training.callbacks.BackupAndRestore`) augments the batches
it has left as the uninterrupted fit did, and the global RNG (dropout) is never drawn from.
In a data-parallel fit each process holds rows ``offset ..`` of a global batch of ``total``
(``part``): it draws for the whole global batch and keeps its rows, so every sample is
augmented as one process would augment it, whatever the number of processes.

Samples ``(C, H, W)`` (images) take every augmentation; samples ``(C, L)`` (spectra) take
``shift`` (along L) and ``gaussian_noise``, not the turns and flips of ``dihedral``.

The Keras augmentation layers of :mod:`deepfield.models.preprocessing` are entries too, by class name
and Keras arguments in the same form: ``"RandomFlip"``, ``{"name": "RandomRotation", "factor": 0.1}``,
``{"name": "RandomFlip", "mode": "horizontal"}`` then ``"RandomRotation90"`` (together the eight
symmetries of the square, as ``dihedral``), or a layer instance; they draw from the fit's generator
like the transforms (the layer's own ``seed`` is not used here). They take images only.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, Union

import numpy as np
import torch

from deepfield.data import transforms as T
from deepfield.errors import DeepfieldError
from deepfield.models.base import Layer, layer_from_config
from deepfield.models.preprocessing import augmentation_layer, is_augmentation_layer

Spec = Union[str, Mapping[str, Any], T.Transform, Layer]


class LayerAugmentation(T.RandomTransform):
    """A random augmentation layer (``RandomFlip``...) as a batch transform drawing from ``generator``."""

    planar = True

    def __init__(self, layer: Layer, generator: torch.Generator | None = None):
        super().__init__(generator)
        self.layer, self.name = layer, type(layer).__name__

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer.augment(x, self.generator)

    def _arguments(self) -> dict[str, Any]:
        return {k: v for k, v in self.layer.get_config().items() if k not in ("name", "input_shape", "seed")}


def _layer_entry(entry: Any) -> LayerAugmentation | None:
    """The augmentation layer that ``entry`` names (``"RandomFlip"``, ``{"name": "RandomZoom", ...}``), else None."""
    if is_augmentation_layer(entry):
        return LayerAugmentation(entry)
    name = entry if isinstance(entry, str) else entry.get("name") if isinstance(entry, Mapping) else None
    if augmentation_layer(name) is None:
        return None
    options = {} if isinstance(entry, str) else {k: v for k, v in entry.items() if k != "name"}
    return LayerAugmentation(layer_from_config({"class_name": name, "config": options}))


def batch_seed(seed: int, epoch: int, step: int) -> int:
    """The seed of the augmentation draws of batch ``step`` of ``epoch``."""
    return int(np.random.SeedSequence([seed, epoch, step]).generate_state(1, np.uint64)[0])


def _leaves(transform: T.Transform) -> list[T.Transform]:
    """``transform``, or the transforms of a :class:`~deepfield.data.transforms.Compose` in order."""
    if isinstance(transform, T.Compose):
        return [leaf for inner in transform.transforms for leaf in _leaves(inner)]
    return [transform]


def _entry(index: int, entry: Any) -> list[T.RandomTransform]:
    """The random transforms of one entry (copies), or the error naming the entry by its 1-based ``index``."""
    try:
        layer = _layer_entry(entry)
        if layer is not None:
            return [layer]
        if isinstance(entry, T.Transform):
            transform = entry
        elif isinstance(entry, str):
            transform = T.get(entry)
        else:
            transform = T.from_config(entry)
    except DeepfieldError as exc:
        raise DeepfieldError(f"entry {index}: {exc}") from None
    leaves = [copy.copy(leaf) for leaf in _leaves(transform)]
    for leaf in leaves:
        if not isinstance(leaf, T.RandomTransform):
            raise DeepfieldError(f"entry {index}: {leaf.name} is not a random augmentation (it would change the "
                                 f"training batches only); augmentations: {', '.join(T.random_names())}")
    return leaves  # type: ignore[return-value]


def augmentations(entries: Spec | Sequence[Spec]) -> list[T.RandomTransform]:
    """The random transforms that ``entries`` (one entry or a list, see :class:`BatchAugment`) name, in order.

    Raises a :class:`~deepfield.errors.DeepfieldError` ``entry K: ...`` for the first bad entry.
    """
    listed = [entries] if isinstance(entries, (str, Mapping, T.Transform, Layer)) else list(entries)
    return [leaf for index, entry in enumerate(listed, 1) for leaf in _entry(index, entry)]


class BatchAugment:
    """Random transforms applied to whole training batches; ``name`` starts every error line.

    Args:
        transforms: one entry or a list: a registry name (``"dihedral"``), a config mapping
            (``{"name": "gaussian_noise", "sigma": 0.05}``) or a random
            :class:`~deepfield.data.transforms.Transform` (a copy is taken: its generator is
            replaced by the fit's). A deterministic transform (``asinh``, ``resize``...) is
            refused: applied to the training batches only, it would set them apart from
            the data the network is evaluated on.
        name: how errors name the option (``"training.augment"`` in a run config).
    """

    def __init__(self, transforms: Spec | Sequence[Spec], name: str = "augment"):
        self.name = name
        try:
            self.transforms = augmentations(transforms)
        except DeepfieldError as exc:
            raise self._error(str(exc)) from None
        self._generators: dict[torch.device, torch.Generator] = {}

    def _error(self, message: str) -> DeepfieldError:
        return DeepfieldError(f"{self.name}: {message}")

    def get_config(self) -> list[dict[str, Any]]:
        """The transforms as config mappings; ``BatchAugment(get_config())`` draws the same."""
        return [t.get_config() for t in self.transforms]

    def __repr__(self) -> str:
        return f"BatchAugment({self.transforms!r})"

    def check(self, example: torch.Tensor) -> None:
        """Raise, naming the option, unless every transform fits samples like ``example`` (1, ...)."""
        sample = tuple(example.shape[1:])
        if len(sample) not in (2, 3):
            kind = "rows of features" if len(sample) == 1 else "neither images nor spectra"
            raise self._error(f"the samples have shape {sample}, {kind}: augmentation applies to images (C, H, W) "
                              "and spectra (C, L)")
        planar = [t.name for t in self.transforms if t.planar]
        if len(sample) == 2 and planar:
            raise self._error(f"{planar[0]} turns and flips images (C, H, W); the samples are spectra of shape "
                              f"{sample}: use shift and gaussian_noise")
        try:
            self(example, seed=0, epoch=0, step=0)
        except DeepfieldError as exc:
            raise self._error(str(exc)) from None

    def __call__(self, x: torch.Tensor, seed: int, epoch: int, step: int,
                 part: tuple[int, int] | None = None) -> torch.Tensor:
        """The augmented batch: ``x`` (N, C, H, W) or (N, C, L), new tensor of the same shape, device and dtype.

        ``part``: ``(offset, total)`` when ``x`` is this process's rows of a global batch of
        ``total`` (the module docstring; a stand-in row past the end is the last row's).
        """
        if part is not None:
            offset, total = part
            start = min(offset, total - len(x))
            whole = x.new_zeros((total, *x.shape[1:]))
            whole[start:start + len(x)] = x
            return self(whole, seed, epoch, step)[start:start + len(x)]
        generator = self._generators.get(x.device)
        if generator is None:
            generator = self._generators[x.device] = torch.Generator(device=x.device)
        generator.manual_seed(batch_seed(seed, epoch, step))
        spectra = x.ndim == 3
        out = x.unsqueeze(2) if spectra else x  # a spectrum as a one-row image
        for transform in self.transforms:
            transform.generator = generator
            out = transform(out)
        return out.squeeze(2) if spectra else out


def as_augment(augment: BatchAugment | Spec | Sequence[Spec] | None) -> BatchAugment | None:
    """``fit``'s ``augment`` argument as a :class:`BatchAugment`; ``None`` for none or an empty list."""
    if augment is None or isinstance(augment, BatchAugment):
        return augment if augment is None or augment.transforms else None
    built = BatchAugment(augment)
    return built if built.transforms else None
