"""Do a denoising U-Net's per-pixel and per-flux intervals hold their coverage? (Issue 18: within ±5 points.)

Simulates ``--n`` denoising pairs (``deepfield simulate denoise``: g, r, i, 32x32, one LSST visit, noise-free
targets), trains ``examples/denoise.yaml``'s U-Net with a heteroscedastic head (``gaussian_nll``) and dropout
after the bottleneck and every decoder block, draws ``--mc`` MC-dropout samples on the validation and test
parts, and measures on the test part the fraction of truths inside the central 68 % and 95 % intervals:

* per pixel (every pixel of every band and test stamp; also the source pixels alone, truth > 1 σ of the
  input's noise), of the MC spread alone, the head's σ alone, and both combined;
* per aperture flux (each stamp and band, the aperture of the task's photometry), the flux σ from the draws'
  aperture fluxes (spread) and the head's per-pixel σ summed as independent errors, or as fully coherent ones;
* after recalibration, fitted on the validation part and judged on the test part: one σ factor per quantity
  (:func:`~deepfield.analysis.image_uncertainty.fit_sigma_scale`, as temperature scaling), or one interval
  half-width per level, the validation pulls' quantiles (:func:`~deepfield.analysis.image_uncertainty.fit_interval_widths`,
  Kuleshov et al. 2018); and the run's own recalibration (``calibration.json``, which ``deepfield train`` fits
  the same way and reports in ``metrics.json`` as ``pixel_coverage_calibrated`` / ``flux_coverage_calibrated``).

    python benchmarks/bench_image_calibration.py            # ~10-15 minutes on 2 loaded CPU cores
    python benchmarks/bench_image_calibration.py --write    # also add a section to benchmarks/RESULTS.md
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from results import add_section, machine
from deepfield.analysis.image_uncertainty import (aperture_flux_uncertainty, fit_interval_widths, fit_sigma_scale,
                                                  interval_coverage)
from deepfield.data.simulate import simulate_denoise
from deepfield.tasks.config import load_config
from deepfield.tasks.denoise import StampUncertainty, stamp_uncertainty
from deepfield.tasks.pipeline import run_predictive
from deepfield.tasks.run import load_run, train

EXAMPLE = Path(__file__).parents[1] / "examples" / "denoise.yaml"
TARGET = 0.05
"""Issue 18: the 68 % and 95 % intervals within ±5 points of their level."""


def rows_of(maps: StampUncertainty) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, truth, estimate, σ) of every row of the table, for one part."""
    noise = (maps.noisy - maps.truth).std(axis=(0, 2, 3), keepdims=True)
    source = maps.truth > noise
    truth_flux = aperture_flux_uncertainty(maps.weights, maps.truth).flux
    independent = aperture_flux_uncertainty(maps.weights, maps.output, draws=maps.draws, aleatoric=maps.aleatoric)
    coherent = aperture_flux_uncertainty(maps.weights, maps.output, draws=maps.draws, aleatoric=maps.aleatoric,
                                         pixel_errors="coherent")
    rows = [("pixels: MC spread", maps.truth, maps.output, maps.epistemic),
            ("pixels: head σ", maps.truth, maps.output, maps.aleatoric),
            ("pixels: combined", maps.truth, maps.output, maps.total),
            ("source pixels: combined", maps.truth[source], maps.output[source], maps.total[source]),
            ("fluxes: MC spread", truth_flux, independent.flux, independent.epistemic),
            ("fluxes: head σ, independent pixels", truth_flux, independent.flux, independent.aleatoric),
            ("fluxes: combined, independent pixels", truth_flux, independent.flux, independent.total),
            ("fluxes: combined, coherent pixels", truth_flux, coherent.flux, coherent.total)]
    return rows


RECALIBRATED = ("pixels: combined", "fluxes: combined, independent pixels", "fluxes: combined, coherent pixels")


def row(name: str, truth: np.ndarray, estimate: np.ndarray, sigma: np.ndarray,
        widths: np.ndarray | None = None) -> list[str]:
    """One line of the table: the test part's coverage of the 68 % and 95 % intervals, and the verdict."""
    coverage = interval_coverage(truth, estimate, sigma, widths)
    held = all(abs(coverage[level] - float(level) / 100) <= TARGET for level in ("68", "95"))
    return [name, f"{truth.size:,}", f"{100 * coverage['68']:.1f}", f"{100 * coverage['95']:.1f}",
            "yes" if held else "no"]


def measure(n: int, epochs: int, mc: int, dropout: float, folder: Path) -> tuple[list[list[str]], dict, dict]:
    start = time.perf_counter()
    pairs = simulate_denoise(n, folder / "pairs.h5", size=32, bands="gri", seed=0, workers=2, progress=False)
    simulate_s = time.perf_counter() - start
    config = load_config(EXAMPLE, [f"data.path={pairs}", f"out={folder / 'run'}", "baselines.run=false",
                                   "uncertainty.heteroscedastic=true", f"uncertainty.mc_samples={mc}",
                                   f"training.epochs={epochs}",
                                   f"model.options={{depth: 3, filters: 16, normalization: null, dropout: {dropout}}}"])
    start = time.perf_counter()
    out = train(config, verbose=0)
    train_s = time.perf_counter() - start
    metrics = json.loads((out / "metrics.json").read_text())
    run = load_run(out)
    prepared = run.training_data()
    maps = {part: stamp_uncertainty(run_predictive(run.config, run.task, run.models, prepared.x[part], run.info,
                                                   keep_samples=True), prepared, part)
            for part in ("validation", "test")}
    fitted = {name: (fit_sigma_scale(truth, estimate, sigma), fit_interval_widths(truth, estimate, sigma))
              for name, truth, estimate, sigma in rows_of(maps["validation"]) if name in RECALIBRATED}
    test = rows_of(maps["test"])
    table = [row(name, truth, estimate, sigma) for name, truth, estimate, sigma in test]
    for name, truth, estimate, sigma in test:
        if name in fitted:
            scale, widths = fitted[name]
            table.append(row(f"{name}, σ × {scale:.3f} (one factor fitted on validation)", truth, estimate,
                             sigma * scale))
            table.append(row(f"{name}, half-widths {widths[0]:.2f} σ, {widths[1]:.2f} σ (validation quantiles)",
                             truth, estimate, sigma, widths))
    uncertainty = metrics["uncertainty"]
    for quantity, name in (("pixel", "pixels: combined"), ("flux", "fluxes: combined, independent pixels")):
        coverage = uncertainty[f"{quantity}_coverage_calibrated"]  # what `deepfield train` itself fitted and judged
        held = all(abs(coverage[level] - float(level) / 100) <= TARGET for level in ("68", "95"))
        table.append([f"{name}, the run's recalibration (metrics.json, validation half-widths)",
                      next(r[1] for r in table if r[0] == name), f"{100 * coverage['68']:.1f}",
                      f"{100 * coverage['95']:.1f}", "yes" if held else "no"])
    times = {"simulate_s": simulate_s, "train_s": train_s, "epochs_run": metrics["epochs_run"],
             "sizes": {part: len(prepared.x[part]) for part in ("train", "validation", "test")}}
    return table, times, metrics


def verdict(table: list[list[str]]) -> str:
    """Whether the target holds for the combined σ, per pixel and per flux, raw and recalibrated."""
    held = {name: ok == "yes" for name, *_, ok in table}
    words = []
    for quantity, raw in (("pixels", "pixels: combined"), ("fluxes", "fluxes: combined, independent pixels")):
        fixed = [name.removeprefix(f"{quantity}: combined, ") for name, ok in held.items()
                 if ok and name.startswith(f"{quantity}: combined") and "validation" in name]
        words.append(f"{quantity}: raw σ {'met' if held[raw] else 'not met'}; recalibrated on the validation part "
                     + (f"met by {'; '.join(fixed)}" if fixed else "not met"))
    return f"Target (the 68 % and 95 % intervals within ±{100 * TARGET:.0f} points) on the test part. " + \
        ". ".join(w[:1].upper() + w[1:] for w in words) + "."


def markdown(table: list[list[str]]) -> str:
    header = "| σ of | entries | 68 % coverage | 95 % coverage | within ±5 points |\n|---|---|---|---|---|\n"
    return header + "\n".join("| " + " | ".join(row) + " |" for row in table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="pairs simulated (70 / 15 / 15 %% split; default 1,000)")
    parser.add_argument("--epochs", type=int, default=30, help="at most (early stopping after 5; default 30)")
    parser.add_argument("--mc", type=int, default=20, help="MC-dropout draws (default 20)")
    parser.add_argument("--dropout", type=float, default=0.1, help="the U-Net's dropout rate (default 0.1)")
    parser.add_argument("--write", action="store_true", help="add the result to RESULTS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        table, times, metrics = measure(args.n, args.epochs, args.mc, args.dropout, Path(folder))
    text = markdown(table)
    sizes = times["sizes"]
    summary = (f"{sizes['train']} / {sizes['validation']} / {sizes['test']} stamps (train / validation / test), "
               f"{times['epochs_run']} epochs; test PSNR {metrics['psnr']:.1f} dB (input {metrics['psnr_input']:.1f}), "
               f"S/N gain {metrics['snr_gain']:.2f}, flux bias {100 * metrics['flux_bias']:+.1f} %; simulation "
               f"{times['simulate_s']:.0f} s, training and analysis {times['train_s']:.0f} s on a machine shared "
               f"with other jobs (load average {os.getloadavg()[0]:.1f} at the end; the coverage does not depend on "
               f"it)")
    print(text, "\n", summary, "\n", verdict(table), sep="")
    if args.write:
        add_section(f"## {datetime.date.today().isoformat()} — coverage of a denoising U-Net's σ "
                    f"(bench_image_calibration.py): {machine()}\n\n`python benchmarks/bench_image_calibration.py "
                    f"--n {args.n} --epochs {args.epochs} --mc {args.mc} --dropout {args.dropout} --write`: "
                    f"{summary}.\n\n{text}\n\n{verdict(table)}\n")


if __name__ == "__main__":
    main()
