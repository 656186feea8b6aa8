"""Photometric redshifts: z from catalogue magnitudes and colours, or from stamps.

Two modes, chosen by ``training.loss`` (nothing else to set):

* **regression** (the default; loss ``mae`` unless ``training.loss`` is ``mse`` or ``huber``): one linear
  output, the redshift itself, which is also the point estimate. MAE fits the conditional
  median, as σ_NMAD and the outlier fractions judge it; MSE's mean is dragged by the
  catastrophic outliers (``benchmarks/bench_photoz.py`` measures both);
* **PDF** (``sparse_categorical_crossentropy``, or the loss left unset with a preset whose
  output is a PDF, such as ``pasquet``): a softmax over ``n_bins`` equal redshift bins; the
  label is the bin holding the true z (Pasquet et al. 2019); the point estimate is the
  PDF's median, or its mean, mode, peak or peak mean (``photoz.point_estimate``). ``n_bins`` is
  ``model.options.n_outputs`` (``n_bins`` for ``pasquet``), default ``DEFAULT_BINS``; the
  bins span the training part's redshifts, or pasquet's ``z_min``/``z_max`` options when
  given. Redshifts outside fall in the end bins.

Inputs, from ``data.path`` (any catalogue ``read_catalogue`` reads; ``data.group`` for HDF5):

* **catalogue** (a preset taking ``(features,)`` rows, e.g. ``mlp``): ``data.features``
  lists ``magnitudes``, ``colours`` (adjacent bands), ``errors`` (the magnitude errors)
  and any other numeric column, in the order listed; default ``[magnitudes, colours]``.
  ``data.bands`` + ``data.mag``/``data.err`` patterns name the photometry. Unmeasured
  magnitudes (blank, NaN, inf, or one of ``data.sentinels`` in the magnitude or its error)
  are filled with the ``FILL_PERCENTILE`` th percentile of the band's measured magnitudes
  in the training part (error 1 mag); then every feature is standardised with the mean
  and standard deviation of the training part (``data.normalize: none`` skips that).
* **stamps** (a preset taking ``(C, H, W)`` stamps): the HDF5 file's ``data.images``
  dataset, one stamp per catalogue row, its channels the photometry's ``data.bands``,
  normalised as the imaging tasks do (:meth:`ImageClassification.transform`, statistics
  fitted on the training part; ``data.stretch``). Stamps and catalogue features together are not offered: the engine
  feeds a network one tensor. The catalogue still gives the redshifts and the magnitudes
  the metrics are binned in.

With ``photoz.resample_errors`` (catalogue inputs) the training batches carry magnitudes
redrawn from ``N(m, σ_m²)`` every epoch (:class:`~deepfield.data.resampling.ResampledFeatures`;
colours follow, non-detections keep their fill); validation and test keep the measured values.
With ``photoz.label_smoothing`` a PDF learns each galaxy's bin spread by a Gaussian of
σ = label_smoothing · (1 + z) over its neighbours (:func:`smoothing_kernel`,
:class:`~deepfield.training.losses.SmoothedSparseCrossentropy`, through :meth:`PhotoZ.loss`).

* **spectra** (``data.kind: spectra``, a preset taking ``(C, L)``, e.g. ``spectra1d``): the
  redshift from a spectrum. The spectra file is read as the classification tasks read it
  (:mod:`deepfield.tasks.spectra`) with ``data.target`` (default ``redshift``; e.g.
  ``truth/redshift`` in the simulator's HDF5, a column of a FITS table, a member of an
  .npz) as the label; a NaN redshift is missing (``data.on_error`` raises or skips it).
  No photometry: nothing is binned in magnitude.

Rows without a usable redshift (blank, NaN, a sentinel, ≤ −1) are left out. Fills and
normalisation statistics are recorded in ``prepared.info``
(:class:`~deepfield.tasks.prepared_info.PhotozInfo`); ``read_new`` prepares another file with them.
Object ids are the catalogue's ``id`` column, else the row index in the file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from astropy.table import Table

from deepfield.analysis.photoz import (binned_photoz_metrics, crps, pdf_point_estimates, photoz_metrics, pit,
                                       pit_uniformity)
from deepfield.data.catalogues import (SUFFIXES, numeric_column, read_catalogue, require_columns, row_columns, row_name,
                                      some_rows)
from deepfield.data.photometry import Cleaning, Photometry, load_photometry
from deepfield.data.resampling import ResampledFeatures
from deepfield.data.sources import open_images
from deepfield.data.splits import make_split
from deepfield.data.transforms import RobustNormalize
from deepfield.errors import DeepfieldError
from deepfield.models import zoo
from deepfield.plots import plot_metrics_vs, plot_photoz_scatter, plot_pit
from deepfield.tasks.base import PARTS, NewData, Prepared, Task
from deepfield.tasks.config import DataConfig, RunConfig
from deepfield.tasks.imaging import ImageClassification, split_stamps
from deepfield.tasks.imaging import read_stamps as read_samples
from deepfield.tasks.prepared_info import PhotozInfo
from deepfield.tasks.spectra import check_grid, spectra_info, transform_spectra
from deepfield.tasks.uncertainty import pdf_uncertainty, regression_uncertainty
from deepfield.training.losses import LossFn, SmoothedSparseCrossentropy
from deepfield.training.mc_dropout import MCPrediction

DEFAULT_TARGET = "redshift"
DEFAULT_FEATURES = ("magnitudes", "colours")
PDF_LOSS = "sparse_categorical_crossentropy"
REGRESSION_LOSS = "mae"
REGRESSION_LOSSES = ("mse", "mae", "huber", "mean_squared_error", "mean_absolute_error")
DEFAULT_BINS = 100
FILL_PERCENTILE = 99.0  # an unmeasured magnitude is about as faint as the faintest measured ones
Z_STRATA = 10  # redshift quantile bins the split is stratified on
REFERENCE_BAND = "i"  # metrics against magnitude are binned in this band (else the last band)
MAGNITUDE_BIN = 0.5  # mag


@dataclass
class PhotozPrepared(Prepared):
    """:class:`Prepared` plus, per part, the true redshifts ``z[part]`` (N,) and the
    reference band's magnitude ``magnitude[part]`` (N,) in AB mag, NaN where not measured.

    ``y[part]`` is ``z`` as float32 (N, 1) in regression mode, the int64 bin index (N,) in PDF mode.
    With ``photoz.resample_errors``: ``magnitude_errors[part]`` (N, B) mag (0: not measured) and
    ``mixing`` (B, F), the change of each input feature per magnitude of each band.
    """

    z: dict[str, np.ndarray] = field(default_factory=dict)
    magnitude: dict[str, np.ndarray] = field(default_factory=dict)
    magnitude_errors: dict[str, np.ndarray] = field(default_factory=dict)
    mixing: np.ndarray | None = None


@dataclass(frozen=True)
class Rows:
    """Catalogue rows of ``path``: ``table`` (N rows), ``z`` (N,) (NaN when unlabelled),
    ``index`` (N,) each row's position in the file, which has ``n_read`` rows (after ``data.limit``);
    ``id_column``: the column of object ids (``data.ids``, default ``id``)."""

    path: Path
    table: Table
    z: np.ndarray
    index: np.ndarray
    n_read: int
    id_column: str = "id"

    def take(self, which: np.ndarray) -> Rows:
        return Rows(self.path, some_rows(self.table, which), self.z[which], self.index[which], self.n_read,
                    self.id_column)

    @property
    def ids(self) -> np.ndarray:
        """(N,) the id column, else the row indices."""
        if self.id_column in self.table.colnames:
            return np.asarray(self.table[self.id_column])
        return self.index


# ------------------------------------------------------------------ mode and model


def takes_stamps(preset: str) -> bool:
    """Whether the preset's default ``input_shape`` is a ``(C, H, W)`` stamp."""
    default = zoo.parameters(preset).get("input_shape")
    return default is not None and len(default.default) == 3


def photoz_mode(config: RunConfig) -> str:
    """``"pdf"`` or ``"regression"`` from ``training.loss`` and the preset (module docstring)."""
    loss = (config.training.loss or "").lower()
    outputs_pdf = "n_bins" in zoo.parameters(config.model.preset)
    if loss == PDF_LOSS or (not loss and outputs_pdf):
        return "pdf"
    if loss and loss not in REGRESSION_LOSSES:
        raise DeepfieldError(f"training.loss {config.training.loss!r}: photoz learns with mse, mae or huber "
                             f"(regression) or {PDF_LOSS} (a PDF over redshift bins)")
    if outputs_pdf:
        raise DeepfieldError(f"model.preset {config.model.preset!r} outputs a redshift PDF; "
                             f"train it with training.loss: {PDF_LOSS}")
    n_outputs = config.model.options.get("n_outputs", 1)
    if n_outputs != 1:
        raise DeepfieldError(f"model.options.n_outputs={n_outputs!r}: a regression has one output; for a PDF over "
                             f"{n_outputs} redshift bins set training.loss: {PDF_LOSS}")
    return "regression"


def check_photoz_options(config: RunConfig, mode: str) -> None:
    """The ``photoz`` section's options fit the mode and the inputs."""
    choice = config.photoz.point_estimate
    if choice is not None and mode != "pdf":
        raise DeepfieldError(f"photoz.point_estimate {choice!r} applies to a redshift PDF (training.loss: {PDF_LOSS}); "
                             "a regression's z_phot is its output")
    if config.photoz.label_smoothing and mode != "pdf":
        raise DeepfieldError(f"photoz.label_smoothing {config.photoz.label_smoothing!r} applies to a redshift PDF "
                             f"(training.loss: {PDF_LOSS}); a regression learns z itself")
    if config.photoz.resample_errors and takes_stamps(config.model.preset):
        raise DeepfieldError(f"photoz.resample_errors needs catalogue features (a preset such as mlp); "
                             f"{config.model.preset!r} learns from stamps")


def redshift_bins(config: RunConfig, z_train: np.ndarray) -> np.ndarray:
    """(n_bins + 1,) equal bin edges over the training redshifts (or pasquet's z_min/z_max)."""
    options = config.model.options
    n_bins = int(options.get("n_outputs", options.get("n_bins", DEFAULT_BINS)))
    if n_bins < 2:
        raise DeepfieldError(f"model.options: a redshift PDF needs at least 2 bins, got {n_bins}")
    low, high = float(options.get("z_min", z_train.min())), float(options.get("z_max", z_train.max()))
    if not high > low:
        raise DeepfieldError(f"photoz: the redshift bins need z_max > z_min, got {low:g} and {high:g}")
    return np.linspace(low, high, n_bins + 1)


def smoothing_kernel(edges: np.ndarray, width: float) -> np.ndarray:
    """(n_bins, n_bins) float32: row j spreads a redshift of bin j over the bins by a Gaussian of
    σ = ``width`` · (1 + z_j) around its centre z_j (bin mass at the centres, rows summing to one);
    ``width`` 0 gives the identity."""
    mid = 0.5 * (edges[1:] + edges[:-1])
    if width <= 0:
        return np.eye(len(mid), dtype=np.float32)
    kernel = np.exp(-0.5 * ((mid[None, :] - mid[:, None]) / (width * (1.0 + mid[:, None]))) ** 2)
    return (kernel / kernel.sum(axis=1, keepdims=True)).astype(np.float32)


def bin_index(z: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(N,) int64 bin of each redshift; those outside the edges go to the end bins."""
    return np.clip(np.searchsorted(edges, z, side="right") - 1, 0, len(edges) - 2).astype(np.int64)


def targets(z: np.ndarray, info: PhotozInfo) -> np.ndarray:
    """What the network learns: z as float32 (N, 1), or its bin index (N,) in PDF mode."""
    if info.mode == "pdf":
        return bin_index(z, np.asarray(info.bin_edges))
    return z.astype(np.float32).reshape(-1, 1)


# ------------------------------------------------------------------ rows and split


def read_rows(data: DataConfig, path: Path, labelled: bool = True) -> Rows:
    """The catalogue ``path`` (first ``data.limit`` rows); labelled: only rows with a usable redshift."""
    table = read_catalogue(path, group=data.group)
    if data.ids:
        require_columns(table, [data.ids], source=f"{path} (data.ids)")
    if data.limit:
        table = table[: data.limit]
    every = np.arange(len(table))
    id_column = data.ids or "id"
    if not labelled:
        return Rows(path, table, np.full(len(table), np.nan), every, len(table), id_column)
    target = data.target or DEFAULT_TARGET
    z = numeric_column(table, target)
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(z) & (z > -1.0) & ~np.isin(z.astype(np.float32), np.float32(data.sentinels))
    if not usable.any():
        raise DeepfieldError(f"{path}: no row has a usable {target!r} value")
    return Rows(path, table, z, every, len(table), id_column).take(np.flatnonzero(usable))


def redshift_strata(z: np.ndarray) -> np.ndarray:
    """(N,) int: the redshift quantile bin of each object (at most ``Z_STRATA``, ~10 objects or more each)."""
    n_strata = int(np.clip(len(z) // 10, 1, Z_STRATA))
    inner = np.quantile(z, np.linspace(0.0, 1.0, n_strata + 1)[1:-1])
    return np.searchsorted(inner, z, side="right")


def split_rows(config: RunConfig) -> dict[str, Rows]:
    """Train/validation/test rows: from separate files when given, else a seeded split
    (stratified on redshift quantiles with ``data.split.stratify``)."""
    data = config.data
    rows = read_rows(data, data.path)
    held = {part: getattr(data, part) for part in ("validation", "test")}
    fractions = [0.0 if held["validation"] else data.split.validation, 0.0 if held["test"] else data.split.test]
    strata = redshift_strata(rows.z) if data.split.stratify else None
    split = make_split(len(rows.z), (1.0 - sum(fractions), *fractions), seed=config.seed, stratify=strata)
    parts = {part: rows.take(index) for part, index in zip(PARTS, split.parts())}
    parts.update({part: read_rows(data, path) for part, path in held.items() if path is not None})
    if any(len(parts[part].z) == 0 for part in PARTS):
        raise DeepfieldError("data.split: the train, validation and test parts must not be empty")
    return parts


# ------------------------------------------------------------------ catalogue inputs


def photometry(rows: Rows, data: DataConfig, bands: list[str] | None = None,
               fills: dict[str, float] | None = None) -> Photometry:
    """Cleaned photometry of ``rows``; unmeasured magnitudes filled with ``fills`` (band -> AB mag)."""
    cleaning = Cleaning(sentinels=tuple(data.sentinels), limits=fills, percentile=FILL_PERCENTILE)
    return load_photometry(rows.table, bands or data.bands, mag=data.mag, err=data.err, cleaning=cleaning)


def training_fills(train: Photometry) -> dict[str, float]:
    """Band -> the ``FILL_PERCENTILE`` th percentile (AB mag) of its measured training magnitudes."""
    fills = {}
    for j, band in enumerate(train.bands):
        measured = train.magnitudes[train.mask[:, j], j]
        if not measured.size:
            raise DeepfieldError(f"{train.report.source}: band {band!r} is not measured for any object of the "
                                 "training part; leave it out of data.bands")
        fills[band] = float(np.percentile(measured, FILL_PERCENTILE))
    return fills


def photometry_blocks(phot: Photometry) -> dict[str, tuple[np.ndarray, list[str], np.ndarray]]:
    """The named feature blocks of ``data.features``: values (N, k), their k names and their
    change per magnitude of each band (B, k) (the magnitudes 1, a colour a-b +1 and -1, errors 0)."""
    n_bands = len(phot.bands)
    colour_mixing = np.zeros((n_bands, len(phot.colour_pairs)))
    for c, (a, b) in enumerate(phot.colour_pairs):
        colour_mixing[phot.bands.index(a), c], colour_mixing[phot.bands.index(b), c] = 1.0, -1.0
    return {"magnitudes": (phot.magnitudes, list(phot.bands), np.eye(n_bands)),
            "colours": (phot.colours, list(phot.colour_names), colour_mixing),
            "errors": (phot.errors, [f"{b}_err" for b in phot.bands], np.zeros((n_bands, n_bands)))}


def catalogue_features(rows: Rows, phot: Photometry, names: list[str], sentinels: list[float],
                       ) -> tuple[np.ndarray, list[str]]:
    """(N, F) float32 features named by ``names`` (see ``data.features``) and the F column names."""
    blocks = photometry_blocks(phot)
    columns, labels = [], []
    for name in names:
        values, block_labels, _ = blocks.get(name) or (measured_column(rows, name, sentinels)[:, None], [name], None)
        columns.append(values)
        labels += block_labels
    return np.concatenate(columns, axis=1).astype(np.float32), labels


def magnitude_mixing(phot: Photometry, names: list[str], info: PhotozInfo) -> np.ndarray:
    """(B, F) change of each normalised feature of ``names`` per magnitude of each band (other columns: 0)."""
    blocks = photometry_blocks(phot)
    mixing = np.concatenate([blocks[name][2] if name in blocks else np.zeros((len(phot.bands), 1))
                             for name in names], axis=1)
    if info.standardize is not None:
        mixing = mixing / np.asarray(info.standardize.std)
    return mixing.astype(np.float32)


def resampling_errors(phot: Photometry) -> np.ndarray:
    """(N, B) float32 magnitude errors to resample within; 0 for unmeasured values (their fill stays)."""
    return np.where(phot.mask, phot.errors, 0.0).astype(np.float32)


def measured_column(rows: Rows, name: str, sentinels: list[float]) -> np.ndarray:
    """(N,) an extra feature column; a missing value (NaN, inf, a sentinel) raises, naming the row."""
    values = numeric_column(rows.table, name)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(values) | np.isin(values.astype(np.float32), np.float32(sentinels))
    if bad.any():
        first = int(np.argmax(bad))
        raise DeepfieldError(f"{rows.path}: column {name!r} {row_name(rows.table, first)} is {values[first]:g}; "
                             "a feature column other than the photometry must be measured for every object")
    return values


def reference_magnitude(phot: Photometry, band: str) -> np.ndarray:
    """(N,) AB mag of ``band``, NaN where it was not measured (filled)."""
    j = phot.bands.index(band)
    return np.where(phot.mask[:, j], phot.magnitudes[:, j], np.nan)


def feature_statistics(train: np.ndarray) -> dict[str, list[float]]:
    """Mean and standard deviation (F,) of the training features (N, F); a constant feature gets std 1."""
    std = train.std(axis=0, dtype=np.float64)
    return {"mean": train.mean(axis=0, dtype=np.float64).tolist(), "std": np.where(std > 0, std, 1.0).tolist()}


# ------------------------------------------------------------------ stamp inputs


def has_stamps(path: Path, data: DataConfig) -> bool:
    """Whether ``path`` is an HDF5 file holding the ``data.images`` dataset."""
    if SUFFIXES.get(path.suffix.lower()) != "hdf5":
        return False
    with h5py.File(path, "r") as f:
        return isinstance(f.get(data.images), h5py.Dataset)


def read_stamps(rows: Rows, data: DataConfig, bands: list[str]) -> np.ndarray:
    """(N, C, H, W) float32 raw stamps of ``rows``: the file's ``data.images``, one per catalogue row."""
    if not has_stamps(rows.path, data):
        raise DeepfieldError(f"{rows.path}: no {data.images!r} image dataset; a stamp preset needs the stamps "
                             "in the catalogue's HDF5 file (or use a catalogue preset such as mlp)")
    reader = open_images(rows.path, bands, images=data.images, channels=data.channels)
    if len(reader) < rows.n_read:
        raise DeepfieldError(f"{rows.path}: {len(reader)} stamps in {data.images!r} for {rows.n_read} catalogue "
                             "rows; the stamps must follow the catalogue row by row")
    return np.stack([reader.read(int(i)) for i in rows.index])


# ------------------------------------------------------------------ spectrum inputs


def spectra_target(data: DataConfig) -> DataConfig:
    """``data`` with the redshift (``data.target``) as the label the spectra reader attaches."""
    return data.model_copy(update={"labels": data.target or DEFAULT_TARGET})


# ------------------------------------------------------------------ metrics


def magnitude_edges(magnitude: np.ndarray) -> np.ndarray | None:
    """``MAGNITUDE_BIN``-wide edges covering the measured ``magnitude`` (N,), or None if none is."""
    measured = magnitude[np.isfinite(magnitude)]
    if not measured.size:
        return None
    low = np.floor(measured.min() / MAGNITUDE_BIN) * MAGNITUDE_BIN
    high = max(np.ceil(measured.max() / MAGNITUDE_BIN) * MAGNITUDE_BIN, low + MAGNITUDE_BIN)
    return np.arange(low, high + MAGNITUDE_BIN / 2, MAGNITUDE_BIN)


def plot_against_magnitude(z: np.ndarray, z_phot: np.ndarray, magnitude: np.ndarray, band: str,
                           figures: Path) -> None:
    """``sigma_nmad_vs_magnitude.png``: σ_NMAD and outliers in bins of ``magnitude`` (N,) AB mag."""
    edges = magnitude_edges(magnitude)
    if edges is None:
        return
    binned = binned_photoz_metrics(z, z_phot, by=magnitude, edges=edges)
    plot_metrics_vs(edges, {"σ_NMAD": binned.sigma_nmad, "outliers |Δz| > 0.15": binned.outlier_fractions[0.15]},
                    figures / "sigma_nmad_vs_magnitude.png", xlabel=f"{band} magnitude [AB mag]",
                    counts=binned.count, title="Photo-z quality against magnitude")


@dataclass
class PhotozNewData(NewData):
    """:class:`NewData` plus the true redshifts ``z`` (N,) (NaN unlabelled) and ``magnitude`` (N,)."""

    z: np.ndarray | None = None
    magnitude: np.ndarray | None = None


class PhotoZ(Task):
    """Photometric redshifts as a regression or a PDF over bins (see the module docstring)."""

    name = "photoz"
    info_model = PhotozInfo

    def prepare(self, config: RunConfig) -> PhotozPrepared:
        data = config.data
        mode = photoz_mode(config)  # a config mistake fails before the data is read
        check_photoz_options(config, mode)
        if data.kind == "spectra":
            return self.prepare_spectra(config, mode)
        rows = split_rows(config)
        fills = training_fills(photometry(rows["train"], data))
        phot = {part: photometry(r, data, fills=fills) for part, r in rows.items()}
        bands = list(phot["train"].bands)
        info = PhotozInfo(
            mode=mode, target=data.target or DEFAULT_TARGET, bands=bands, fills=fills,
            reference_band=REFERENCE_BAND if REFERENCE_BAND in bands else bands[-1],
            inputs="stamps" if takes_stamps(config.model.preset) else "catalogue",
            features=list(data.features or DEFAULT_FEATURES),
            unmeasured_values={part: p.report.values_unmeasured for part, p in phot.items()},
            resample_errors=config.photoz.resample_errors)
        raw = {part: self.raw_inputs(rows[part], phot[part], data, info) for part in rows}
        self.fit_normalisation(raw["train"], data, info)
        if info.mode == "pdf":
            info.bin_edges = redshift_bins(config, rows["train"].z).tolist()
            info.point_estimate = config.photoz.point_estimate or "median"
            info.label_smoothing = config.photoz.label_smoothing
        resampling = config.photoz.resample_errors
        return PhotozPrepared(
            x={part: self.normalise(v, info) for part, v in raw.items()},
            y={part: targets(r.z, info) for part, r in rows.items()},
            ids={part: r.ids for part, r in rows.items()}, info=info,
            z={part: r.z for part, r in rows.items()},
            magnitude={part: reference_magnitude(p, info.reference_band) for part, p in phot.items()},
            magnitude_errors={part: resampling_errors(p) for part, p in phot.items()} if resampling else {},
            mixing=magnitude_mixing(phot["train"], info.features, info) if resampling else None)

    def training_data(self, prepared: Prepared) -> tuple[Any, np.ndarray | None]:
        """With ``photoz.resample_errors``: the training part as a :class:`ResampledFeatures`
        dataset (magnitudes redrawn within their errors in every batch); else the arrays."""
        if not (prepared.info.resample_errors and isinstance(prepared, PhotozPrepared)):
            return super().training_data(prepared)
        return ResampledFeatures(prepared.x["train"], prepared.y["train"], prepared.magnitude_errors["train"],
                                 prepared.mixing), None

    def prepare_spectra(self, config: RunConfig, mode: str) -> PhotozPrepared:
        """Spectra and their redshifts (``data.target``), split stratified on redshift quantiles."""
        data = spectra_target(config.data)
        x, z, reader = split_stamps(config, data, strata=redshift_strata)
        info = PhotozInfo(mode=mode, target=data.labels, bands=list(reader.bands), reference_band=None,
                          inputs="spectra", **spectra_info(data, reader),
                          skipped=[(s.where, s.reason) for s in reader.skipped])
        if mode == "pdf":
            info.bin_edges = redshift_bins(config, z["train"]).tolist()
        return PhotozPrepared(
            x={part: transform_spectra(v, info) for part, v in x.items()},
            y={part: targets(v, info) for part, v in z.items()}, info=info,
            z={part: v.astype(np.float64) for part, v in z.items()},
            magnitude={part: np.full(len(v), np.nan) for part, v in z.items()})

    def read_new(self, config: RunConfig, info: PhotozInfo, path: Path, labelled: bool) -> PhotozNewData:
        """Another catalogue prepared with the run's fills and normalisation (``info``)."""
        if info.is_spectra:
            spectra, z, reader = read_samples(spectra_target(config.data), path, labelled, bands=info.bands)
            check_grid(spectra, reader.wavelength, info, path)
            z = np.full(len(spectra), np.nan) if z is None else z.astype(np.float64)
            return PhotozNewData(x=transform_spectra(spectra, info), y=targets(z, info) if labelled else None,
                                 ids=np.asarray(reader.ids)[:len(z)], z=z, magnitude=np.full(len(z), np.nan),
                                 columns={name: values[:len(z)] for name, values in reader.metadata().items()})
        return self.new_rows(read_rows(config.data, path, labelled), config, info, labelled)

    def read_values(self, config: RunConfig, info: PhotozInfo, values: Any) -> PhotozNewData:
        """Catalogue rows held in memory (an astropy ``Table``, or anything it takes), or for a stamp
        network raw stamps ``(N, C, H, W)`` in the file's flux unit, prepared as :meth:`read_new` does."""
        if info.inputs == "stamps":
            stamps = ImageClassification.raw_stamps(values, config, info)
            nan = np.full(len(stamps), np.nan)
            return PhotozNewData(x=self.normalise(stamps, info), y=None, ids=np.arange(len(stamps)), z=nan,
                                 magnitude=nan)
        table = values if isinstance(values, Table) else Table(values)
        every = np.arange(len(table))
        return self.new_rows(Rows(Path("<table>"), table, np.full(len(table), np.nan), every, len(table)),
                             config, info, labelled=False)

    def new_rows(self, rows: Rows, config: RunConfig, info: PhotozInfo, labelled: bool) -> PhotozNewData:
        """``rows`` prepared with the run's fills and normalisation (``info``)."""
        phot = photometry(rows, config.data, info.bands, info.fills)
        x = self.normalise(self.raw_inputs(rows, phot, config.data, info), info)
        return PhotozNewData(x=x, y=targets(rows.z, info) if labelled else None, ids=rows.ids, z=rows.z,
                             columns=row_columns(rows.table),
                             magnitude=reference_magnitude(phot, info.reference_band))

    def new_prepared(self, new: PhotozNewData, info: PhotozInfo) -> PhotozPrepared:  # type: ignore[override]
        """The new catalogue (from :meth:`read_new`) as a test part that keeps its true redshifts."""
        return PhotozPrepared(x={"test": new.x}, y={"test": new.y}, ids={"test": new.ids}, info=info,
                              z={"test": new.z}, magnitude={"test": new.magnitude})

    @staticmethod
    def raw_inputs(rows: Rows, phot: Photometry, data: DataConfig, info: PhotozInfo) -> np.ndarray:
        """Unnormalised inputs of ``rows``: features (N, F) in mag (``info.feature_names`` set),
        or stamps (N, C, H, W) in the file's flux unit."""
        if info.inputs == "stamps":
            return read_stamps(rows, data, info.bands)
        x, info.feature_names = catalogue_features(rows, phot, info.features, data.sentinels)
        return x

    @staticmethod
    def fit_normalisation(train: np.ndarray, data: DataConfig, info: PhotozInfo) -> None:
        """Records in ``info`` the normalisation of the raw training inputs ``train``: stamps' stretch and
        statistics, or the catalogue features' (none with ``data.normalize: none``)."""
        if info.inputs == "stamps":
            info.stretch = data.stretch or "asinh"
            if data.normalize == "robust":
                info.normalize = RobustNormalize().fit(torch.from_numpy(train)).get_config()
        elif data.normalize != "none":
            info.standardize = feature_statistics(train)

    @staticmethod
    def normalise(raw: np.ndarray, info: PhotozInfo) -> np.ndarray:
        """Raw inputs with the normalisation recorded in ``info`` applied (float32, same shape)."""
        if info.inputs == "stamps":
            return ImageClassification.transform(raw, info)
        if info.standardize is None:
            return raw
        stats = info.standardize
        return ((raw - np.asarray(stats.mean)) / np.asarray(stats.std)).astype(np.float32)

    def head(self, prepared: Prepared) -> tuple[int, str | None]:
        if prepared.info.mode == "pdf":
            return len(prepared.info.bin_edges) - 1, "softmax"
        return (2 if prepared.info.heteroscedastic else 1), None

    def default_loss(self, prepared: Prepared) -> str:
        if prepared.info.heteroscedastic:
            return "gaussian_nll"
        return PDF_LOSS if prepared.info.mode == "pdf" else REGRESSION_LOSS

    def loss(self, config: RunConfig, prepared: Prepared) -> str | LossFn:
        """A PDF with ``photoz.label_smoothing``: the cross-entropy against Gaussian-smoothed bins."""
        width = prepared.info.label_smoothing
        if not width:
            return super().loss(config, prepared)
        return SmoothedSparseCrossentropy(torch.from_numpy(smoothing_kernel(np.asarray(prepared.info.bin_edges),
                                                                            width)))

    def default_metrics(self, prepared: Prepared) -> list[str]:
        return [] if prepared.info.mode == "pdf" or prepared.info.heteroscedastic else ["mae"]

    def output_kind(self, info: PhotozInfo) -> str:
        return "probabilities" if info.mode == "pdf" else super().output_kind(info)

    def analyse_uncertainty(self, prediction: MCPrediction, prepared: Prepared, part: str, figures: Path,
                            temperature: float | None = None) -> dict[str, Any]:
        """PDFs: coverage of their 68 % / 95 % intervals; regression with a σ (draws or a
        heteroscedastic head): coverage and error vs σ."""
        z, _ = self.truth(prepared, part)
        if prepared.info.mode == "pdf":
            return pdf_uncertainty(z, prediction, prepared.info.bin_edges, figures)
        if float(prediction.total.max()) == 0.0:  # one deterministic network: no σ to check
            return {}
        return regression_uncertainty(z, prediction, figures, name="z")

    def describe_uncertainty(self, prediction: MCPrediction, info: PhotozInfo,
                             temperature: float | None = None) -> dict[str, np.ndarray]:
        """``z_err`` (total σ) with its parts ``z_err_epistemic`` / ``z_err_aleatoric`` (regression),
        ``z_mutual_information`` for PDFs from several draws."""
        if info.mode == "pdf":
            spread = float(prediction.mutual_information.max()) > 0
            return {"z_mutual_information": prediction.mutual_information} if spread else {}
        columns = {}
        if float(prediction.total.max()) > 0:
            columns |= {"z_err": prediction.total[:, 0], "z_err_epistemic": prediction.std[:, 0]}
        if prediction.aleatoric is not None:
            columns["z_err_aleatoric"] = prediction.aleatoric[:, 0]
        return columns

    def build_model(self, config: RunConfig, prepared: Prepared) -> torch.nn.Module:
        """The preset; one that outputs a PDF itself (``pasquet``) gets this task's redshift bins."""
        if prepared.info.mode == "pdf" and "n_bins" in zoo.parameters(config.model.preset):
            edges = prepared.info.bin_edges
            grid = {"n_bins": len(edges) - 1, "z_min": edges[0], "z_max": edges[-1]}
            model = config.model.model_copy(update={"options": {**config.model.options, **grid}})
            config = config.model_copy(update={"model": model})
        return super().build_model(config, prepared)

    def point_estimates(self, outputs: np.ndarray, info: PhotozInfo) -> np.ndarray:
        """(N,) redshifts from the network's outputs: the regression output, or the PDF's
        ``info.point_estimate`` (median, mean, mode, peak or peak_mean; median for runs from before the option)."""
        if info.mode == "pdf":
            points = pdf_point_estimates(outputs, edges=np.asarray(info.bin_edges))
            return getattr(points, info.point_estimate)
        return outputs.reshape(-1).astype(np.float64)

    def describe(self, outputs: np.ndarray, info: PhotozInfo) -> dict[str, np.ndarray]:
        """``z_phot`` (N,); for a PDF also its ``z_median``, ``z_mean``, ``z_mode``, ``z_peak``, ``z_peak_mean``
        and ``z_std``."""
        if info.mode != "pdf":
            return {"z_phot": self.point_estimates(outputs, info)}
        edges = np.asarray(info.bin_edges)
        points = pdf_point_estimates(outputs, edges=edges)
        centres = 0.5 * (edges[1:] + edges[:-1])
        p = outputs / outputs.sum(axis=1, keepdims=True)
        spread = np.sqrt(np.maximum(p @ centres**2 - points.mean**2, 0.0))
        return {"z_phot": self.point_estimates(outputs, info), "z_median": points.median, "z_mean": points.mean,
                "z_mode": points.mode, "z_peak": points.peak, "z_peak_mean": points.peak_mean, "z_std": spread}

    def analyse(self, outputs: np.ndarray, prepared: Prepared, part: str, figures: Path) -> dict[str, Any]:
        """Bias, σ_NMAD and outlier fractions of the point estimates (plus CRPS and PIT for PDFs);
        figures ``photoz_scatter.png``, ``pit.png`` (PDF mode), ``sigma_nmad_vs_magnitude.png``."""
        info = prepared.info
        z, magnitude = self.truth(prepared, part)
        z_phot = self.point_estimates(outputs, info)
        scores = photoz_metrics(z, z_phot)
        metrics: dict[str, Any] = {
            "mode": info.mode, "n": scores.n, "bias_median": scores.bias_median, "bias_mean": scores.bias_mean,
            "sigma_nmad": scores.sigma_nmad,
            **{f"outlier_fraction_{t:g}": f for t, f in scores.outlier_fractions.items()},
            "resample_errors": info.resample_errors}
        if info.mode == "pdf":
            edges = np.asarray(info.bin_edges)
            values = pit(outputs, z, edges=edges)
            metrics |= {"point_estimate": f"PDF {info.point_estimate}",
                        "label_smoothing": info.label_smoothing,
                        "crps": float(crps(outputs, z, edges=edges).mean()),
                        "pit_ks": pit_uniformity(values).ks_statistic}
            plot_pit(values, figures / "pit.png")
        plot_photoz_scatter(z, z_phot, figures / "photoz_scatter.png")
        plot_against_magnitude(z, z_phot, magnitude, info.reference_band, figures)
        return metrics

    @staticmethod
    def truth(prepared: Prepared, part: str) -> tuple[np.ndarray, np.ndarray]:
        """True redshifts (N,) and reference magnitudes (N,) of ``part``.

        A plain :class:`Prepared` (new data packed by the caller) has them only through
        ``y`` in regression mode; a PDF's bin labels do not give z back.
        """
        if isinstance(prepared, PhotozPrepared):
            return prepared.z[part], prepared.magnitude[part]
        if prepared.info.mode == "pdf":
            raise DeepfieldError("photoz: scoring PDFs needs the true redshifts, which bin labels do not keep; "
                                 "give analyse a PhotozPrepared (with z)")
        z = np.asarray(prepared.y[part], dtype=np.float64).reshape(-1)
        return z, np.full(len(z), np.nan)
