"""Denoising: a network maps a noisy stamp to a clean one (``task: denoise``; issue 18).

Data (``data.path``): image pairs read by :func:`~deepfield.data.pairs.read_pairs`: the HDF5 that
``deepfield simulate denoise`` writes (``images`` the shallow inputs, ``targets`` the noise-free or
deep ones, ``truth/`` the source centres and aperture radii) or a user's HDF5 / .npz holding an input
and a target array named by ``data.images`` (default ``images``) and ``data.target`` (default
``targets``). ``data.bands`` when the file does not name its bands; ``data.channels: last`` for
``(N, H, W, C)`` arrays; ``data.validation`` / ``data.test``: held-out files, else a seeded split.

Normalisation (``data.normalize: robust``, the default): each band's median and 1.4826 · MAD of the
training inputs, fitted once and recorded in ``prepared.json``
(:class:`~deepfield.tasks.prepared_info.DenoiseInfo`); inputs and targets both become
``(x − median) / sigma`` (so the loss is in units of the sky noise), and outputs are mapped back
by ``o · sigma + median``: metrics and predictions are in the file's flux unit (nJy per pixel for
deepfield's files). ``data.stretch: asinh``, when the config says so, then maps both to ``asinh(v / 3)``
(undone exactly on the outputs: :mod:`~deepfield.tasks.pixel_scaling`), so the loss weighs bright cores
nearly by their relative error; left out, denoise keeps the linear scale (unlike the classifiers and deblend,
whose default is asinh), as runs before the option had. The stretch refuses per-pixel σ (a heteroscedastic
head, MC dropout, an ensemble): σ in stretched units is not propagated back to flux units.

Network: ``model.preset`` defaults to ``unet`` (one output channel per band); loss ``mae`` (or
``training.loss: mse``; :meth:`Denoise.default_loss` says why not by default); ``uncertainty.heteroscedastic``
adds the preset's per-pixel log-variance channels (outputs ``(N, 2C, H, W)``, means first) trained with
``gaussian_nll``.

Metrics on the test part (:func:`~deepfield.analysis.image_quality.image_quality`, definitions there):
PSNR and SSIM, the aperture S/N gain over the noisy input, the aperture flux bias and scatter, the
adaptive-moment shape error. Apertures are centred on ``truth/x``, ``truth/y`` when the file has them, else
on the stamp's centre; their radius (``analysis.aperture``): ``file`` (the default) ``truth/aperture_radius``,
else :data:`APERTURE_FRACTION` of the stamp's smaller side; ``kron`` the Kron aperture of each target
(:func:`~deepfield.analysis.image_quality.kron_radii`: 2.5 first-moment radii of the band-summed truth, at
most the stamp's half-side; SExtractor's ``FLUX_AUTO``, the total flux catalogues publish).
Classical baselines: :mod:`deepfield.tasks.baselines.denoisers`.

Uncertainty (:meth:`Denoise.analyse_uncertainty`, ``metrics.json["uncertainty"]``): per-pixel σ from the
spread of MC-dropout draws (``uncertainty.mc_samples`` with ``model.options.dropout``), the heteroscedastic head,
or both in quadrature; the coverage of its 68 % and 95 % intervals per pixel and per aperture flux, their
curve (``uncertainty_coverage.png``) and the σ column of the gallery
(:func:`~deepfield.tasks.uncertainty.image_uncertainty`, :mod:`deepfield.analysis.image_uncertainty`).
The raw σ's Gaussian intervals do not hold their level (heavy-tailed errors), so training recalibrates
them (:meth:`Denoise.fit_calibration`): per quantity (``pixel``, ``flux``) and level, the half-width in
units of σ that covers that fraction of the validation part, kept in ``calibration.json["intervals"]``;
the test part's coverage is then reported raw (``pixel_coverage``, ``flux_coverage``) and recalibrated
(``pixel_coverage_calibrated``, ``flux_coverage_calibrated``, ``*_calibrated`` in the curve).

Flux (``denoise.flux``): ``network`` (the default) keeps the network's stamps; ``template`` uses the network for
the shape and the data for the flux: per stamp and band the output ``T`` becomes ``A·T``, ``A = Σ x·T / Σ T²``
the least-squares amplitude of the noisy input ``x`` on it over the stamp (forced photometry with a model
template: :mod:`deepfield.analysis.template_photometry`; :meth:`Denoise.finish_prediction`), in the metrics, the
gallery and the predicted stamps alike (the classical baselines as they are). It refuses per-pixel σ maps, and
whole FITS images (no stamps to fit); the explanations explain the network's own output.

Predictions (``deepfield predict RUN pairs.h5 --out denoised.h5``): the table's ``denoised`` column
holds each object's ``(C, H, W)`` stamp in the file's flux unit (``denoised_err``: the per-pixel σ of a
heteroscedastic head; ``denoised_spread``: the spread of MC draws; both raw); with a σ, the recalibrated
``denoised_halfwidth_68`` and ``denoised_halfwidth_95``: the truth lies within ``denoised ± halfwidth_L``
for a fraction L of pixels (use these for intervals, not ``denoised ± denoised_err``); write it as HDF5 or FITS.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepfield.analysis.image_quality import image_quality, kron_radii, psnr
from deepfield.analysis.image_uncertainty import aperture_weights
from deepfield.analysis.template_photometry import template_fluxes
from deepfield.analysis.tiling_fits import predict_fits_tiled
from deepfield.data.pairs import ImagePairs, read_pairs
from deepfield.data.transforms import RobustNormalize
from deepfield.errors import DeepfieldError
from deepfield.models import zoo
from deepfield.plots import best_median_worst, plot_restoration_gallery
from deepfield.tasks.base import Calibration, NewData, Prepared, Task
from deepfield.tasks.baselines.denoisers import SCORES, denoise_baselines
from deepfield.tasks.config import DataConfig, RunConfig
from deepfield.tasks.image_heads import with_image_head
from deepfield.tasks.image_options import image_task_checks
from deepfield.tasks.imaging import ImageClassification
from deepfield.tasks.parts import split_parts
from deepfield.tasks.pixel_scaling import NetworkScale, from_network, restore, to_network
from deepfield.tasks.prepared_info import DenoiseInfo
from deepfield.tasks.stamp_uncertainty import StampUncertainty, flux_maps, halfwidth_columns
from deepfield.training.mc_dropout import MCPrediction

DEFAULT_TARGETS = "targets"
FITS_SUFFIXES = (".fits", ".fit", ".fts")
TILE = 256
"""The smallest tile side (pixels) of tiled whole-image prediction."""
APERTURE_FRACTION = 0.125
"""Aperture radius, as a fraction of the stamp's smaller side, when the file gives none (8 pixels on 64×64)."""


@dataclass
class DenoisePrepared(Prepared):
    """:class:`Prepared` plus, per part, the photometry apertures ``apertures[part]`` (N, 3):
    centre column, centre row and radius, in pixels."""

    apertures: dict[str, np.ndarray] = field(default_factory=dict)


def targets_name(data: DataConfig) -> str:
    return data.target or DEFAULT_TARGETS


def read(data: DataConfig, path: Path, labelled: bool, inputs: str | None = None, targets: str | None = None,
         bands: list[str] | None = None) -> ImagePairs:
    """The pairs of ``path`` as ``data`` says to read them (``inputs``/``targets``/``bands``: a run's record)."""
    return read_pairs(path, inputs=inputs or data.images, targets=targets or targets_name(data), labelled=labelled,
                      bands=data.bands if bands is None else bands, channels=data.channels, ids=data.ids,
                      limit=data.limit)


def apertures(pairs: ImagePairs, info: DenoiseInfo) -> np.ndarray:
    """(N, 3) aperture centre column, row and radius (pixels): the file's ``truth/`` columns, else the
    stamp's centre and ``info.aperture_radius``; with ``info.aperture == "kron"`` and targets, each target's
    Kron radius (:func:`~deepfield.analysis.image_quality.kron_radii`)."""
    n, (height, width) = len(pairs.inputs), pairs.inputs.shape[2:]
    geometry = pairs.geometry
    x, y = geometry.get("x", np.full(n, (width - 1) / 2)), geometry.get("y", np.full(n, (height - 1) / 2))
    if info.aperture == "kron" and pairs.targets is not None:
        return np.column_stack([x, y, kron_radii(pairs.targets, x, y)])
    return np.column_stack([x, y, geometry.get("aperture_radius", np.full(n, info.aperture_radius))])


def stretch(config: RunConfig) -> str:
    """``data.stretch``, else ``none`` (denoise's linear default; a saved config.yaml keeps the null, so a
    resumed run keeps the scale it started with)."""
    return config.data.stretch or "none"


def check_options(config: RunConfig) -> None:
    """Options other tasks take that would break a denoising pair."""
    image_task_checks(config, "denoise", takes="image pairs")
    uncertain = config.uncertainty.heteroscedastic or config.uncertainty.mc_samples > 0 or config.ensemble > 1
    if config.denoise.flux == "template" and (uncertain or config.model.bayesian is not None):
        raise DeepfieldError("denoise.flux: template rescales the denoised stamps, not their per-pixel σ "
                             "(heteroscedastic head, mc_samples, ensemble, bayesian); use denoise.flux: network "
                             "for σ maps")
    if stretch(config) == "asinh" and uncertain:
        raise DeepfieldError("data.stretch: asinh: per-pixel σ is not propagated through the stretch (heteroscedastic "
                             "head, mc_samples, ensemble); use data.stretch: none for σ maps")


class Denoise(Task):
    """Noisy stamp -> clean stamp, scored against the truth in the file's flux unit."""

    name = "denoise"
    augments_targets = True
    info_model = DenoiseInfo
    keeps_draws = True

    def prepare(self, config: RunConfig) -> DenoisePrepared:
        check_options(config)
        data = config.data
        pairs = read(data, data.path, labelled=True)
        parts = split_parts(config, len(pairs.inputs), lambda index: _take(pairs, index),
                            lambda path: read(data, path, labelled=True, bands=list(pairs.bands)),
                            lambda part: len(part.inputs))
        height, width = pairs.inputs.shape[2:]
        info = DenoiseInfo(bands=list(pairs.bands), unit=pairs.unit, inputs=data.images, targets=targets_name(data),
                           aperture_radius=APERTURE_FRACTION * min(height, width), stretch=stretch(config),
                           aperture=config.analysis.aperture, flux=config.denoise.flux)
        if data.normalize == "robust":
            info.normalize = RobustNormalize().fit(torch.from_numpy(parts["train"].inputs)).get_config()
        return DenoisePrepared(x={part: to_network(p.inputs, info) for part, p in parts.items()},
                               y={part: to_network(p.targets, info) for part, p in parts.items()},
                               ids={part: p.ids for part, p in parts.items()}, info=info,
                               apertures={part: apertures(p, info) for part, p in parts.items()})

    def read_new(self, config: RunConfig, info: DenoiseInfo, path: Path, labelled: bool) -> NewData:
        pairs = read(config.data, path, labelled, inputs=info.inputs, targets=info.targets, bands=info.bands)
        geometry = apertures(pairs, info)
        return NewData(x=to_network(pairs.inputs, info),
                       y=None if pairs.targets is None else to_network(pairs.targets, info), ids=pairs.ids,
                       columns={"x": geometry[:, 0], "y": geometry[:, 1], "aperture_radius": geometry[:, 2]})

    def read_values(self, config: RunConfig, info: DenoiseInfo, values: Any) -> NewData:
        """Raw stamps in the run's flux unit, as :meth:`ImageClassification.raw_stamps` reads them."""
        stamps = ImageClassification.raw_stamps(values, config, info)
        return NewData(x=to_network(stamps, info), y=None, ids=np.arange(len(stamps)))

    def new_prepared(self, new: NewData, info: DenoiseInfo) -> DenoisePrepared:  # type: ignore[override]
        geometry = np.column_stack([new.columns[k] for k in ("x", "y", "aperture_radius")])
        return DenoisePrepared(x={"test": new.x}, y={"test": new.y}, ids={"test": new.ids}, info=info,
                               apertures={"test": geometry})

    # -- the network ---------------------------------------------------------------------------
    def head(self, prepared: Prepared) -> tuple[int, str | None]:
        return len(prepared.info.bands), None

    def default_loss(self, prepared: Prepared) -> str:
        """``mae``: on 600 simulated g, r, i pairs (40 epochs, the example's U-Net) it reached PSNR 34.4 dB,
        S/N gain 1.03 and flux bias −1.4 % where ``mse`` reached 30.4 dB, 0.71 and −9.3 %: squared errors
        let the bright cores (hundreds of sky σ) outweigh the faint light the photometry needs."""
        return "gaussian_nll" if prepared.info.heteroscedastic else "mae"

    def default_metrics(self, prepared: Prepared) -> list[str]:
        return [] if prepared.info.heteroscedastic else ["mse"]

    def build_model(self, config: RunConfig, prepared: Prepared) -> torch.nn.Module:
        """The preset with one output channel per band and, with ``uncertainty.heteroscedastic``, its
        log-variance channels (presets taking ``output_channels`` / ``heteroscedastic``, as ``unet``)."""
        return super().build_model(with_image_head(config, prepared, len(prepared.info.bands)), prepared)

    def finish_prediction(self, prediction: MCPrediction, x: np.ndarray, info: DenoiseInfo) -> MCPrediction:
        """With ``denoise.flux: template`` (``info.flux``), each denoised stamp ``T`` of ``prediction`` rescaled per
        band to ``A·T`` in the file's flux unit, ``A`` the least-squares amplitude of the noisy input (``x``,
        network-ready (N, C, H, W)) on it (:func:`~deepfield.analysis.template_photometry.template_fluxes`),
        back in network units; the network's own stamps otherwise. (A template run has one draw and no σ:
        :func:`check_options`.)"""
        if info.flux != "template":
            return prediction
        template = self.split(prediction.mean, info)[0]
        mean = to_network(template_fluxes(from_network(x, info), template), info).astype(prediction.mean.dtype)
        return replace(prediction, mean=mean, samples=None if prediction.samples is None else mean[None])

    def split(self, outputs: np.ndarray, info: DenoiseInfo) -> tuple[np.ndarray, np.ndarray | None]:
        """Network outputs (N, C or 2C, H, W) -> (denoised stamps, per-pixel σ or ``None``), both (N, C, H, W)
        in the file's flux unit. (A run's prediction reads its draws with
        :class:`~deepfield.training.mc_dropout.MCPrediction` instead, which splits the same way.)"""
        channels = len(info.bands)
        mean = from_network(outputs[:, :channels], info)
        if outputs.shape[1] == channels:
            return mean, None
        return mean, restore(np.exp(0.5 * np.asarray(outputs[:, channels:], dtype=np.float64)), info, offset=False)

    # -- what the run says ---------------------------------------------------------------------
    def analyse(self, outputs: np.ndarray, prepared: Prepared, part: str, figures: Path) -> dict[str, Any]:
        """The image-quality metrics of the network's stamps ``outputs`` (N, C, H, W) on ``part`` (file's flux
        unit), the noisy input's PSNR / SSIM beside them, and the gallery (its σ column:
        :meth:`analyse_uncertainty`)."""
        info = prepared.info
        output = self.split(outputs, info)[0]
        truth, noisy = from_network(prepared.y[part], info), from_network(prepared.x[part], info)
        geometry = prepared.apertures[part]  # type: ignore[attr-defined]
        result = image_quality(truth, output, noisy, geometry[:, 0], geometry[:, 1], geometry[:, 2], info.bands)
        result["unit"] = info.unit
        gallery(noisy, output, truth, figures, info.unit)
        return result

    recalibrates = True

    def fit_calibration(self, prediction: MCPrediction, prepared: Prepared) -> dict[str, Any] | None:
        """``{"intervals": record}``: per quantity (``pixel``, ``flux``) and level the half-width, in units of
        the raw σ, of the interval that covers that fraction of the validation part
        (:func:`~deepfield.tasks.uncertainty.image_quantities`,
        :func:`~deepfield.analysis.interval_recalibration.fit_interval_record`); ``None`` without a σ."""
        return stamp_uncertainty(prediction, prepared, "validation").calibration()

    def analyse_uncertainty(self, prediction: MCPrediction, prepared: Prepared, part: str, figures: Path,
                            calibration: Calibration = None) -> dict[str, Any]:
        """The per-pixel σ of the run's prediction (MC-dropout spread, heteroscedastic head, both) and the
        coverage of its intervals per pixel and per aperture flux, raw and recalibrated by ``calibration``
        (:func:`~deepfield.tasks.uncertainty.image_uncertainty`); the gallery again, with the total σ."""
        maps = stamp_uncertainty(prediction, prepared, part)
        if maps.total is None:
            return {}
        result = maps.coverage(figures, calibration)
        gallery(maps.noisy, maps.output, maps.truth, figures, prepared.info.unit, maps.total)
        return result

    def predict_whole_image(self, models: list[nn.Module], config: RunConfig, info: DenoiseInfo, data: Path,
                            out: Path, overwrite: bool = False) -> Path | None:
        """A FITS image (``(H, W)`` one band, or a ``(C, H, W)`` cube in the run's band order) of any size,
        denoised by overlapping tiles (:func:`~deepfield.analysis.tiling_fits.predict_fits_tiled`,
        :func:`unet_tiling`) into the FITS file ``out`` with the input's header and WCS, in its flux unit.
        Sides that do not divide by ``2**depth`` are mirrored beyond the far edges to multiples of it, then cropped."""
        tiling = fits_tiling(config, data, out, "denoised")
        if tiling is None:
            return None
        if info.flux == "template":
            raise DeepfieldError(f"{data}: a whole image has no stamps to fit a template's flux to (denoise.flux: "
                                 "template); predict stamps (an HDF5 or .npz of them), or train with "
                                 "denoise.flux: network")
        tile, overlap, margin, multiple = tiling
        return predict_fits_tiled(Restoring(models, info), data, out, tile=tile, overlap=overlap, margin=margin,
                                  multiple=multiple, device=config.training.device, overwrite=overwrite)

    def classical_baselines(self, config: RunConfig, prepared: Prepared,
                            metrics: dict[str, Any]) -> list[dict[str, Any]]:
        """The network's row, then the noisy input and the classical filters
        (:func:`~deepfield.tasks.baselines.denoisers.denoise_baselines`) on the same validation and test parts."""
        info = prepared.info
        parts = {part: (from_network(prepared.x[part], info), from_network(prepared.y[part], info))
                 for part in ("validation", "test")}
        flux = ", template flux" if info.flux == "template" else ""
        network = {"model": f"network ({config.model.preset}{flux})", "parameter": "",
                   **{key: metrics[key] for key in SCORES if key in metrics}}
        return [network, *denoise_baselines(parts["validation"], parts["test"],
                                            prepared.apertures["test"], info.bands)]  # type: ignore[attr-defined]

    def describe(self, outputs: np.ndarray, info: DenoiseInfo) -> dict[str, np.ndarray]:
        """``denoised`` (N, C, H, W) float32 in the file's unit."""
        return {"denoised": self.split(outputs, info)[0].astype(np.float32)}

    def explained_image(self, model: nn.Module, info: DenoiseInfo) -> nn.Module:
        """The denoised bands in the file's flux unit (:class:`Restoring` of network-ready stamps): the network's
        own output, before ``denoise.flux: template`` rescales it."""
        return Restoring([model], info, normalised=True)

    def describe_uncertainty(self, prediction: MCPrediction, info: DenoiseInfo,
                             calibration: Calibration = None) -> dict[str, np.ndarray]:
        """Per pixel in the file's unit, float32 (N, C, H, W): ``denoised_err`` the heteroscedastic head's σ,
        ``denoised_spread`` the spread of the draws (MC dropout, an ensemble), both raw; with the run's
        recalibration, ``denoised_halfwidth_68`` and ``denoised_halfwidth_95``: the true pixel lies within
        ``denoised ± denoised_halfwidth_L`` for a fraction L of pixels (the total σ, both in quadrature, times
        the half-width fitted on the validation part)."""
        columns = {}
        if prediction.aleatoric is not None:
            columns["denoised_err"] = restore(prediction.aleatoric, info, offset=False).astype(np.float32)
        if float(prediction.std.max()) > 0.0:
            columns["denoised_spread"] = restore(prediction.std[:, :len(info.bands)], info,
                                                 offset=False).astype(np.float32)
        if columns:
            total = np.sqrt(sum(sigma.astype(np.float64)**2 for sigma in columns.values()))
            columns |= halfwidth_columns(calibration, "pixel", "denoised", total)
        return columns


def stamp_uncertainty(prediction: MCPrediction, prepared: Prepared, part: str) -> StampUncertainty:
    """``prediction`` of ``part`` (draws kept: ``prediction.samples``, for the epistemic flux σ) in flux units."""
    info = prepared.info
    geometry = prepared.apertures[part]  # type: ignore[attr-defined]
    truth = from_network(prepared.y[part], info)
    return StampUncertainty(truth=truth, noisy=from_network(prepared.x[part], info),
                            weights=aperture_weights(truth.shape[2:], geometry[:, 0], geometry[:, 1], geometry[:, 2]),
                            **flux_maps(prediction, lambda values: from_network(values, info)))


class Restoring(nn.Module):
    """A run's networks as one image-to-image module in the file's flux unit: raw ``(N, C, h, w)`` ->
    network units (:class:`~deepfield.tasks.pixel_scaling.NetworkScale`) -> each network's denoised channels
    (a heteroscedastic head's σ left out), averaged over an ensemble -> the file's unit, ``(N, C, h, w)``.
    For tiled inference on whole images; ``normalised``: the inputs are already network-ready (for
    :meth:`Denoise.explained_image`)."""

    def __init__(self, models: list[nn.Module], info: DenoiseInfo, normalised: bool = False):
        super().__init__()
        self.networks = nn.ModuleList(models)
        self.normalised = normalised
        self.channels = len(info.bands)
        self.scale = NetworkScale(info, self.channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x if self.normalised else self.scale(x)
        out = torch.stack([network(z)[:, :self.channels] for network in self.networks]).mean(dim=0)
        return self.scale.inverse(out)


def gallery(noisy: np.ndarray, output: np.ndarray, truth: np.ndarray, figures: Path, unit: str,
            sigma: np.ndarray | None = None) -> Path:
    """``denoise_gallery.png``: the test stamps of best, median and worst PSNR (all (N, C, H, W), ``unit``),
    with their per-pixel ``sigma`` when given."""
    scores = psnr(truth, output)
    shown = best_median_worst(scores)
    return plot_restoration_gallery(noisy, output, truth, figures / "denoise_gallery.png", shown,
                                    [f"PSNR {scores[i]:.1f} dB" for i in shown], sigma=sigma, unit=unit)


def fits_tiling(config: RunConfig, data: Path, out: Path, output: str) -> tuple[int, int, int, int] | None:
    """``(tile, overlap, margin, multiple)`` of a U-Net run (:func:`unet_tiling`, ``multiple`` ``2**depth``) for
    ``deepfield predict RUN data --out out`` on a whole FITS image; ``None`` when ``data`` is not FITS; an error
    when ``out`` is not FITS (the ``output`` image: ``denoised``, ``segmented``) or the run is not a U-Net's."""
    if data.suffix.lower() not in FITS_SUFFIXES:
        return None
    if out.suffix.lower() not in FITS_SUFFIXES:
        raise DeepfieldError(f"{out}: a {output} FITS image is written as FITS (.fits)")
    accepted = zoo.parameters(config.model.preset)
    if "depth" not in accepted:
        raise DeepfieldError(f"{data}: tiled prediction of whole images needs a U-Net run (model.preset "
                             f"{config.model.preset!r})")
    depth = int(config.model.options.get("depth", accepted["depth"].default))
    return (*unet_tiling(depth), 2**depth)


def unet_tiling(depth: int) -> tuple[int, int, int]:
    """(tile, overlap, margin) in pixels for a U-Net of ``depth`` poolings (``f = 2**depth``).

    ``margin`` is the receptive-field radius ``8 f − 6`` (the tiled output then equals one pass; it bounds
    the U-Net's: per level ``l`` two 3×3 convolutions on each side add ``4 · 2^l``, the pooling and the
    up-convolution ``2 · 2^l``; the bottleneck's two ``2 f``); ``overlap`` ``2 · margin`` and ``tile``
    (at least :data:`TILE`, twice the overlap) rounded up to multiples of ``f``, so that tiles start on
    multiples of ``f``, where the network is shift-equivariant.
    """
    step = 2**depth
    margin = 8 * step - 6
    overlap = -(-2 * margin // step) * step
    return -(-max(TILE, 2 * overlap) // step) * step, overlap, margin


def _take(pairs: ImagePairs, index: np.ndarray) -> ImagePairs:
    return ImagePairs(pairs.inputs[index], None if pairs.targets is None else pairs.targets[index], pairs.bands,
                      pairs.unit, pairs.ids[index], {k: v[index] for k, v in pairs.geometry.items()})
