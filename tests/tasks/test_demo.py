"""The demo (what `make demo` runs), shrunk: every part runs and the report is written."""
import io

from rich.console import Console

from deepfield.report.html import headline
from deepfield.tasks.config import load_config
from deepfield.tasks.demo import demo_config, run_demo, same_demo


def test_demo_runs_end_to_end_and_prints_accuracy_and_report(tmp_path):
    buffer = io.StringIO()
    metrics = run_demo(tmp_path, epochs=1, stamps=100, console=Console(file=buffer, width=200), class_model_steps=5)
    text = buffer.getvalue()
    assert "L_total = L_o1 + L_o2 = 0.274811 + 0.023560 = 0.298371" in text  # the glass box
    line = headline(metrics)  # e.g. "test accuracy 0.62 (mean of 30 Monte Carlo draws)": the report's headline
    assert line.startswith(f"test accuracy {metrics['accuracy']:.4g} (mean of 30 Monte Carlo draws)") and line in text
    assert line[1:] in (tmp_path / "run" / "report.html").read_text()
    assert (tmp_path / "run" / "report.html").is_file() and str(tmp_path / "run" / "report.html") in text
    assert (tmp_path / "data" / "sky.h5").is_file()
    assert metrics["uncertainty"]["draws"] == 30 and "temperature" in metrics["uncertainty"]
    html = (tmp_path / "run" / "report.html").read_text()
    assert '<section id="uncertainty">' in html and '<section id="explain">' in html

    # run again: the same options find the run finished; other options replace the demo's own run
    same = demo_config(tmp_path / "run", tmp_path / "data" / "sky.h5", epochs=1, seed=0, class_model_steps=5)
    assert same_demo(load_config(None, document=same))
    assert not same_demo(load_config(None, document={**same, "seed": 1}))
