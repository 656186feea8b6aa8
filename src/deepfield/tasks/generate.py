"""Generative models of galaxy stamps (``task: generate``; issue 19).

Data (``data.path``): stamps as the morphology task reads them (HDF5 such as ``deepfield simulate morphology``'s,
a FITS cube or a folder of FITS cutouts, .npy/.npz; ``data.bands``, ``data.channels`` as there). Conditions
(``data.conditions``, optional): the columns each stamp is conditioned on: HDF5 datasets of one value per stamp,
found at the top level or under ``truth/`` (the simulator's ``half_light_radius``, ``mag``, ``ellipticity``,
``sersic_n``, ``redshift``), or the columns of the ``data.labels`` table joined by id (``{table: cat.fits, id:
objid}``, the way for FITS cutouts). A stamp whose condition is missing (NaN, masked) is a bad object
(``data.on_error: skip`` leaves it out). One column of class labels (the simulator's ``labels``, or a table's
text column) becomes a one-hot vector over its classes; numeric columns are standardised with the training
part's mean and standard deviation. No conditions: an unconditional model.

Normalisation (``data.normalize: robust``, the default): each band's median and 1.4826 · MAD of the training
stamps, linear so that samples map back exactly (``s · sigma + median``, in the file's flux unit); ``data.stretch``
is not applied. Both records are in ``prepared.json`` (:class:`~deepfield.tasks.prepared_info.GenerateInfo`), so
``deepfield sample`` standardises requested conditions and restores samples the same way
(:mod:`deepfield.tasks.sampling`).

Network: ``model.preset`` defaults to ``cvae``; any preset meeting the generative-model contract
(:mod:`deepfield.models.generative`) trains the same way: ``Engine.fit(x, y=images)`` with ``x`` the stamps (or
stamps and conditions) and the preset's ``training_loss``, through the normal ``deepfield train`` path
(checkpoints, resume, early stopping). ``training.kl_anneal_epochs`` ramps a VAE's KL term.

Report (test part): ``reconstruction_mse``/``reconstruction_mae`` (in units of the sky noise σ, of what ``forward``
returns in eval mode: a VAE's reconstruction from its posterior mean), the sample grid (``sample_grid.png``:
per condition row a real test stamp and samples drawn at its condition), a latent interpolation
(``latent_interpolation.png``, for models with ``encode``/``decode``) and :func:`judge` of samples drawn at the
test part's conditions against the test stamps (:mod:`deepfield.tasks.generate_judging`; ``mean_w1``, the
mean standardised Wasserstein distance, is the report's headline).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import nn

from deepfield.analysis.image_quality import nmad
from deepfield.data.images_core import few
from deepfield.data.sources import FITS_SUFFIXES
from deepfield.data.transforms import RobustNormalize
from deepfield.errors import DeepfieldError
from deepfield.models import zoo
from deepfield.models.generative import check_generative, sample_in_batches, samples_noise_free
from deepfield.models.packed import Packed
from deepfield.plots.generative import plot_interpolation, plot_sample_grid
from deepfield.tasks.base import PARTS, Prepared, Task
from deepfield.tasks.config import DataConfig, LabelTable, RunConfig
from deepfield.tasks.generate_judging import judge
from deepfield.tasks.image_options import image_task_checks
from deepfield.tasks.pixel_scaling import normalise, restore
from deepfield.tasks.imaging import read_stamps
from deepfield.tasks.parts import split_parts
from deepfield.tasks.prepared_info import FeatureScale, GenerateInfo

GRID_ROWS, GRID_SAMPLES = 4, 6
"""The sample grid: at most this many condition rows (class rows: one per class), this many samples per row."""
SKY_FRAME = 2
"""The outer frame of pixels (this many wide) whose spread gives each band's sky noise (:func:`sky_sigma`)."""
INTERPOLATION_STEPS = 7


@dataclass
class Stamps:
    """Raw stamps ``images`` (N, C, H, W) in the file's unit, their ``conditions`` (N, K') as read (numeric columns,
    or one column of class indices) and ``ids`` (N,)."""

    images: np.ndarray
    conditions: np.ndarray
    ids: np.ndarray

    def take(self, index: np.ndarray) -> Stamps:
        return Stamps(self.images[index], self.conditions[index], self.ids[index])


@dataclass
class GeneratePrepared(Prepared):
    """:class:`Prepared` (``x[part]``: the normalised stamps, or a :class:`Packed` of them and the network's
    conditions; ``y[part]``: the normalised stamps) plus ``conditions[part]`` (N, K') as read and
    ``raw[part]`` (N, C, H, W) the stamps in the file's unit."""

    conditions: dict[str, np.ndarray] = field(default_factory=dict)
    raw: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.y["train"].shape[1:])


def condition_labels(data: DataConfig, path: Path) -> Any:
    """What the stamp reader is asked for as labels so that they are ``data.conditions``: the ``data.labels``
    table's columns, or the HDF5 datasets of those names (at the top level, else under ``truth/``)."""
    names = list(data.conditions or [])
    one = names[0] if len(names) == 1 else names
    if isinstance(data.labels, LabelTable):
        return data.labels.model_copy(update={"column": one})
    if Path(path).is_dir() or Path(path).name.lower().endswith(FITS_SUFFIXES):
        raise DeepfieldError(f"{path}: data.conditions of FITS stamps come from a table joined by id: "
                             "data.labels: {table: catalogue.fits, id: ID_COLUMN}")
    if not h5py.is_hdf5(path):
        return one  # .npz keys, named as they are
    with h5py.File(path, "r") as h5:
        found = [next((key for key in (name, f"truth/{name}") if isinstance(h5.get(key), h5py.Dataset)), None)
                 for name in names]
        missing = [name for name, key in zip(names, found) if key is None]
        if missing:
            columns = [k for k, v in h5.items() if isinstance(v, h5py.Dataset) and v.ndim == 1]
            columns += list(h5["truth"]) if isinstance(h5.get("truth"), h5py.Group) else []
            raise DeepfieldError(f"{path}: data.conditions: no column {', '.join(map(repr, missing))} (looked at the "
                                 f"top level and in truth/); the file's columns: {few(columns, 12)}")
    return found[0] if len(found) == 1 else found


def file_unit(data: DataConfig, path: Path) -> str:
    """The HDF5 image dataset's ``unit`` attribute; empty where the file does not say."""
    if Path(path).is_dir() or not h5py.is_hdf5(path):
        return ""
    with h5py.File(path, "r") as h5:
        node = h5.get(data.images)
        unit = node.attrs.get("unit", "") if isinstance(node, h5py.Dataset) else ""
    return unit.decode() if isinstance(unit, bytes) else str(unit)


def read(data: DataConfig, path: Path, info: GenerateInfo | None = None) -> tuple[Stamps, list[str], Any]:
    """The stamps and conditions of ``path`` (``info``: a run's record, for its bands and classes); returns them,
    the bands and the condition classes (``None``: numeric conditions)."""
    conditioned = bool(data.conditions)
    reading = data.model_copy(update={"labels": condition_labels(data, path) if conditioned else None})
    images, labels, reader = read_stamps(reading, path, labelled=conditioned, bands=info.bands if info else None,
                                         classes=info.condition_classes if info else None)
    n = len(images)
    classes = list(reader.classes) if conditioned and len(data.conditions) == 1 and reader.classes else None
    if not conditioned:
        conditions = np.zeros((n, 0), np.float32)
    else:
        conditions = np.asarray(labels, dtype=np.float32).reshape(n, -1)
    return Stamps(images, conditions, np.asarray(reader.ids)[:n]), list(reader.bands), classes


def network_conditions(conditions: np.ndarray, info: GenerateInfo) -> np.ndarray:
    """Conditions (N, K') as read -> what the network reads (N, K) float32: one-hot classes or standardised."""
    if info.condition_classes is not None:
        return np.eye(len(info.condition_classes), dtype=np.float32)[conditions[:, 0].astype(np.int64)]
    if info.standardize is None:
        return conditions.astype(np.float32)
    mean, std = np.asarray(info.standardize.mean), np.asarray(info.standardize.std)
    return ((conditions - mean) / std).astype(np.float32)


def check_options(config: RunConfig) -> None:
    """Options other tasks take that have no meaning for a generative model."""
    instead = "task generate draws samples instead (deepfield sample); leave it out"
    image_task_checks(config, "generate", takes="stamps", refuse_augment="the augmentations would move the stamps "
                      "alone, not their conditions",
                      heteroscedastic=instead, mc_samples=instead)
    if config.model.bayesian is not None:
        raise DeepfieldError("model.bayesian: not for task generate (its presets have their own latent variables)")


class Generate(Task):
    """Learn the distribution of stamps (given conditions) and draw new ones."""

    name = "generate"
    info_model = GenerateInfo

    def prepare(self, config: RunConfig) -> GeneratePrepared:
        check_options(config)
        data = config.data
        stamps, bands, classes = read(data, data.path)
        first = GenerateInfo(bands=bands, unit="", conditions=list(data.conditions or []),
                             condition_classes=classes)
        parts = split_parts(config, len(stamps.images), stamps.take,
                            lambda path: read(data, path, first)[0], lambda part: len(part.images))
        info = first.model_copy(update={"unit": file_unit(data, data.path), "reconstructs": callable(
            getattr(zoo.PRESETS.lookup(config.model.preset), "decode", None))})
        if data.normalize == "robust":
            info.normalize = RobustNormalize().fit(torch.from_numpy(parts["train"].images)).get_config()
        info.sky_sigma = sky_sigma(parts["train"].images)
        if data.conditions and classes is None:
            train = parts["train"].conditions.astype(np.float64)
            std = train.std(axis=0)
            info.standardize = FeatureScale(mean=train.mean(axis=0).tolist(), std=np.where(std > 0, std, 1.0).tolist())
        images = {part: normalise(p.images, info) for part, p in parts.items()}
        return GeneratePrepared(x={part: self.inputs(images[part], parts[part].conditions, info) for part in PARTS},
                                y=images, ids={part: p.ids for part, p in parts.items()}, info=info,
                                conditions={part: p.conditions for part, p in parts.items()},
                                raw={part: p.images for part, p in parts.items()})

    @staticmethod
    def inputs(images: np.ndarray, conditions: np.ndarray, info: GenerateInfo) -> Any:
        """What the network reads: the normalised stamps, or a :class:`Packed` of them and the conditions."""
        if not info.condition_size:
            return images
        return Packed([images, network_conditions(conditions, info)], ["images", "conditions"])

    # -- the network ---------------------------------------------------------------------------
    def head(self, prepared: Prepared) -> tuple[int, str | None]:
        return 0, None  # a generative preset has no head: its output is a stamp

    def build_model(self, config: RunConfig, prepared: Prepared) -> nn.Module:
        """The preset with ``condition_size`` K from the data, checked against the generative-model contract."""
        size = prepared.info.condition_size
        options = dict(config.model.options)
        if "condition_size" in zoo.parameters(config.model.preset):
            options.setdefault("condition_size", size)
        model_config = config.model.model_copy(update={"options": options})
        model = super().build_model(config.model_copy(update={"model": model_config}), prepared)
        model = check_generative(model, config.model.preset)
        if model.condition_size != size:
            raise DeepfieldError(f"model.options.condition_size: the network reads {model.condition_size} conditions "
                                 f"but data.conditions gives {size}; leave condition_size out")
        return model  # type: ignore[return-value]

    def loss(self, config: RunConfig, prepared: Prepared) -> str:
        """``training.loss``, else the preset's own ``training_loss``."""
        if config.training.loss:
            return config.training.loss
        builder = zoo.PRESETS.lookup(config.model.preset)
        named = getattr(builder, "training_loss", None)
        if isinstance(named, str):
            return named
        with torch.random.fork_rng(devices=[]):
            return self.build_model(config, prepared).training_loss  # type: ignore[return-value]

    # -- what the run says ---------------------------------------------------------------------
    def analyse(self, outputs: np.ndarray, prepared: Prepared, part: str, figures: Path) -> dict[str, Any]:
        """How well the network's eval-mode output (a VAE's reconstruction) matches the stamps of ``part``, in
        units of the sky noise σ (the normalised stamps); nothing for a network whose output is not a
        reconstruction (a diffusion model's: its test loss is the noise-prediction error)."""
        if not prepared.info.reconstructs:  # type: ignore[attr-defined]
            return {}
        error = np.asarray(outputs, dtype=np.float64) - prepared.y[part]
        return {"reconstruction_mse": float(np.mean(error ** 2)), "reconstruction_mae": float(np.mean(np.abs(error)))}

    def analyse_models(self, models: list[nn.Module], prepared: Prepared, part: str, figures: Path,
                       config: RunConfig) -> dict[str, Any]:
        """The sample grid, the latent interpolation and :func:`judge` of samples drawn at the conditions of
        ``part`` against its stamps (an ensemble: its first network)."""
        model: Any = models[0]
        info: GenerateInfo = prepared.info  # type: ignore[assignment]
        conditions = torch.from_numpy(network_conditions(prepared.conditions[part], info))  # type: ignore[attr-defined]
        rows = grid_rows(prepared.conditions[part], info)  # type: ignore[attr-defined]
        generator = torch.Generator().manual_seed(config.seed)
        grid = draw_stamps(model, info, conditions[rows].repeat_interleave(GRID_SAMPLES, dim=0), generator)
        grid = grid.reshape(len(rows), GRID_SAMPLES, *prepared.input_shape)
        raw = prepared.raw[part]  # type: ignore[attr-defined]
        plot_sample_grid(raw[rows], grid, figures / "sample_grid.png",
                         [condition_label(prepared.conditions[part][r], info) for r in rows])  # type: ignore
        metrics: dict[str, Any] = {"sample_seed": config.seed}
        if callable(getattr(model, "encode", None)) and callable(getattr(model, "decode", None)):
            interpolate(model, prepared.y[part], conditions, raw, info, figures / "latent_interpolation.png")
        else:
            metrics["latent_interpolation"] = f"skipped: preset {config.model.preset!r} has no encode/decode"
        samples = draw_stamps(model, info, conditions, torch.Generator().manual_seed(config.seed + 1))
        judged = judge(samples, raw, prepared.raw["train"], info.bands, figures,  # type: ignore[attr-defined]
                       conditions=info.conditions if info.condition_classes is None else (),
                       classifier=config.analysis.classifier, seed=config.seed)
        metrics["mean_w1"] = judged["wasserstein"]["mean_w1"]  # the report's headline
        return metrics | {"judging": judged}


def sky_sigma(images: np.ndarray) -> list[float]:
    """(C,) each band's sky noise of stamps ``(N, C, H, W)``: 1.4826 · MAD about the median of the pixels of the
    outer :data:`SKY_FRAME`-pixel frame of every stamp (where the sky dominates; the MAD shrugs off a neighbour
    reaching the edge). In the stamps' unit."""
    h, w = images.shape[2:]
    frame = np.zeros((h, w), dtype=bool)
    width = min(SKY_FRAME, h // 2, w // 2)
    frame[:width], frame[-width:], frame[:, :width], frame[:, -width:] = True, True, True, True
    pixels = np.moveaxis(images[:, :, frame], 1, 0).reshape(images.shape[1], -1).astype(np.float64)
    return [float(nmad(band)) for band in pixels]


def draw_stamps(model: Any, info: GenerateInfo, conditions: torch.Tensor, generator: torch.Generator,
                batch_size: int = 256, advance: Any = None, noise: bool = True, **options: Any) -> np.ndarray:
    """Samples (N, C, H, W) float64 in the training file's unit for the network's conditions ``(N, K)``
    (:func:`network_conditions`), every draw from ``generator``; ``options`` go to the model's ``sample``.

    ``noise``: where the model's samples are noise-free (:func:`~deepfield.models.generative.samples_noise_free`,
    a VAE's decoder mean), add the training stamps' sky noise ``info.sky_sigma`` (Gaussian, per band, drawn from
    ``generator`` after the samples): a draw from the model's likelihood, which is what real stamps are. A diffusion
    model's samples already carry the noise it learned: nothing is added."""
    normalised = sample_in_batches(model, conditions, generator=generator, batch_size=batch_size, advance=advance,
                                   **options)
    stamps = restore(normalised.cpu().numpy(), info)
    if noise and samples_noise_free(model) and info.sky_sigma is not None:
        sigma = np.asarray(info.sky_sigma, dtype=np.float64)[None, :, None, None]
        stamps = stamps + sigma * torch.randn(stamps.shape, generator=generator, dtype=torch.float64).numpy()
    return stamps


def grid_rows(conditions: np.ndarray, info: GenerateInfo) -> list[int]:
    """The test stamps whose conditions the sample grid's rows take: one per class present, else up to
    :data:`GRID_ROWS` spread over the first condition's range (unconditional: the first ones)."""
    n = len(conditions)
    if info.condition_classes is not None:
        labels = conditions[:, 0].astype(np.int64)
        return [int(np.flatnonzero(labels == k)[0]) for k in np.unique(labels)][:len(info.condition_classes)]
    if not info.condition_size:
        return list(range(min(GRID_ROWS, n)))
    order = np.argsort(conditions[:, 0], kind="stable")
    return list(dict.fromkeys(int(order[i]) for i in np.linspace(0, n - 1, min(GRID_ROWS, n)).round().astype(int)))


def condition_label(row: np.ndarray, info: GenerateInfo) -> str:
    """A grid row's title: the class, or ``name=value`` per condition, one per line."""
    if info.condition_classes is not None:
        return info.condition_classes[int(row[0])]
    if not info.condition_size:
        return "unconditional"
    return "\n".join(f"{name}={value:.3g}" for name, value in zip(info.conditions, row))


def interpolate(model: Any, images: np.ndarray, conditions: torch.Tensor, raw: np.ndarray, info: GenerateInfo,
                path: Path) -> Path:
    """Decode :data:`INTERPOLATION_STEPS` points on the line between the latents of the first test stamp and the
    one farthest from it in latent space (conditions interpolated alike), beside the two real stamps."""
    size = model.condition_size
    given = conditions if size else None
    z = model.encode(torch.from_numpy(images), given).cpu()
    far = int(torch.argmax(((z - z[0]) ** 2).sum(dim=1)))
    t = torch.linspace(0.0, 1.0, INTERPOLATION_STEPS)[:, None]
    line = (1 - t) * z[0] + t * z[far]
    along = (1 - t) * conditions[0] + t * conditions[far] if size else None
    decoded = restore(model.decode(line.cpu(), along).cpu().numpy(), info)
    return plot_interpolation(raw[0], decoded, raw[far], path)
