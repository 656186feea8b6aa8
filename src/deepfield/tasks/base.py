"""What every task provides to the run: prepared arrays, the network's head, the analysis.

A task knows astronomy and learning together (DESIGN.md): which reader, which
normalisation, what the labels mean, which loss and metrics, which figures.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from torch import nn

from deepfield.errors import DeepfieldError
from deepfield.models import zoo
from deepfield.models.bayesian import bayesianize
from deepfield.tasks.config import RunConfig, optimizer_spec
from deepfield.tasks.prepared_info import PreparedInfo
from deepfield.training import optimizers
from deepfield.training.losses import LossFn
from deepfield.training.mc_dropout import MCPrediction

PARTS = ("train", "validation", "test")
Calibration = float | dict[str, Any] | None
"""A run's ``calibration.json``: a classifier's temperature, or the dict of :meth:`Task.fit_calibration`."""


@dataclass
class Prepared:
    """A task's data, ready for ``fit``: ``x[part]`` (N, ...) float32, ``y[part]`` (N, ...).

    ``info`` is the task's record saved in the run as ``prepared.json`` (bands, classes, normalisation
    statistics, feature names: :mod:`~deepfield.tasks.prepared_info`) so that ``evaluate``/``predict``
    prepare new data the same way.
    """

    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    ids: dict[str, np.ndarray] = field(default_factory=dict)
    info: PreparedInfo = field(default_factory=PreparedInfo)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x["train"].shape[1:])


def make_optimizer(config: RunConfig) -> Any:
    """The configured optimiser, with ``training.learning_rate`` applied when given (validation refuses
    it together with ``training.optimizer.learning_rate``: one value, said once)."""
    optimizer = optimizers.get(optimizer_spec(config.training.optimizer))
    if config.training.learning_rate is not None:
        optimizer.learning_rate = config.training.learning_rate
    return optimizer


@dataclass
class NewData:
    """A file to evaluate or predict on: ``x`` (N, ...) float32, ``y`` or None, ``ids`` (N,), and
    ``columns``: what else is known of each object (N,), for the prediction files (``ra``, ``dec``
    in degrees when known; a catalogue's or label table's columns, kept with ``predict --keep``)."""

    x: np.ndarray
    y: np.ndarray | None
    ids: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)


class Task:
    """Base of the tasks; subclasses fill in the four steps."""

    name: ClassVar[str]
    info_model: ClassVar[type[PreparedInfo]] = PreparedInfo
    """What the task records in ``Prepared.info`` (``prepared.json``), read back with it."""
    augments_targets: ClassVar[bool] = False
    """Whether ``training.augment`` moves each target (an image or label map, ``y``) with its input: the
    image-to-image tasks; only the pixel-moving augmentations are taken then (:mod:`deepfield.training.augment`)."""

    def prepare(self, config: RunConfig) -> Prepared:
        """Read and split the data, fit the normalisation on the training part."""
        raise NotImplementedError

    def training_data(self, prepared: Prepared) -> tuple[Any, np.ndarray | None]:
        """What ``fit`` trains on: ``(x, y)`` arrays of the training part (default), or
        ``(dataset, None)`` for batches the task makes itself (augmented ones)."""
        return prepared.x["train"], prepared.y["train"]

    def head(self, prepared: Prepared) -> tuple[int, str | None]:
        """(number of outputs, output activation)."""
        raise NotImplementedError

    def default_loss(self, prepared: Prepared) -> str:
        raise NotImplementedError

    def loss(self, config: RunConfig, prepared: Prepared) -> str | LossFn:
        """What the networks train and are evaluated with: ``training.loss`` or the task's default."""
        return config.training.loss or self.default_loss(prepared)

    def default_metrics(self, prepared: Prepared) -> list[str]:
        return []

    def analyse(self, outputs: np.ndarray, prepared: Prepared, part: str, figures: Path) -> dict[str, Any]:
        """Science metrics of ``outputs`` (the network's predictions on ``part``) and their figures."""
        raise NotImplementedError

    def analyse_models(self, models: list[nn.Module], prepared: Prepared, part: str, figures: Path,
                       config: RunConfig) -> dict[str, Any]:
        """Metrics and figures of ``part`` that need the networks themselves, not only their outputs (a generative
        model's samples); ``{}``: none."""
        return {}

    def read_new(self, config: RunConfig, info: PreparedInfo, path: Path, labelled: bool) -> NewData:
        """Data from another file, prepared exactly as the run's training data (``info``)."""
        raise DeepfieldError(f"task {self.name!r} cannot read new files yet (evaluate without --data works)")

    def read_values(self, config: RunConfig, info: PreparedInfo, values: Any) -> NewData:
        """Raw inputs held in memory (stamps as an array, catalogue rows as a table), prepared as
        :meth:`read_new` prepares a file's; unlabelled, ids are the row indices (or an ``id`` column)."""
        raise DeepfieldError(f"task {self.name!r} reads files only; pass the path of one")

    def new_prepared(self, new: NewData, info: PreparedInfo) -> Prepared:
        """A labelled new file as the test part of a :class:`Prepared`, for ``analyse``."""
        return Prepared(x={"test": new.x}, y={"test": new.y}, ids={"test": new.ids}, info=info)

    def describe(self, outputs: np.ndarray, info: PreparedInfo) -> dict[str, np.ndarray]:
        """The prediction table's columns for the network's ``outputs`` (N, ...)."""
        raise DeepfieldError(f"task {self.name!r} cannot write predictions yet")

    def predict_whole_image(self, models: list[nn.Module], config: RunConfig, info: PreparedInfo, data: Path,
                            out: Path, overwrite: bool = False) -> Path | None:
        """``deepfield predict RUN image --out FILE`` for a task that maps a whole image (any size, by tiles) to
        a whole image: write ``out`` and return it; ``None``: ``data`` is not such an image (a table is written)."""
        return None

    def classical_baselines(self, config: RunConfig, prepared: Prepared,
                            metrics: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The task's own baselines rows for ``metrics.json["baselines"]`` (the network's row first, from its
        ``metrics``), or ``None``: the features-and-learners baselines (``baselines.features``, ``learners``)."""
        return None

    def explained_image(self, model: nn.Module, info: PreparedInfo) -> nn.Module:
        """For a network whose output is an image: the module whose output regions ``deepfield explain`` explains
        (:mod:`~deepfield.tasks.explain_region`), from what the network reads to an image ``(N, K, H, W)`` in the
        unit the task reports. Default: the network itself, every output channel."""
        return model

    # -- uncertainty (see deepfield.tasks.uncertainty) -------------------------------------------
    keeps_draws = False
    """Whether :meth:`analyse_uncertainty` reads every draw (``prediction.samples``, e.g. each draw's aperture flux)."""

    def output_kind(self, info: PreparedInfo) -> str:
        """How to read the network's outputs: ``"probabilities"``, ``"values"`` or ``"gaussian"``
        (mean | log-variance, a heteroscedastic head; ``info.heteroscedastic``)."""
        return "gaussian" if info.heteroscedastic else "values"

    def finish_prediction(self, prediction: MCPrediction, x: np.ndarray, info: PreparedInfo) -> MCPrediction:
        """The run's prediction of the network-ready inputs ``x`` (N, ...) from the networks' pooled draws
        ``prediction``, in network units; a task that completes the networks' outputs with the inputs themselves
        (denoise's template photometry) changes it here, so that analyse, evaluate and predict all see the
        same. Default: ``prediction`` as it is."""
        return prediction

    def calibrates(self, info: PreparedInfo) -> bool:
        """Whether a temperature is fitted on the validation part (classifiers)."""
        return False

    recalibrates = False
    """Whether :meth:`fit_calibration` is asked, for a run whose prediction carries a σ (draws, a heteroscedastic
    head), to recalibrate it on the validation part."""
    chooses_on_validation = False
    """Whether :meth:`fit_calibration` is asked for every run, σ or not (a segmenter's seed level)."""

    def fit_calibration(self, prediction: MCPrediction, prepared: Prepared) -> dict[str, Any] | None:
        """The task's own calibration fitted on ``prediction`` of the validation part (its draws kept where
        :attr:`keeps_draws`), JSON-ready (e.g. per quantity and level an interval's half-width:
        :mod:`~deepfield.analysis.interval_recalibration`). The run keeps it in ``calibration.json`` and hands it
        back to :meth:`analyse_uncertainty` and :meth:`describe_uncertainty`; ``None``: nothing to calibrate."""
        return None

    def calibrated_info(self, info: PreparedInfo, calibration: Calibration) -> PreparedInfo:
        """The run's record with what :meth:`fit_calibration` chose on the validation part applied, for analyse and
        predict (a segmenter's seed level); default: ``info`` as it is."""
        return info

    def analyse_uncertainty(self, prediction: MCPrediction, prepared: Prepared, part: str, figures: Path,
                            calibration: Calibration = None) -> dict[str, Any]:
        """How far to trust ``prediction`` on ``part`` (calibration, coverage) and its figures; ``{}``: nothing to say.
        ``calibration``: the run's, fitted on the validation part (:data:`Calibration`)."""
        return {}

    def describe_uncertainty(self, prediction: MCPrediction, info: PreparedInfo,
                             calibration: Calibration = None) -> dict[str, np.ndarray]:
        """The prediction table's uncertainty columns (``calibration``: the run's, :data:`Calibration`)."""
        return {}

    def build_model(self, config: RunConfig, prepared: Prepared) -> nn.Module:
        """The configured preset, with this task's head unless the user's options set it.

        With ``model.bayesian`` set, its Dense and Conv layers become variational
        (:func:`~deepfield.models.bayesian.bayesianize`) and the KL term is weighted by
        ``kl_scale`` / (training samples): with ``kl_scale`` 1 the loss is mean data loss +
        KL / N, the negative ELBO per sample when the data loss is a negative log-likelihood.
        """
        n_outputs, activation = self.head(prepared)
        accepted = zoo.parameters(config.model.preset)
        kwargs = {"input_shape": prepared.input_shape}
        if "n_outputs" in accepted:
            kwargs["n_outputs"] = n_outputs
        if "output_activation" in accepted:
            kwargs["output_activation"] = activation
        kwargs.update(config.model.options)
        default = accepted.get("input_shape")
        if default is not None and len(default.default) == 2 and len(prepared.input_shape) == 3:
            raise DeepfieldError(f"model.preset {config.model.preset!r} takes (C, L) spectra but the data was read "
                                 f"as images {prepared.input_shape}: set data.kind: spectra for 1-D data")
        try:
            model = zoo.get(config.model.preset, **kwargs)
        except DeepfieldError as exc:  # e.g. stamps too small for the preset: say which data and which key
            raise DeepfieldError(f"{config.data.path} (inputs of shape {tuple(prepared.input_shape)}): "
                                 f"model.preset: {exc}") from None
        bayesian = config.model.bayesian
        if bayesian is None:
            return model
        return bayesianize(model, prior_sigma=bayesian.prior_sigma, posterior_sigma=bayesian.posterior_sigma,
                           kl_weight=bayesian.kl_scale / len(prepared.x["train"]))
