"""Variational layers trained by Bayes by backprop (Blundell, Cornebise, Kavukcuoglu & Wierstra 2015).

:class:`BayesianDense`, :class:`BayesianConv1D`, :class:`BayesianConv2D` and
:class:`BayesianConv3D` take the arguments of Dense / Conv*D (same names, shapes and
'same' padding) plus:

* ``prior_sigma``: every weight and bias has the prior ``N(0, prior_sigma²)``;
* ``posterior_sigma``: the posterior is ``N(mu, sigma²)`` per weight, ``sigma = softplus(rho)``;
  ``mu`` starts from the deterministic layer's initialiser, ``sigma`` at ``posterior_sigma``;
* ``kl_weight``: :meth:`~_Variational.auxiliary_loss` is ``kl_weight * KL(q || p)``, which
  the training engine adds to the data loss. With ``kl_weight = 1 / N_train`` the loss is
  mean NLL + KL / N, the negative ELBO per training sample. A plain attribute ``kl_scale``
  (1, not saved) multiplies it during training: :class:`~deepfield.training.callbacks.KLAnnealing`
  ramps it up over the first epochs.

Parameters (``state_dict`` keys): ``weight_mu``, ``weight_rho``, ``bias_mu``, ``bias_rho``,
each with the deterministic layer's shape, so a layer has twice the parameters of its
deterministic counterpart; its ``weight`` and ``bias`` attributes are ``None``. Each
class derives from its deterministic layer (a BayesianDense is a Dense), which checks
the arguments and draws the initial means.

A layer samples its output while training, or when its plain attribute ``stochastic``
is True (MC prediction with the rest of the network in eval mode); otherwise it is the
deterministic network with the posterior means. :func:`bayesianize` turns the Dense and
Conv layers of a built network, presets included, into these layers.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.models import batch_noise, initializers
from deepfield.models.base import Layer
from deepfield.models.conv import Conv1D, Conv2D, Conv3D, _Conv
from deepfield.models.core import Dense

SETTINGS = ("prior_sigma", "posterior_sigma", "kl_weight")  # bayesianize's arguments, as model.json records them
_Init = str | initializers.Initializer | dict


def _check_settings(owner: str, prior_sigma: float, posterior_sigma: float, kl_weight: float) -> dict[str, float]:
    """The three settings as floats; a non-positive sigma or a negative ``kl_weight`` names ``owner``."""
    settings = {"prior_sigma": prior_sigma, "posterior_sigma": posterior_sigma, "kl_weight": kl_weight}
    for what, value in settings.items():
        if not arguments.is_number(value):
            raise DeepfieldError(f"{owner} {what} must be a number, got {value!r}")
        if not (value >= 0 if what == "kl_weight" else value > 0):  # NaN fails both
            raise DeepfieldError(f"{owner} {what} must be {'non-negative' if what == 'kl_weight' else 'positive'}, "
                                 f"got {value!r}")
    return {k: float(v) for k, v in settings.items()}


def is_stochastic_layer(module: nn.Module) -> bool:
    """Whether ``module`` is a variational layer: it samples when training or when ``module.stochastic``."""
    return isinstance(module, _Variational)


class _Variational(Layer):
    """What the Bayesian layers share. A subclass also derives from its deterministic layer
    (which validates the arguments and creates the initial weights) and supplies
    ``_affine(x, weight, bias)``, the layer's op with given weights.
    """

    stochastic: bool = False  # set True on an instance to sample in eval mode (MC prediction)
    kl_scale: float = 1.0  # set on an instance to scale its KL term for a while (KL annealing)

    def _init_variational(self, prior_sigma: float, posterior_sigma: float, kl_weight: float) -> None:
        settings = _check_settings(type(self).__name__, prior_sigma, posterior_sigma, kl_weight)
        self.prior_sigma = settings["prior_sigma"]
        self.posterior_sigma = settings["posterior_sigma"]
        self.kl_weight = settings["kl_weight"]
        self.weight_mu: nn.Parameter | None = None
        self.weight_rho: nn.Parameter | None = None
        self.bias_mu: nn.Parameter | None = None
        self.bias_rho: nn.Parameter | None = None

    def _affine(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    @classmethod
    def from_layer(cls, layer: Dense | _Conv, prior_sigma: float = 1.0, posterior_sigma: float = 1e-3,
                   kl_weight: float = 1.0) -> _Variational:
        """The counterpart of the built deterministic ``layer``: its arguments and name, ``mu`` = its weights."""
        if not layer.built:
            raise DeepfieldError(f"{layer.label} is not built yet; build the model before making it Bayesian")
        new = cls(**{**layer._config, "name": layer.name, "prior_sigma": prior_sigma,
                     "posterior_sigma": posterior_sigma, "kl_weight": kl_weight})
        new._set_posterior(layer.weight, layer.bias)
        new.built = True
        new.train(layer.training)
        return new

    def build(self, input_shape: tuple[int, ...]) -> None:
        super().build(input_shape)  # the deterministic layer draws weight and bias from its initialisers
        self._set_posterior(self.weight, self.bias)

    def _set_posterior(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        """Posterior means: copies of ``weight``/``bias``; sigmas: ``posterior_sigma``. Both become None."""
        rho = self.posterior_sigma + math.log(-math.expm1(-self.posterior_sigma))  # softplus(rho) = posterior_sigma
        for name, value in (("weight", weight), ("bias", bias)):
            delattr(self, name)
            setattr(self, name, None)
            if value is not None:
                mu = value.detach().clone()
                setattr(self, f"{name}_mu", nn.Parameter(mu, requires_grad=value.requires_grad))
                setattr(self, f"{name}_rho", nn.Parameter(torch.full_like(mu, rho), requires_grad=value.requires_grad))

    def _posteriors(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(mu, rho)`` of the weight, then of the bias when there is one."""
        if self.weight_mu is None:
            raise DeepfieldError(f"{self.label} is not built yet: run the model once before asking for its KL term")
        yield self.weight_mu, self.weight_rho
        if self.bias_mu is not None:
            yield self.bias_mu, self.bias_rho

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self._affine(x, self.weight_mu, self.bias_mu)
        if not (self.training or self.stochastic):
            return self.activation(mean)
        # Local reparameterisation (Kingma, Salimans & Welling 2015): rather than one weight
        # sample per batch, sample the pre-activations, Gaussian with mean op(x, mu) and
        # variance op(x², sigma²) given x. The noise is drawn per output element, so every
        # row of the batch sees its own weight sample (T copies of a row are T independent
        # network samples in one forward pass) and the gradient has a lower variance.
        # Exact for Dense, whose output units have their own weights; for a convolution,
        # positions share a kernel and the per-position noise keeps each output's
        # distribution but not the correlations between positions.
        bias_variance = None if self.bias_rho is None else F.softplus(self.bias_rho) ** 2
        variance = self._affine(x * x, F.softplus(self.weight_rho) ** 2, bias_variance)
        std = variance.clamp_min(torch.finfo(variance.dtype).tiny).sqrt()  # no infinite gradient at 0
        return self.activation(mean + std * batch_noise.draw(mean.shape, self._normal(mean), mean.device))

    @staticmethod
    def _normal(mean: torch.Tensor) -> batch_noise.Sampler:
        """Standard normal noise like ``mean``: on the CPU in logical order, from ``generator``
        (the same values whatever ``mean``'s memory format, as data-parallel fits need); elsewhere
        ``randn_like`` (keeps a channels-last layout)."""
        if mean.device.type != "cpu":
            return lambda shape, generator: torch.randn_like(mean)
        return lambda shape, generator: torch.randn(shape, generator=generator, dtype=mean.dtype)

    def kl_divergence(self) -> torch.Tensor:
        """KL(q || p) in nats, over every weight and bias: ``Σ [log(σ_p/σ) + (σ² + μ²)/(2σ_p²) − 1/2]``."""
        prior = self.prior_sigma
        total = 0.0
        for mu, rho in self._posteriors():
            sigma = F.softplus(rho)
            total = total + (math.log(prior) - torch.log(sigma) + (sigma ** 2 + mu ** 2) / (2 * prior ** 2) - 0.5).sum()
        return total

    def auxiliary_loss(self) -> torch.Tensor:
        """``kl_scale * kl_weight * kl_divergence()``: what the training engine adds to the data loss."""
        return (self.kl_scale * self.kl_weight) * self.kl_divergence()


class BayesianDense(_Variational, Dense):
    """:class:`~deepfield.models.core.Dense` with a Gaussian posterior over its weights and biases.

    Input ``(N, ..., features)``, output ``(N, ..., units)``; ``weight_mu``/``weight_rho``
    ``(units, features)``, ``bias_mu``/``bias_rho`` ``(units,)``. Arguments as Dense, and
    ``prior_sigma``, ``posterior_sigma``, ``kl_weight`` (see the module doc).
    """

    def __init__(self, units: int, activation: str | None = None, use_bias: bool = True,
                 kernel_initializer: _Init = "glorot_uniform", bias_initializer: _Init = "zeros",
                 prior_sigma: float = 1.0, posterior_sigma: float = 1e-3, kl_weight: float = 1.0,
                 name: str | None = None, input_shape: tuple[int, ...] | None = None):
        super().__init__(units, activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
                         bias_initializer=bias_initializer, name=name, input_shape=input_shape)
        self._init_variational(prior_sigma, posterior_sigma, kl_weight)

    def _affine(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return F.linear(x, weight, bias)


class _BayesianConv(_Variational, _Conv):
    """A convolution with a Gaussian posterior over its kernel and biases; the subclasses fix ``rank``.

    Input ``(N, C, *spatial)``, output ``(N, filters, *spatial')`` as the deterministic
    convolution (strides, dilation, 'valid'/'same'/explicit padding); ``weight_mu``/``weight_rho``
    ``(filters, C, *kernel_size)``, ``bias_mu``/``bias_rho`` ``(filters,)``.
    """

    def __init__(self, filters: int, kernel_size: int | tuple[int, ...], strides: int | tuple[int, ...] = 1,
                 padding: str | int | tuple[int, ...] = "valid", dilation_rate: int | tuple[int, ...] = 1,
                 activation: str | None = None, use_bias: bool = True,
                 kernel_initializer: _Init = "glorot_uniform", bias_initializer: _Init = "zeros",
                 prior_sigma: float = 1.0, posterior_sigma: float = 1e-3, kl_weight: float = 1.0,
                 name: str | None = None, input_shape: tuple[int, ...] | None = None):
        super().__init__(filters, kernel_size, strides=strides, padding=padding, dilation_rate=dilation_rate,
                         activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
                         bias_initializer=bias_initializer, name=name, input_shape=input_shape)
        self._init_variational(prior_sigma, posterior_sigma, kl_weight)

    def _affine(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return self._convolve(x, weight, bias)


class BayesianConv1D(_BayesianConv):
    """Variational :class:`~deepfield.models.conv.Conv1D`: ``(N, C, L) -> (N, filters, L')``."""

    rank = 1


class BayesianConv2D(_BayesianConv):
    """Variational :class:`~deepfield.models.conv.Conv2D`: ``(N, C, H, W) -> (N, filters, H', W')``."""

    rank = 2


class BayesianConv3D(_BayesianConv):
    """Variational :class:`~deepfield.models.conv.Conv3D`: ``(N, C, D, H, W) -> (N, filters, D', H', W')``."""

    rank = 3


COUNTERPARTS: dict[type[Layer], type[_Variational]] = {
    Dense: BayesianDense, Conv1D: BayesianConv1D, Conv2D: BayesianConv2D, Conv3D: BayesianConv3D,
}


def bayesianize(model: nn.Module, prior_sigma: float = 1.0, posterior_sigma: float = 1e-3,
                kl_weight: float = 1.0) -> nn.Module:
    """Turn every Dense and Conv1D/2D/3D inside the built ``model`` into its Bayesian layer, in place.

    Looks through every container (Sequential, preset attributes, blocks such as
    ResidualBlock, Inception, Maxout, TimeDistributed). Each new layer keeps the old
    one's arguments and name (``dense_1`` stays ``dense_1``; the summary shows its type
    ``BayesianDense``), its ``mu`` is the old weights, so in eval mode the network computes
    what it did, and its ``sigma`` is ``posterior_sigma``. The settings are recorded on
    ``model`` (:func:`bayesian_settings`), so that ``save_model`` writes them and
    ``load_model`` applies them again. Returns ``model`` (or, when ``model`` is itself a
    Dense or Conv layer, its counterpart).
    """
    settings = _check_settings("bayesianize", prior_sigma, posterior_sigma, kl_weight)
    unbuilt = [m for m in model.modules() if type(m) in COUNTERPARTS and not m.built]
    if unbuilt:
        raise DeepfieldError(f"bayesianize: {unbuilt[0].label} is not built yet; build the model first "
                             "(model.build(), ensure_built(model, x) or one forward pass)")
    model = _swap(model, settings)
    model._bayesian = settings
    return model


def _swap(module: nn.Module, settings: dict[str, float]) -> nn.Module:
    """``module``'s Bayesian counterpart, or ``module`` with its children swapped."""
    counterpart = COUNTERPARTS.get(type(module))
    if counterpart is not None:
        return counterpart.from_layer(module, **settings)
    for name, child in list(module.named_children()):
        swapped = _swap(child, settings)
        if swapped is not child:
            setattr(module, name, swapped)
    return module


def bayesian_settings(model: nn.Module) -> dict[str, float] | None:
    """The arguments :func:`bayesianize` was applied with to ``model``; None if it was not."""
    return getattr(model, "_bayesian", None)
