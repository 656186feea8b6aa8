"""The photometric-redshift CNN of Pasquet, Bertin, Treyer, Arnouts & Fouchez (2019, A&A 621, A26)."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.models import initializers
from deepfield.models.base import Layer
from deepfield.models.blocks import Inception, PReLU
from deepfield.models.conv import Conv2D
from deepfield.models.core import Dense, Flatten
from deepfield.models.pooling import AveragePooling2D
from deepfield.models.presets.base import PresetModel, sample_shape


class Pasquet(PresetModel):
    """Images (and optionally the reddening E(B−V)) to a probability over redshift bins.

    Layer for layer the authors' public code (github.com/jpasquet/Photoz, ``network.py``):

    * ``conv1`` 5×5, 64 filters, 'same', PReLU; ``pool1`` 2×2 average pooling, stride 2;
    * ``inception1`` (bottleneck 48, 64 filters), ``inception2`` (64, 92), ``pool2``,
      ``inception3`` (92, 128), ``inception4`` (92, 128), ``pool3``, ``inception5``
      (92, 128, without its 5×5 branch): see :class:`~deepfield.models.blocks.Inception`;
    * ``flatten``; with ``use_ebv`` the E(B−V) column is appended here;
    * ``dense1``, ``dense2``: ``dense_units`` (1096) with ReLU; ``output``: ``n_bins``
      with ``output_activation`` (softmax: the redshift PDF).

    Pooling is 'same' and every convolution 'same', so any stamp size works (the paper:
    ugriz 64×64). Redshift bins are ``n_bins`` equal bins over ``[z_min, z_max]``
    (paper: 180 over 0–0.4); see :attr:`bin_centres`, :meth:`mean_redshift`.

    ``forward(x, ebv=None)``: ``x`` ``(N, C, H, W)``, ``ebv`` ``(N, 1)`` (or ``(N,)``) in magnitudes,
    required when built with ``use_ebv=True`` and refused otherwise; returns
    ``(N, n_bins)``. The training engine passes one tensor to a model, so a task that
    uses E(B−V) wraps this module with a forward that unpacks ``(x, ebv)``.
    On ``(5, 64, 64)`` it has 27,595,276 parameters without E(B−V), 1,096 more with it.
    """

    preset = "pasquet"

    def __init__(self, input_shape: Sequence[int] = (5, 64, 64), n_bins: int = 180, z_min: float = 0.0,
                 z_max: float = 0.4, use_ebv: bool = False, dense_units: int = 1096,
                 output_activation: str | None = "softmax"):
        super().__init__()
        self.input_shape = sample_shape(self.preset, input_shape, 2)
        if not arguments.is_integer(n_bins, 2) or not float(z_max) > float(z_min):
            raise DeepfieldError(f"preset {self.preset!r} needs n_bins >= 2 and z_max > z_min; "
                                 f"got n_bins={n_bins}, z_min={z_min}, z_max={z_max}")
        self.name = self.preset
        self.n_bins, self.z_min, self.z_max = int(n_bins), float(z_min), float(z_max)
        self.use_ebv, self.dense_units, self.output_activation = bool(use_ebv), int(dense_units), output_activation
        features: list[Layer] = [
            Conv2D(64, 5, padding="same", bias_initializer=initializers.Constant(0.1), name="conv1"),
            PReLU(name="prelu1"),
            AveragePooling2D(2, padding="same", name="pool1"),
            Inception(64, 48, name="inception1"),
            Inception(92, 64, name="inception2"),
            AveragePooling2D(2, padding="same", name="pool2"),
            Inception(128, 92, name="inception3"),
            Inception(128, 92, name="inception4"),
            AveragePooling2D(2, padding="same", name="pool3"),
            Inception(128, 92, kernel_sizes=(3,), name="inception5"),
            Flatten(name="flatten"),
        ]
        head = [
            Dense(self.dense_units, activation="relu", bias_initializer=initializers.Constant(0.1), name="dense1"),
            Dense(self.dense_units, activation="relu", bias_initializer=initializers.Constant(0.1), name="dense2"),
            Dense(self.n_bins, activation=output_activation, bias_initializer=initializers.Constant(0.1),
                  name="output"),
        ]
        for layer in features + head:
            self.add_module(layer.name, layer)
        self._n_features = len(features)
        self.build()

    @property
    def bin_centres(self) -> torch.Tensor:
        """``(n_bins,)`` redshift at the centre of each output bin."""
        edges = torch.linspace(self.z_min, self.z_max, self.n_bins + 1)
        return (edges[:-1] + edges[1:]) / 2

    def mean_redshift(self, probabilities: torch.Tensor) -> torch.Tensor:
        """``(N, n_bins)`` PDFs to ``(N,)`` point estimates ``Σ_k z_k P(z_k)`` (Pasquet+19, §3.3)."""
        return probabilities @ self.bin_centres.to(probabilities)

    def example_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (x, x.new_zeros((x.shape[0], 1))) if self.use_ebv else (x,)

    def forward(self, x: torch.Tensor, ebv: torch.Tensor | None = None) -> torch.Tensor:
        layers = list(self.children())
        for layer in layers[:self._n_features]:
            x = layer(x)
        if self.use_ebv:
            x = torch.cat([x, self._check_ebv(ebv, x.shape[0], x.dtype)], dim=1)
        elif ebv is not None:
            raise DeepfieldError(f"preset {self.preset!r} was built with use_ebv=False; it takes no ebv "
                                 "(build it with use_ebv=True to join E(B-V))")
        for layer in layers[self._n_features:]:
            x = layer(x)
        return x

    def _check_ebv(self, ebv: torch.Tensor | None, n: int, dtype: torch.dtype) -> torch.Tensor:
        if ebv is None:
            raise DeepfieldError(f"preset {self.preset!r} was built with use_ebv=True: call model(x, ebv) "
                                 "with the reddening E(B-V) of shape (N, 1)")
        if tuple(ebv.shape) not in ((n, 1), (n,)):
            raise DeepfieldError(f"preset {self.preset!r}: ebv must have shape ({n}, 1) for {n} images; "
                                 f"got {tuple(ebv.shape)}")
        return ebv.reshape(n, 1).to(dtype)
