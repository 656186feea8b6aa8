"""Judging generated stamps (issue 19): the noise floor of the standardised Wasserstein score, and what a wrong
model scores, on the simulated sky.

Two independent files of ``simulate_morphology`` (32×32 g, r, i stamps, 0.2"/pixel, seeds 0 and 1) stand for the
held-out set (A) and for a perfect model's samples (B). Their statistics
(:func:`deepfield.analysis.galaxy_statistics.galaxy_statistics`, morphology on the band sum) and the mean
standardised 1-Wasserstein distance (:func:`deepfield.analysis.generative_judging.wasserstein_score`) between them
is the floor that the issue's target (mean W1 <= 0.05 for the diffusion model) must be read against: a model
can score no better than two draws of the simulator itself, at the same numbers of stamps.

Wrong models, on the first ``--wrong`` stamps of B (with the floor at that size beside them):
* **blurred**: each band convolved with a Gaussian of sigma 1 pixel;
* **sizes x 1.3**: each stamp magnified 1.3 times about its centre (bilinear), pixel values divided by 1.3²
  to keep the flux (the noise is magnified too: smoother and 1.3² fainter).

Memorisation (:func:`deepfield.analysis.generative_judging.memorisation`, normalised pixels): training =
first half of A, held-out = second half of A; an honest model's samples = first half of B, a copier's =
the training stamps plus Gaussian noise of 1 electron (the sky noise is 10 to 32).

    OMP_NUM_THREADS=1 python benchmarks/bench_judging.py            # 2 x 1,000 stamps, 300 per wrong model
    python benchmarks/bench_judging.py --n 200 --wrong 100          # a quick run
    python benchmarks/bench_judging.py --write                      # also update benchmarks/RESULTS.md
"""
from __future__ import annotations

import argparse
import datetime
import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import statmorph
from scipy.ndimage import affine_transform, gaussian_filter

from deepfield.analysis.galaxy_statistics import galaxy_statistics
from deepfield.analysis.generative_judging import memorisation, normalised_pixels, wasserstein_score
from deepfield.data.simulate import simulate_morphology
from results import add_section, machine

BANDS, PIXEL_SCALE, SIZE = ("g", "r", "i"), 0.2, 32
MAGNIFY = 1.3


def magnified(images: np.ndarray, factor: float) -> np.ndarray:
    """(N, C, H, W) each band magnified ``factor`` times about the stamp centre, flux kept."""
    centre = (np.array(images.shape[2:]) - 1) / 2
    matrix = np.eye(2) / factor
    out = np.empty_like(images)
    for i, stamp in enumerate(images):
        for c, band in enumerate(stamp):
            out[i, c] = affine_transform(band, matrix, offset=centre - matrix @ centre, order=1) / factor**2
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="stamps in each of the two draws")
    parser.add_argument("--wrong", type=int, default=300, help="stamps of each wrong model")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="add a section to RESULTS.md")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        sets = []
        for seed in (0, 1):
            path = simulate_morphology(args.n, Path(folder) / f"sky{seed}.h5", size=SIZE, bands=BANDS, seed=seed,
                                       pixel_scale=PIXEL_SCALE, workers=args.workers, progress=False)
            with h5py.File(path) as h5:
                sets.append(h5["images"][:].astype(np.float64))
    heldout, draw = sets
    few = draw[:args.wrong]
    started = time.perf_counter()
    stats_heldout = galaxy_statistics(heldout, BANDS, PIXEL_SCALE, workers=args.workers)
    seconds = time.perf_counter() - started
    per_stamp = seconds / len(heldout)
    print(f"statistics: {per_stamp * 1e3:.0f} ms a stamp ({args.workers} processes)")
    stats_draw = galaxy_statistics(draw, BANDS, PIXEL_SCALE, workers=args.workers)
    few_stats = {name: values[:args.wrong] for name, values in stats_draw.items()}
    wrong = {"blurred (sigma 1 px)": gaussian_filter(few, sigma=(0, 0, 1, 1)),
             f"sizes x {MAGNIFY}": magnified(few, MAGNIFY)}
    rows = {f"independent draw, {args.n}": wasserstein_score(stats_draw, stats_heldout),
            f"independent draw, {args.wrong}": wasserstein_score(few_stats, stats_heldout)}
    for label, images in wrong.items():
        rows[f"{label}, {args.wrong}"] = wasserstein_score(
            galaxy_statistics(images, BANDS, PIXEL_SCALE, workers=args.workers), stats_heldout)
    total = time.perf_counter() - started
    half = args.n // 2
    training, unseen = heldout[:half], heldout[half:]
    copies = training + np.random.default_rng(2).normal(0.0, 1.0, training.shape)
    space = {name: normalised_pixels(x) for name, x in
             (("training", training), ("unseen", unseen), ("honest", draw[:half]), ("copier", copies))}
    memo = {name: memorisation(space[name], space["unseen"], space["training"]) for name in ("honest", "copier")}
    load_end = os.getloadavg()[0]

    names = list(stats_heldout)
    header = "| statistic | " + " | ".join(rows) + " |"
    lines = [header, "|---" * (len(rows) + 1) + "|"]
    lines.append("| **mean W1** | " + " | ".join(f"**{r['mean_w1']:.3f}**" for r in rows.values()) + " |")
    for name in names:
        cells = []
        for row in rows.values():
            entry = row["statistics"][name]
            nan = f" ({entry['dropped_samples']} NaN)" if entry["dropped_samples"] else ""
            cells.append(f"{entry['w1']:.3f}{nan}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    held_nan = {n: rows[next(iter(rows))]["statistics"][n]["dropped_heldout"] for n in names}
    nan_note = ", ".join(f"{n} {k}" for n, k in held_nan.items() if k) or "none"
    memo_lines = ["| samples | fraction closer than the held-out 1 % quantile | flag limit | flagged |",
                  "|---|---|---|---|"]
    memo_lines += [f"| {name} | {m.fraction:.3f} | {m.limit:.3f} | {m.flagged} |" for name, m in memo.items()]
    table, memo_table = "\n".join(lines), "\n".join(memo_lines)
    print(table)
    print(f"held-out NaN: {nan_note}")
    print(memo_table)
    print(f"all statistics and scores: {total:.0f} s; load {load_start:.1f} -> {load_end:.1f}")
    if args.write:
        add_section(
            f"## {datetime.date.today().isoformat()} — judging generated stamps: the score's noise floor and "
            f"wrong models: {machine()}, statmorph {statmorph.__version__}\n\n"
            f"`python benchmarks/bench_judging.py --write`: two independent files of `simulate_morphology` "
            f"({args.n:,} stamps each, {SIZE}x{SIZE}, g,r,i, {PIXEL_SCALE}\"/pixel, seeds 0 and 1); the first is the "
            "held-out set, the second a perfect model's samples. Each cell is the standardised 1-Wasserstein "
            "distance of one statistic (W1 after dividing both sets by the held-out std; NaN: stamps statmorph "
            "flagged or could not measure, dropped and counted); **mean W1** is Holzschuh et al. 2022's score. "
            f"The first two columns are the **noise floor** at {args.n:,} and {args.wrong} samples: what the "
            "issue's target (mean W1 <= 0.05) must be read against. Wrong models on the first "
            f"{args.wrong} stamps of the second file: blurred by a Gaussian of 1 pixel, or magnified x{MAGNIFY} "
            f"about the centre (flux kept). Held-out NaN: {nan_note}.\n\n"
            f"Statistics cost **{per_stamp * 1e3:.0f} ms a stamp** with {args.workers} processes (statmorph is "
            f"nearly all of it) on a machine shared with other jobs (load average {load_start:.1f} at the start, "
            f"{load_end:.1f} at the end); all statistics and scores took {total:.0f} s. The scores do not depend "
            "on the load.\n\n" + table + "\n\n"
            f"Memorisation (normalised pixels; training: {half} stamps of the first file, held-out: its other "
            f"{args.n - half}; the honest model's samples: {half} of the second file; the copier's: the training "
            "stamps plus noise of 1 electron):\n\n" + memo_table + "\n")


if __name__ == "__main__":
    main()
