"""The course's midterm forecast end to end: Model A (no past elections) vs Model B (with them).

    python examples/forecast.py [--out runs/forecast] [--epochs 60] [--samples 2000]

1. simulates 435 districts over ten past elections and the upcoming one (its national
   swing known only from a poll: D +3 ± 4 points of two-party margin);
2. trains the network of examples/forecast.yaml twice: Model B with every feature (its
   report compares it with a model without the past elections), Model A without them;
3. forecasts the upcoming House with each: joint samples of all districts' vote shares
   (MC dropout, the poll's uncertainty shared by all districts, each district's own
   scatter), the seats won and the chance of a Democratic majority; writes
   OUT/seat_distribution.png and OUT/forecast.json.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table as RichTable

from deepfield.report.html import write_report
from deepfield.tasks.config import load_config
from deepfield.tasks.forecast import (DISTRICTS, MAJORITY, PAST_ELECTIONS, TARGET, forecast_seats,
                                      plot_seat_distribution, simulate_elections)
from deepfield.tasks.run import load_run, train

CONFIG = Path(__file__).with_name("forecast.yaml")


def train_models(history: Path, out: Path, epochs: int, console: Console) -> dict[str, Path]:
    """Train Model A (without past elections) and Model B (all features); their run folders."""
    overrides = [f"data.path={history}", f"training.epochs={epochs}"]
    model_b = load_config(CONFIG, [*overrides, f"out={out / 'model_b'}"])
    without = [name for name in model_b.data.features if name not in PAST_ELECTIONS]
    model_a = load_config(CONFIG, [*overrides, f"out={out / 'model_a'}", "name=forecast-model-a",
                                   f"data.features=[{', '.join(without)}]", "data.feature_groups={}"])
    runs = {}
    for name, config in (("Model A (without past elections)", model_a), ("Model B (with past elections)", model_b)):
        console.rule(name)
        runs[name] = train(config, console=console, verbose=0, report=write_report)
    return runs


def forecast(run: Path, upcoming, poll_sigma: float, samples: int, seed: int) -> dict:
    """The seat forecast of one run for the upcoming election."""
    trained = load_run(run)  # the network with the run's feature standardisation (info)
    rmse = json.loads((run / "metrics.json").read_text())["rmse"]  # the district scatter the network misses
    return forecast_seats(trained.models[0], trained.info, upcoming, swing_sigma=poll_sigma, noise_sigma=rmse,
                          samples=samples, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/forecast"))
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--samples", type=int, default=2000, help="joint forecast samples")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    console = Console()
    args.out.mkdir(parents=True, exist_ok=True)

    elections = simulate_elections(DISTRICTS, seed=args.seed)
    history = args.out / "elections.csv"
    elections.history.write(history, overwrite=True)
    elections.upcoming.write(args.out / "upcoming.csv", overwrite=True)
    console.print(f"{len(elections.history)} district results in {history}; the upcoming election's poll "
                  f"(national swing, as a two-party margin): D {200 * elections.poll:+.1f} ± "
                  f"{200 * elections.poll_sigma:.1f}")

    runs = train_models(history, args.out, args.epochs, console)
    results = {name: forecast(run, elections.upcoming, elections.poll_sigma, args.samples, args.seed)
               for name, run in runs.items()}
    actual = int((elections.upcoming[TARGET] > 0.5).sum())
    actual_margin = 200 * (float(elections.upcoming[TARGET].mean()) - 0.5)

    table = RichTable(title="Forecast of the upcoming House (the course's Table 2)")
    table.add_column("")
    for name in results:
        table.add_column(name)
    rows = {
        "test MAE of a district's share": [f"{json.loads((r / 'metrics.json').read_text())['mae']:.4f}"
                                           for r in runs.values()],
        "national vote (two-party margin)": [f"D {200 * (f['national_share'] - 0.5):+.1f}" for f in results.values()],
        "Democratic seats": [f"{f['seats_mean']:.0f} (90%: {f['seats_interval'][0]:.0f}–{f['seats_interval'][1]:.0f})"
                             for f in results.values()],
        "Republican seats": [f"{DISTRICTS - f['seats_mean']:.0f}" for f in results.values()],
        "chance of Republicans keeping the House": [f"{100 * (1 - f['p_majority']):.1f} %"
                                                    for f in results.values()],
    }
    for label, cells in rows.items():
        table.add_row(label, *cells)
    console.print(table)
    console.print(f"what the simulated election gave: {actual} Democratic seats, national vote D {actual_margin:+.1f}")

    figure = plot_seat_distribution({name.split(" (")[0]: f for name, f in results.items()},
                                    args.out / "seat_distribution.png")
    summary = {name: {k: v for k, v in f.items() if k in ("seats_mean", "seats_median", "seats_interval",
                                                           "p_majority", "national_share", "national_interval")}
               for name, f in results.items()}
    summary.update(actual_seats=actual, actual_national_share=0.5 + actual_margin / 200, majority=MAJORITY)
    (args.out / "forecast.json").write_text(json.dumps(summary, indent=2) + "\n")
    console.print(f"seat distributions: {figure}; numbers: {args.out / 'forecast.json'}")


if __name__ == "__main__":
    main()
