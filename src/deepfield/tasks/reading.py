"""How a run's ``data`` config reads image (and spectra) files, and the reading options of a new file.

``open_data`` is the one place turning a :class:`DataConfig` into an image reader (a label
table becomes a :class:`~deepfield.data.images.CatalogueLabels` join); ``with_reading``
lays the options given for one new file (``predict RUN FILE --channels last``...) over the
run's data config. Light on purpose: ``deepfield inspect images`` imports it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from deepfield.data.images import ImageReader
from deepfield.data.sources import FITS_SUFFIXES, catalogue_labels, open_images
from deepfield.data.spectra import open_spectra
from deepfield.errors import DeepfieldError
from deepfield.tasks.config import DataConfig, LabelTable, invalid

READING_KEYS = ("bands", "channels", "images", "labels", "pattern", "hdus", "ids", "on_error")
"""The options of :class:`DataConfig` that say how to read a file (not what to learn from it)."""


def open_data(data: DataConfig, path: str | Path, *, labelled: bool = True, bands: Sequence[str] | None = None,
              classes: Sequence[str] | None = None) -> ImageReader:
    """The reader of ``path`` as ``data`` says (``bands``: the file's bands when ``data.bands`` is unset).

    ``labelled``: attach ``data.labels``; unlabelled, a label table still lends its columns
    (:meth:`~deepfield.data.images.ImageReader.metadata`). ``classes``: the class names a
    table's text labels map to (a run's), default their sorted distinct names.
    """
    labels: Any = data.labels if labelled else None
    if isinstance(data.labels, LabelTable):
        spec = data.labels
        if labelled and spec.column is None:
            raise DeepfieldError(f"data.labels: name the label column of {spec.table} (column: ...)")
        labels = catalogue_labels(spec.table, spec.id, spec.column if labelled else None, group=spec.group,
                                  classes=classes)
    elif labelled and Path(path).is_dir():
        raise DeepfieldError(f"{path}: the labels of a folder of FITS cutouts come from a table joined by id; "
                             f"data.labels is {data.labels!r}: write labels: {{table: labels.csv, id: ID_COLUMN, "
                             "column: LABEL_COLUMN}")
    if data.kind == "spectra":  # the array's name: data.images, its default meaning "spectra, flux or images"
        key = None if data.images == DataConfig.model_fields["images"].default else data.images
        return open_spectra(path, data.bands or bands, labels=labels, channels=data.channels, key=key,
                            on_error=data.on_error)
    fits = Path(path).is_dir() or Path(path).name.lower().endswith(FITS_SUFFIXES)
    # a run trained on FITS cutouts predicts on an HDF5 file (and back): options of the other kind stay out
    return open_images(path, data.bands or bands, labels=labels, channels=data.channels, pattern=data.pattern,
                       images=data.images, hdus=data.hdus if fits else None, ids=None if fits else data.ids,
                       on_error=data.on_error)


def with_reading(data: DataConfig, options: Mapping[str, Any] | None, labelled: bool) -> DataConfig:
    """``data`` with the reading ``options`` of one new file laid over it, validated.

    ``options["labels"]``: a dataset/key name, or a mapping (part of a :class:`LabelTable`,
    completed from the run's table). Read unlabelled, the run's own label table is dropped
    unless the options name one (the new objects are not in it).
    """
    options = dict(options or {})
    unknown = sorted(set(options) - set(READING_KEYS))
    if unknown:
        raise DeepfieldError(f"reading options: unknown {', '.join(unknown)}; they are {', '.join(READING_KEYS)}")
    document = data.model_dump()
    if not labelled and "labels" not in options:
        document["labels"] = None
    labels = options.pop("labels", None)
    if isinstance(labels, Mapping) and isinstance(data.labels, LabelTable):
        labels = {**data.labels.model_dump(), **labels}
    if labels is not None:
        document["labels"] = labels
    document.update(options)
    try:
        return DataConfig.model_validate(document)
    except ValidationError as exc:
        raise invalid(exc, "reading options") from None
