"""``Embedding``: integer ids to learned vectors, Keras 3's."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deepfield import arguments
from deepfield.models import constraints, initializers, regularizers
from deepfield.models.base import Layer
from deepfield.models.masking import attach


class Embedding(Layer):
    """Looks up row ``i`` of ``embeddings`` (input_dim, output_dim) for each id ``i`` (as Keras: the same matrix).

    Input: ids ``(N, ...)``, integers in ``0 .. input_dim - 1`` (floats are truncated to integers, as Keras
    casts them); output ``(N, ..., output_dim)``: for a sequence of ids ``(N, T)`` that is ``(N, T, F)``,
    features last, the layout the recurrent layers take (:mod:`deepfield.models.recurrent`).
    ``mask_zero=True`` makes id 0 the padding: the output carries the mask ``ids != 0`` (N, T) to the next
    recurrent layer (:mod:`deepfield.models.masking`), and ``input_dim`` should count id 0.
    Initialised by Keras's default ``"uniform"`` (±0.05). ``embeddings_regularizer``, ``activity_regularizer``
    (on the vectors out) and ``embeddings_constraint`` as Keras's (the matrix is Keras's, so as it is).
    """

    def __init__(self, input_dim: int, output_dim: int,
                 embeddings_initializer: str | initializers.Initializer | dict = "uniform",
                 mask_zero: bool = False, name: str | None = None, input_shape: tuple[int, ...] | None = None,
                 embeddings_regularizer: regularizers.Spec = None, activity_regularizer: regularizers.Spec = None,
                 embeddings_constraint: constraints.Spec = None):
        super().__init__(name=name, input_shape=input_shape)
        regularizers.attach(self, {"embeddings": embeddings_regularizer}, activity_regularizer)
        constraints.attach(self, {"embeddings": (embeddings_constraint, None)})
        self.input_dim = arguments.integer("Embedding input_dim", input_dim)
        self.output_dim = arguments.integer("Embedding output_dim", output_dim)
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.mask_zero = bool(mask_zero)
        self.embeddings: nn.Parameter | None = None

    def build(self, input_shape: tuple[int, ...]) -> None:
        self.embeddings = nn.Parameter(torch.empty(self.input_dim, self.output_dim))
        self.embeddings_initializer(self.embeddings, self.input_dim, self.output_dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.long()
        out = F.embedding(ids, self.embeddings)
        return attach(out, ids != 0) if self.mask_zero else out
