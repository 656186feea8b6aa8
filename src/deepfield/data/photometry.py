"""Multi-band photometry from a catalogue: bands chosen, missing values masked and filled, colours.

``load_photometry`` picks one magnitude and one error column per band (by a pattern such
as ``"mag_{band}_lsst"`` or by explicit names), subtracts Galactic extinction if asked,
turns non-detections and missing values into a boolean mask plus a documented fill,
optionally drops rows with too few measured bands, and derives colours. Every cleaning
step is counted in a ``CleaningReport``.

Magnitudes, errors, fills and extinctions are AB magnitudes throughout.
"""
from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table

from deepfield import arguments
from deepfield.data.catalogues import numeric_column, preview, read_catalogue, require_columns, row_name, source_of
from deepfield.errors import DeepfieldError

SENTINELS = (99.0, -99.0, -9999.0)
"""Values that mean "not measured" in magnitude or error columns, unless told otherwise."""

ColumnSpec = str | Mapping[str, str]
"""A column pattern with ``{band}`` (``"mag_{band}_lsst"``) or a mapping band -> column name."""


@dataclass(frozen=True)
class Cleaning:
    """How unmeasured values are found and filled, and which rows are kept.

    A magnitude is *unmeasured* when its magnitude or its error is blank, NaN, ±inf or
    equal (in float32) to one of ``sentinels``, or when its error exceeds ``max_error``.

    - ``sentinels``: the "not measured" codes.
    - ``max_error``: errors above this (mag) mark non-detections; ``None`` for no such rule.
    - ``limits``: band -> limiting magnitude used as the fill; ``None`` fills each band
      with the ``percentile`` of its measured (extinction-corrected) magnitudes in the kept rows.
    - ``fill_error``: the error (mag) given to every filled value.
    - ``min_bands``: rows with fewer measured bands are dropped; 0 keeps every row.
    """

    sentinels: tuple[float, ...] = SENTINELS
    max_error: float | None = None
    limits: Mapping[str, float] | None = None
    percentile: float = 99.0
    fill_error: float = 1.0
    min_bands: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "sentinels", tuple(float(s) for s in self.sentinels))
        if not all(np.isfinite(self.sentinels)):
            raise DeepfieldError(
                f"Cleaning.sentinels must be finite numbers (NaN is always caught), got {self.sentinels}"
            )
        if self.max_error is not None and not self.max_error > 0:
            raise DeepfieldError(f"Cleaning.max_error must be positive or None, got {self.max_error}")
        if self.limits is not None:
            object.__setattr__(self, "limits", {band: float(m) for band, m in self.limits.items()})
            bad = {band: m for band, m in self.limits.items() if not np.isfinite(m)}
            if bad:
                raise DeepfieldError(f"Cleaning.limits must be finite magnitudes, got {bad}")
        if not 0.0 <= self.percentile <= 100.0:
            raise DeepfieldError(f"Cleaning.percentile must be in [0, 100], got {self.percentile}")
        if not (np.isfinite(self.fill_error) and self.fill_error > 0):
            raise DeepfieldError(f"Cleaning.fill_error must be a positive magnitude, got {self.fill_error}")
        object.__setattr__(self, "min_bands",
                           arguments.integer("Cleaning.min_bands", self.min_bands, 0, expected="an integer >= 0"))


@dataclass(frozen=True)
class RuleCount:
    """How many values of one column one cleaning rule marked unmeasured."""

    rule: str
    column: str
    values: int


@dataclass(frozen=True)
class Fill:
    """What replaced the unmeasured magnitudes of one band in the kept rows."""

    band: str
    magnitude: float
    error: float
    values: int
    how: str


@dataclass(frozen=True)
class CleaningReport:
    """What cleaning did to a catalogue.

    Each unmeasured value is counted once, under the first rule that caught it, in the
    order: magnitude column (blank, NaN, inf, sentinels), then error column (the same,
    then ``error > max_error``). ``rule_rows`` counts the rows each rule touched in any band.
    """

    source: str
    rows_in: int
    counts: tuple[RuleCount, ...]
    rule_rows: dict[str, int]
    rows_with_missing: int
    min_bands: int
    rows_dropped: int
    fills: tuple[Fill, ...]

    @property
    def rows_out(self) -> int:
        """Rows kept."""
        return self.rows_in - self.rows_dropped

    @property
    def values_unmeasured(self) -> int:
        """Unmeasured values in all rows read, over all bands."""
        return sum(count.values for count in self.counts)

    def to_dict(self) -> dict:
        """The report as plain JSON-ready values."""
        return {
            "source": self.source,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "counts": [vars(count) for count in self.counts],
            "rule_rows": dict(self.rule_rows),
            "rows_with_missing": self.rows_with_missing,
            "min_bands": self.min_bands,
            "rows_dropped": self.rows_dropped,
            "fills": [vars(fill) for fill in self.fills],
        }

    def __str__(self) -> str:
        lines = [f"photometry of {self.source}: {self.rows_in} rows read, {self.rows_out} kept"]
        lines += [f"  {c.rule} in {c.column}: {c.values} values" for c in self.counts]
        lines += [f"  rows touched by {rule}: {rows}" for rule, rows in self.rule_rows.items()]
        lines.append(f"  rows with any non-detection: {self.rows_with_missing}")
        if self.min_bands:
            lines.append(f"  rows dropped with fewer than {self.min_bands} measured bands: {self.rows_dropped}")
        lines += [
            f"  filled {f.band}: {f.values} values with {f.magnitude:.3f} mag ({f.how}), error {f.error:g} mag"
            for f in self.fills
        ]
        return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class Photometry:
    """Cleaned photometry of ``N`` kept rows in ``B`` bands with ``C`` colours.

    - ``magnitudes``: (N, B) float32 AB mag, extinction-corrected; fills where ``mask`` is False.
    - ``errors``: (N, B) float32 mag; ``Cleaning.fill_error`` where ``mask`` is False.
    - ``mask``: (N, B) bool, True = measured.
    - ``colours``: (N, C) float32 mag, ``magnitudes[:, a] - magnitudes[:, b]`` for each pair.
    - ``bands``: the B band names; ``colour_pairs``: the C ``(a, b)`` band pairs.
    - ``rows``: (N,) int64, each kept row's index in the catalogue (to align labels).
    - ``report``: what cleaning did.
    """

    magnitudes: np.ndarray
    errors: np.ndarray
    mask: np.ndarray
    colours: np.ndarray
    bands: tuple[str, ...]
    colour_pairs: tuple[tuple[str, str], ...]
    rows: np.ndarray
    report: CleaningReport = field(repr=False)

    def __len__(self) -> int:
        return len(self.magnitudes)

    @property
    def colour_names(self) -> tuple[str, ...]:
        """``"g-r"`` style names of the C colours."""
        return tuple(f"{a}-{b}" for a, b in self.colour_pairs)

    @property
    def colour_mask(self) -> np.ndarray:
        """(N, C) bool: True where both bands of a colour are measured."""
        first, second = _pair_indices(self.bands, self.colour_pairs)
        return self.mask[:, first] & self.mask[:, second]

    def features(self, errors: bool = False) -> np.ndarray:
        """The input array for a network or SVM: (N, B + C) float32, magnitudes then colours,
        then (with ``errors``) the B errors: (N, 2B + C)."""
        parts = [self.magnitudes, self.colours] + ([self.errors] if errors else [])
        return np.concatenate(parts, axis=1).astype(np.float32, copy=False)

    def feature_names(self, errors: bool = False) -> list[str]:
        """Names of the columns of ``features(errors)``: ``g``, ``g-r``, ``g_err``, ..."""
        return [*self.bands, *self.colour_names, *([f"{b}_err" for b in self.bands] if errors else [])]


@dataclass(frozen=True)
class BandColumns:
    """The magnitude and error column of each band, in band order."""

    bands: tuple[str, ...]
    magnitudes: tuple[str, ...]
    errors: tuple[str, ...]


def band_columns(
    table: Table,
    bands: Sequence[str] | str | None = None,
    *,
    mag: ColumnSpec = "mag_{band}",
    err: ColumnSpec = "mag_err_{band}",
    source: str | None = None,
) -> BandColumns:
    """Choose the magnitude and error column of each band.

    ``bands``: band names in the order wanted (colours follow it), or a comma-separated
    string (``"u,g,r,i,z,y"``). ``None`` takes the keys of a ``mag`` mapping, or every
    band matching the ``mag`` pattern in the catalogue's column order (columns that also
    match the ``err`` pattern are not magnitudes). Absent columns raise ``DeepfieldError``
    listing near matches.
    """
    source = source or source_of(table)
    for spec, what in ((mag, "magnitude"), (err, "error")):
        if isinstance(spec, str):
            _check_pattern(spec, what)
    if isinstance(bands, str):
        bands = [band.strip() for band in bands.split(",")]
    if bands is None:
        bands = list(mag) if isinstance(mag, Mapping) else _bands_matching(table, mag, err, source)
    bands = tuple(bands)
    if not bands or not all(isinstance(b, str) and b for b in bands) or len(set(bands)) != len(bands):
        raise DeepfieldError(f"{source}: bands must be distinct non-empty names, got {list(bands)}")
    columns = BandColumns(
        bands,
        tuple(_column_for(mag, band, "magnitude") for band in bands),
        tuple(_column_for(err, band, "error") for band in bands),
    )
    require_columns(table, columns.magnitudes + columns.errors, source=source)
    return columns


def load_photometry(
    catalogue: Table | str | os.PathLike[str],
    bands: Sequence[str] | str | None = None,
    *,
    mag: ColumnSpec = "mag_{band}",
    err: ColumnSpec = "mag_err_{band}",
    colours: Sequence[tuple[str, str]] | None = None,
    extinction: ColumnSpec | None = None,
    ebv: str | None = None,
    coefficients: Mapping[str, float] | None = None,
    cleaning: Cleaning | None = None,
) -> Photometry:
    """Cleaned magnitudes, errors, mask and colours of a catalogue (a Table or a file path).

    Errors name the file the table was read from (``read_catalogue`` records it), or
    ``<table>`` for a table made in memory.

    ``bands``, ``mag``, ``err``: see ``band_columns``. ``colours``: band pairs ``(a, b)``
    giving ``a - b``; ``None`` takes adjacent bands in order (u-g, g-r, ...).
    Extinction (AB mag, subtracted from measured magnitudes), at most one of:
    ``extinction``, the A_band column per band (pattern or mapping); or ``ebv``, an
    E(B-V) column, with ``coefficients`` band -> A_band / E(B-V).
    ``cleaning``: how unmeasured values are found and filled (default ``Cleaning()``).
    """
    table = catalogue if isinstance(catalogue, Table) else read_catalogue(catalogue)
    cleaning = cleaning or Cleaning()
    source = source_of(table)
    columns = band_columns(table, bands, mag=mag, err=err, source=source)
    pairs = _colour_pairs(columns.bands, colours, source)
    _check_cleaning(cleaning, columns.bands, source)
    mags = np.stack([numeric_column(table, c, source=source) for c in columns.magnitudes], axis=1)
    errs = np.stack([numeric_column(table, c, source=source) for c in columns.errors], axis=1)
    mask, counts, rule_rows = _find_unmeasured(table, columns, mags, errs, cleaning)
    mags -= _extinction(table, columns.bands, extinction, ebv, coefficients, cleaning.sentinels, source)

    kept = mask.sum(axis=1) >= cleaning.min_bands
    rows_with_missing = int((~mask).any(axis=1).sum())
    mags, errs, mask = mags[kept], errs[kept], mask[kept]
    fills = _fill(mags, errs, mask, columns, cleaning, source)
    first, second = _pair_indices(columns.bands, pairs)
    report = CleaningReport(
        source=source,
        rows_in=len(table),
        counts=counts,
        rule_rows=rule_rows,
        rows_with_missing=rows_with_missing,
        min_bands=cleaning.min_bands,
        rows_dropped=int((~kept).sum()),
        fills=fills,
    )
    return Photometry(
        magnitudes=mags.astype(np.float32),
        errors=errs.astype(np.float32),
        mask=mask,
        colours=(mags[:, first] - mags[:, second]).astype(np.float32),
        bands=columns.bands,
        colour_pairs=pairs,
        rows=np.flatnonzero(kept).astype(np.int64),
        report=report,
    )


def _check_pattern(spec: str, what: str) -> None:
    """Raise unless ``spec`` holds ``{band}`` exactly once and no other field."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(spec) if name is not None]
    except ValueError:
        fields = []
    if fields != ["band"] or spec.count("{band}") != 1:
        raise DeepfieldError(
            f"{what} pattern {spec!r} must contain '{{band}}' once (e.g. 'mag_{{band}}_lsst'), "
            "or give a mapping band -> column"
        )


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A regex matching the column names ``pattern`` makes, capturing the band."""
    prefix, suffix = pattern.split("{band}")
    return re.compile(f"{re.escape(prefix)}(?P<band>.+){re.escape(suffix)}")


def _bands_matching(table: Table, mag: str, err: ColumnSpec, source: str) -> list[str]:
    """Bands whose magnitude column matches ``mag``, in column order; error columns excluded."""
    mag_regex = _pattern_regex(mag)
    if isinstance(err, str):
        error_columns = {name for name in table.colnames if _pattern_regex(err).fullmatch(name)}
    else:
        error_columns = set(err.values())
    bands = [
        found.group("band")
        for name in table.colnames
        if name not in error_columns and (found := mag_regex.fullmatch(name))
    ]
    if not bands:
        raise DeepfieldError(
            f"{source}: no column matches the magnitude pattern {mag!r}; columns are: {preview(table.colnames)}"
        )
    return bands


def _column_for(spec: ColumnSpec, band: str, what: str) -> str:
    """The ``what`` column of ``band``: the pattern filled in, or the mapping's entry."""
    if isinstance(spec, str):
        return spec.format(band=band)
    if band not in spec:
        raise DeepfieldError(f"no {what} column given for band {band!r}; the mapping has bands: {', '.join(spec)}")
    return spec[band]


def _colour_pairs(
    bands: tuple[str, ...], colours: Sequence[tuple[str, str]] | None, source: str
) -> tuple[tuple[str, str], ...]:
    """The colour band pairs: ``colours`` checked, or adjacent bands."""
    if colours is None:
        return tuple(zip(bands[:-1], bands[1:]))
    pairs = []
    for pair in colours:
        if len(pair) != 2 or pair[0] == pair[1] or not set(pair) <= set(bands):
            raise DeepfieldError(
                f"{source}: colour {tuple(pair)!r} must be two different bands among: {', '.join(bands)}"
            )
        pairs.append((pair[0], pair[1]))
    return tuple(pairs)


def _pair_indices(bands: tuple[str, ...], pairs: tuple[tuple[str, str], ...]) -> tuple[np.ndarray, np.ndarray]:
    """Band indices ``(C,)`` of the first and second band of each colour."""
    index = {band: j for j, band in enumerate(bands)}
    first = np.array([index[a] for a, _ in pairs], dtype=np.int64)
    second = np.array([index[b] for _, b in pairs], dtype=np.int64)
    return first, second


def _check_cleaning(cleaning: Cleaning, bands: tuple[str, ...], source: str) -> None:
    """Raise if ``cleaning`` does not fit the selected ``bands``."""
    if cleaning.min_bands > len(bands):
        raise DeepfieldError(
            f"{source}: Cleaning.min_bands={cleaning.min_bands} but only {len(bands)} bands are selected"
        )
    if cleaning.limits is not None:
        missing = [band for band in bands if band not in cleaning.limits]
        if missing:
            raise DeepfieldError(f"{source}: Cleaning.limits has no limiting magnitude for band {', '.join(missing)}")


def _rules(values: np.ndarray, blank: np.ndarray, sentinels: tuple[float, ...]) -> list[tuple[str, np.ndarray]]:
    """Each "not measured" rule and the values ``(N,)`` it catches in one column."""
    with np.errstate(over="ignore", invalid="ignore"):
        as32 = values.astype(np.float32)
    rules = [("blank", blank), ("NaN", np.isnan(values) & ~blank), ("inf", np.isinf(values))]
    return rules + [(f"sentinel {s:g}", as32 == np.float32(s)) for s in sentinels]


def _find_unmeasured(
    table: Table, columns: BandColumns, mags: np.ndarray, errs: np.ndarray, cleaning: Cleaning
) -> tuple[np.ndarray, tuple[RuleCount, ...], dict[str, int]]:
    """The measured mask (N, B), the value count of each (rule, column), and rows touched per rule.

    ``mags`` and ``errs`` (N, B) hold NaN where the catalogue cell was blank; blank
    cells are told apart from NaN by their masks.
    """
    mask = np.ones(mags.shape, dtype=bool)
    counts: list[RuleCount] = []
    touched: dict[str, np.ndarray] = {}
    for j in range(len(columns.bands)):
        for column, values, is_error in (
            (columns.magnitudes[j], mags[:, j], False),
            (columns.errors[j], errs[:, j], True),
        ):
            rules = _rules(values, np.ma.getmaskarray(table[column]), cleaning.sentinels)
            if is_error and cleaning.max_error is not None:
                with np.errstate(invalid="ignore"):
                    rules.append((f"error > {cleaning.max_error:g}", values > cleaning.max_error))
            for rule, caught in rules:
                caught = caught & mask[:, j]
                if caught.any():
                    mask[:, j] &= ~caught
                    counts.append(RuleCount(rule, column, int(caught.sum())))
                    touched[rule] = touched.get(rule, np.zeros(len(mags), dtype=bool)) | caught
    return mask, tuple(counts), {rule: int(rows.sum()) for rule, rows in touched.items()}


def _extinction(
    table: Table,
    bands: tuple[str, ...],
    extinction: ColumnSpec | None,
    ebv: str | None,
    coefficients: Mapping[str, float] | None,
    sentinels: tuple[float, ...],
    source: str,
) -> np.ndarray:
    """A_band (N, B) in mag: from per-band columns, from E(B-V) times coefficients, or zeros."""
    if extinction is not None and ebv is not None:
        raise DeepfieldError(f"{source}: give extinction= (A per band) or ebv= (E(B-V)), not both")
    if ebv is None:
        if coefficients is not None:
            raise DeepfieldError(f"{source}: coefficients= given without ebv= (the E(B-V) column)")
        if extinction is None:
            return np.zeros((len(table), len(bands)))
        if isinstance(extinction, str):
            _check_pattern(extinction, "extinction")
        names = [_column_for(extinction, band, "extinction") for band in bands]
        require_columns(table, names, source=source)
        return np.stack([_extinction_column(table, name, sentinels, source) for name in names], axis=1)
    coefficients = coefficients or {}
    missing = [band for band in bands if band not in coefficients]
    if missing:
        raise DeepfieldError(f"{source}: ebv={ebv!r} needs coefficients= A_band/E(B-V) for band {', '.join(missing)}")
    factors = np.array([float(coefficients[band]) for band in bands])
    return _extinction_column(table, ebv, sentinels, source)[:, None] * factors[None, :]


def _extinction_column(table: Table, name: str, sentinels: tuple[float, ...], source: str) -> np.ndarray:
    """An extinction column (N,) in mag; a missing value (blank, NaN, inf, sentinel) raises."""
    values = numeric_column(table, name, source=source)
    with np.errstate(over="ignore", invalid="ignore"):
        bad = ~np.isfinite(values) | np.isin(values.astype(np.float32), np.float32(sentinels))
    if bad.any():
        row = int(np.argmax(bad))
        raise DeepfieldError(
            f"{source}: column {name!r} {row_name(table, row)} is {values[row]:g}; "
            "extinction must be a finite value, not missing"
        )
    return values


def _fill(
    mags: np.ndarray, errs: np.ndarray, mask: np.ndarray, columns: BandColumns, cleaning: Cleaning, source: str
) -> tuple[Fill, ...]:
    """Replace unmeasured values of ``mags``/``errs`` (N, B) in place; what each band got."""
    fills = []
    for j, band in enumerate(columns.bands):
        missing = ~mask[:, j]
        if not missing.any():
            continue
        if cleaning.limits is not None:
            value, how = cleaning.limits[band], "limiting magnitude"
        else:
            measured = mags[mask[:, j], j]
            if not measured.size:
                raise DeepfieldError(
                    f"{source}: {columns.magnitudes[j]} has no measured values in the kept rows to take "
                    f"the {cleaning.percentile:g}th percentile of; give Cleaning(limits=...)"
                )
            value = float(np.percentile(measured, cleaning.percentile))
            how = f"{cleaning.percentile:g}th percentile"
        mags[missing, j] = value
        errs[missing, j] = cleaning.fill_error
        fills.append(Fill(band, value, cleaning.fill_error, int(missing.sum()), how))
    return tuple(fills)
