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

All sources at once (``data.deblend: all``; default ``each``, the one-target form above): one example per
blend; the network reads the blend and one marker channel per source slot, ``(C + S, H, W)`` (S: the file's most
sources per blend, slots in the file's order, an empty slot's marker all zero), and returns one image per slot,
``(S · C, H, W)`` (slot ``s``'s bands at channels ``s · C`` to ``s · C + C − 1``), trained with the same loss on
every slot. An empty slot is not masked but trained to its known answer, no light (the sources file holds zeros
there): the network learns that an unmarked slot is empty, and every loss and metric works unchanged. Slots in
the file's order, not by flux: each slot's marker says which source it is, so no order has to be learnt. The
analysis takes each filled slot as one source, exactly as the one-target form's (same metrics, same baselines).

Uncertainty (``uncertainty.heteroscedastic: true`` for the head's per-pixel log-variances, trained with
``gaussian_nll``; ``uncertainty.mc_samples`` with ``model.options.dropout`` for MC-dropout draws; or both): each
source's per-pixel σ and its total flux's σ per band (the flux of the whole stamp), in the file's unit
(:mod:`~deepfield.tasks.stamp_uncertainty` says how each σ crosses the stretch: the draws one by one through
``from_network``, the head's σ by the delta method); the coverage of their 68 % and 95 % intervals on the test
part, raw and recalibrated on the validation part (``pixel`` and ``flux`` half-widths in ``calibration.json``),
the curves (``uncertainty_coverage.png``) and the σ column of the gallery, as denoise's
(:meth:`Deblend.analyse_uncertainty`).

Predictions (``deepfield predict RUN blends.h5 --out deblended.h5``): one row per source of each blend
(ids ``blend:source``), its ``deblended`` column the source's ``(C, H, W)`` stamp in the file's flux unit and
``deblended_flux`` its total flux per band ``(C,)``; with ``data.deblend: all`` one row per blend (id ``blend``),
``(S, C, H, W)`` and ``(S, C)`` (a slot past the blend's count holds what the network returns for an unmarked slot,
trained to be empty). With a σ: ``deblended_err`` (the head's), ``deblended_spread`` (the draws'), both raw,
``deblended_flux_err`` (the flux's raw σ) and the recalibrated half-widths ``deblended_halfwidth_68/95`` (pixels)
and ``deblended_flux_halfwidth_68/95``: the true flux lies within ``deblended_flux ± deblended_flux_halfwidth_L``
for a fraction L of sources.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepfield.analysis.deblending import RECOVERED_WITHIN, deblending_scores, relative_flux_errors
from deepfield.analysis.image_quality import nmad
from deepfield.analysis.image_uncertainty import aperture_flux_uncertainty
from deepfield.data.blend_stamps import MARKER_SIGMA, BlendStamps, read_blend_stamps, target_marker
from deepfield.data.transforms import RobustNormalize
from deepfield.errors import DeepfieldError
from deepfield.models import zoo
from deepfield.plots import best_median_worst, plot_restoration_gallery
from deepfield.tasks.base import Calibration, NewData, Prepared, Task
from deepfield.tasks.baselines.deblenders import SCORES, deblend_baselines
from deepfield.tasks.blend_examples import Examples, examples, placed, source_stamps
from deepfield.tasks.config import DataConfig, RunConfig
from deepfield.tasks.image_heads import with_image_head
from deepfield.tasks.image_options import image_task_checks
from deepfield.tasks.imaging import ASINH_SOFTENING
from deepfield.tasks.parts import split_parts
from deepfield.tasks.pixel_scaling import from_network, to_network
from deepfield.tasks.prepared_info import DeblendInfo
from deepfield.tasks.stamp_uncertainty import StampUncertainty, flux_maps, halfwidth_columns
from deepfield.training.flux_losses import FluxConservingMAE
from deepfield.training.losses import LossFn
from deepfield.training.mc_dropout import MCPrediction

DEFAULT_SOURCES = "sources"
# flux_mae's weight on the flux term: per image its gradient spreads over every pixel (by a rough count
# ≈ 30× the pixel MAE's in L1 on 32×32 g, r, i stamps of AB 25 sources in 100-visit sky); weight 1 swamped
# the pixels (val MSE 0.24 against the MAE's 0.012 after 3 epochs); 0.05 leaves them in charge.
FLUX_WEIGHT = 0.05


@dataclass
class DeblendPrepared(Prepared):
    """:class:`Prepared` plus, per part, where its target sources are, in the order they are scored: ``targets[part]``
    (M, 2) each one's centre (column, row in pixels) and ``slots[part]`` (M, 2) its row of ``x``/``y`` and its slot
    in that row's outputs (always 0 in the one-target form, one row per source)."""

    targets: dict[str, np.ndarray] = field(default_factory=dict)
    slots: dict[str, np.ndarray] = field(default_factory=dict)


def read(data: DataConfig, path: Path, labelled: bool, inputs: str | None = None, targets: str | None = None,
         bands: list[str] | None = None) -> BlendStamps:
    """The blends file ``path`` as ``data`` says to read it (``inputs``/``targets``/``bands``: a run's record)."""
    return read_blend_stamps(path, images=inputs or data.images, sources=targets or data.target or DEFAULT_SOURCES,
                             labelled=labelled, bands=data.bands if bands is None else bands, limit=data.limit)


def network_inputs(found: Examples, info: DeblendInfo) -> np.ndarray:
    """(N, C + K, H, W) float32: the blends in network units and the K slots' target markers."""
    marker = target_marker(found.x, found.y, found.blends.shape[2:], info.marker_sigma)
    return np.concatenate([to_network(found.blends, info), marker], axis=1)


def network_targets(found: Examples, info: DeblendInfo) -> np.ndarray | None:
    """(N, K · C, H, W) float32: the K slots' sources in network units, slot after slot; ``None`` unlabelled."""
    if found.sources is None:
        return None
    n, slots = found.sources.shape[:2]
    values = to_network(found.sources.reshape(n * slots, *found.sources.shape[2:]), info)
    return values.reshape(n, slots * values.shape[1], *values.shape[2:])


def check_options(config: RunConfig) -> None:
    """Options other tasks take that would break a deblending pair, and combinations that make no sense."""
    image_task_checks(config, "deblend", takes="blended images")
    options, loss = config.model.options, config.training.loss
    if "heteroscedastic" in options:
        raise DeepfieldError("model.options.heteroscedastic: set uncertainty.heteroscedastic: true instead (task "
                             "deblend then trains the head with gaussian_nll and reports its σ in nJy)")
    if config.uncertainty.heteroscedastic and loss not in (None, "gaussian_nll"):
        raise DeepfieldError(f"training.loss: {loss} with uncertainty.heteroscedastic: the head's log-variances "
                             "train only with gaussian_nll (leave training.loss out)")
    if loss == FluxConservingMAE.name and config.data.deblend == "all":
        raise DeepfieldError("training.loss: flux_mae takes one source per output; with data.deblend: all use mae")
    if config.uncertainty.mc_samples and config.model.bayesian is None and not options.get("dropout"):
        raise DeepfieldError("uncertainty.mc_samples: model.options.dropout is 0, so every draw would be the same; "
                             "set a dropout rate (e.g. 0.1) or leave mc_samples out")


class Deblend(Task):
    """Blend + the target's position -> the target source alone, scored against its isolated truth."""

    name = "deblend"
    augments_targets = True
    info_model = DeblendInfo

    def prepare(self, config: RunConfig) -> DeblendPrepared:
        check_options(config)
        data = config.data
        stamps = read(data, data.path, labelled=True)
        slots = stamps.x.shape[1] if data.deblend == "all" else None
        parts = split_parts(config, len(stamps.images), lambda index: examples(stamps, index, slots),
                            lambda path: examples(read(data, path, labelled=True, bands=list(stamps.bands)),
                                                  slots=slots),
                            lambda part: len(part.blend))
        info = DeblendInfo(bands=list(stamps.bands), unit=stamps.unit, inputs=data.images,
                           targets=data.target or DEFAULT_SOURCES, marker_sigma=MARKER_SIGMA,
                           stretch=data.stretch or "asinh")
        if slots is not None:
            info.slots = slots
        if data.normalize == "robust":
            train = stamps.images[np.unique(parts["train"].blend)]  # each training blend once
            info.normalize = RobustNormalize().fit(torch.from_numpy(train)).get_config()
        where = {part: placed(p.x, p.y) for part, p in parts.items()}
        return DeblendPrepared(x={part: network_inputs(p, info) for part, p in parts.items()},
                               y={part: network_targets(p, info) for part, p in parts.items()},
                               ids={part: p.ids for part, p in parts.items()}, info=info,
                               targets={part: w[0] for part, w in where.items()},
                               slots={part: w[1] for part, w in where.items()})

    def read_new(self, config: RunConfig, info: DeblendInfo, path: Path, labelled: bool) -> NewData:
        found = examples(read(config.data, path, labelled, inputs=info.inputs, targets=info.targets,
                              bands=info.bands), slots=info.slots)
        return NewData(x=network_inputs(found, info), y=network_targets(found, info), ids=found.ids,
                       columns=found.columns)

    def new_prepared(self, new: NewData, info: DeblendInfo) -> DeblendPrepared:  # type: ignore[override]
        centres, slots = placed(new.columns["x"], new.columns["y"])
        return DeblendPrepared(x={"test": new.x}, y={"test": new.y}, ids={"test": new.ids}, info=info,
                               targets={"test": centres}, slots={"test": slots})

    # -- the network ---------------------------------------------------------------------------
    def head(self, prepared: Prepared) -> tuple[int, str | None]:
        return output_channels(prepared.info), None

    def default_loss(self, prepared: Prepared) -> str:
        """``mae``, as for denoising (:meth:`~deepfield.tasks.denoise.Denoise.default_loss`): squared errors
        let the bright cores outweigh the faint wings that hold much of a source's flux; ``gaussian_nll`` for a
        heteroscedastic head."""
        return "gaussian_nll" if prepared.info.heteroscedastic else "mae"

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
        return [] if prepared.info.heteroscedastic else ["mse"]

    def build_model(self, config: RunConfig, prepared: Prepared) -> torch.nn.Module:
        """The preset with one output channel per band and slot (presets taking ``output_channels``, as ``unet``;
        the input has one marker per slot more than the bands) and, with ``uncertainty.heteroscedastic``, their
        log-variance channels (:func:`~deepfield.tasks.image_heads.with_image_head`)."""
        info = prepared.info
        if info.slots is not None and "output_channels" not in zoo.parameters(config.model.preset):
            raise DeepfieldError(f"data.deblend: all needs a preset that returns one image per source slot "
                                 f"(output_channels); model.preset {config.model.preset!r} has none: use unet")
        return super().build_model(with_image_head(config, prepared, output_channels(info)), prepared)

    # -- what the run says ---------------------------------------------------------------------
    def analyse(self, outputs: np.ndarray, prepared: Prepared, part: str, figures: Path) -> dict[str, Any]:
        """The deblending metrics of the network's sources on ``part`` (file's flux unit) and the gallery of
        the best, median and worst flux errors: blend, network, truth, residual."""
        info = prepared.info
        found = scored_sources(prepared, part)
        output = from_network(scored_outputs(outputs, prepared, part), info)
        result = deblending_scores(found["truth"], output, info.bands)
        gallery(found, output, figures, info.unit)
        return {**result, "recovered_within": RECOVERED_WITHIN, "unit": info.unit}

    def classical_baselines(self, config: RunConfig, prepared: Prepared,
                            metrics: dict[str, Any]) -> list[dict[str, Any]]:
        """The network's row, then the blend itself and photutils' segmentation deblender
        (:func:`~deepfield.tasks.baselines.deblenders.deblend_baselines`) on the same validation and test parts."""
        parts = {part: scored_sources(prepared, part) for part in ("validation", "test")}
        network = {"model": f"network ({config.model.preset})", "parameter": "",
                   **{key: metrics[key] for key in SCORES if key in metrics}}
        return [network, *deblend_baselines(parts["validation"], parts["test"], sky_sigma(prepared),
                                            prepared.info.bands)]

    def describe(self, outputs: np.ndarray, info: DeblendInfo) -> dict[str, np.ndarray]:
        """Float32, in the file's unit: ``deblended`` (N, C, H, W) each target source alone and ``deblended_flux``
        (N, C) its total flux per band; with ``data.deblend: all`` (N, S, C, H, W) and (N, S, C), slot by slot."""
        stamps = from_network(every_slot(outputs, info), info)
        columns = {"deblended": stamps, "deblended_flux": stamps.sum(axis=(2, 3))}
        return slot_rows({name: values.astype(np.float32) for name, values in columns.items()}, info, len(outputs))

    # -- uncertainty ---------------------------------------------------------------------------
    keeps_draws = True
    recalibrates = True

    def fit_calibration(self, prediction: MCPrediction, prepared: Prepared) -> dict[str, Any] | None:
        """``{"intervals": record}``: per quantity (``pixel``, ``flux``: each source's total flux per band) and
        level, the half-width in units of the raw σ that covers that fraction of the validation part
        (:meth:`~deepfield.tasks.stamp_uncertainty.StampUncertainty.calibration`); ``None`` without a σ."""
        return source_uncertainty(prediction, prepared, "validation").calibration()

    def analyse_uncertainty(self, prediction: MCPrediction, prepared: Prepared, part: str, figures: Path,
                            calibration: Calibration = None) -> dict[str, Any]:
        """Each source's per-pixel σ (MC-dropout spread, heteroscedastic head, both) and the coverage of its
        intervals per pixel and per total flux, raw and recalibrated by ``calibration``
        (:func:`~deepfield.tasks.uncertainty.image_uncertainty`: its ``flux`` is here the whole stamp's); the
        gallery again, with the total σ."""
        maps = source_uncertainty(prediction, prepared, part)
        if maps.total is None:
            return {}
        result = maps.coverage(figures, calibration)
        gallery(scored_sources(prepared, part), maps.output, figures, prepared.info.unit, maps.total)
        return result

    def describe_uncertainty(self, prediction: MCPrediction, info: DeblendInfo,
                             calibration: Calibration = None) -> dict[str, np.ndarray]:
        """Float32 in the file's unit, per source as :meth:`describe`'s columns: per pixel ``deblended_err`` (the
        head's σ) and ``deblended_spread`` (the draws'), both raw, and the recalibrated ``deblended_halfwidth_68``,
        ``_95`` (the total σ times the half-width fitted on the validation part); per band ``deblended_flux_err``
        (the total flux's raw σ: the draws' fluxes' spread ⊕ the head's pixels added as independent errors) and
        ``deblended_flux_halfwidth_68``, ``_95``: the true flux lies within ``deblended_flux ± halfwidth_L`` for a
        fraction L of sources."""
        maps = flux_maps(prediction, lambda values: from_network(values, info), lambda v: every_slot(v, info))
        sigmas = {name: maps[key] for name, key in (("err", "aleatoric"), ("spread", "epistemic"))
                  if maps[key] is not None}
        if not sigmas:
            return {}
        total = np.sqrt(sum(sigma**2 for sigma in sigmas.values()))
        flux = aperture_flux_uncertainty(np.ones((len(total), *total.shape[2:])), maps["output"], draws=maps["draws"],
                                         aleatoric=maps["aleatoric"]).total
        columns = {**{f"deblended_{name}": sigma.astype(np.float32) for name, sigma in sigmas.items()},
                   **halfwidth_columns(calibration, "pixel", "deblended", total),
                   "deblended_flux_err": flux.astype(np.float32),
                   **halfwidth_columns(calibration, "flux", "deblended_flux", flux)}
        return slot_rows(columns, info, len(prediction.mean))


def output_channels(info: DeblendInfo) -> int:
    """The network's output images: one per band (and per slot, all at once)."""
    return len(info.bands) * (info.slots or 1)


def every_slot(values: np.ndarray, info: DeblendInfo) -> np.ndarray:
    """Network outputs (N, K · C, H, W) -> (N · K, C, H, W): every slot's stamp, row after row."""
    return np.asarray(values).reshape(-1, len(info.bands), *np.shape(values)[2:])


def slot_rows(columns: dict[str, np.ndarray], info: DeblendInfo, rows: int) -> dict[str, np.ndarray]:
    """Columns of every slot (N · K, ...) as prediction rows: (N, ...) in the one-target form, (N, K, ...) all at
    once."""
    return {name: values.reshape(rows, *(() if info.slots is None else (info.slots,)), *values.shape[1:])
            for name, values in columns.items()}


def scored_outputs(values: np.ndarray, prepared: Prepared, part: str) -> np.ndarray:
    """(M, C, H, W) the target sources of ``part`` in network outputs ``values`` (N, K · C, H, W), in the
    order they are scored (:attr:`DeblendPrepared.slots`)."""
    return source_stamps(values, prepared.slots[part], len(prepared.info.bands))  # type: ignore[attr-defined]


def scored_sources(prepared: Prepared, part: str) -> dict[str, np.ndarray]:
    """The target sources of ``part`` in the file's unit, as they are scored: ``blends`` and ``truth``
    (M, C, H, W), their blend and isolated truth, and ``x``, ``y`` (M,) their centres."""
    info = prepared.info
    slots, targets = prepared.slots[part], prepared.targets[part]  # type: ignore[attr-defined]
    return {"blends": from_network(prepared.x[part][slots[:, 0], :len(info.bands)], info),
            "truth": from_network(scored_outputs(prepared.y[part], prepared, part), info),
            "x": targets[:, 0], "y": targets[:, 1]}


def source_uncertainty(prediction: MCPrediction, prepared: Prepared, part: str) -> StampUncertainty:
    """``prediction`` of ``part`` (draws kept) as each target source's σ in the file's unit
    (:func:`~deepfield.tasks.stamp_uncertainty.flux_maps` through :func:`from_network`); its ``flux`` the whole
    stamp's (weights all one)."""
    info = prepared.info
    found = scored_sources(prepared, part)
    truth = found["truth"]
    return StampUncertainty(truth=truth, noisy=found["blends"], weights=np.ones((len(truth), *truth.shape[2:])),
                            fluxes="total fluxes",
                            **flux_maps(prediction, lambda values: from_network(values, info),
                                        lambda values: scored_outputs(values, prepared, part)))


def gallery(found: dict[str, np.ndarray], output: np.ndarray, figures: Path, unit: str,
            sigma: np.ndarray | None = None) -> Path:
    """``deblend_gallery.png``: the sources of best, median and worst total-flux error (blend, network, truth,
    residual and, when given, the per-pixel ``sigma``; all (M, C, H, W) in ``unit``), each target crossed."""
    errors = relative_flux_errors(found["truth"], output)[:, -1]
    shown = best_median_worst(-np.abs(errors))
    return plot_restoration_gallery(found["blends"], output, found["truth"], figures / "deblend_gallery.png", shown,
                                    [f"flux error {100 * errors[i]:+.1f} %" for i in shown], sigma=sigma, unit=unit,
                                    titles=("blend (+ target)", "network", "isolated truth"),
                                    marks=np.column_stack([found["x"], found["y"]]))


def sky_sigma(prepared: Prepared) -> np.ndarray:
    """(C,) each band's sky σ per pixel in the file's unit: the normalisation's 1.4826 · MAD of the training
    blends, or that of the raw training blends without normalisation."""
    info = prepared.info
    if info.normalize is not None:
        return np.asarray(info.normalize.sigma, dtype=np.float64)
    blends = from_network(prepared.x["train"][:, :len(info.bands)], info)
    return np.array([nmad(blends[:, c]) for c in range(len(info.bands))])
