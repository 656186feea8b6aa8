"""Torch datasets of ``(image, label)`` samples: in memory, or streamed from disk by a reader.

A sample is ``(x, y)``: ``x`` a float32 tensor ``(C, H, W)`` (after the optional
``transform``), ``y`` an int64 (classes) or float32 (regression) tensor, 0-d or ``(k,)``.
Unlabelled data yields ``x`` alone, which is what prediction takes.

:class:`ImageDataset` reads each sample when asked, through an
:class:`~deepfield.data.images_core.ImageReader`, and gives exactly the samples of
``ArrayDataset.from_reader`` on the same reader, in any number of DataLoader workers.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from deepfield.data.images_core import ImageReader, label_array
from deepfield.errors import DeepfieldError

Transform = Callable[[torch.Tensor], torch.Tensor]
Sample = Union[tuple[torch.Tensor, torch.Tensor], torch.Tensor]


class ArrayDataset(Dataset):
    """Images ``(N, C, H, W)`` and labels ``(N,)`` / ``(N, k)`` (or ``None``) held in memory.

    Images become float32 (shared with ``images`` when it already is float32);
    integer labels become int64, float labels float32.
    """

    def __init__(self, images: Any, labels: Any = None, transform: Transform | None = None):
        self.images = torch.as_tensor(images, dtype=torch.float32)
        if self.images.dim() != 4:
            raise DeepfieldError(f"images must be (N, C, H, W), got shape {tuple(self.images.shape)}")
        self.labels = None if labels is None else torch.as_tensor(label_array(np.asarray(labels), "labels")[0])
        if self.labels is not None and len(self.labels) != len(self.images):
            raise DeepfieldError(f"labels have {len(self.labels)} rows but images have {len(self.images)}")
        self.transform = transform

    @classmethod
    def from_reader(cls, reader: ImageReader, transform: Transform | None = None) -> ArrayDataset:
        """Every object of ``reader`` read into memory (``reader.load()``)."""
        return cls(*reader.load(), transform=transform)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Sample:
        x = self.images[index]
        return _sample(x, self.transform, None if self.labels is None else self.labels[index])


class ImageDataset(Dataset):
    """The objects of ``reader`` streamed from disk, one file (or one HDF5 row) per sample.

    Nothing is read until a sample is asked for; the reader holds no open handle when
    pickled, so ``DataLoader(dataset, num_workers=k)`` works with any ``k``.
    """

    def __init__(self, reader: ImageReader, transform: Transform | None = None):
        self.reader, self.transform = reader, transform

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> Sample:
        x = torch.from_numpy(self.reader.read(index))
        label = self.reader.label(index)
        return _sample(x, self.transform, None if label is None else torch.as_tensor(label))


def _sample(x: torch.Tensor, transform: Transform | None, y: torch.Tensor | None) -> Sample:
    if transform is not None:
        x = transform(x)
    return x if y is None else (x, y)
