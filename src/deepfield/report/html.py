"""The run report: one self-contained HTML file built from what a run folder holds.

``write_report(run_dir)`` reads ``config.yaml``, ``summary.txt``, ``history.csv``,
``metrics.json``, ``baselines.json``, ``baselines/*_failures.csv`` (stamps a baseline's features
could not measure), ``model.json`` (for the version), ``prepared.json`` (for the class names) and
``figures/*.png`` (captions from ``figures/captions.json``, else :data:`FIGURE_TITLES`), and writes
``run_dir/report.html`` atomically. Figures are embedded as base64 data URIs, the
style is a small inline sheet, and the page has no script and fetches nothing: its
Content-Security-Policy forbids both. Each section appears only when its inputs
exist; every value read from the folder is HTML-escaped.
"""
from __future__ import annotations

import base64
import csv
import html
import json
import math
import os
import re
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from deepfield import atomic
from deepfield.arguments import is_number
from deepfield.errors import DeepfieldError, unknown_name
from deepfield.version import __version__
from deepfield.yaml_files import parse

REPORT_FILE = "report.html"
SECTIONS = ("header", "config", "model", "training", "metrics", "uncertainty", "explain", "figures", "baselines",
            "gallery")
"""The report's sections, in page order; ``write_report(sections=...)`` picks among them."""

HISTORY_ROWS = 10
"""A longer ``history.csv`` is shown as its last this-many epochs."""

LEARNING_CURVES = "learning_curves.png"
TRAINING_FIGURES = (LEARNING_CURVES, "gradient_norms.png")
"""Shown in the Training section: the learning curves, and the per-layer gradient norms when recorded."""
GALLERY_GLOB = "gallery*.png"
UNCERTAINTY_GLOB = "uncertainty_*.png"
CAPTION_NAMES = 60
"""Characters of a grouped table's caption listing its rows' names; longer, it names the first and the columns."""
EXPLAIN_GLOB = "explain_*.png"
TIME_KEYS = ("time_s", "train_time_s", "elapsed_s", "wall_time_s", "duration_s")
"""``metrics.json`` keys read as the run's duration in seconds (the first present wins)."""
HEADLINE_KEYS = ("accuracy", "sigma_nmad", "mae", "rmse", "psnr", "flux_mape", "mean_iou", "mean_w1")
"""The first of these top-level ``metrics.json`` numbers is the report's headline (and the demo's last line)."""
HEADLINE_NAMES = {"sigma_nmad": "σ_NMAD", "mae": "MAE", "rmse": "RMSE", "psnr": "PSNR (dB)",
                  "flux_mape": "flux error (MAPE, %)", "mean_iou": "mean IoU",
                  "mean_w1": "mean standardised W1 of samples (0: as the test stamps)"}
"""How a headline key is written (its own name otherwise)."""
FAILURES_GLOB = "baselines/*_failures.csv"

FIGURE_TITLES = {
    "learning_curves": "Learning curves: loss (and metric) per epoch, training and validation",
    "denoise_gallery": "Test stamps of best, median and worst PSNR: input, output, truth, residual (and σ)",
    "deblend_gallery": "Test sources of best, median and worst flux error: blend, network, isolated truth, residual",
    "segment_gallery": "Test stamps of best, median and worst mean IoU: image, predicted classes, true classes",
    "sample_grid": "Samples drawn at the conditions of test stamps (one row per condition), the real stamp first",
    "latent_interpolation": "Decoded along a line in latent space between two real test stamps",
    "statistic_distributions": "Samples against the test stamps they were drawn for, per statistic (standardised "
                               "1-Wasserstein distance in each title)",
    "power_spectra": "Radial power spectra of samples and test stamps (median and 16-84 % band)",
    "memorisation": "Each sample's and each test stamp's distance to its nearest training stamp: copies pile up "
                    "left of the test stamps",
    "gradient_norms": "Gradient norm of each layer during training",
    "confusion_matrix": "Confusion matrix on the test part (fraction of each true class, with counts)",
    "roc": "ROC curves (one vs rest) on the test part",
    "precision_recall": "Precision\u2013recall on the test part, with the operating point at the required recall",
    "gallery": "Test stamps, the most confident right (green) then wrong (red) predictions: "
               "true class, predicted class (probability)",
    "photoz_scatter": "Photometric vs spectroscopic redshift on the test part",
    "pit": "PIT histogram (flat when the redshift PDFs are calibrated)",
    "sigma_nmad_vs_magnitude": "\u03c3_NMAD and outlier fraction against magnitude",
    "regression": "Predicted vs true values on the test part",
    "uncertainty_reliability": "Reliability diagram: confidence against accuracy (before and after calibration)",
    "uncertainty_flags": "Does the uncertainty flag the mistakes? The fraction of mistakes flagged against the "
                         "fraction of right predictions flagged, and the uncertainty of right and wrong predictions",
    "uncertainty_most_uncertain": "The most uncertain test objects (highest predictive entropy first): "
                                  "true class, predicted class (probability)",
    "uncertainty_error_vs_sigma": "Error against predicted uncertainty",
    "uncertainty_coverage": "Coverage: fraction of true values inside each predicted interval",
    "explain_filters": "First-layer convolution filters",
    "explain_feature_maps": "Feature maps of one stamp",
    "explain_patches": "Strongest-activating patches of the explained layer's channels",
    "explain_attributions": "Attribution maps of test stamps (rows: true class, predicted class with its "
                            "probability); each map on its own symmetric colour scale, bars in units of "
                            "that row's scale (\u00b1 value printed in the panel)",
    "explain_class_models": "Class models: the image each class's score prefers, and the score while optimising",
    "explain_region": "Which input pixels make the output's flux in the outlined region (by default each test "
                      "source's aperture): integrated gradients (summing to the flux above the baseline's) "
                      "and occlusion",
    "paths": "Optimiser paths on the loss surface",
    "losses": "Loss along each optimiser's path",
    "boundary": "Decision boundary of the trained network",
    "sweep": "Hyper-parameter sweep",
    "depth_gradient_norms": "Gradient norms against depth",
}
"""Captions of the figures deepfield writes, by file stem (``figures/captions.json`` overrides them)."""

_HEADER_KEYS = frozenset({"task", "device", "date", "deepfield_version", "epochs_run", "warnings", "title", *TIME_KEYS})
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_LOWER_IS_BETTER = frozenset({
    "loss", "error", "err", "mse", "mae", "rmse", "mad", "nmad", "scatter", "sigma", "std", "outlier",
    "outliers", "eta", "bias", "brier", "ece", "nll", "fpr", "fnr", "time", "rms", "failures", "mape", "mdape", "crps",
})
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_STYLE = """
:root { --ink: #1c2128; --muted: #5d6873; --rule: #d3d8de; --code: #f5f7f9; --accent: #1f4e79; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; counter-reset: figure table;
  font: 16px/1.55 system-ui, -apple-system, "Segoe UI", "Helvetica Neue", Arial, sans-serif; }
main { max-width: 62rem; margin: 0 auto; padding: 2.5rem 1.5rem 3rem; }
h1 { font-size: 1.9rem; font-weight: 600; letter-spacing: -0.01em; margin: 0; }
.subtitle { color: var(--muted); margin: 0.2rem 0 1.2rem; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 0.15rem 1.4rem; margin: 0;
  font-size: 0.95rem; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; overflow-wrap: anywhere; }
nav { margin-top: 1.4rem; padding: 0.55rem 0; border-block: 1px solid var(--rule); font-size: 0.92rem; }
nav a { color: var(--accent); text-decoration: none; margin-right: 1.2rem; }
nav a:hover { text-decoration: underline; }
section { margin-top: 2.6rem; }
h2 { font-size: 1.3rem; font-weight: 600; margin: 0 0 1rem; padding-bottom: 0.3rem;
  border-bottom: 1px solid var(--rule); }
pre { background: var(--code); border: 1px solid #e4e8ec; border-radius: 4px; padding: 0.8rem 1rem;
  margin: 0 0 1.6rem; overflow-x: auto;
  font: 0.8rem/1.4 ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace; }
.scroll { overflow-x: auto; margin: 0 0 1.8rem; }
table { border-collapse: collapse; font-size: 0.92rem; font-variant-numeric: tabular-nums;
  border-top: 2px solid var(--ink); border-bottom: 2px solid var(--ink); }
caption { caption-side: top; text-align: left; padding-bottom: 0.4rem; font-weight: 600;
  white-space: nowrap; counter-increment: table; }
caption::before { content: "Table " counter(table) ". "; color: var(--muted); font-weight: 400; }
th, td { padding: 0.25rem 0.9rem; text-align: left; vertical-align: top; white-space: nowrap; }
table.compact th { white-space: normal; vertical-align: bottom; }
table.compact th, table.compact td { padding: 0.25rem 0.55rem; }
.headline { font-size: 1.15rem; margin: 0 0 1rem; }
.warning { color: #8a4b00; background: #fff6e5; border-left: 3px solid #d98e04; padding: 0.4rem 0.8rem; }
thead th { border-bottom: 1px solid var(--ink); font-weight: 600; }
tbody tr:nth-child(even) { background: #f8f9fb; }
.num { text-align: right; }
.note { color: var(--muted); font-size: 0.9rem; margin: -1.4rem 0 1.8rem; }
figure { margin: 0 0 2.2rem; counter-increment: figure; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { margin-top: 0.5rem; font-size: 0.9rem; color: var(--muted); }
figcaption::before { content: "Figure " counter(figure) ". "; color: var(--ink); font-weight: 600; }
footer { margin-top: 3rem; padding-top: 0.6rem; border-top: 1px solid var(--rule); color: var(--muted);
  font-size: 0.85rem; }
@media print {
  main { max-width: none; padding: 0; }
  nav { display: none; }
  figure, table, pre { break-inside: avoid; }
}
"""


@dataclass(frozen=True)
class _Run:
    """What the report is built from, read once from the run folder (``None``: file absent)."""

    folder: Path
    config_text: str | None
    config: Mapping[str, Any]
    summary: str | None
    history: list[list[str]] | None
    metrics: Mapping[str, Any]
    baselines: Any
    version: str
    figures: list[Path]
    captions: Mapping[str, str]
    classes: list[str] | None
    failures: list[Path]


def write_report(run_dir: str | os.PathLike[str], *, title: str | None = None,
                 sections: Iterable[str] | None = None) -> Path:
    """Write ``run_dir/report.html`` from the run folder and return its path.

    Args:
        run_dir: a run folder (see the run-folder contract in DESIGN.md).
        title: the page title; default: the run's name (``name`` in config.yaml, else ``title`` in
            metrics.json, else the folder name).
        sections: the sections to include, among ``SECTIONS``; default: all. A section whose
            inputs are absent from the folder is left out either way.

    Raises:
        DeepfieldError: the folder is missing or not a run folder (no metrics.json: the report is
            written only where ``deepfield train``, ``baseline`` or ``playground`` wrote one), a section
            name is unknown, or a file in the folder (metrics.json, config.yaml, a figure, ...) is
            malformed; the message names the file.
    """
    if Path(run_dir).is_dir() and not (Path(run_dir) / "metrics.json").is_file():
        raise DeepfieldError(f"{run_dir}: not a run folder (no metrics.json); report.html is written only into a "
                             "folder written by `deepfield train` or `deepfield playground`")
    path = Path(run_dir) / REPORT_FILE
    atomic.write_text(path, render_report(run_dir, title=title, sections=sections))
    return path


def render_report(run_dir: str | os.PathLike[str], *, title: str | None = None,
                  sections: Iterable[str] | None = None) -> str:
    """The HTML text ``write_report`` writes (same arguments), without writing it."""
    chosen = _chosen_sections(sections)
    run = _read_run(Path(run_dir))
    page_title = title if title is not None else _run_name(run)
    bodies = {name: _RENDERERS[name](run) for name in SECTIONS if name in chosen and name != "header"}
    bodies = {name: body for name, body in bodies.items() if body}
    parts = [_page_header(run, page_title, "header" in chosen, bodies)]
    parts += [_section(name, body) for name, body in bodies.items()]
    return _page(page_title, "\n".join(parts))


def _chosen_sections(sections: Iterable[str] | None) -> set[str]:
    if sections is None:
        return set(SECTIONS)
    chosen = set(sections)
    unknown = sorted(chosen - set(SECTIONS))
    if unknown:
        raise unknown_name("report section", unknown[0], SECTIONS)
    return chosen


# ---------------------------------------------------------------- reading the run folder

def _read_run(folder: Path) -> _Run:
    if not folder.is_dir():
        raise DeepfieldError(f"{folder}: no such run folder")
    config_text, config = _read_config(folder / "config.yaml")
    metrics = _read_json(folder / "metrics.json", dict, "an object of metrics") or {}
    model = _read_json(folder / "model.json", dict, "an object") or {}
    prepared = _read_json(folder / "prepared.json", dict, "an object") or {}
    figures = sorted((folder / "figures").glob("*.png"))
    return _Run(
        folder=folder,
        config_text=config_text,
        config=config,
        summary=_read_text(folder / "summary.txt"),
        history=_read_history(folder / "history.csv"),
        metrics=metrics,
        baselines=_read_baselines(folder, metrics),
        version=str(model.get("deepfield_version", metrics.get("deepfield_version", __version__))),
        figures=figures,
        captions=_read_captions(folder / "figures" / "captions.json"),
        classes=_class_names(prepared, metrics),
        failures=sorted(folder.glob(FAILURES_GLOB)),
    )


def _class_names(prepared: Mapping[str, Any], metrics: Mapping[str, Any]) -> list[str] | None:
    """The classes in label order: ``prepared.json``'s, else the keys of ``metrics.json["per_class"]``."""
    classes = prepared.get("classes")
    if isinstance(classes, list) and classes:
        return [str(c) for c in classes]
    per_class = metrics.get("per_class")
    return [str(c) for c in per_class] if isinstance(per_class, dict) and per_class else None


def _read_text(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DeepfieldError(f"{path}: not UTF-8 text") from None


def _read_json(path: Path, kind: type | tuple[type, ...], expected: str) -> Any:
    """The parsed JSON file, ``None`` if absent; an error naming the file if malformed or not ``kind``."""
    text = _read_text(path)
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DeepfieldError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(value, kind):
        raise DeepfieldError(f"{path}: expected {expected}, got {type(value).__name__}")
    return value


def _read_config(path: Path) -> tuple[str | None, Mapping[str, Any]]:
    """config.yaml's text (shown as written) and its parsed mapping (for the run's name and task)."""
    text = _read_text(path)
    if text is None:
        return None, {}
    try:
        config = parse(text, str(path))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise DeepfieldError(f"{path}: not valid YAML{at}") from None
    if config is not None and not isinstance(config, dict):
        raise DeepfieldError(f"{path}: expected a mapping of options, got {type(config).__name__}")
    return text, config or {}


def _read_history(path: Path) -> list[list[str]] | None:
    """history.csv as rows of strings, header first; ``None`` if absent or empty."""
    text = _read_text(path)
    rows = [row for row in csv.reader(text.splitlines()) if row] if text else []
    return rows or None


def _read_baselines(folder: Path, metrics: Mapping[str, Any]) -> Any:
    """The comparison rows: ``baselines.json``, else ``metrics.json["baselines"]``; ``None`` if neither."""
    path = folder / "baselines.json"
    rows = _read_json(path, (list, dict), "a list of rows")
    if rows is None:
        path, rows = folder / "metrics.json", metrics.get("baselines")
    if rows is None:
        return None
    records = rows.values() if isinstance(rows, dict) else rows
    if not isinstance(rows, (list, dict)) or not all(isinstance(r, dict) for r in records):
        raise DeepfieldError(f"{path}: baselines must be a list of rows (objects) or an object of rows")
    return rows


def _read_captions(path: Path) -> Mapping[str, str]:
    captions = _read_json(path, dict, "an object of file name -> caption") or {}
    if not all(isinstance(v, str) for v in captions.values()):
        raise DeepfieldError(f"{path}: every caption must be a string")
    return captions


# ---------------------------------------------------------------- formatting values

def _is_cell(value: Any) -> bool:
    """Whether a metrics value fits in one table cell (scalars and lists of scalars)."""
    if isinstance(value, Mapping):
        return False
    if isinstance(value, list):
        return not value or not (all(isinstance(v, Mapping) for v in value)
                                 or all(isinstance(v, list) for v in value))
    return True


def _fmt(value: Any) -> str:
    """A value as table text: floats to 4 significant digits, ``None`` as a dash."""
    if value is None:
        return "\u2014"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "\u221e" if value > 0 else "\u2212\u221e"
        return f"{value:.4g}"
    if isinstance(value, (int, str)):
        return str(value)
    if isinstance(value, list) and all(_is_cell(v) and not isinstance(v, list) for v in value):
        return ", ".join(_fmt(v) for v in value)
    return json.dumps(value, ensure_ascii=False)


def _parse_cell(text: str) -> Any:
    """A CSV cell as an int or float when it is one, ``None`` when empty or ``NA``, else the text."""
    if text in ("", "NA"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


# ---------------------------------------------------------------- HTML building blocks

def _table(header: Sequence[Any], rows: Sequence[Sequence[Any]], caption: str = "",
           bold: frozenset[tuple[int, int]] = frozenset(), compact: bool = False) -> str:
    """A table; numeric columns right-aligned, cells ``(row, column)`` in ``bold`` in bold;
    ``compact``: narrower cells and headers that wrap (a wide table that must fit the page)."""
    numeric = [all(is_number(r[j]) or r[j] is None for r in rows) and any(is_number(r[j]) for r in rows)
               for j in range(len(header))]

    def cell(tag: str, j: int, text: str) -> str:
        return f"<{tag} class=\"num\">{text}</{tag}>" if numeric[j] else f"<{tag}>{text}</{tag}>"

    head = "".join(cell("th", j, _e(h)) for j, h in enumerate(header))
    body = "\n".join(
        "<tr>" + "".join(cell("td", j, f"<strong>{_e(_fmt(v))}</strong>" if (i, j) in bold else _e(_fmt(v)))
                         for j, v in enumerate(row)) + "</tr>"
        for i, row in enumerate(rows))
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    table = "<table class=\"compact\">" if compact else "<table>"
    return (f"<div class=\"scroll\">{table}{cap}<thead><tr>{head}</tr></thead>\n"
            f"<tbody>\n{body}\n</tbody></table></div>")


def _records_table(records: Mapping[str, Mapping[str, Any]] | Sequence[Mapping[str, Any]], caption: str,
                   *, best: bool = False, labels: Mapping[str, str] | None = None,
                   hidden: Iterable[str] = ()) -> str:
    """Rows from objects: a mapping gives one labelled row per key (per-class tables), a list one row each.

    ``labels``: column name -> header shown (the names still rank the ``best`` cells), and the
    table compact; ``hidden``: columns left out."""
    if isinstance(records, Mapping):
        columns = [c for c in _columns(records.values()) if c not in hidden]
        header: list[str] = ["", *columns]
        rows = [[name, *(rec.get(c) for c in columns)] for name, rec in records.items()]
    else:
        header = [c for c in _columns(records) if c not in hidden]
        rows = [[rec.get(c) for c in header] for rec in records]
    bold = _best_cells(header, rows) if best else frozenset()
    if labels is None:
        return _table(header, rows, caption, bold)
    return _table([labels.get(h, h) for h in header], rows, caption, bold, compact=True)


def _columns(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """The union of the records' keys, in order of first appearance."""
    return list(dict.fromkeys(key for rec in records for key in rec))


def _best_cells(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> frozenset[tuple[int, int]]:
    """The best value of each metric column: lowest for losses, errors, scatter, outliers, time
    (smallest magnitude for a bias), highest otherwise. Only columns holding floats are ranked
    (integer columns are counts), and a column whose values are all equal has no best."""
    cells: set[tuple[int, int]] = set()
    for j, name in enumerate(header):
        values = [(i, row[j]) for i, row in enumerate(rows) if is_number(row[j]) and math.isfinite(row[j])]
        if len(values) < 2 or not any(isinstance(v, float) for _, v in values):
            continue
        score = _score(name)
        scores = [score(v) for _, v in values]
        if min(scores) != max(scores):
            cells |= {(i, j) for (i, _), s in zip(values, scores) if s == min(scores)}
    return frozenset(cells)


def _score(column: str) -> Callable[[float], float]:
    """A key that is smallest for the best value of ``column``."""
    words = set(re.split(r"[^a-z0-9]+", column.lower()))
    if "bias" in words:
        return abs
    if words & _LOWER_IS_BETTER:
        return float
    return lambda v: -v


def _figure(path: Path, caption: str) -> str:
    """A figure with the PNG embedded as a data URI, sized from its header."""
    data = path.read_bytes()
    if not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise DeepfieldError(f"{path}: not a PNG image")
    width, height = struct.unpack(">II", data[16:24])
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return (f"<figure><img src=\"{uri}\" width=\"{width}\" height=\"{height}\" alt=\"{_e(caption)}\">"
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _caption(run: _Run, path: Path) -> str:
    """From figures/captions.json (keyed by file name or stem), else :data:`FIGURE_TITLES`, else the file name."""
    text = run.captions.get(path.name, run.captions.get(path.stem, FIGURE_TITLES.get(path.stem)))
    if text is not None:
        return text
    words = re.sub(r"[_\-]+", " ", path.stem).strip()
    return words[:1].upper() + words[1:]


def _section(name: str, body: str) -> str:
    return f"<section id=\"{name}\">\n<h2>{_TITLES[name]}</h2>\n{body}\n</section>"


def _page(title: str, body: str) -> str:
    now = datetime.now().astimezone().isoformat(sep=" ", timespec="minutes")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="deepfield {_e(__version__)}">
<title>{_e(title)} \u00b7 deepfield report</title>
<style>{_STYLE}</style>
</head>
<body>
<main>
{body}
<footer>Written by deepfield {_e(__version__)} on {_e(now)}.</footer>
</main>
</body>
</html>
"""


# ---------------------------------------------------------------- the sections

def _run_name(run: _Run) -> str:
    """``name`` in config.yaml, else ``title`` in metrics.json (a playground's), else the folder's name."""
    for name in (run.config.get("name"), run.metrics.get("title")):
        if isinstance(name, (str, int, float)):
            return str(name)
    return run.folder.resolve().name


def _run_date(run: _Run) -> str:
    """``date`` from metrics.json, else when the run's newest file was written."""
    if run.metrics.get("date") is not None:
        return str(run.metrics["date"])
    times = [p.stat().st_mtime for name in ("metrics.json", "history.csv", "weights.safetensors", "config.yaml")
             if (p := run.folder / name).is_file()]
    if not times:
        return "\u2014"
    return datetime.fromtimestamp(max(times)).astimezone().isoformat(sep=" ", timespec="minutes")


def _header_items(run: _Run) -> list[tuple[str, str]]:
    items = [("Run", _run_name(run)), ("Date", _run_date(run)), ("deepfield", run.version)]
    task = run.metrics.get("task", run.config.get("task"))
    if isinstance(task, (str, int, float)):
        items.append(("Task", str(task)))
    if run.metrics.get("device") is not None:
        items.append(("Device", str(run.metrics["device"])))
    seconds = next((run.metrics[k] for k in TIME_KEYS if is_number(run.metrics.get(k))), None)
    if seconds is not None:
        items.append(("Training time", _duration(seconds)))
    if run.metrics.get("epochs_run") is not None:
        items.append(("Epochs run", _fmt(run.metrics["epochs_run"])))
    items.append(("Folder", str(run.folder.resolve())))
    return items


def _page_header(run: _Run, title: str, with_meta: bool, bodies: Mapping[str, str]) -> str:
    """The title, the run's facts (the ``header`` section) and links to the sections present."""
    meta = ""
    if with_meta:
        rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in _header_items(run))
        meta = f"<dl class=\"meta\">{rows}</dl>"
    links = "".join(f"<a href=\"#{name}\">{_TITLES[name]}</a>" for name in bodies)
    nav = f"<nav>{links}</nav>" if links else ""
    line = headline(run.metrics)
    top = f"<p class=\"headline\">{_e(line[:1].upper() + line[1:])}</p>" if line and with_meta else ""
    warnings = run.metrics.get("warnings") if with_meta else None
    if isinstance(warnings, list):  # what the run warned of after training (metrics.json "warnings")
        top += "".join(f"<p class=\"warning\">Warning: {_e(w)}</p>" for w in warnings if isinstance(w, str))
    return (f"<header id=\"header\"><h1>{_e(title)}</h1><p class=\"subtitle\">deepfield run report</p>"
            f"{top}{meta}{nav}</header>")


def prediction_label(metrics: Mapping[str, Any]) -> str:
    """What the run's scored prediction is: the mean of its Monte Carlo draws (MC dropout,
    variational layers) and/or ensemble members, or one deterministic pass."""
    uncertainty = metrics.get("uncertainty")
    draws = uncertainty.get("draws") if isinstance(uncertainty, Mapping) else None
    members = len(metrics["members"]) if isinstance(metrics.get("members"), list) else 1
    if is_number(draws) and draws > members:
        return f"mean of {draws} Monte Carlo draws" + (f" over {members} networks" if members > 1 else "")
    if members > 1:
        return f"mean of the {members} ensemble members"
    return "one deterministic pass"


def headline(metrics: Mapping[str, Any]) -> str | None:
    """The run's main number, labelled: e.g. ``test accuracy 0.8658 (mean of 30 Monte Carlo draws)``;
    the first of :data:`HEADLINE_KEYS` in ``metrics`` (``metrics.json``), ``None`` if none is."""
    key = next((k for k in HEADLINE_KEYS if is_number(metrics.get(k))), None)
    if key is None:
        return None
    if key == "mean_w1":  # a generative run: samples judged, not a prediction
        judged = metrics.get("judging", {}).get("memorisation", {}).get("n_samples")
        return f"test {HEADLINE_NAMES[key]} {_fmt(metrics[key])} ({judged} samples against the test stamps)"
    return f"test {HEADLINE_NAMES.get(key, key)} {_fmt(metrics[key])} ({prediction_label(metrics)})"


def _config_section(run: _Run) -> str:
    """What this run set (the keys whose values are not the defaults), then the whole config.yaml folded:
    the resolved config holds every key of every task (a catalogue run's ``data.kind: images``, a
    morphology run's ``photoz:``), which hides what was chosen. A config.yaml this deepfield cannot
    validate (written by hand, by another version) is shown whole."""
    if run.config_text is None:
        return ""
    whole = f"<pre><code>{_e(run.config_text.rstrip())}</code></pre>"
    chosen = _chosen_settings(run.config)
    if chosen is None:
        return whole
    return (f"<p>Set for this run (every other key at its default):</p><pre><code>{_e(chosen.rstrip())}</code></pre>"
            f"<details><summary>The whole configuration (config.yaml)</summary>{whole}</details>")


def _chosen_settings(config: Mapping[str, Any]) -> str | None:
    """``config`` without the keys at their default values, as YAML; ``None`` if it does not validate."""
    from pydantic import ValidationError

    from deepfield.tasks.config import RunConfig

    try:
        settings = RunConfig.model_validate(dict(config)).model_dump(mode="json", exclude_defaults=True)
    except (ValidationError, DeepfieldError, TypeError, ValueError):
        return None
    return yaml.safe_dump(settings, sort_keys=False, default_flow_style=None, width=100)


def _model_section(run: _Run) -> str:
    if run.summary is None:
        return ""
    return f"<pre>{_e(run.summary.rstrip())}</pre>"


def _training_section(run: _Run) -> str:
    shown = [run.folder / "figures" / name for name in TRAINING_FIGURES]
    parts = [_figure(path, _caption(run, path)) for path in shown if path in run.figures]
    if run.history is not None:
        parts.append(_history_table(run.history))
    return "\n".join(parts)


def _history_table(history: list[list[str]]) -> str:
    """The last ``HISTORY_ROWS`` epochs, with a note of the lowest ``val_loss`` (or ``loss``)."""
    header, rows = history[0], [[_parse_cell(c) for c in row] for row in history[1:]]
    width = len(header)
    rows = [(row + [None] * width)[:width] for row in rows]
    shown = rows[-HISTORY_ROWS:]
    caption = "history.csv" if len(shown) == len(rows) else f"history.csv, last {len(shown)} of {len(rows)} epochs"
    return _table(header, shown, caption) + _best_epoch_note(header, rows)


def _best_epoch_note(header: list[str], rows: list[list[Any]]) -> str:
    key = next((k for k in ("val_loss", "loss") if k in header), None)
    if key is None or "epoch" not in header:
        return ""
    j, e = header.index(key), header.index("epoch")
    scored = [row for row in rows if is_number(row[j]) and math.isfinite(row[j])]
    if not scored:
        return ""
    best = min(scored, key=lambda row: row[j])
    return f"<p class=\"note\">Lowest {_e(key)} {_e(_fmt(float(best[j])))} at epoch {_e(best[e])}.</p>"


def _metrics_section(run: _Run) -> str:
    """The test metrics, each table saying which prediction it scores (see :func:`prediction_label`)."""
    body = {k: v for k, v in run.metrics.items() if k not in _HEADER_KEYS and k not in ("baselines", "uncertainty")}
    prediction = prediction_label(run.metrics)
    scored = "title" not in run.metrics  # a playground (its title in metrics.json) has a summary, no test part
    captions = {"": f"Test part, the run\u2019s prediction ({prediction})" if scored else "Summary",
                "test": "Test part, each network once with dropout off: loss and training metrics",
                "per_class": f"Per class, test part ({prediction})",
                "confusion": f"Confusion matrix, test part ({prediction}): counts",
                "confusion_matrix": f"Confusion matrix, test part ({prediction}): counts",
                "members": "Each ensemble member, test part, once with dropout off",
                "training": "How the networks were trained"}
    blocks = _metric_blocks("", body, captions, run.classes)
    both = [part for part in (run.metrics, run.metrics.get("test")) if isinstance(part, Mapping)]
    shared = {"accuracy", "loss"} & both[0].keys() & both[1].keys() if len(both) == 2 else set()
    if prediction != "one deterministic pass" and shared:  # the note goes under the second of the two tables
        after = next(i for i, block in enumerate(blocks) if f"<caption>{_e(captions['test'])}<" in block)
        blocks.insert(after + 1, f"<p class=\"note\">The first table scores the run\u2019s prediction, the "
                      f"{_e(prediction)}; this one evaluates each network once with dropout off, as the "
                      "training\u2019s validation did, so their numbers differ a little. The headline is the first.</p>")
    return "\n".join(blocks)


def _metric_blocks(title: str, value: Mapping[str, Any] | list[Any], captions: Mapping[str, str] | None = None,
                   classes: Sequence[str] | None = None) -> list[str]:
    """Tables for one level of metrics.json: its scalars in one table, then one per nested entry;
    an object of several objects of scalars (per-class metrics) is one table with a row per key,
    a list of objects one row per object, a list of lists (a confusion matrix) a matrix whose rows
    and columns are named by ``classes`` when their number matches.

    ``captions``: top-level key (``""`` for the scalars) -> table caption; nested tables are
    captioned by their key path."""
    captions = captions or {}
    if isinstance(value, list):
        if all(isinstance(v, Mapping) for v in value):
            return [_records_table(value, title or "Summary")]
        return [_matrix_table(value, title, classes)]
    if len(value) > 1 and all(isinstance(v, Mapping) and all(map(_is_cell, v.values())) for v in value.values()):
        return [_records_table(value, title or "Summary")]
    scalars = [[k, v] for k, v in value.items() if _is_cell(v)]
    blocks = [_table(["", "value"], scalars, title or captions.get("", "Summary"))] if scalars else []
    grouped = _same_shape_groups(value)
    for key, nested in value.items():
        if key in grouped:
            group = grouped[key]
            if key == next(iter(group)):
                names = ", ".join(map(str, group))
                if len(names) > CAPTION_NAMES:
                    names = f"{key} and {len(group) - 1} alike ({', '.join(map(str, group[key]))})"
                blocks.append(_records_table(group, f"{title} \u203a {names}" if title else names))
        elif not _is_cell(nested):
            blocks += _metric_blocks(f"{title} \u203a {key}" if title else captions.get(key, str(key)), nested,
                                     classes=classes)
    return blocks


def _same_shape_groups(value: Mapping[str, Any]) -> dict[str, dict[str, Mapping[str, Any]]]:
    """Sibling entries that are objects of scalars with the same keys (a coverage at 68 and 95 % for
    pixels, fluxes, ...; a gain and a noise per band), two or more: key -> its group (key -> object),
    drawn as one table with a row per entry instead of one small table each."""
    shapes: dict[tuple[str, ...], dict[str, Mapping[str, Any]]] = {}
    for key, nested in value.items():
        if isinstance(nested, Mapping) and nested and all(map(_is_cell, nested.values())):
            shapes.setdefault(tuple(nested), {})[key] = nested
    return {key: group for group in shapes.values() if len(group) > 1 for key in group}


def _matrix_table(value: list[Any], caption: str, classes: Sequence[str] | None) -> str:
    """A list of lists as a matrix; rows (true class) and columns (predicted) named by ``classes``
    when there are as many, else numbered."""
    width = max(len(v) for v in value)
    named = classes is not None and len(classes) == width == len(value)
    names = list(classes) if named else list(range(max(width, len(value))))
    corner = "true \u2572 predicted" if named else ""
    return _table([corner, *names[:width]],
                  [[names[i], *(list(v) + [None] * width)[:width]] for i, v in enumerate(value)], caption)


def _uncertainty_section(run: _Run) -> str:
    """metrics.json's ``uncertainty`` (calibration, coverage, how well uncertainty flags mistakes)
    and the ``uncertainty_*.png`` figures: reliability diagram, error vs uncertainty, the most uncertain objects."""
    values = run.metrics.get("uncertainty")
    caption = f"Test part, the run\u2019s prediction ({prediction_label(run.metrics)})"
    tables = _metric_blocks("", values, {"": caption}, run.classes) if isinstance(values, Mapping) else []
    figures = [_figure(p, _caption(run, p)) for p in _uncertainty_figures(run)]
    return "\n".join(tables + figures)


def _uncertainty_figures(run: _Run) -> list[Path]:
    return [p for p in run.figures if p.match(UNCERTAINTY_GLOB)]


def _explain_figures(run: _Run) -> list[Path]:
    return [p for p in run.figures if p.match(EXPLAIN_GLOB)]


def _explain_section(run: _Run) -> str:
    """The ``explain_*.png`` figures (``explain.run: true``): filters, feature maps, strongest patches,
    attribution maps over test stamps, class models; their arrays are in ``explain/``."""
    return "\n".join(_figure(p, _caption(run, p)) for p in _explain_figures(run))


def _figures_section(run: _Run) -> str:
    """Every figure not placed elsewhere (learning curves, uncertainty, gallery)."""
    placed = set(TRAINING_FIGURES) | {p.name for p in _gallery(run) + _uncertainty_figures(run) + _explain_figures(run)}
    return "\n".join(_figure(p, _caption(run, p)) for p in run.figures if p.name not in placed)


_BASELINE_LABELS = {"model": "model", "n_features": "n features", "accuracy": "accuracy", "macro_auc": "macro AUC",
                    "sigma_nmad": "\u03c3_NMAD", "outlier_fraction_0.15": "outliers (>0.15)", "bias": "bias",
                    "bias_median": "bias", "fit_time_s": "fit (s)", "predict_time_s": "predict (s)",
                    "extract_time_s": "extract (s)", "n_failed": "not measured"}
"""Short headers of the baselines table, so that it fits the page."""


def _baselines_section(run: _Run) -> str:
    """The comparison table (the ``features`` column left out: the model's name says it), then
    how many stamps each feature family could not measure and where they are listed."""
    parts = []
    if run.baselines is not None:
        records = run.baselines.values() if isinstance(run.baselines, Mapping) else run.baselines
        hidden = ("features",) if all("model" in r for r in records) else ()
        parts.append(_records_table(run.baselines, "Baselines on the test part; the best of each metric in bold",
                                    best=True, labels=_BASELINE_LABELS, hidden=hidden))
    parts += [_failures_note(run.folder, path) for path in run.failures]
    return "\n".join(parts)


def _failures_note(folder: Path, path: Path) -> str:
    """One line: how many stamps (train, test) a feature family could not measure, and its CSV."""
    text = _read_text(path) or ""
    rows = list(csv.DictReader(text.splitlines()))
    if rows and "part" not in rows[0]:
        raise DeepfieldError(f"{path}: expected the columns part, index, id, reason")
    counts = {part: sum(r["part"] == part for r in rows) for part in dict.fromkeys(r["part"] for r in rows)}
    by_part = ", ".join(f"{n} {part}" for part, n in counts.items())
    name = path.name.removesuffix("_failures.csv")
    where = path.relative_to(folder).as_posix()
    return (f"<p class=\"failures\"><strong>{_e(name)}</strong> could not (fully) measure {len(rows)} "
            f"stamp{'s' if len(rows) != 1 else ''}{f' ({_e(by_part)})' if by_part else ''}; the learners impute "
            f"their features with the training medians. Each is listed with the reason in "
            f"<code>{_e(where)}</code>.</p>")


def _gallery(run: _Run) -> list[Path]:
    return [p for p in run.figures if p.match(GALLERY_GLOB)]


def _gallery_section(run: _Run) -> str:
    figures = "\n".join(_figure(p, _caption(run, p)) for p in _gallery(run))
    return f"<div class=\"gallery\">\n{figures}\n</div>" if figures else ""


_TITLES = {
    "config": "Configuration", "model": "Model", "training": "Training",
    "metrics": "Metrics", "uncertainty": "Uncertainty", "explain": "Inside the network", "figures": "Figures",
    "baselines": "Baselines",
    "gallery": "Gallery",
}
_RENDERERS: dict[str, Callable[[_Run], str]] = {
    "config": _config_section, "model": _model_section, "training": _training_section,
    "metrics": _metrics_section, "uncertainty": _uncertainty_section, "explain": _explain_section,
    "figures": _figures_section,
    "baselines": _baselines_section,
    "gallery": _gallery_section,
}
