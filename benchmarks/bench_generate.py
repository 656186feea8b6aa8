"""Generative models of galaxies judged on the simulated sky (issue 19): a conditional VAE and a diffusion model.

``simulate_morphology`` draws a training sky (``--n-train`` 32×32 g, r, i stamps, seed 0) and an independent
held-out sky (seed 1) split in halves A and B. Each model (``task: generate``, conditioned on
``half_light_radius``, ``mag`` and ``ellipticity``) trains on the training sky through ``deepfield train`` (its own
report judges a small test part), then draws one sample at the conditions of each of the first ``--judge`` stamps
of A (:meth:`Run.sample`; a VAE's samples carry the sky noise of its stamps) and is judged against them:

* the mean standardised 1-Wasserstein distance over the statistics of
  :func:`deepfield.analysis.galaxy_statistics.galaxy_statistics` (the issue's target: <= 0.05 for the diffusion
  model), beside its **floor**: the same score of B against A at the same size (two draws of the simulator);
* conditioning: each sample's half-light radius (curve of growth), magnitude and ellipticity against the same
  measurement of the held-out stamp it was drawn for (:mod:`deepfield.tasks.generate_judging`; target: the
  median half-light radius within 10 %);
* memorisation against all ``--n-train`` training stamps (target: no flag), in normalised pixel space;
* the Fréchet distance in the features of a morphology classifier trained on the training sky (``--classifier-
  epochs``), beside its floor between two halves of A;
* sampling speed, and for the diffusion model the score at each number of DDIM steps (``--steps``, on the first
  ``--steps-judge`` stamps, with the floor at that size).

    OMP_NUM_THREADS=2 python benchmarks/bench_generate.py --folder /tmp/gen      # 10,000 stamps, both models
    python benchmarks/bench_generate.py --quick --folder /tmp/genq               # a smoke run
    python benchmarks/bench_generate.py --models diffusion --write ...           # also update RESULTS.md

``--folder`` keeps the skies, the runs (a killed run started again resumes from its checkpoint) and the held-out
statistics, so a rerun only does what is missing.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from astropy.table import Table

from deepfield.analysis.galaxy_statistics import galaxy_statistics
from deepfield.analysis.generative_judging import (conditioning_errors, memorisation, normalised_pixels,
                                                   wasserstein_score)
from deepfield.data.simulate import simulate_morphology
from deepfield.tasks.config import load_config
from deepfield.tasks.generate_judging import MEASURED, classifier_features, measure
from deepfield.tasks.run import load_run, train
from results import add_section, machine

BANDS, PIXEL_SCALE, SIZE = ("g", "r", "i"), 0.2, 32
CONDITIONS = ["half_light_radius", "mag", "ellipticity"]
MODELS = {
    "cvae": {"model": {"preset": "cvae", "options": {"latent_dim": 32, "filters": [32, 64], "beta": 1.0}},
             "training": {"batch_size": 64, "optimizer": {"name": "adam", "learning_rate": 0.001},
                          "kl_anneal_epochs": 5}},
    "diffusion": {"model": {"preset": "diffusion", "options": {"depth": 2, "filters": 16, "groups": 8}},
                  "training": {"batch_size": 64, "optimizer": {"name": "adam", "learning_rate": 0.0005}}},
}
"""Each model's config (task generate; data, epochs, seed and out are added)."""


def sky(folder: Path, name: str, n: int, seed: int, workers: int) -> np.ndarray:
    """(n, 3, 32, 32) stamps of ``folder/name.h5`` (simulated with ``seed`` unless it is there)."""
    path = folder / f"{name}.h5"
    if not path.exists():
        simulate_morphology(n, path, size=SIZE, bands=BANDS, seed=seed, pixel_scale=PIXEL_SCALE, workers=workers,
                            progress=False)
    with h5py.File(path) as h5:
        return h5["images"][:n].astype(np.float64)


def truth(folder: Path, name: str, n: int) -> dict[str, np.ndarray]:
    """The first ``n`` rows of the conditions of ``folder/name.h5``."""
    with h5py.File(folder / f"{name}.h5") as h5:
        return {c: h5[f"truth/{c}"][:n] for c in CONDITIONS}


def statistics(folder: Path, name: str, stamps: np.ndarray, workers: int) -> dict[str, np.ndarray]:
    """:func:`galaxy_statistics` of ``stamps``, kept in ``folder/stats_<name>.npz`` for the next run."""
    path = folder / f"stats_{name}.npz"
    if path.exists():
        with np.load(path) as saved:
            if len(next(iter(saved.values()))) == len(stamps):
                return dict(saved)
    measured = galaxy_statistics(stamps, BANDS, PIXEL_SCALE, workers=workers)
    np.savez(path, **measured)
    return measured


def train_run(folder: Path, kind: str, epochs: int, seed: int, overrides: dict[str, Any] | None = None) -> Path:
    """A generate run of ``kind`` on the training sky (resumed when its folder has a checkpoint)."""
    document = {"task": "generate", "name": f"bench-{kind}", "seed": seed, "out": str(folder / f"run_{kind}"),
                "data": {"path": str(folder / "train.h5"), "conditions": CONDITIONS,
                         "split": {"validation": 0.1, "test": 0.02}},
                **json.loads(json.dumps(MODELS[kind]))}
    document["training"] |= {"epochs": epochs, "early_stopping": 8, "device": "cpu"} | (overrides or {})
    run = Path(document["out"])
    if (run / "metrics.json").exists():
        return run
    return train(load_config(None, document=document), verbose=1)


def train_classifier(folder: Path, epochs: int, seed: int) -> Path:
    """A morphology classifier (the lecture CNN) on the training sky: its features give the Fréchet distance."""
    run = folder / "run_classifier"
    if (run / "metrics.json").exists():
        return run
    document = {"task": "morphology", "seed": seed, "out": str(run), "data": {"path": str(folder / "train.h5")},
                "training": {"epochs": epochs, "batch_size": 64, "device": "cpu"}}
    return train(load_config(None, document=document), verbose=1)


def sample(run: Any, conditions: dict[str, np.ndarray], seed: int, **options: Any) -> tuple[np.ndarray, float]:
    """One sample per row of ``conditions`` and the stamps drawn per second."""
    started = time.perf_counter()
    stamps = run.sample(conditions=Table(conditions), seed=seed, **options)
    return stamps.astype(np.float64), len(stamps) / (time.perf_counter() - started)


def judge_model(run: Any, kind: str, args: argparse.Namespace, skies: dict[str, np.ndarray],
                held: dict[str, dict[str, np.ndarray]], classifier: Any) -> dict[str, Any]:
    """Every figure of the module docstring for one trained model."""
    n = args.judge
    wanted = truth(args.folder, "heldout", n)
    options = {"steps": args.default_steps} if kind == "diffusion" else {}
    samples, rate = sample(run, wanted, args.seed + 7, **options)
    measured = statistics(args.folder, f"samples_{kind}", samples, args.workers)
    result: dict[str, Any] = {"rate": rate, "options": options,
                              "score": wasserstein_score(measured, held["A"]),
                              "floor": wasserstein_score(held["B"], held["A"])}
    names = [c for c in CONDITIONS if c in MEASURED]
    got = measure(samples, measured, names)
    real = measure(skies["A"], held["A"], names)
    result["conditioning"] = conditioning_errors(real, got, absolute=[c for c in names if MEASURED[c] == "absolute"])
    result["memorisation"] = memorisation(*(normalised_pixels(x) for x in (samples, skies["A"], skies["train"])))
    if classifier is not None:
        result["frechet"] = classifier_features(classifier, samples, skies["A"], args.seed)
    if kind == "diffusion":
        k = args.steps_judge
        per_step = {}
        few = {c: v[:k] for c, v in wanted.items()}
        held_few = {name: {s: v[:k] for s, v in stats.items()} for name, stats in held.items()}
        for steps in args.steps:
            stamps, speed = sample(run, few, args.seed + 11, steps=steps)
            stats = galaxy_statistics(stamps, BANDS, PIXEL_SCALE, workers=args.workers)
            per_step[steps] = {"rate": speed, "mean_w1": wasserstein_score(stats, held_few["A"])["mean_w1"]}
        result["per_step"], result["per_step_n"] = per_step, k
        result["floor_few"] = wasserstein_score(held_few["B"], held_few["A"])["mean_w1"]
    return result


def report(kind: str, run_folder: Path, result: dict[str, Any]) -> str:
    """A markdown paragraph and tables for one model."""
    metrics = json.loads((run_folder / "metrics.json").read_text())
    config = load_config(run_folder / "config.yaml")
    summary = (run_folder / "summary.txt").read_text(encoding="utf-8")
    parameters = next((line.split(":")[1].split("(")[0].strip() for line in summary.splitlines()
                       if line.strip().startswith("Total params")), "?")
    score, floor = result["score"], result["floor"]
    memo = result["memorisation"]
    lines = [f"**{kind}** (`{json.dumps(config.model.options)}`, {metrics.get('epochs_run')} epochs, "
             f"{parameters} parameters; sampled {result['options'] or 'as the preset'}): "
             f"mean W1 **{score['mean_w1']:.3f}** against the floor {floor['mean_w1']:.3f}; "
             f"{result['rate']:.0f} stamps/s sampling (this machine, busy).", ""]
    lines += ["| statistic | W1 samples | W1 floor |", "|---|---|---|"]
    for name, row in score["statistics"].items():
        lines.append(f"| {name} | {row['w1']:.3f} | {floor['statistics'][name]['w1']:.3f} |")
    lines += ["", "Conditioning: each sample against the held-out stamp it was drawn for, measured alike "
                  "(scatter: 1.4826 MAD, which includes the spread of real stamps at one condition):", "",
              "| condition | median error | scatter | stamps |", "|---|---|---|---|"]
    for name, row in result["conditioning"].items():
        unit = " mag" if name == "mag" else ""
        if row["kind"] == "relative":
            median, scatter = f"{100 * row['median_error']:+.1f} %", f"{100 * row['scatter']:.1f} %"
        else:
            median, scatter = f"{row['median_error']:+.3f}{unit}", f"{row['scatter']:.3f}{unit}"
        lines.append(f"| {name} ({row['kind']}) | {median} | {scatter} | {row['n']} |")
    lines += ["", f"Memorisation (against all training stamps): fraction closer than the held-out 1 % quantile "
                  f"{memo.fraction:.4f}, flag limit {memo.limit:.4f}: **{'FLAGGED' if memo.flagged else 'not flagged'}**."]
    if "frechet" in result:
        fr = result["frechet"]
        lines.append(f"Fréchet distance in the classifier's features: {fr['frechet']:.3g} (floor {fr['frechet_floor']:.3g}, "
                     f"{fr['n']} stamps each).")
    if "per_step" in result:
        lines += ["", f"Quality per DDIM step count, on the first {result['per_step_n']:,} stamps of A (the floor "
                      f"at that size {result['floor_few']:.3f}):", "",
                  "| DDIM steps | mean W1 | stamps/s |", "|---|---|---|"]
        lines += [f"| {s} | {row['mean_w1']:.3f} | {row['rate']:.0f} |" for s, row in result["per_step"].items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, required=True, help="skies, runs and statistics are kept here")
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--judge", type=int, default=2000, help="samples judged (and held-out stamps in A and B)")
    parser.add_argument("--models", default="cvae,diffusion")
    parser.add_argument("--epochs", type=int, default=40, help="each model's epochs (early stopping 8)")
    parser.add_argument("--classifier-epochs", type=int, default=6, help="0: no Fréchet distance")
    parser.add_argument("--steps", type=lambda t: [int(s) for s in t.split(",")], default=[5, 10, 20, 50])
    parser.add_argument("--default-steps", type=int, default=50, help="the diffusion model's judged samples")
    parser.add_argument("--steps-judge", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="600 training stamps, 200 judged, 2 epochs")
    parser.add_argument("--write", action="store_true", help="add a section to RESULTS.md")
    args = parser.parse_args()
    if args.quick:
        args.n_train, args.judge, args.epochs, args.steps_judge, args.classifier_epochs = 600, 200, 2, 100, 1
        args.steps = [5, 10]
    args.folder.mkdir(parents=True, exist_ok=True)
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    torch.manual_seed(args.seed)
    skies = {"train": sky(args.folder, "train", args.n_train, 0, args.workers)}
    heldout = sky(args.folder, "heldout", 2 * args.judge, 1, args.workers)
    skies["A"], skies["B"] = heldout[:args.judge], heldout[args.judge:]
    held = {part: statistics(args.folder, f"heldout_{part}", skies[part], args.workers) for part in ("A", "B")}
    classifier = load_run(train_classifier(args.folder, args.classifier_epochs, args.seed)) \
        if args.classifier_epochs else None
    sections = []
    for kind in args.models.split(","):
        run_folder = train_run(args.folder, kind, args.epochs, args.seed)
        result = judge_model(load_run(run_folder), kind, args, skies, held, classifier)
        text = report(kind, run_folder, result)
        print(text)
        sections.append(text)
    minutes = (time.perf_counter() - started) / 60
    if args.write:
        add_section(
            f"## {datetime.date.today().isoformat()} — generative models judged on the simulated sky "
            f"(bench_generate.py): {machine()}, torch {torch.__version__}\n\n"
            f"`python benchmarks/bench_generate.py --n-train {args.n_train} --judge {args.judge} --epochs "
            f"{args.epochs} --models {args.models} --write`: {args.n_train:,} training stamps of "
            f"`simulate_morphology` (32×32, g, r, i, 0.2\"/pixel, seed 0), conditioned on {', '.join(CONDITIONS)}; "
            f"{args.judge:,} samples drawn at the conditions of {args.judge:,} held-out stamps (A, seed 1) judged "
            f"against them; the floor is {args.judge:,} other held-out stamps (B) against A. Targets: diffusion "
            "mean W1 <= 0.05, median half-light radius within 10 %, no memorisation flag on 10,000 training "
            f"stamps. {minutes:.0f} min in all on a shared machine (load average {load_start:.1f} at the start, "
            f"{os.getloadavg()[0]:.1f} at the end).\n\n" + "\n\n".join(sections) + "\n")


if __name__ == "__main__":
    main()
