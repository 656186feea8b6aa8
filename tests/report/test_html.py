"""The HTML run report: sections, escaping, embedded figures, atomic writing, and a real browser."""
from __future__ import annotations

import base64
import importlib.util
import json
import re
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import yaml

from deepfield.errors import DeepfieldError
from deepfield.report.html import SECTIONS, headline, render_report, write_report

HERE = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("report_browser", HERE / "browser.py")
browser = sys.modules["report_browser"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(browser)

DATA_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _png(path: Path, kind: str) -> None:
    """A small real matplotlib figure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=80)
    if kind == "curves":
        epochs = np.arange(1, 16)
        ax.plot(epochs, 0.7 * np.exp(-epochs / 5) + 0.1, label="loss")
        ax.plot(epochs, 0.7 * np.exp(-epochs / 6) + 0.15, label="val_loss")
        ax.set(xlabel="epoch", ylabel="binary cross-entropy")
        ax.legend()
    elif kind == "image":
        ax.imshow(rng.normal(size=(32, 32)), cmap="magma", origin="lower")
    else:
        ax.scatter(rng.uniform(0, 2, 200), rng.uniform(0, 2, 200), s=4)
        ax.set(xlabel="z_spec", ylabel="z_phot")
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


HISTORY = "epoch,accuracy,loss,val_accuracy,val_loss\n" + "".join(
    f"{e},{0.6 + 0.02 * e:.6f},{0.7 * np.exp(-e / 5) + 0.1:.6f},{0.58 + 0.02 * e:.6f},{abs(e - 11) * 0.01 + 0.2:.6f}\n"
    for e in range(15))

METRICS = {
    "task": "morphology",
    "device": "cuda:0 (NVIDIA H200)",
    "time_s": 754.2,
    "test": {"accuracy": 0.912345678, "loss": 0.2345678, "auc": 0.97},
    "per_class": {"spheroid": {"precision": 0.93, "recall": 0.9, "support": 100},
                  "disk": {"precision": 0.89, "recall": 0.925, "support": 100}},
    "confusion_matrix": [[90, 10], [7, 93]],
    "uncertainty": {"draws": 50, "ece": 0.0417, "temperature": 1.31, "coverage": {"0.68": 0.66, "0.95": 0.94}},
    "baselines": [
        {"model": "cnn", "accuracy": 0.912, "loss": 0.234},
        {"model": "random forest", "accuracy": 0.85, "loss": 0.31},
        {"model": "majority class", "accuracy": 0.5, "loss": 0.693},
    ],
}

CONFIG = "name: demo-run\ntask: morphology\nseed: 0\ntraining:\n  epochs: 15\n  batch_size: 32\n"


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder holding every input the report reads."""
    from deepfield.models import Conv2D, Dense, Flatten
    from deepfield.models.summary import summarize
    from deepfield.training import Sequential

    run = tmp_path_factory.mktemp("run")
    (run / "config.yaml").write_text(CONFIG)
    (run / "metrics.json").write_text(json.dumps(METRICS))
    (run / "history.csv").write_text(HISTORY)
    model = Sequential([Conv2D(8, 3, input_shape=(1, 16, 16)), Flatten(), Dense(1)], name="tiny")
    (run / "summary.txt").write_text(str(summarize(model)))
    _png(run / "figures" / "learning_curves.png", "curves")
    _png(run / "figures" / "photoz_scatter.png", "scatter")
    _png(run / "figures" / "roc.png", "scatter")
    _png(run / "figures" / "gallery_spheroids.png", "image")
    _png(run / "figures" / "gallery_disks.png", "image")
    _png(run / "figures" / "uncertainty_reliability.png", "curves")
    _png(run / "figures" / "explain_attributions.png", "image")
    (run / "figures" / "captions.json").write_text(json.dumps({"roc.png": "ROC curve on the test set"}))
    return run


def _section_ids(page: str) -> list[str]:
    return re.findall(r'<section id="([a-z]+)">', page)


def _write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_every_section_present_in_order(full_run: Path) -> None:
    page = render_report(full_run)
    assert _section_ids(page) == [s for s in SECTIONS if s != "header"]
    assert "<h1>demo-run</h1>" in page
    for fact in ("morphology", "cuda:0 (NVIDIA H200)", "12 min 34 s", "0.1.0"):
        assert fact in page


def test_uncertainty_has_its_own_section(full_run: Path) -> None:
    page = render_report(full_run)
    section = re.search(r'<section id="uncertainty">(.*?)</section>', page, re.S).group(1)
    assert "0.0417" in section and "1.31" in section and "0.95" in section
    assert "Reliability diagram" in section  # the figure, with its caption from FIGURE_TITLES
    elsewhere = page.replace(section, "")
    assert "0.0417" not in elsewhere and "Reliability diagram" not in elsewhere


def test_empty_folder_has_only_the_header(tmp_path: Path) -> None:
    page = render_report(tmp_path)
    assert _section_ids(page) == []
    assert f"<h1>{tmp_path.name}</h1>" in page
    assert "<nav>" not in page


def test_sections_appear_only_with_their_inputs(tmp_path: Path) -> None:
    _write(tmp_path, {"metrics.json": json.dumps({"accuracy": 0.5}), "summary.txt": "a table"})
    assert _section_ids(render_report(tmp_path)) == ["model", "metrics"]


def test_warnings_of_the_run_show_under_the_headline_not_as_metrics(tmp_path: Path) -> None:
    warning = "validation accuracy stayed near chance (best 0.37, chance 0.20) <b>"
    _write(tmp_path, {"metrics.json": json.dumps({"accuracy": 0.31, "warnings": [warning]})})
    page = render_report(tmp_path)
    header = page[page.index("<header"):page.index("</header>")]
    assert ("<p class=\"warning\">Warning: validation accuracy stayed near chance (best 0.37, chance 0.20) "
            "&lt;b&gt;</p>") in header
    assert page.count("near chance") == 1  # not repeated in the metrics tables


def test_sections_argument_picks_and_checks_names(full_run: Path) -> None:
    page = render_report(full_run, title="Chosen", sections=["metrics", "config"])
    assert _section_ids(page) == ["config", "metrics"]
    assert "<h1>Chosen</h1>" in page
    with pytest.raises(DeepfieldError, match="unknown report section 'metric'"):
        render_report(full_run, sections=["metric"])


def test_everything_is_escaped(tmp_path: Path) -> None:
    _write(tmp_path, {
        "config.yaml": 'name: "<script>alert(1)</script>"\nnote: "a & b"\n',
        "metrics.json": json.dumps({"<b>key</b>": "<img src=x onerror=alert(2)>", "device": "<i>gpu</i>"}),
        "summary.txt": "</pre><script>alert(3)</script>",
    })
    page = render_report(tmp_path)
    assert "<script" not in page and "<img src=x" not in page and "<b>key" not in page and "<i>gpu" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "a &amp; b" in page


def test_figures_are_embedded_once_each_and_decode_to_the_files(full_run: Path) -> None:
    page = render_report(full_run)
    embedded = sorted(base64.b64decode(b) for b in DATA_URI.findall(page))
    originals = sorted(p.read_bytes() for p in (full_run / "figures").glob("*.png"))
    assert embedded == originals
    assert not re.search(r'(src|href)="(?!data:|#)', page), "everything must be inline"
    assert "<script" not in page and "<link" not in page


def test_figures_go_to_their_sections_with_captions(full_run: Path) -> None:
    page = render_report(full_run)
    sections = dict(re.findall(r'<section id="([a-z]+)">(.*?)</section>', page, re.S))
    assert "Learning curves: loss (and metric) per epoch, training and validation</figcaption>" in sections["training"]
    assert "ROC curve on the test set</figcaption>" in sections["figures"]  # captions.json first
    assert "Photometric vs spectroscopic redshift on the test part</figcaption>" in sections["figures"]
    assert sections["gallery"].count("<figure>") == 2 and "Gallery disks" in sections["gallery"]
    assert "gallery" not in sections["figures"].lower()


def test_metrics_tables(full_run: Path) -> None:
    metrics = dict(re.findall(r'<section id="([a-z]+)">(.*?)</section>', render_report(full_run), re.S))["metrics"]
    assert '<td class="num">0.9123</td>' in metrics and '<td class="num">0.2346</td>' in metrics
    assert "<caption>Per class, test part (mean of 50 Monte Carlo draws)</caption>" in metrics
    spheroid = '<tr><td>spheroid</td><td class="num">0.93</td><td class="num">0.9</td><td class="num">100</td></tr>'
    assert spheroid in metrics
    assert "<caption>Confusion matrix, test part (mean of 50 Monte Carlo draws): counts</caption>" in metrics
    assert "cuda:0" not in metrics and "random forest" not in metrics  # in the header, in baselines


def test_nested_metrics_and_value_lists(tmp_path: Path) -> None:
    _write(tmp_path, {"metrics.json": json.dumps(
        {"n_test": 200, "photoz": {"nmad": 0.031, "bins": [0.1, 0.5, 1.0], "by_band": {"g": {"bias": -0.002}, "r": {"bias": 0.001}}},
         "split": {"test": {"loss": 0.3}}})})
    page = render_report(tmp_path)
    assert "<caption>Test part, the run\u2019s prediction (one deterministic pass)</caption>" in page
    assert '<td class="num">200</td>' in page
    assert "<caption>photoz</caption>" in page and "<td>0.1, 0.5, 1</td>" in page
    assert "<caption>photoz \u203a by_band</caption>" in page and "<td>r</td>" in page
    assert "<caption>split \u203a test</caption>" in page  # a single object of scalars stays a key-value table


def test_siblings_with_the_same_keys_share_one_table(tmp_path: Path) -> None:
    kinds = [(kind, suffix) for suffix in ("", "_calibrated", "_spread") for kind in ("pixel", "flux")]
    coverage = {f"{kind}_coverage{suffix}": {"68": 0.6 + i / 100, "95": 0.9 + i / 100}
                for i, (kind, suffix) in enumerate(kinds)}
    _write(tmp_path, {"metrics.json": json.dumps(
        {"psnr": 30.0, "snr_gain_per_band": {"g": 1.1, "r": 1.2}, "aperture_noise_input": {"g": 5.0, "r": 6.0},
         "shape": {"e1": 0.01}, "uncertainty": {"draws": 8, **coverage, "half_widths": {"pixel": 0.3}}})})
    page = render_report(tmp_path)
    # one table, a row per entry and a column per shared key, in place of one small table each
    assert "<caption>snr_gain_per_band, aperture_noise_input</caption>" in page
    assert re.search(r"<td>aperture_noise_input</td><td class=\"num\">5</td><td class=\"num\">6</td>", page)
    assert "<caption>pixel_coverage and 5 alike (68, 95)</caption>" in page  # a long list of names is cut
    assert re.search(r"<td>flux_coverage_spread</td><td class=\"num\">0.65</td><td class=\"num\">0.95</td>", page)
    assert "<caption>shape</caption>" in page and "<caption>half_widths</caption>" in page  # alone: as before
    assert "<caption>pixel_coverage</caption>" not in page


def test_the_confusion_table_names_the_classes_on_both_axes(full_run: Path, tmp_path: Path) -> None:
    metrics = dict(re.findall(r'<section id="([a-z]+)">(.*?)</section>', render_report(full_run), re.S))["metrics"]
    confusion = metrics[metrics.index("Confusion matrix"):]
    header = r"<th>true \u2572 predicted</th>" + "".join(rf'<th[^>]*>{name}</th>' for name in ("spheroid", "disk"))
    assert re.search(header, confusion)  # the names from per_class's keys
    assert '<tr><td>disk</td><td class="num">7</td><td class="num">93</td></tr>' in confusion
    _write(tmp_path, {"metrics.json": json.dumps({"confusion": [[5, 1, 0], [0, 4, 2], [1, 0, 6]]}),
                      "prepared.json": json.dumps({"classes": ["E", "S", "Irr"]})})
    page = render_report(tmp_path)
    names = "".join(rf"<th[^>]*>{c}</th>" for c in ("E", "S", "Irr"))
    assert re.search(r"<th>true \u2572 predicted</th>" + names, page)
    assert '<tr><td>Irr</td><td class="num">1</td>' in page


def test_one_labelled_headline_and_the_two_accuracies_explained(full_run: Path, tmp_path: Path) -> None:
    page = render_report(full_run)
    header = page[page.index("<header"):page.index("</header>")]
    assert 'class="headline"' not in header  # METRICS has no top-level science number
    metrics = {**METRICS, "accuracy": 0.86581, "members": [{"accuracy": 0.86}, {"accuracy": 0.87}]}
    _write(tmp_path, {"metrics.json": json.dumps(metrics)})
    assert headline(metrics) == "test accuracy 0.8658 (mean of 50 Monte Carlo draws over 2 networks)"
    page = render_report(tmp_path)
    assert '<p class="headline">Test accuracy 0.8658 (mean of 50 Monte Carlo draws over 2 networks)</p>' in page
    assert ("<caption>Test part, the run\u2019s prediction (mean of 50 Monte Carlo draws over 2 networks)"
            "</caption>") in page
    assert "<caption>Test part, each network once with dropout off" in page
    assert "so their numbers differ a little" in page
    deterministic = {"accuracy": 0.9, "test": {"accuracy": 0.9, "loss": 0.3}}
    assert headline(deterministic) == "test accuracy 0.9 (one deterministic pass)"
    assert headline({"sigma_nmad": 0.03123, "uncertainty": {"draws": 30}}) == (
        "test σ_NMAD 0.03123 (mean of 30 Monte Carlo draws)")
    assert headline({"loss": 0.3}) is None


def test_baselines_bold_the_best_of_each_metric(full_run: Path) -> None:
    baselines = dict(re.findall(r'<section id="([a-z]+)">(.*?)</section>', render_report(full_run), re.S))["baselines"]
    assert re.findall(r"<strong>(.*?)</strong>", baselines) == ["0.912", "0.234"]


def test_baselines_fit_with_short_headers_and_say_what_could_not_be_measured(tmp_path: Path) -> None:
    from deepfield.tasks.baselines.runner import write_failures

    rows = [{"model": "network (resnet)", "features": "learned", "accuracy": 0.87, "macro_auc": 0.97},
            {"model": "morphology + svm_rbf", "features": "morphology", "n_features": 6, "accuracy": 0.61,
             "macro_auc": 0.85, "fit_time_s": 1.2, "predict_time_s": 0.01, "extract_time_s": 40.0, "n_failed": 3}]
    _write(tmp_path, {"metrics.json": json.dumps({"baselines": rows})})
    write_failures(tmp_path / "baselines" / "morphology_failures.csv",
                   {"train": [(4, "flat stamp"), (9, "no source above 3 sigma")], "test": [(2, "flat stamp")]})
    section = dict(re.findall(r'<section id="([a-z]+)">(.*?)</section>', render_report(tmp_path), re.S))["baselines"]
    assert '<table class="compact">' in section and "<th>learned</th>" not in section
    assert ">n features</th>" in section and ">macro AUC</th>" in section and ">fit (s)</th>" in section
    assert "<td>morphology</td>" not in section  # the features column is left out: the model names them
    assert ("<strong>morphology</strong> could not (fully) measure 3 stamps (2 train, 1 test)" in section
            and "<code>baselines/morphology_failures.csv</code>" in section)


def test_baselines_file_wins_and_bias_ranks_by_magnitude(tmp_path: Path) -> None:
    rows = {"knn": {"bias": -0.01, "sigma_68": 0.05, "n": 3}, "mlp": {"bias": 0.004, "sigma_68": 0.06, "n": 5}}
    _write(tmp_path, {"baselines.json": json.dumps(rows), "metrics.json": json.dumps({"baselines": []})})
    page = render_report(tmp_path)
    assert sorted(re.findall(r"<strong>(.*?)</strong>", page)) == ["0.004", "0.05"]
    assert "<td>knn</td>" in page


def test_image_task_scores_rank_the_way_they_read(tmp_path: Path) -> None:
    # deblending: a flux error in % (mean and median) is best lowest; IoU, SSIM and a recovered fraction highest
    rows = [{"model": "network (unet)", "flux_mape": 8.5, "flux_mdape": 5.2, "recovered_fraction": 0.74, "ssim": 0.9},
            {"model": "blend (no deblending)", "flux_mape": 1280.0, "flux_mdape": 328.3, "recovered_fraction": 0.03,
             "ssim": 0.25}]
    _write(tmp_path, {"metrics.json": json.dumps({"baselines": rows})})
    assert sorted(re.findall(r"<strong>(.*?)</strong>", render_report(tmp_path))) == ["0.74", "0.9", "5.2", "8.5"]


def test_history_shows_the_last_epochs_and_the_best(full_run: Path) -> None:
    training = dict(re.findall(r'<section id="([a-z]+)">(.*?)</section>', render_report(full_run), re.S))["training"]
    assert "history.csv, last 10 of 15 epochs" in training
    assert "<tr><td class=\"num\">4</td>" not in training and "<tr><td class=\"num\">14</td>" in training
    assert "Lowest val_loss 0.2 at epoch 11." in training


def test_history_short_with_missing_values(tmp_path: Path) -> None:
    _write(tmp_path, {"history.csv": "epoch,loss,lr\n0,0.5,NA\n1,0.4,0.001\n"})
    page = render_report(tmp_path)
    assert "<caption>history.csv</caption>" in page and "Lowest loss 0.4 at epoch 1." in page
    assert '<td class="num">\u2014</td><' in page  # NA: a dash, the column still numeric


def test_write_is_atomic_and_replaces(full_run: Path) -> None:
    before = {p.name for p in full_run.iterdir()}
    (full_run / "report.html").write_text("old")
    path = write_report(full_run)
    assert path == full_run / "report.html" and path.read_text().startswith("<!DOCTYPE html>")
    assert {p.name for p in full_run.iterdir()} == before | {"report.html"}


@pytest.mark.parametrize(("name", "text", "message"), [
    ("metrics.json", '{"accuracy": 0.9,', r"metrics\.json: not valid JSON"),
    ("metrics.json", "[1, 2]", r"metrics\.json: expected an object of metrics, got list"),
    ("config.yaml", "a: [1, 2\n", r"config\.yaml: not valid YAML at line"),
    ("config.yaml", "- a\n- b\n", r"config\.yaml: expected a mapping"),
    ("baselines.json", '[{"model": "knn"}, 3]', r"baselines\.json: baselines must be a list of rows"),
])
def test_malformed_files_are_named(tmp_path: Path, name: str, text: str, message: str) -> None:
    _write(tmp_path, {"metrics.json": "{}", name: text})  # a run folder (write_report refuses others)
    with pytest.raises(DeepfieldError, match=message):
        write_report(tmp_path)
    assert not list(tmp_path.glob("*.html*")) and not list(tmp_path.glob(".report*"))


def test_a_broken_png_is_named(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "roc.png").write_bytes(b"not a png")
    with pytest.raises(DeepfieldError, match=r"roc\.png: not a PNG image"):
        write_report(tmp_path)


def test_missing_run_folder(tmp_path: Path) -> None:
    with pytest.raises(DeepfieldError, match="no such run folder"):
        write_report(tmp_path / "nope")


def test_in_chromium_every_image_loads_and_the_console_is_quiet(full_run: Path, tmp_path: Path) -> None:
    chromium = browser.find_chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); the browser check needs it")
    page = write_report(full_run)
    check = browser.check_page(page, chromium, tmp_path)
    assert len(check.images) == 7
    assert check.broken_images == [] and check.errors == []

    shot = plt.imread(browser.screenshot(page, tmp_path / "report.png", chromium, tmp_path))
    assert shot.shape[1] == 1280 and shot[..., :3].std() > 0.05  # something drawn, not a blank page


def test_in_chromium_the_gallery_is_wide_every_figure_captioned_and_tables_fit(tmp_path: Path) -> None:
    """A small report with a real gallery and a baselines table, seen in a 1400 px window."""
    from deepfield.plots import plot_gallery

    chromium = browser.find_chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); the browser check needs it")
    rng = np.random.default_rng(0)
    names = ["spheroid", "disk", "irregular", "point source", "merger"]
    y = rng.integers(0, 5, 40)
    proba = rng.dirichlet(np.ones(5), 40)
    plot_gallery(rng.normal(size=(40, 3, 16, 16)), y, proba, tmp_path / "figures" / "gallery.png", names, k=8)
    _png(tmp_path / "figures" / "roc.png", "curves")
    _png(tmp_path / "figures" / "explain_patches.png", "image")
    rows = [{"model": f"{f} + {m}", "features": f, "n_features": 1764, "accuracy": 0.61234, "macro_auc": 0.8512,
             "fit_time_s": 12.345, "predict_time_s": 0.123, "extract_time_s": 40.5, "n_failed": 12}
            for f in ("colour_histogram", "morphology") for m in ("svm_rbf", "gradient_boosting")]
    _write(tmp_path, {"metrics.json": json.dumps({**METRICS, "accuracy": 0.87, "baselines": rows}),
                      "config.yaml": CONFIG})
    page = write_report(tmp_path)
    check = browser.check_page(page, chromium, tmp_path, size=(1400, 3000))
    assert check.broken_images == [] and check.errors == []
    (gallery,) = [img for img in check.images if img["section"] == "gallery"]
    assert gallery["width"] >= 700 and gallery["width"] == gallery["naturalWidth"]  # at its natural size
    assert len(check.images) == 3 and all(img["caption"] for img in check.images), check.images
    assert {img["caption"] for img in check.images} >= {
        "ROC curves (one vs rest) on the test part", "Strongest-activating patches of the explained layer's channels"}
    (baselines,) = [t for t in check.tables if t["section"] == "baselines"]
    assert baselines["scrollWidth"] <= baselines["width"], baselines  # no horizontal scrolling
    shot = plt.imread(browser.screenshot(page, tmp_path / "report.png", chromium, tmp_path, size=(1400, 3000)))
    assert shot.shape[1] == 1400 and shot[..., :3].std() > 0.05


def test_the_browser_check_catches_a_broken_image(tmp_path: Path) -> None:
    chromium = browser.find_chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); the browser check needs it")
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" '
                    'content="default-src \'none\'; img-src data:"></head><body>'
                    '<img src="data:image/png;base64,AAAA" alt="bad">'
                    '<img src="https://example.org/x.png" alt="remote"></body></html>')
    check = browser.check_page(page, chromium, tmp_path)
    assert len(check.broken_images) == 2 and check.errors


def test_configuration_shows_what_the_run_set_and_folds_the_whole_config(tmp_path: Path) -> None:
    from deepfield.tasks.config import RunConfig

    config = RunConfig.model_validate({"task": "tabular", "out": str(tmp_path), "data": {"path": "cat.csv",
                                       "target": "z"}, "training": {"epochs": 7}})
    _write(tmp_path, {"config.yaml": yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False),
                      "metrics.json": "{}"})
    section = re.search(r'<section id="config">(.*?)</section>', render_report(tmp_path), re.S).group(1)
    chosen, folded = section.split("<details>")
    assert "epochs: 7" in chosen and "target: z" in chosen
    assert "kind: images" not in chosen and "photoz" not in chosen  # defaults the tabular run never read
    assert "kind: images" in folded and "batch_size: 64" in folded


def test_a_config_this_version_cannot_validate_is_shown_whole(full_run: Path) -> None:
    section = re.search(r'<section id="config">(.*?)</section>', render_report(full_run), re.S).group(1)
    assert "<details>" not in section and "epochs: 15" in section
