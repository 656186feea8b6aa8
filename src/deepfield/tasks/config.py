"""The run configuration: one YAML file, validated, with messages that name the bad key.

``deepfield train CONFIG.yaml key=value ...`` reads it, applies the overrides
(dotted keys, values parsed as YAML: ``training.epochs=3``, ``data.bands=[g,r]``),
validates it with pydantic, and saves the resolved config in the run folder.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.yaml_files import parse, shown

class Strict(BaseModel):
    """Unknown keys are errors: a typo must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class SplitConfig(Strict):
    """Fractions held out when no separate validation/test files are given."""

    validation: float = Field(0.15, ge=0.0, lt=1.0)
    test: float = Field(0.15, ge=0.0, lt=1.0)
    stratify: bool = True


class LabelTable(Strict):
    """Labels from a table (FITS, CSV, Parquet, HDF5; a relative path as ``data.path``), joined
    to the images by id: ``{table: labels.csv, id: objid, column: class}``. A column of class
    names (text) gives the classes, sorted. Without ``column`` the table only lends its columns
    to the prediction files (``predict --keep``). Its 1-D columns can all be kept."""

    table: Path
    id: str = Field(description="the column holding each image's id ({id} of a folder's pattern, "
                                "data.ids, or the stamp number 0..N-1)")
    column: str | list[str] | None = Field(None, description="the label column(s)")
    group: str | None = Field(None, description="HDF5: the group holding the table")


class DataConfig(Strict):
    """Where the data is and how to read it (any reader of ``deepfield.data``).

    Images: ``path`` is a folder of FITS cutouts, a FITS cube, HDF5 or .npy/.npz;
    ``labels`` a dataset/key or a :class:`LabelTable`. Spectra (``kind: spectra``): .npy/.npz,
    HDF5 or FITS holding ``(N, L)`` or ``(N, C, L)`` (:mod:`deepfield.data.spectra`); ``images``
    names the array if it is not ``spectra``, ``flux`` or ``images``. Catalogues: ``path`` is a
    FITS/CSV/Parquet/HDF5 table, ``target`` the column to learn, ``bands`` + ``mag``/``err``
    patterns the photometry.
    """

    path: Path
    kind: Literal["images", "spectra"] = Field(
        "images", description="spectra: 1-D arrays (N, C, L) (spectra, light curves); images: stamps (N, C, H, W)")
    validation: Path | None = None
    test: Path | None = None
    bands: list[str] | None = None
    channels: Literal["first", "last"] | None = None
    images: str = "images"
    labels: str | LabelTable | None = "labels"
    pattern: str = "{id}.fits"
    hdus: int | str | list[int | str] | None = Field(
        None, description="FITS: the HDU(s) holding the bands (0: a cube in the primary HDU; [1, 2, 3] or "
                          "[G, R, I]: one per band; default: EXTNAME = band); a FITS cube's HDU (default 0)")
    ids: str | None = Field(None, description="where object ids come from: an HDF5 dataset / npz key "
                                              "(default 0..N-1), a catalogue's id column (default id)")
    on_error: Literal["raise", "skip"] = "raise"
    split: SplitConfig = SplitConfig()
    normalize: Literal["robust", "none"] = "robust"
    stretch: Literal["asinh", "none"] | None = Field(
        None, description="after the normalisation: asinh (asinh(v / 3), linear within 3 sky sigma) or none; "
                          "default: the task's own (asinh for stamps, none for denoise)")
    # catalogues
    group: str | None = None
    target: str | None = None
    mag: str = "mag_{band}"
    err: str = "mag_err_{band}"
    sentinels: list[float] = [99.0, -99.0, -9999.0]
    features: list[str] | None = None
    feature_groups: dict[str, list[str]] = {}
    limit: int | None = Field(None, ge=1, description="use only the first N objects (quick runs)")
    label_map: Literal["classes", "instances", "morphology"] | None = Field(
        None, description="task segment: the labels are class maps or instance maps (0 background, k source k), "
                          "or morphology: a blends file's Morpheus class maps (its sources from its instance map); "
                          "default: instances in a `deepfield simulate blends` file, else classes")
    deblend: Literal["each", "all"] = Field(
        "each", description="task deblend: each: the blend + one target's marker -> that source (one example per "
                            "source); all: the blend + one marker per source slot -> every source at once")
    conditions: list[str] | None = Field(
        None, description="task generate: the columns each stamp is conditioned on (HDF5 datasets, truth/ columns, "
                          "or data.labels table columns), standardised; one column of class labels is one-hot")

    @field_validator("bands", "conditions", mode="before")
    @classmethod
    def _bands_from_text(cls, value: Any) -> Any:
        return [b.strip() for b in value.split(",")] if isinstance(value, str) else value


class BayesianConfig(Strict):
    """Bayes by backprop: every Dense/Conv of the preset becomes a variational layer.

    Each weight gets a Gaussian posterior and a ``N(0, prior_sigma²)`` prior; the KL
    term, weighted by ``kl_scale`` / (training samples), is added to the loss. A network of
    millions of weights trained on thousands of objects has a KL term far above its data
    loss: ``kl_scale`` < 1 tempers it (a "cold posterior"), ``kl_anneal_epochs`` ramps it
    up from 0 so that the network first learns the data.
    """

    prior_sigma: float = Field(1.0, gt=0)
    posterior_sigma: float = Field(1e-3, gt=0, description="the posterior's initial standard deviation")
    kl_scale: float = Field(1.0, gt=0, description="multiplies the KL weight 1/N (below 1: tempered)")
    kl_anneal_epochs: int = Field(0, ge=0, description="ramp the KL term up linearly over this many epochs")


class UncertaintyConfig(Strict):
    """How predictions carry their uncertainty (MC dropout, a heteroscedastic head).

    ``mc_samples`` > 0: ``evaluate``/``predict``/the report sample the network that many
    times with dropout on (batch norm frozen) and give the spread; 0 is one deterministic pass.
    ``heteroscedastic``: regression heads output a mean and a log-variance (aleatoric error)
    and train on the Gaussian negative log-likelihood.
    ``temperature``: fit a temperature on the validation part (classification calibration).
    """

    mc_samples: int = Field(0, ge=0)
    heteroscedastic: bool = False
    temperature: bool = True


class ModelConfig(Strict):
    """A preset from the zoo and its options (``deepfield summary PRESET`` shows it)."""

    preset: str = "lecture-cnn"
    options: dict[str, Any] = {}
    bayesian: BayesianConfig | None = Field(None, description="variational (Bayes by backprop) layers")
    tta: Literal["dihedral"] | None = Field(
        None, description="test-time augmentation: evaluate, predict and the report average the network over the "
                          "8 rotations and flips of each stamp (4 for a rectangle), each output turned back "
                          "(deepfield.models.test_time); training is unchanged")

    @field_validator("bayesian", mode="before")
    @classmethod
    def _bayesian_switch(cls, value: Any) -> Any:
        """``bayesian: true`` takes the defaults, ``false`` switches it off."""
        if value is True:
            return {}
        return None if value is False else value


class TrainingConfig(Strict):
    epochs: int = Field(10, ge=1)
    batch_size: int | Literal["full"] = Field(64, description="samples per step, or full (the whole set)")
    optimizer: str | dict[str, Any] = "adam"
    learning_rate: float | None = Field(None, gt=0)
    loss: str | None = None
    class_weight: dict[str, float] | None = Field(
        None, description="task segment: the weight of each class's pixels in the per-pixel cross-entropy, by class "
                          "name (e.g. {boundary: 5}; the others 1)")
    metrics: list[str] | None = None
    early_stopping: int | None = Field(None, ge=1, description="patience in epochs")
    reduce_lr: int | None = Field(None, ge=1, description="halve the learning rate after this many epochs without progress")
    kl_anneal_epochs: int = Field(0, ge=0, description="ramp a VAE's KL term (or model.bayesian's) up linearly over "
                                                      "this many epochs")
    device: str | None = None
    precision: Literal["auto", "fp32", "bf16", "fp16"] | None = Field(
        "auto", description="auto: bf16 on CUDA GPUs (fp16 before Ampere), fp32 on CPU; null: fp32")
    channels_last: bool | Literal["auto"] = Field("auto", description="auto: on for 2-d convolutional networks")
    jit_compile: bool | Literal["auto"] = Field("auto", description="torch.compile the network; auto: off")
    gradient_norms: bool = Field(False, description="record per-layer gradient norms (figures/gradient_norms.png)")
    augment: list[str | dict[str, Any]] = Field(
        [], description="random transforms of the training batches: dihedral, {name: shift, max_shift: 2}, "
                        "{name: gaussian_noise, sigma: 0.05}, or Keras layers: {name: RandomRotation, factor: 0.1}")

    @field_validator("augment")
    @classmethod
    def _known_augmentations(cls, value: list[str | dict[str, Any]]) -> list[str | dict[str, Any]]:
        """Every entry builds (name, options); the error names the entry (torch is imported only when set)."""
        if value:
            from deepfield.training.augment import augmentations

            try:
                augmentations(value)
            except DeepfieldError as exc:
                raise PydanticCustomError("augment", "{message}", {"message": str(exc)}) from None
        return value

    @field_validator("batch_size", mode="before")
    @classmethod
    def _positive_batch_size(cls, value: Any) -> Any:
        """As ``deepfield.training.batches.check_batch_size`` will want it, said here with the key."""
        if value != "full" and not arguments.is_integer(value):
            raise ValueError("must be a positive integer or 'full'")
        return value

    @field_validator("optimizer")
    @classmethod
    def _optimizer_builds(cls, value: str | dict[str, Any]) -> str | dict[str, Any]:
        """The optimiser is built once here, so a bad name or argument names this key before training."""
        from deepfield.training import optimizers  # torch: imported only when a config is validated

        try:
            optimizers.get(optimizer_spec(value))
        except DeepfieldError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _one_learning_rate(self) -> TrainingConfig:
        """``learning_rate`` and ``optimizer: {learning_rate: ...}`` (or Keras 2's ``lr``) are one value:
        say it once."""
        inner = [k for k in ("learning_rate", "lr") if isinstance(self.optimizer, dict) and k in self.optimizer]
        if self.learning_rate is not None and inner:
            raise ValueError(f"the learning rate is given twice, as training.learning_rate and "
                             f"training.optimizer.{inner[0]}: keep one of them")
        return self


def optimizer_spec(value: str | dict[str, Any]) -> str | dict[str, Any]:
    """``training.optimizer`` as :func:`deepfield.training.optimizers.get` takes it: a name, or
    ``{"name": "adam", "amsgrad": true}`` as ``{"class_name": "adam", "config": {"amsgrad": true}}``."""
    if isinstance(value, dict):
        return {"class_name": value.get("name", ""), "config": {k: v for k, v in value.items() if k != "name"}}
    return value


class BaselinesConfig(Strict):
    """Classical baselines on the network's exact split (``deepfield baseline CONFIG``).

    By default every baseline that applies: each image feature family with each learner
    (catalogue tasks use the catalogue features). Narrow the lists for quicker runs.
    """

    run: bool = Field(False, description="also run them at the end of `deepfield train`")
    features: list[str] = ["hog", "colour_histogram", "texture", "sift_bovw", "morphology"]
    learners: list[str] = ["svm_rbf", "svm_linear", "random_forest", "gradient_boosting", "knn"]


class OcclusionConfig(Strict):
    """The occluding square: side and step in pixels, and the value under it (one, or one per band)."""

    size: int = Field(8, ge=1)
    stride: int = Field(4, ge=1)
    fill: float | list[float] = 0.0


EXPLAIN_METHODS = ("filters", "feature-maps", "patches", "saliency", "integrated-gradients", "guided-backprop",
                   "deconvnet", "occlusion", "class-model")
"""The explain methods, in the order they run; ``all`` is every one (:mod:`deepfield.tasks.explain`)."""


class ExplainConfig(Strict):
    """Looking inside the network (``deepfield explain``; with ``run: true`` also at the end of
    ``deepfield train``, on a few test stamps per class, into the report's Explain section)."""

    run: bool = False
    methods: list[str] = ["all"]
    per_class: int = Field(2, ge=1, le=8, description="stamps shown per class")
    layer: str | None = Field(None, description="the layer for feature maps and patches, a block's parts by dotted "
                                                "name (stage2_block1.conv2), and for filters when a convolution "
                                                "(default: the deepest convolution or block whose receptive field "
                                                "is 1/4 to all of the stamp; filters: the first convolution)")
    baseline: float | Literal["blur"] = Field(0.0, description="integrated gradients' baseline")
    steps: int = Field(64, ge=1, description="integrated gradients' quadrature points")
    class_model_steps: int = Field(200, ge=1, description="gradient-ascent steps of each class model")
    occlusion: OcclusionConfig = OcclusionConfig()
    region: str | None = Field(None, description="an image output's explained aperture x,y,r (pixels; default: "
                                                 "each stamp's source from the file's truth, else the centre)")
    window: str | None = Field(None, description="an image output's explained pixel window x0:x1,y0:y1 instead")


class AnalysisConfig(Strict):
    """How a task scores its test part."""

    aperture: Literal["file", "kron"] = Field(
        "file", description="task denoise: the photometry aperture's radius: the file's truth/aperture_radius "
                            "(file) or 2.5 first-moment radii of each target (kron, SExtractor's FLUX_AUTO)")
    classifier: Path | None = Field(
        None, description="task generate: a deepfield classification run on stamps of the same bands and size; "
                          "the report adds the Fréchet distance of samples to the test stamps in its features, "
                          "beside the floor between two halves of the test stamps")


class DenoiseConfig(Strict):
    """Options of the denoise task (ignored by the other tasks).

    ``flux``: the denoised stamps' flux as the network made it (``network``), or ``template``: per stamp and
    band the network's output ``T`` rescaled to ``A·T``, ``A = Σ x·T / Σ T²`` the least-squares amplitude of
    the noisy input ``x`` on it (forced photometry with the network's shape:
    :mod:`deepfield.analysis.template_photometry`), in the metrics, the gallery and ``deepfield predict``'s
    stamps; not for whole FITS images (no sources to fit) nor with per-pixel σ maps. The output must not keep the
    input's noise (a U-Net's ``input_skip`` does): the fit then correlates that noise with itself (+7.6 % flux
    bias measured, ``benchmarks/RESULTS.md``).
    """

    flux: Literal["network", "template"] = Field(
        "network", description="network: the network's own flux; template: its output rescaled per stamp and band "
                               "by the least-squares amplitude of the noisy input on it")


class PhotozConfig(Strict):
    """Options of the photoz task on catalogues (ignored by the other tasks).

    ``resample_errors``: every epoch each training galaxy's magnitudes are drawn afresh from
    ``N(m, σ_m²)`` with its catalogue errors (colours follow), seeded by the run's seed, epoch
    and batch; validation and test keep the measured values, non-detections keep their fill.
    ``point_estimate``: ``z_phot`` of a PDF (``training.loss: sparse_categorical_crossentropy``):
    its median (default), mean, mode (the fullest bin's centre) or peak (the median within the
    ±0.15 (1 + z) window of most probability) or peak_mean (the mean within that window: fewest
    catastrophic outliers measured; see :class:`deepfield.analysis.photoz.PdfPointEstimates`).
    ``label_smoothing``: a PDF learns each galaxy's redshift spread over the bins by a Gaussian of
    σ = label_smoothing · (1 + z) around its bin (0: the bin alone, the sparse cross-entropy).
    """

    resample_errors: bool = False
    label_smoothing: float = Field(0.0, ge=0.0, description="a PDF's targets: Gaussian of σ = this · (1 + z); 0: none")
    point_estimate: Literal["median", "mean", "mode", "peak", "peak_mean"] | None = Field(
        None, description="a PDF's z_phot: median (default), mean, mode, peak or peak_mean")


TASK_PRESETS = {"denoise": "unet", "deblend": "unet", "segment": "unet", "generate": "cvae"}
"""``model.preset`` when the config leaves it out, for the tasks whose default is not ``lecture-cnn``."""


class RunConfig(Strict):
    task: Literal["morphology", "quality", "photoz", "tabular", "denoise", "deblend", "segment", "generate"]
    name: str | None = None
    seed: int = 0
    out: Path = Path("runs/run")
    data: DataConfig
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    baselines: BaselinesConfig = BaselinesConfig()
    uncertainty: UncertaintyConfig = UncertaintyConfig()
    explain: ExplainConfig = ExplainConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    photoz: PhotozConfig = PhotozConfig()
    denoise: DenoiseConfig = DenoiseConfig()
    ensemble: int = Field(1, ge=1, description="train N networks with seeds seed, seed+1, ... and combine them")
    data_from_run: dict[Literal["path", "validation", "test", "labels.table"], str] = Field(
        {}, description="written by `deepfield train` in RUN/config.yaml: data paths relative to the run folder, "
                        "to find the data after the run moved (deepfield.tasks.run_paths); leave it out")

    @model_validator(mode="after")
    def _tta_on_images(self) -> RunConfig:
        """``model.tta`` averages deterministic passes over the views of image stamps."""
        if self.model.tta is None:
            return self
        if self.uncertainty.mc_samples:
            raise ValueError("model.tta with uncertainty.mc_samples: each Monte Carlo draw would be a mean of the "
                             "views and their spread too narrow; use one or the other")
        if self.task == "generate" or self.data.kind != "images":
            raise ValueError(f"model.tta turns image stamps; task {self.task} with data.kind {self.data.kind} "
                             "does not take it")
        return self

    @model_validator(mode="after")
    def _class_weight_for_segment(self) -> RunConfig:
        if self.training.class_weight is not None and self.task != "segment":
            raise ValueError(f"training.class_weight weighs the classes of pixels (task segment); task {self.task} "
                             "does not take it")
        return self

    @model_validator(mode="after")
    def _task_preset(self) -> RunConfig:
        """A task whose network is not a classifier's gets its own default preset (``denoise``: ``unet``)."""
        preset = TASK_PRESETS.get(self.task)
        if preset is not None and "preset" not in self.model.model_fields_set:
            self.model = self.model.model_copy(update={"preset": preset})
        return self

    def to_yaml(self) -> str:
        """The resolved config, as saved in the run folder."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def apply_override(document: dict[str, Any], override: str) -> None:
    """Set ``a.b.c=value`` in ``document``; the value is parsed as YAML (``3``, ``[g, r]``, ``null``)."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise DeepfieldError(f"override {override!r} must look like key=value, e.g. training.epochs=3")
    node = document
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise DeepfieldError(f"override {override!r}: {part!r} is not a section")
        node = child
    try:
        node[parts[-1]] = parse(text, f"override {key.strip()}")
    except yaml.YAMLError:
        node[parts[-1]] = text


def load_config(path: str | os.PathLike[str] | None, overrides: list[str] = (), document: dict | None = None,
                source: str | None = None) -> RunConfig:
    """Read, override and validate a run config; errors name the file (or ``source``) and the key."""
    source = source or (str(path) if path is not None else "config")
    if document is None:
        try:
            document = parse(Path(path).read_text(encoding="utf-8"), source) or {}
        except FileNotFoundError:
            raise DeepfieldError(f"{source}: no such config file") from None
        except IsADirectoryError:
            raise DeepfieldError(f"{source}: is a folder, not a config file (a .yaml file)") from None
        except UnicodeDecodeError as exc:
            raise DeepfieldError(f"{source}: not a text file (UTF-8): byte {exc.start} is "
                                 f"{exc.object[exc.start:exc.start + 1]!r}") from None
        except yaml.reader.ReaderError:  # control characters: a binary file that happens to be UTF-8
            raise DeepfieldError(f"{source}: not a text file (UTF-8)") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise DeepfieldError(f"{source}: not valid YAML{where}") from None
    if not isinstance(document, dict):
        raise DeepfieldError(f"{source}: expected a mapping of sections (task, data, model, training)")
    for override in overrides:
        apply_override(document, override)
    try:
        return RunConfig.model_validate(document)
    except ValidationError as exc:
        raise invalid(exc, source) from None


def invalid(exc: ValidationError, source: str) -> DeepfieldError:
    """The first problem of a validation as one line naming ``source`` and the key.

    Of a union (``labels``: a name or a table), a mapping's problem is the table's, and the
    member's name (``LabelTable``) is left out of the key.
    """
    errors = exc.errors()
    errors = [e for e in errors if not (e["type"].endswith("_type") and isinstance(e.get("input"), dict))] or errors
    first = errors[0]
    key = ".".join(str(p) for p in first["loc"] if not str(p)[:1].isupper()) or "(top level)"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    if first["type"] == "value_error":  # a validator's own sentence, without pydantic's prefix
        message = message.removeprefix("Value error, ")
    value = first.get("input")
    got = f" (got {shown(value)})" if first["type"] != "missing" and not isinstance(value, dict) else ""
    more = f"; {len(errors) - 1} more problem(s)" if len(errors) > 1 else ""
    return DeepfieldError(f"{source}: {key}: {message[:200]}{got}{more}")
