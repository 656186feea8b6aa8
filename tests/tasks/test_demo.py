"""The demo (what `make demo` runs), shrunk: every part runs, the report is written, the command prints the result."""
import functools
import json
import sys

import pytest

import deepfield.tasks.demo as demo
from deepfield.cli.app import main
from deepfield.report.html import headline
from deepfield.tasks.config import load_config
from deepfield.tasks.demo import demo_config, same_demo


def test_demo_runs_end_to_end_and_prints_accuracy_and_report(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "run_demo", functools.partial(demo.run_demo, stamps=100, class_model_steps=5))
    monkeypatch.setattr(sys, "argv", ["deepfield", "demo", "--epochs", "1", "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as done:
        main()
    assert not done.value.code
    text = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert "L_total = L_o1 + L_o2 = 0.274811 + 0.023560 = 0.298371" in text  # the glass box
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    line = headline(metrics)  # e.g. "test accuracy 0.62 (mean of 30 Monte Carlo draws)": the report's headline
    assert line.startswith(f"test accuracy {metrics['accuracy']:.4g} (mean of 30 Monte Carlo draws)") and line in text
    assert line[1:] in (run / "report.html").read_text()
    assert (run / "report.html").is_file() and f"report: {run / 'report.html'}" in text
    assert (tmp_path / "data" / "sky.h5").is_file()
    assert metrics["uncertainty"]["draws"] == 30 and "temperature" in metrics["uncertainty"]
    html = (run / "report.html").read_text()
    assert '<section id="uncertainty">' in html and '<section id="explain">' in html

    # run again: the same options find the run finished; other options replace the demo's own run
    same = demo_config(tmp_path / "run", tmp_path / "data" / "sky.h5", epochs=1, seed=0, class_model_steps=5)
    assert same_demo(load_config(None, document=same))
    assert not same_demo(load_config(None, document={**same, "seed": 1}))
