"""The one check of a refused bad input on the command line; the config of a tiny regression run."""
import yaml


def refused(run, *named):
    """Exit 2, one line on stderr naming each of ``named`` (texts or paths), no traceback."""
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    for text in named:
        assert str(text) in run.stderr, run.stderr


def regression(table, out, **training):
    """The config document of a tiny MLP regression on ``table`` into ``out`` (``training`` overrides)."""
    return {"task": "tabular", "out": str(out), "seed": 0, "data": {"path": str(table), "target": "y"},
            "model": {"preset": "mlp", "options": {"hidden": [8]}},
            "training": {"epochs": 3, "batch_size": 32, **training}}


def write_config(document, path):
    """``document`` as a YAML config file at ``path``; returns the path."""
    path.write_text(yaml.safe_dump(document))
    return path
