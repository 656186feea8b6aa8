"""Small runs of every task flavour whose ``prepared.json`` the code at commit 2025028 wrote
(``tests/data/prepared_2025028/<case>.json``, made by ``python tests/prepared_cases.py``).

Each case is a data file made here with a fixed seed and a config document; ``make(case, folder)`` writes the
file into ``folder`` and returns the validated config. Only stable names are used (simulators, ``load_config``),
so that the code of that commit can run this module and write the files the tests compare against.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np
from astropy.table import Table

from deepfield.data.simulate import simulate_morphology, simulate_photoz
from deepfield.data.simulate.spectra import simulate_spectra
from deepfield.tasks.config import RunConfig, load_config

FIXTURES = Path(__file__).parent / "data" / "prepared_2025028"
LSST = {"mag": "mag_{band}_lsst", "err": "mag_err_{band}_lsst"}
TINY = {"epochs": 1, "batch_size": 16, "device": "cpu", "early_stopping": None}


def images(folder: Path) -> Path:
    return simulate_morphology(40, folder / "sky.h5", size=16, seed=6, workers=1, progress=False)


def spectra(folder: Path) -> Path:
    h5 = simulate_spectra(60, folder / "spectra.h5", length=32, seed=3)
    with h5py.File(h5) as f:  # the same spectra as a .npz with its wavelength grid
        np.savez(folder / "spectra.npz", spectra=f["spectra"][:], labels=f["labels"][:], wavelength=f["wavelength"][:])
    return h5


def catalogue(folder: Path) -> Path:
    return simulate_photoz(120, folder / "photoz.h5", seed=4, workers=1, progress=False)


def stamps(folder: Path) -> Path:
    return simulate_photoz(40, folder / "stamps.h5", seed=5, stamps=True, size=16, workers=1, progress=False)


def table(folder: Path) -> Path:
    """A CSV of 150 rows: features a, b, c, flag; targets y (a value) and kind (text); row 7 has a sentinel."""
    rng = np.random.default_rng(11)
    a, b, c = rng.normal(size=(3, 150))
    rows = Table({"a": a, "b": b * 3 + 1, "c": c, "flag": rng.random(150) > 0.5,
                  "y": 2 * a - b + 0.1 * rng.normal(size=150), "kind": np.where(a + c > 0, "up", "down")})
    rows["b"][7] = 99.0
    rows.write(folder / "table.csv", format="ascii.csv", overwrite=True)
    return folder / "table.csv"


def document(task: str, path: Path, preset: str, data: dict | None = None, training: dict | None = None,
             **sections: dict) -> dict:
    return {"task": task, "seed": 3, "data": {"path": str(path), **(data or {})},
            "model": {"preset": preset, **sections.pop("model", {})},
            "training": {**TINY, **(training or {})}, **sections}


CASES = {
    "morphology_images": lambda f: document("morphology", images(f), "resnet",
                                            model={"options": {"filters": [4], "blocks": 1}}),
    "morphology_spectra": lambda f: (spectra(f), document(
        "morphology", f / "spectra.npz", "spectra1d", {"kind": "spectra"},
        model={"options": {"filters": [4], "kernel_size": 3, "hidden": [4]}}))[1],
    "photoz_regression": lambda f: document("photoz", catalogue(f), "mlp", LSST,
                                            uncertainty={"heteroscedastic": True}),
    "photoz_pdf": lambda f: document(
        "photoz", catalogue(f), "mlp", {**LSST, "features": ["magnitudes", "colours", "errors"]},
        {"loss": "sparse_categorical_crossentropy"}, model={"options": {"n_outputs": 10}},
        photoz={"resample_errors": True, "point_estimate": "mean", "label_smoothing": 0.05}),
    "photoz_stamps": lambda f: document("photoz", stamps(f), "resnet", LSST,
                                        model={"options": {"filters": [4], "blocks": 1}}),
    "photoz_spectra": lambda f: document(
        "photoz", spectra(f), "spectra1d", {"kind": "spectra", "target": "truth/redshift"},
        {"loss": "sparse_categorical_crossentropy"},
        model={"options": {"filters": [4], "kernel_size": 3, "hidden": [4], "n_outputs": 8}}),
    "tabular_regression": lambda f: document("tabular", table(f), "mlp",
                                             {"target": "y", "features": ["a", "b", "c", "flag"],
                                              "feature_groups": {"second": ["b"]}},
                                             uncertainty={"heteroscedastic": True}),
    "tabular_classes": lambda f: document("tabular", table(f), "mlp", {"target": "kind", "features": ["a", "b", "c"]}),
}
"""Case name -> (folder -> the config document, its data file written into the folder)."""


def make(case: str, folder: Path) -> RunConfig:
    """The config of ``case`` training into ``folder / "run"``, its data file written into ``folder``."""
    return load_config(None, document={**CASES[case](folder), "out": str(folder / "run")})


def relative(info: dict, folder: Path) -> dict:
    """``info`` with the data folder left out of its file names (tabular's ``dropped``), to compare across folders."""
    if "dropped" not in info:
        return info
    return {**info, "dropped": {Path(k).relative_to(folder).as_posix(): v for k, v in info["dropped"].items()}}


if __name__ == "__main__":  # writes the fixtures: run with the code whose prepared.json they record
    import tempfile

    from deepfield.tasks.pipeline import prepare, task_for

    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name in sys.argv[1:] or CASES:
        with tempfile.TemporaryDirectory() as tmp:
            config = make(name, Path(tmp))
            info = prepare(task_for(config), config).info
            (FIXTURES / f"{name}.json").write_text(json.dumps(relative(info, Path(tmp)), indent=2) + "\n")
