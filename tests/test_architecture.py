"""The package's layers (DESIGN.md), as import-linter checks them: `make test` runs `lint-imports` too,
this test makes plain `pytest` catch a broken contract. The contracts are in pyproject.toml."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import deepfield

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(deepfield.__file__).parents[1]),
                                                    os.environ.get("PYTHONPATH", "")])}
"""The environment of a child Python that imports this deepfield (installed or not)."""


def test_imports_keep_the_layer_contracts():
    pytest.importorskip("importlinter", reason="import-linter is a dev dependency: pip install -e '.[dev]'")
    run = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                          "lint_imports_command()", "--no-cache"],  # reads ROOT/pyproject.toml
                         capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]


def test_a_low_layer_loads_without_the_training_engine():
    """Importing ``deepfield.data.splits`` runs the package face (``deepfield/__init__.py``) first: it must
    import its names on first use, not the engine on import."""
    code = ("import sys, deepfield.data.splits; "
            "print(sorted(m for m in sys.modules if m.startswith(('deepfield.training', 'deepfield.tasks'))))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_df_models_hands_out_the_keras_face_even_after_the_models_package_was_imported():
    """``from deepfield.layers import Dense`` imports ``deepfield.models`` (without training); ``df.models.load_keras``
    must still build models with ``fit``: the face imports the training layer when ``df.models`` is asked."""
    code = ("import sys\nfrom deepfield.layers import Dense\nimport deepfield as df\n"
            "assert 'deepfield.training' not in sys.modules\n"
            "models = df.models\n"
            "assert models is sys.modules['deepfield.models'] and 'deepfield.training' in sys.modules\n"
            "from deepfield.models.keras_files import MODEL_CLASSES\n"
            "print(*(hasattr(MODEL_CLASSES.lookup(name), 'fit') for name in ('Sequential', 'Functional')))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["True", "True"]


def test_a_bad_config_is_said_before_the_training_engine_loads(tmp_path):
    """``deepfield train`` validates the config before importing torch and the pipeline (~5 s): a typo is said at
    once (measured 8.1 s -> 0.5 s)."""
    (tmp_path / "bad.yaml").write_text("task: morphology\ndata: {path: sky.h5}\ntraining: {epochs: ten}\n")
    code = ("import sys\nfrom deepfield.cli.app import main\nsys.argv = ['deepfield', 'train', 'bad.yaml']\n"
            "try:\n    main()\nexcept SystemExit as done:\n    print(done.code, 'torch' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, cwd=tmp_path,
                         timeout=120)
    assert run.stdout.split() == ["2", "False"], run.stderr
    assert "training.epochs: Input should be a valid integer" in run.stderr
