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

Targets moved with their inputs (``BatchAugment(..., targets=True)``, :meth:`BatchAugment.pair`; what the
image-to-image tasks use): the target ``y``, an image (N, C', H, W) or an integer label map (N, H, W), takes
the same transform as ``x``, sample by sample: ``x`` and ``y`` are stacked along the channels and augmented
once, so the draws, the data-parallel rows and a resumed fit's batches are those of ``x`` alone. Only the
transforms that move whole pixels, every channel alike, are taken then (``dihedral``, ``shift``,
``RandomFlip``, ``RandomRotation90``): a label map stays integer, and an intensity transform
(``gaussian_noise``) or a resampling one (``RandomRotation``, ``RandomZoom``...) would change the target's values.
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


def moves_pixels(transform: T.RandomTransform) -> bool:
    """Whether ``transform`` only moves whole pixels, every channel alike (a target can move with its image)."""
    if isinstance(transform, LayerAugmentation):
        return bool(getattr(transform.layer, "moves_pixels", False))
    return transform.moves_pixels


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


def _listed(entries: Spec | Sequence[Spec]) -> list[Spec]:
    """One entry or a list of entries, as a list."""
    return [entries] if isinstance(entries, (str, Mapping, T.Transform, Layer)) else list(entries)


def augmentations(entries: Spec | Sequence[Spec]) -> list[T.RandomTransform]:
    """The random transforms that ``entries`` (one entry or a list, see :class:`BatchAugment`) name, in order.

    Raises a :class:`~deepfield.errors.DeepfieldError` ``entry K: ...`` for the first bad entry.
    """
    return [leaf for index, entry in enumerate(_listed(entries), 1) for leaf in _entry(index, entry)]


def pixel_moving() -> list[str]:
    """The augmentations that a target can take with its input (:func:`moves_pixels`): transforms, then layers."""
    transforms = [n for n in T.random_names() if T.Transform.registry.lookup(n).moves_pixels]
    layers = [n for n in Layer.registry.names() if getattr(augmentation_layer(n), "moves_pixels", False)]
    return transforms + layers


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
        targets: move each target with its input (:meth:`pair`, the module docstring); only the
            transforms that move whole pixels are taken then.
    """

    def __init__(self, transforms: Spec | Sequence[Spec], name: str = "augment", targets: bool = False):
        self.name, self.targets = name, targets
        try:
            entries = [_entry(index, entry) for index, entry in enumerate(_listed(transforms), 1)]
        except DeepfieldError as exc:
            raise self._error(str(exc)) from None
        self.transforms = [leaf for leaves in entries for leaf in leaves]
        changing = [(index, t.name) for index, leaves in enumerate(entries, 1) for t in leaves if not moves_pixels(t)]
        if targets and changing:
            index, which = changing[0]
            raise self._error(f"entry {index}: {which} changes pixel values, not only their places, and the targets "
                              f"move with the inputs here (it would corrupt them); take {', '.join(pixel_moving())}")
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


    def pair(self, x: torch.Tensor, y: torch.Tensor, seed: int, epoch: int, step: int,
             part: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` augmented alike, sample by sample: ``x`` (N, C, H, W) or (N, C, L) as :meth:`__call__`
        augments it (the same draws), ``y`` an image (N, C', H, W) / (N, C', L) or a label map (N, H, W) / (N, L)
        moved with it, in its own dtype (labels stay integers: no value is interpolated)."""
        maps = y.ndim == x.ndim - 1
        target = y.unsqueeze(1) if maps else y
        if target.ndim != x.ndim or target.shape[0] != x.shape[0] or target.shape[2:] != x.shape[2:]:
            raise self._error(f"the targets {tuple(y.shape)} are not images or label maps of the inputs "
                              f"{tuple(x.shape)}' size, so they cannot move with them")
        work = torch.promote_types(x.dtype, torch.float32)  # integer labels below 2**24 exact
        both = self(torch.cat([x.to(work), target.to(work)], dim=1), seed, epoch, step, part)
        moved_x, moved_y = both.split([x.shape[1], target.shape[1]], dim=1)
        moved_y = moved_y if y.is_floating_point() else moved_y.round()
        return moved_x.to(x.dtype), (moved_y.squeeze(1) if maps else moved_y).to(y.dtype)


def as_augment(augment: BatchAugment | Spec | Sequence[Spec] | None) -> BatchAugment | None:
    """``fit``'s ``augment`` argument as a :class:`BatchAugment`; ``None`` for none or an empty list."""
    if augment is None or isinstance(augment, BatchAugment):
        return augment if augment is None or augment.transforms else None
    built = BatchAugment(augment)
    return built if built.transforms else None
