"""What the reliability probes share: a tiny trained run and a small table to train on (the in-process
command line, ``cli``, is the suite's: tests/conftest.py)."""
import numpy as np
import pytest
from astropy.table import Table

from deepfield.data.simulate import simulate_morphology
from deepfield.tasks.config import load_config
from deepfield.tasks.run import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny morphology run (ResNet, 1 epoch on 40 simulated 16x16 stamps), one per test module:
    ``(run folder, its sky.h5)``."""
    root = tmp_path_factory.mktemp("trained")
    sky = simulate_morphology(40, root / "sky.h5", size=16, seed=2, workers=1, progress=False)
    config = load_config(None, document={
        "task": "morphology", "out": str(root / "run"), "seed": 1, "data": {"path": str(sky)},
        "model": {"preset": "resnet", "options": {"filters": [4], "blocks": 1}},
        "training": {"epochs": 1, "batch_size": 16}})
    train(config, verbose=0)
    return root / "run", sky


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A catalogue of 200 rows, ``y = 3a - b``, as CSV."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 200))
    path = tmp_path_factory.mktemp("table") / "table.csv"
    Table({"a": a, "b": b, "y": 3.0 * a - b}).write(path)
    return path

