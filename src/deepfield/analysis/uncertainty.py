"""Predictions with their uncertainty: draws from MC dropout, variational layers and deep ensembles.

How far to trust them (calibration, coverage) is :mod:`deepfield.analysis.calibration`.

>>> prediction = predictive([model], x, mc_samples=50, kind="probabilities")
>>> prediction.mean, prediction.entropy, prediction.mutual_information

Sources of draws, combined the same way (:class:`~deepfield.training.mc_dropout.MCPrediction`):

* **MC dropout** (Gal & Ghahramani 2016) and **variational layers** (Blundell et al. 2015):
  ``mc_samples`` draws of one network (:func:`~deepfield.training.mc_dropout.sample_outputs`);
* **deep ensembles** (Lakshminarayanan et al. 2017): each member is a draw; with
  ``mc_samples`` each member gives that many draws, all pooled.

A heteroscedastic head (mean | log-variance, trained with ``gaussian_nll``) adds the
aleatoric part: total variance = epistemic (spread of the draws' means) + aleatoric (mean
of the draws' variances), both reported.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from deepfield.errors import DeepfieldError
from deepfield.training.engine import Engine
from deepfield.training.mc_dropout import MCPrediction


def predictive(models: Sequence[nn.Module], x: Any, *, mc_samples: int = 0, kind: str = "auto", seed: int = 0,
               batch_size: int = 256, device: str | torch.device | None = None,
               keep_samples: bool = False) -> MCPrediction:
    """The pooled draws of ``models`` (one network, or an ensemble's members) for inputs ``x`` ``(N, ...)``.

    Args:
        models: one or more networks taking ``x``.
        mc_samples: draws per network with dropout / variational sampling on (seeds
            ``seed``, ``seed + 1``, ... per member); 0: one deterministic pass each.
        kind: how to read the outputs (:class:`~deepfield.training.mc_dropout.MCPrediction`).
        keep_samples: also return the draws ``(T_total, N, ...)``.
    """
    if not models:
        raise DeepfieldError("predictive: no networks given")
    draws = []
    for k, model in enumerate(models):
        engine = Engine(model, device=device)
        if mc_samples:
            draws.append(engine.predict(x, batch_size=batch_size, verbose=0, mc_samples=mc_samples, seed=seed + k,
                                        return_samples=True).samples)
        else:
            draws.append(engine.predict(x, batch_size=batch_size, verbose=0)[None])
    return MCPrediction.from_samples(torch.from_numpy(np.concatenate(draws)), kind, keep_samples=keep_samples)
