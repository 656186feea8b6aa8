"""A classifier that memorised its training set (random labels) and stayed at chance on validation is warned of."""
import json

import numpy as np
from astropy.table import Table
from rich.console import Console

from deepfield.report.html import write_report
from deepfield.tasks.config import load_config
from deepfield.tasks.run import train


def test_a_run_at_chance_on_validation_warns_in_the_console_metrics_and_report(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    Table({**{name: rng.normal(size=n) for name in "abcd"},
           "kind": rng.choice(["x", "y", "z"], n)}).write(tmp_path / "t.csv")  # labels unrelated to the features
    config = load_config(None, document={
        "task": "tabular", "out": str(tmp_path / "run"), "seed": 0,
        "data": {"path": str(tmp_path / "t.csv"), "target": "kind"},
        "model": {"preset": "mlp", "options": {"hidden": [64, 64]}},
        "training": {"epochs": 60, "batch_size": 16, "optimizer": "adam", "learning_rate": 0.02}})
    console = Console(record=True, width=400)
    out = train(config, console=console, verbose=0, report=write_report)
    warnings = json.loads((out / "metrics.json").read_text())["warnings"]
    assert len(warnings) == 1 and warnings[0].startswith("validation accuracy stayed near chance")
    assert "while training accuracy reached 0.9" in warnings[0]  # memorised
    assert "likely cause" not in warnings[0]  # an MLP has no batch norm
    assert "warning: validation accuracy stayed near chance" in console.export_text()
    assert "Warning: validation accuracy stayed near chance" in (out / "report.html").read_text()
