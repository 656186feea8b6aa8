"""Deblending: a network returns one source of a blend alone (``task: deblend``; Boucaud et al. 2020 style).

Data (``data.path``): a blends file read by :func:`~deepfield.data.blend_stamps.read_blend_stamps`:
the HDF5 that ``deepfield simulate blends`` writes, or a user's with the same layout: the blends
(``data.images``, default ``images``), each source alone (``data.target``, default ``sources``) and the
centres ``truth/x``, ``truth/y``. ``data.validation`` / ``data.test``: held-out files, else a seeded
split of the blends (never of the sources: the sources of one blend stay in one part).

Every source of every blend is a target: a blend of k sources gives k examples. The network reads the
blend and, as one more channel, a unit-peak Gaussian of σ :data:`~deepfield.data.blend_stamps.MARKER_SIGMA`
pixels on the target's centre (:func:`~deepfield.data.blend_stamps.target_marker`), ``(C + 1, H, W)``,
and returns that source alone, ``(C, H, W)``. A marker channel rather than a stamp re-centred on the
target (Boucaud et al.'s choice): a U-Net is translation-equivariant, so it serves a target anywhere in
the stamp, the stamp needs no padding or cropping, and the companions give training examples too.

Normalisation (``data.normalize: robust``): each band's median and 1.4826 · MAD of the training blends
(:class:`~deepfield.tasks.prepared_info.DeblendInfo`), applied to blends and sources alike, then with
``data.stretch: asinh`` (the default) ``asinh(v / 3)`` (linear within 3 sky σ, logarithmic above, as the
classifiers' stretch); both are undone exactly on the outputs (``3 sinh(o)``, then the normalisation), so
metrics and predictions are in the file's flux unit (:mod:`~deepfield.tasks.pixel_scaling`). The stretch makes
the loss (MAE) nearly a relative error on the bright parts: a faint source beside a bright one weighs about as much, as in the flux-error metric.

Metrics on the test part, per target source (:mod:`~deepfield.analysis.deblending`, definitions there):
the total-flux error (``flux_mape``, the mean absolute percentage), its bias, the recovered fraction
(flux within 10 %), the adaptive-moment shape and size errors, SSIM. Classical baseline:
:mod:`deepfield.tasks.baselines.deblenders` (photutils' segmentation deblender), on the same test part.

Predictions (``deepfield predict RUN blends.h5 --out deblended.h5``): one row per source of each blend
(ids ``blend:source``), its ``deblended`` column the source's ``(C, H, W)`` stamp in the file's flux unit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepfield.analysis.deblending import RECOVERED_WITHIN, deblending_scores, relative_flux_errors
from deepfield.analysis.image_quality import nmad
from deepfield.data.blend_stamps import MARKER_SIGMA, BlendStamps, read_blend_stamps, target_marker
from deepfield.data.transforms import RobustNormalize
from deepfield.errors import DeepfieldError
from deepfield.models import zoo
from deepfield.plots import best_median_worst, plot_restoration_gallery
from deepfield.tasks.base import NewData, Prepared, Task
from deepfield.tasks.baselines.deblenders import SCORES, deblend_baselines
from deepfield.tasks.config import DataConfig, RunConfig
from deepfield.tasks.imaging import ASINH_SOFTENING
from deepfield.tasks.parts import split_parts
from deepfield.tasks.pixel_scaling import from_network, to_network
from deepfield.tasks.prepared_info import DeblendInfo
from deepfield.training.flux_losses import FluxConservingMAE
from deepfield.training.losses import LossFn

DEFAULT_SOURCES = "sources"
# flux_mae's weight on the flux term: per image its gradient spreads over every pixel (by a rough count
# ≈ 30× the pixel MAE's in L1 on 32×32 g, r, i stamps of AB 25 sources in 100-visit sky); weight 1 swamped
# the pixels (val MSE 0.24 against the MAE's 0.012 after 3 epochs); 0.05 leaves them in charge.
FLUX_WEIGHT = 0.05


@dataclass
class DeblendPrepared(Prepared):
    """:class:`Prepared` plus, per part, each example's target centre ``targets[part]`` (N, 2): column, row
    in pixels."""

    targets: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Examples:
    """One example per source of each blend: ``blends`` and ``sources`` (N, C, H, W) raw (``sources`` ``None``
    when unlabelled), ``x``, ``y`` (N,) the target's centre, ``blend``, ``source`` (N,) its indices."""

    blends: np.ndarray
    sources: np.ndarray | None
    x: np.ndarray
    y: np.ndarray
    blend: np.ndarray
    source: np.ndarray

    @property
    def ids(self) -> np.ndarray:
        return np.array([f"{b}:{s}" for b, s in zip(self.blend, self.source)])


def examples(stamps: BlendStamps, blends: np.ndarray | None = None) -> Examples:
    """The examples of the blends ``blends`` (indices; default all) of ``stamps``, source by source."""
    blends = np.arange(len(stamps.images)) if blends is None else np.asarray(blends)
    pairs = [(b, s) for b in blends for s in range(int(stamps.n_sources[b]))]
    blend, source = (np.array([p[j] for p in pairs], dtype=np.int64) for j in (0, 1))
    return Examples(stamps.images[blend], None if stamps.sources is None else stamps.sources[blend, source],
                    stamps.x[blend, source], stamps.y[blend, source], blend, source)


def read(data: DataConfig, path: Path, labelled: bool, inputs: str | None = None, targets: str | None = None,
         bands: list[str] | None = None) -> BlendStamps:
    """The blends file ``path`` as ``data`` says to read it (``inputs``/``targets``/``bands``: a run's record)."""
    return read_blend_stamps(path, images=inputs or data.images, sources=targets or data.target or DEFAULT_SOURCES,
                             labelled=labelled, bands=data.bands if bands is None else bands, limit=data.limit)


def network_inputs(found: Examples, info: DeblendInfo) -> np.ndarray:
    """(N, C + 1, H, W) float32: the blends in network units and the target marker."""
    marker = target_marker(found.x, found.y, found.blends.shape[2:], info.marker_sigma)
    return np.concatenate([to_network(found.blends, info), marker], axis=1)


def check_options(config: RunConfig) -> None:
    """Options other tasks take that would break a deblending pair."""
    if config.training.augment:
        raise DeepfieldError("training.augment: the augmentations move the blend alone, not its target source; "
                             "leave it out for task deblend")
    if config.data.kind != "images":
        raise DeepfieldError("data.kind: task deblend takes blended images (images)")
    if config.uncertainty.heteroscedastic:
        raise DeepfieldError("uncertainty.heteroscedastic: not available for task deblend yet (use mc_samples)")


class Deblend(Task):
    """Blend + the target's position -> the target source alone, scored against its isolated truth."""

    name = "deblend"
    info_model = DeblendInfo

    def prepare(self, config: RunConfig) -> DeblendPrepared:
        check_options(config)
        data = config.data
        stamps = read(data, data.path, labelled=True)
        parts = split_parts(config, len(stamps.images), lambda index: examples(stamps, index),
                            lambda path: examples(read(data, path, labelled=True, bands=list(stamps.bands))),
                            lambda part: len(part.blend))
        info = DeblendInfo(bands=list(stamps.bands), unit=stamps.unit, inputs=data.images,
                           targets=data.target or DEFAULT_SOURCES, marker_sigma=MARKER_SIGMA, stretch=data.stretch or "asinh")
        if data.normalize == "robust":
            train = stamps.images[np.unique(parts["train"].blend)]  # each training blend once
            info.normalize = RobustNormalize().fit(torch.from_numpy(train)).get_config()
        return DeblendPrepared(x={part: network_inputs(p, info) for part, p in parts.items()},
                               y={part: to_network(p.sources, info) for part, p in parts.items()},
                               ids={part: p.ids for part, p in parts.items()}, info=info,
                               targets={part: np.column_stack([p.x, p.y]) for part, p in parts.items()})

    def read_new(self, config: RunConfig, info: DeblendInfo, path: Path, labelled: bool) -> NewData:
        found = examples(read(config.data, path, labelled, inputs=info.inputs, targets=info.targets,
                              bands=info.bands))
        targets = None if found.sources is None else to_network(found.sources, info)
        return NewData(x=network_inputs(found, info), y=targets, ids=found.ids,
                       columns={"blend": found.blend, "source": found.source, "x": found.x, "y": found.y})

    def new_prepared(self, new: NewData, info: DeblendInfo) -> DeblendPrepared:  # type: ignore[override]
        return DeblendPrepared(x={"test": new.x}, y={"test": new.y}, ids={"test": new.ids}, info=info,
                               targets={"test": np.column_stack([new.columns["x"], new.columns["y"]])})

    # -- the network ---------------------------------------------------------------------------
    def head(self, prepared: Prepared) -> tuple[int, str | None]:
        return len(prepared.info.bands), None

    def default_loss(self, prepared: Prepared) -> str:
        """``mae``, as for denoising (:meth:`~deepfield.tasks.denoise.Denoise.default_loss`): squared errors
        let the bright cores outweigh the faint wings that hold much of a source's flux."""
        return "mae"

    def loss(self, config: RunConfig, prepared: Prepared) -> str | LossFn:
        """``training.loss: flux_mae`` (:class:`~deepfield.training.flux_losses.FluxConservingMAE`) is told this
        run's stretch and normalisation, so its flux term is each source's total flux in the file's unit, as
        ``flux_mape``'s. Not the default: on 2,000 two-galaxy blends (bench_deblend's settings, 8 epochs) it gave
        a flux error of 16.6 % (bias −11.7 %) where ``mae`` gave 13.3 % (bias +4.2 %): a relative error is least
        for an estimate below the truth when the truth is uncertain (the faint sources weigh most)."""
        name = super().loss(config, prepared)
        if name != FluxConservingMAE.name:
            return name
        info = prepared.info
        scale, offset = ((list(info.normalize.sigma), list(info.normalize.median)) if info.normalize is not None
                         else (1.0, 0.0))
        softening = ASINH_SOFTENING if info.stretch == "asinh" else None
        return FluxConservingMAE(flux_weight=FLUX_WEIGHT, softening=softening, scale=scale, offset=offset)

    def default_metrics(self, prepared: Prepared) -> list[str]:
        return ["mse"]

    def build_model(self, config: RunConfig, prepared: Prepared) -> torch.nn.Module:
        """The preset with one output channel per band (presets taking ``output_channels``, as ``unet``):
        the input has one more, the marker."""
        options = dict(config.model.options)
        if "output_channels" in zoo.parameters(config.model.preset):
            options.setdefault("output_channels", len(prepared.info.bands))
        model = config.model.model_copy(update={"options": options})
        return super().build_model(config.model_copy(update={"model": model}), prepared)

    # -- what the run says ---------------------------------------------------------------------
    def analyse(self, outputs: np.ndarray, prepared: Prepared, part: str, figures: Path) -> dict[str, Any]:
        """The deblending metrics of the network's sources on ``part`` (file's flux unit) and the gallery of
        the best, median and worst flux errors: blend, network, truth, residual."""
        info = prepared.info
        output, truth = from_network(outputs, info), from_network(prepared.y[part], info)
        blends = from_network(prepared.x[part][:, :len(info.bands)], info)
        result = deblending_scores(truth, output, info.bands)
        errors = relative_flux_errors(truth, output)[:, -1]
        shown = best_median_worst(-np.abs(errors))
        plot_restoration_gallery(blends, output, truth, figures / "deblend_gallery.png", shown,
                                 [f"flux error {100 * errors[i]:+.1f} %" for i in shown], unit=info.unit,
                                 titles=("blend (+ target)", "network", "isolated truth"),
                                 marks=prepared.targets[part])  # type: ignore[attr-defined]
        return {**result, "recovered_within": RECOVERED_WITHIN, "unit": info.unit}

    def classical_baselines(self, config: RunConfig, prepared: Prepared,
                            metrics: dict[str, Any]) -> list[dict[str, Any]]:
        """The network's row, then the blend itself and photutils' segmentation deblender
        (:func:`~deepfield.tasks.baselines.deblenders.deblend_baselines`) on the same validation and test parts."""
        info, channels = prepared.info, len(prepared.info.bands)
        targets = prepared.targets  # type: ignore[attr-defined]
        parts = {part: {"blends": from_network(prepared.x[part][:, :channels], info),
                        "truth": from_network(prepared.y[part], info),
                        "x": targets[part][:, 0], "y": targets[part][:, 1]}
                 for part in ("validation", "test")}
        network = {"model": f"network ({config.model.preset})", "parameter": "",
                   **{key: metrics[key] for key in SCORES if key in metrics}}
        return [network, *deblend_baselines(parts["validation"], parts["test"], sky_sigma(prepared), info.bands)]

    def describe(self, outputs: np.ndarray, info: DeblendInfo) -> dict[str, np.ndarray]:
        """``deblended`` (N, C, H, W) float32: each target source alone, in the file's unit."""
        return {"deblended": from_network(outputs, info).astype(np.float32)}


def sky_sigma(prepared: Prepared) -> np.ndarray:
    """(C,) each band's sky σ per pixel in the file's unit: the normalisation's 1.4826 · MAD of the training
    blends, or that of the raw training blends without normalisation."""
    info = prepared.info
    if info.normalize is not None:
        return np.asarray(info.normalize.sigma, dtype=np.float64)
    blends = from_network(prepared.x["train"][:, :len(info.bands)], info)
    return np.array([nmad(blends[:, c]) for c in range(len(info.bands))])
