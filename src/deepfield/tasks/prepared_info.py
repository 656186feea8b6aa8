"""What a task records of its prepared data (``Prepared.info``, a run's ``prepared.json``), as typed models.

``evaluate`` and ``predict`` prepare new data exactly as the training data was from this record:
the bands and classes, the normalisation fitted on the training part, the feature names. One model
per task family, on a common base (:class:`PreparedInfo`); a task names its own
(``Task.info_model``) and :meth:`PreparedInfo.read` loads a run's file with it.

The file keeps the keys and JSON shape the tasks wrote before these models (a key is written only
when the task set it: :meth:`PreparedInfo.to_json`), so that older run folders load unchanged: keys
added later are optional, with the value the code assumed when they were missing. A key a newer
deepfield wrote is ignored; a value of the wrong type is one error naming the file and the key.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from deepfield.errors import DeepfieldError
from deepfield.tasks.config import invalid

Info = TypeVar("Info", bound="PreparedInfo")


class Record(BaseModel):
    """A part of ``prepared.json``: keys are attributes, checked when set; unknown keys (a newer
    deepfield's) are ignored; attribute docstrings are the field descriptions."""

    model_config = ConfigDict(extra="ignore", validate_assignment=True, use_attribute_docstrings=True)


class PreparedInfo(Record):
    """The keys any task may record, read by the pipeline and ``load_run`` whatever the task."""

    bands: list[str] | None = None
    """The bands (image channels, spectrum channels or the photometry's), in input order; ``None``: a table."""
    classes: list[str] | None = None
    """Class names in output order (label k is ``classes[k]``); ``None``: not a classifier."""
    skipped: list[tuple[str, str]] = []
    """Objects the reader left out (``data.on_error: skip``): ``(where, reason)``, listed in ``data.skipped.csv``."""
    heteroscedastic: bool = False
    """``uncertainty.heteroscedastic``: the regression head outputs a mean and a log-variance."""

    def to_json(self) -> str:
        """``prepared.json``'s text: the keys set (at preparation, or read from a file), indented by 2."""
        return json.dumps(self.model_dump(exclude_unset=True), indent=2) + "\n"

    @classmethod
    def read(cls: type[Info], path: Path) -> Info:
        """A run's ``prepared.json`` as this model; a missing, malformed or mistyped file is a
        :class:`DeepfieldError` naming the file (and the key)."""
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DeepfieldError(f"{path}: unreadable ({exc})") from None
        if not isinstance(document, dict):
            raise DeepfieldError(f"{path}: expected an object of keys (bands, classes, normalisation...)")
        try:
            return cls.model_validate(document)
        except ValidationError as exc:
            raise invalid(exc, str(path)) from None


class RobustStatistics(Record):
    """Stamps' per-band normalisation fitted on the training part
    (:class:`~deepfield.data.transforms.RobustNormalize`'s ``get_config``)."""

    name: Literal["robust_normalize"] = "robust_normalize"
    median: list[float]
    """(C,) each band's median, in the file's flux unit."""
    sigma: list[float]
    """(C,) each band's 1.4826 · MAD, in the file's flux unit (> 0)."""


class SpectrumNormalization(Record):
    """Spectra's normalisation: each spectrum and channel divided by its median |flux| (nothing fitted)."""

    method: Literal["median_abs"]
    per: str
    """What one median is taken over (``"spectrum and channel"``)."""


class FeatureScale(Record):
    """Features standardised as ``(x - mean) / std`` with the training part's statistics."""

    mean: list[float]
    """(F,) each feature's mean, in its own unit (mag for magnitudes and colours)."""
    std: list[float]
    """(F,) each feature's standard deviation (1 for a constant feature)."""


class TargetScale(Record):
    """A regressed target standardised as ``(y - mean) / std`` with the training part's statistics."""

    mean: float
    """The target's mean, in its own unit."""
    std: float
    """Its standard deviation (1 for a constant target)."""


class StampsInfo(PreparedInfo):
    """Stamps ``(N, C, H, W)`` or, with ``kind: spectra``, spectra ``(N, C, L)``: how they were normalised."""

    kind: Literal["spectra"] | None = None
    """``"spectra"`` for ``data.kind: spectra``; absent (``None``) for images."""
    length: int | None = None
    """Spectra: L, the samples per spectrum new files must have."""
    wavelength: list[float] | None = None
    """Spectra: (L,) the wavelength grid of the training file, when it had one (its unit)."""
    normalize: RobustStatistics | SpectrumNormalization | None = None
    """``data.normalize: robust``: the images' fitted statistics or the spectra's method; ``None``: raw inputs."""
    stretch: Literal["asinh", "none"] = "none"
    """``data.stretch`` applied after the normalisation (``asinh`` softened at 3 σ of the sky)."""

    @property
    def is_spectra(self) -> bool:
        return self.kind == "spectra"


class ImagingInfo(StampsInfo):
    """The classification tasks (``morphology``, ``quality``) on stamps or spectra."""

    bands: list[str]
    classes: list[str]


class PhotozInfo(StampsInfo):
    """``photoz``: redshifts from catalogue features, stamps or spectra, as a value or a PDF over bins."""

    mode: Literal["regression", "pdf"]
    """``regression``: one output, z; ``pdf``: a softmax over the ``bin_edges`` bins."""
    target: str
    """The redshift column (or the spectra file's dataset)."""
    bands: list[str]
    reference_band: str | None
    """The band the metrics are binned in by magnitude; ``None`` for spectra (no photometry)."""
    inputs: Literal["catalogue", "stamps", "spectra"]
    """What the network reads: catalogue features (F,), stamps (C, H, W) or spectra (C, L)."""
    fills: dict[str, float] | None = None
    """Band -> the AB mag an unmeasured magnitude is filled with (the training part's 99th percentile)."""
    features: list[str] | None = None
    """``data.features``: the feature blocks (``magnitudes``, ``colours``, ``errors``) and columns, in order."""
    unmeasured_values: dict[str, int] | None = None
    """Part -> magnitudes (or errors) not measured, over all bands and rows."""
    resample_errors: bool = False
    """``photoz.resample_errors``: training magnitudes redrawn within their errors every epoch."""
    feature_names: list[str] | None = None
    """Catalogue: (F,) the name of each input feature (``g``, ``g-r``, ``g_err``, a column)."""
    standardize: FeatureScale | None = None
    """Catalogue: the features' statistics; ``None`` with ``data.normalize: none``."""
    bin_edges: list[float] | None = None
    """PDF: (n_bins + 1,) the redshift bins' edges."""
    point_estimate: Literal["median", "mean", "mode", "peak", "peak_mean"] = "median"
    """PDF: which statistic of the PDF is ``z_phot``."""
    label_smoothing: float = 0.0
    """PDF: the targets' Gaussian spread over the bins, σ = this · (1 + z); 0: the bin alone."""


class TableColumns(PreparedInfo):
    """What ``tabular`` reads of a table: the target, the features and what they are."""

    target: str
    """The column learnt."""
    features: list[str]
    """(F,) the input columns, in input order."""
    feature_groups: dict[str, list[str]]
    """``data.feature_groups``: group -> its columns, each group left out in a comparison model."""
    sentinels: list[float]
    """Values meaning "missing" (a row holding one is dropped)."""
    problem: Literal["regression", "classification"]
    """``classification`` for a text, boolean or few-valued integer target (its names in ``classes``)."""


class TabularInfo(TableColumns):
    """``tabular``: the table's columns plus what was fitted on the training part."""

    dropped: dict[str, int]
    """File -> its rows dropped for a missing value."""
    standardize: FeatureScale
    """The features' statistics."""
    target_scale: TargetScale | None = None
    """Regression: the target's statistics (outputs are in its standard deviations)."""


class DenoiseInfo(PreparedInfo):
    """``denoise``: image pairs (input, target) and the linear normalisation applied to both, undone on outputs."""

    bands: list[str]
    unit: str
    """The flux unit per pixel of the file (``nJy`` for deepfield's; empty when the file does not say)."""
    inputs: str
    """The input stamps' dataset (HDF5) or member (.npz): ``data.images``."""
    targets: str
    """The targets' dataset or member: ``data.target`` (default ``targets``)."""
    normalize: RobustStatistics | None = None
    """``data.normalize: robust``: each band's median and 1.4826 · MAD of the training inputs; inputs and
    targets become ``(x − median) / sigma`` and outputs ``o · sigma + median``; ``None``: raw fluxes."""
    aperture_radius: float
    """Pixels: the photometry aperture's radius for files without ``truth/aperture_radius``."""
    aperture: Literal["file", "kron"] = "file"
    """``analysis.aperture``: the photometry aperture's radius is the file's (``file``) or each target's Kron radius."""
    stretch: Literal["asinh", "none"] = "none"
    """``data.stretch`` applied after the normalisation (:mod:`~deepfield.tasks.pixel_scaling`), undone on outputs."""
    flux: Literal["network", "template"] = "network"
    """``denoise.flux``: the stamps' flux is the network's, or its output rescaled per stamp and band to the noisy
    input's least-squares amplitude (:mod:`~deepfield.analysis.template_photometry`)."""


class DeblendInfo(PreparedInfo):
    """``deblend``: blends and one target source each; the blends' linear normalisation, undone on outputs."""

    bands: list[str]
    unit: str
    """The flux unit per pixel of the file (``nJy`` for deepfield's; empty when the file does not say)."""
    inputs: str
    """The blends' dataset: ``data.images``."""
    targets: str
    """The isolated sources' dataset: ``data.target`` (default ``sources``)."""
    normalize: RobustStatistics | None = None
    """As :attr:`DenoiseInfo.normalize`, fitted on the training blends, applied to blends and sources."""
    marker_sigma: float
    """Pixels: the σ of the Gaussian marking the target in the input's last channel."""
    stretch: Literal["asinh", "none"] = "none"
    """``data.stretch``: ``asinh`` maps normalised values ``v`` to ``asinh(v / 3)`` (blends and sources), undone on
    outputs as ``3 sinh(o)``."""
    slots: int | None = None
    """``data.deblend: all``: the source slots (the file's most sources per blend, in the file's order): the input's
    last ``slots`` channels mark one source each, the output holds ``slots`` images of ``len(bands)`` bands;
    ``None``: one target per example (``data.deblend: each``)."""


class SegmentInfo(StampsInfo):
    """``segment``: stamps normalised as the classifiers' are, and the per-pixel classes of their label maps."""

    bands: list[str]
    classes: list[str]
    unit: str
    """The flux unit per pixel of the file (``nJy`` for deepfield's; empty when the file does not say)."""
    inputs: str
    """The stamps' dataset (HDF5) or member (.npz): ``data.images``."""
    targets: str
    """The label maps' dataset or member: ``data.target`` (default ``segmentation``)."""
    label_map: Literal["classes", "instances", "morphology"]
    """``instances``: the file's maps are instance maps, learnt as background / source / boundary classes;
    ``classes``: class maps, learnt as they are; ``morphology``: a blends file's Morpheus class maps, learnt as they
    are, its sources from its instance map (``segmentation``)."""
    seed_level: float | None = None
    """The least ``p(source) − p(boundary)`` of a watershed seed, chosen on the validation part
    (``calibration.json``, applied when the run is read); ``None``: :data:`~deepfield.analysis.segmentation.SEED_LEVEL`."""


class GenerateInfo(PreparedInfo):
    """``generate``: stamps normalised linearly per band (undone on samples) and the conditions of each stamp."""

    bands: list[str]
    unit: str
    """The flux unit per pixel of the file (HDF5 ``images`` attribute ``unit``; empty when the file does not say)."""
    reconstructs: bool = True
    """The network's eval-mode output is a reconstruction of its input (a VAE's; a diffusion model's is its
    noise-prediction error): the report's ``reconstruction_*`` metrics are measured only then."""
    normalize: RobustStatistics | None = None
    """``data.normalize: robust``: each band's median and 1.4826 · MAD of the training stamps; the network sees
    ``(x − median) / sigma`` and samples come back as ``s · sigma + median``; ``None``: raw fluxes."""
    conditions: list[str] = []
    """``data.conditions``: the columns read (empty: unconditional)."""
    condition_classes: list[str] | None = None
    """One column of class labels: its class names, one-hot in this order (then not standardised)."""
    standardize: FeatureScale | None = None
    """Numeric conditions: each column's training mean and standard deviation; the network reads
    ``(c − mean) / std``."""
    sky_sigma: list[float] | None = None
    """Each band's sky noise σ in the file's unit: 1.4826 · MAD of the training stamps' outer frame of pixels.
    Samples of a model whose draws are noise-free (a VAE's decoder mean) get this noise added, so that they
    are judged, and look, like the stamps they learned from (``None``: runs from before it was recorded)."""

    @property
    def condition_size(self) -> int:
        """K, the length of the condition vector the network reads."""
        return len(self.condition_classes) if self.condition_classes is not None else len(self.conditions)
