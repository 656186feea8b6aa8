"""What many test modules share: simulated data files and a tiny trained run, made once a session, and the
command line called in this process. The session's files are for reading: a test that writes into a run
copies it into its own ``tmp_path`` first (``shutil.copytree``); a check after the last test says if one did not.
Small in-memory inputs (noise stamps, a small network) are plain functions in ``helpers.py``."""
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import pytest

from deepfield.cli.app import main
from deepfield.data.simulate import simulate_morphology, simulate_photoz
from deepfield.tasks.config import load_config
from deepfield.tasks.run import train

matplotlib.use("Agg")

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def readme_python():
    """``readme_python(text)``: the README's Python block holding ``text``, to run as written."""
    def block(containing: str) -> str:
        return next(b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if containing in b)
    return block


@pytest.fixture
def cli(capsys, monkeypatch):
    """The command line's entry point in this process (the same ``main``, without a second start of
    torch): ``cli("predict", run, file, "--out", out)`` gives the exit code, stdout and stderr."""
    def call(*args):
        monkeypatch.setattr(sys, "argv", ["deepfield", *map(str, args)])
        with pytest.raises(SystemExit) as done:
            main()
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, done.value.code or 0, out, err)
    return call


def _state(path: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time (ns) of ``path`` and of everything below it."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in [path, *sorted(path.rglob("*"))]}


@contextmanager
def _lent(path: Path) -> Iterator[Path]:
    """``path`` lent to the session's tests; after the last of them, a check that none changed it."""
    before = _state(path)
    yield path
    assert _state(path) == before, f"a test changed the shared {path}: copy it into its tmp_path first"


def _simulated_sky(factory: pytest.TempPathFactory, n: int, size: int, seed: int) -> Path:
    """A new HDF5 file of ``n`` simulated ``size``×``size`` g, r, i stamps of the five morphology classes."""
    return simulate_morphology(n, factory.mktemp("sky") / "sky.h5", size=size, seed=seed, workers=1, progress=False)


@pytest.fixture(scope="session")
def sky(tmp_path_factory) -> Iterator[Path]:
    """A sky of 150 simulated 24×24 stamps (seed 2)."""
    with _lent(_simulated_sky(tmp_path_factory, 150, size=24, seed=2)) as path:
        yield path


@pytest.fixture(scope="session")
def small_sky(tmp_path_factory) -> Iterator[Path]:
    """A sky of 40 simulated 16×16 stamps (seed 6): enough to train a run for one epoch."""
    with _lent(_simulated_sky(tmp_path_factory, 40, size=16, seed=6)) as path:
        yield path


@pytest.fixture(scope="session")
def tiny_run(small_sky, tmp_path_factory) -> Iterator[tuple[Path, Path]]:
    """``(run folder, its sky)``: a morphology run on ``small_sky``, trained for one epoch on the CPU (seed 3).
    Its network is the resnet preset with a stem of 4 filters and two stages of one block, 4 then 6 filters
    (the second at stride 2: 8×8 maps), then global pooling (6 features) and the head."""
    config = load_config(None, document={
        "task": "morphology", "out": str(tmp_path_factory.mktemp("tiny_run") / "run"), "seed": 3,
        "data": {"path": str(small_sky)},
        "model": {"preset": "resnet", "options": {"filters": [4, 6], "blocks": 1}},
        "training": {"epochs": 1, "batch_size": 32, "device": "cpu"}})
    with _lent(train(config, verbose=0)) as run:
        yield run, small_sky


@pytest.fixture(scope="session")
def photoz_catalogue(tmp_path_factory) -> Iterator[Path]:
    """An HDF5 catalogue of 600 simulated galaxies (seed 4): true redshifts, LSST magnitudes and errors with
    non-detections (columns named by ``helpers.LSST``)."""
    path = simulate_photoz(600, tmp_path_factory.mktemp("photoz") / "photoz.h5", seed=4, workers=1, progress=False)
    with _lent(path):
        yield path
