"""The course's election forecast: district vote shares from a network, seats and a majority probability.

The course shows a network predicting the US House midterms from per-district features,
once without past elections (Model A) and once with them (Model B), each turned into seats
and "the chance of Republicans keeping the House". Here:

- :func:`simulate_elections` makes the data: ``districts`` districts over ``cycles`` past
  elections, each row a district in one election, plus the election to forecast;
- a :class:`~deepfield.tasks.tabular.Tabular` run learns ``dem_share`` from the features
  (``examples/forecast.yaml``; the ``past_elections`` feature group gives Model A vs Model B);
- :func:`forecast_seats` turns the trained network into joint samples of every district's
  vote share and from them the distribution of seats won and ``P(seats >= majority)``.

Three sources of uncertainty enter a forecast sample, and the first two are shared by every
district of the sample, which is what makes the districts' outcomes correlated:

1. the **network** (MC dropout): one dropout mask per sample, used for all districts, so a
   sample is one network drawn from the dropout posterior (``mc_dropout``);
2. the **national swing**: the polled swing is uncertain by ``swing_sigma``; each sample moves
   the swing feature of every district by the same draw (``swing_shift`` moves the poll);
3. the **district**: independent scatter ``noise_sigma`` (vote-share units), the part of a
   district's result no feature explains; the run's test RMSE is a fair (slightly generous) value.

Vote shares are Democratic two-party shares (0..1); "swing" is the national Democratic
share minus 0.5. A district is won by the Democrats when its share exceeds 0.5.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from astropy.table import Table, vstack
from torch import nn

from deepfield.errors import DeepfieldError
from deepfield.plots.seats import plot_seat_distribution
from deepfield.tasks.prepared_info import TabularInfo
from deepfield.tasks.tabular import Tabular, unscale
from deepfield.training.engine import eval_mode
from deepfield.training.mc_dropout import forward_draws, mc_mode

__all__ = ["DISTRICTS", "DISTRICT_FEATURES", "Elections", "MAJORITY", "PAST_ELECTIONS", "SWING", "TARGET",
           "forecast_seats", "plot_seat_distribution", "sample_outputs", "seat_distribution", "simulate_elections"]
"""``plot_seat_distribution`` (drawn in :mod:`deepfield.plots.seats`) is named here too, beside the forecast."""

DISTRICTS = 435
MAJORITY = 218
"""Seats of the US House, and the seats that make a majority."""

SWING = "generic_ballot"
PAST_ELECTIONS = ["lean_last", "lean_before"]
DISTRICT_FEATURES = ["incumbent", "urban", "college", "median_age", "income"]
TARGET = "dem_share"

# the simulated electorate: lean = demographic part + a hidden (local) part, in vote-share units
HIDDEN_LEAN = 0.07       # what demographics do not tell about a district; past results do
DISTRICT_NOISE = 0.02    # one election's local scatter
INCUMBENCY = 0.02        # a running incumbent's bonus
SWING_SPREAD = 0.03      # national swing from one election to the next
RETIRING = 0.15          # probability that a seat is open


@dataclass
class Elections:
    """Simulated elections: ``history`` (one row per district and past election, with ``dem_share``)
    and ``upcoming`` (one row per district of the election to forecast: its ``generic_ballot`` is the
    poll, its ``dem_share`` the result it will have, for checking). ``true_swing`` is the upcoming
    election's national swing, ``poll_sigma`` the poll's uncertainty (both in vote-share units)."""

    history: Table
    upcoming: Table
    poll: float
    poll_sigma: float
    true_swing: float


def _share(z: np.ndarray) -> np.ndarray:
    """Vote share from a margin-like index: ``expit(4 z)``, ≈ 0.5 + z near the middle, within (0, 1)."""
    return 1.0 / (1.0 + np.exp(-4.0 * z))


def simulate_elections(districts: int = DISTRICTS, cycles: int = 10, *, seed: int = 0, poll: float = 0.015,
                       poll_sigma: float = 0.02) -> Elections:
    """Districts with fixed demographics voting in ``cycles`` past elections and one upcoming.

    A district's result: ``dem_share = expit(4 (lean + swing + 0.02 incumbent + ε))``, with
    ``lean`` = a demographic part (urban and college-educated districts lean Democratic, older
    ones Republican) + a hidden part of ``HIDDEN_LEAN`` scatter, ``swing`` the election's
    national swing (``SWING_SPREAD`` scatter) and ε the local scatter ``DISTRICT_NOISE``.

    Columns: ``year``, ``district`` (name), ``generic_ballot`` (the national swing; for
    ``upcoming`` the poll), ``incumbent`` (+1 Democrat, −1 Republican, 0 open seat),
    ``urban``, ``college`` (fractions), ``median_age`` (years), ``income`` (median household,
    k$), ``lean_last``, ``lean_before`` (the district's share minus the national share in
    the last two elections, Cook-PVI-like) and ``dem_share``.
    """
    rng = np.random.default_rng(seed)
    urban, college = rng.uniform(0.0, 1.0, districts), rng.beta(2.0, 5.0, districts)
    median_age = rng.normal(38.0, 5.0, districts)
    income = np.exp(rng.normal(np.log(60.0), 0.3, districts))
    lean = (0.25 * (urban - 0.5) + 0.5 * (college - 0.3) - 0.004 * (median_age - 38.0)
            + 0.1 * np.log(income / 60.0) * (college - 0.3) + rng.normal(0.0, HIDDEN_LEAN, districts))
    lean -= np.median(lean)  # an even House at no swing
    swings = np.append(rng.normal(0.0, SWING_SPREAD, cycles + 2), poll + rng.normal(0.0, poll_sigma))
    shares, incumbents = [], []
    winner = np.sign(lean)
    for swing in swings:
        incumbent = np.where(rng.uniform(size=districts) < RETIRING, 0.0, winner)
        share = _share(lean + swing + INCUMBENCY * incumbent + rng.normal(0.0, DISTRICT_NOISE, districts))
        shares.append(share)
        incumbents.append(incumbent)
        winner = np.sign(share - 0.5)
    rows = []
    for c in range(2, len(swings)):
        national = [float(np.mean(shares[k])) for k in (c - 1, c - 2)]
        rows.append(Table({
            "year": np.full(districts, 2000 + 2 * c), "district": [f"D{k + 1:03d}" for k in range(districts)],
            SWING: np.full(districts, swings[c] if c < len(swings) - 1 else poll),
            "incumbent": incumbents[c].astype(np.int64), "urban": urban, "college": college,
            "median_age": median_age, "income": income,
            "lean_last": shares[c - 1] - national[0], "lean_before": shares[c - 2] - national[1],
            TARGET: shares[c]}))
    return Elections(history=vstack(rows[:-1]), upcoming=rows[-1], poll=poll, poll_sigma=poll_sigma,
                     true_swing=float(swings[-1]))


# -- joint samples from the network ---------------------------------------------------------------

def sample_outputs(model: nn.Module, x: np.ndarray, shifts: np.ndarray, column: int | None,
                   mc_dropout: bool = True, seed: int = 0) -> np.ndarray:
    """``(T, N)`` network outputs for rows ``x`` ``(N, F)``, sample ``t`` with ``shifts[t]`` added to
    feature ``column`` of every row (``None``: no shift) and, with ``mc_dropout``, its own network draw.

    A draw is one dropout mask per layer shared by all rows (:mod:`deepfield.training.mc_dropout`),
    so the rows of a sample are predicted by the same sampled network: a joint sample.
    """
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    rows = torch.as_tensor(x, dtype=torch.float32, device=device)

    def shifted(shift: float) -> torch.Tensor:
        moved = rows.clone()
        if column is not None:
            moved[:, column] += float(shift)
        return moved

    if not mc_dropout:
        with eval_mode(model):
            return torch.stack([model(shifted(s)).reshape(-1) for s in shifts]).cpu().numpy()
    with mc_mode(model, seed) as state:
        draws = [forward_draws(model, state, shifted(s), range(t, t + 1))[0].reshape(-1) for t, s in enumerate(shifts)]
    return torch.stack(draws).cpu().numpy()


# -- from vote shares to seats --------------------------------------------------------------------

def seat_distribution(shares: np.ndarray, threshold: float = 0.5, majority: int = MAJORITY,
                      interval: float = 0.9) -> dict[str, Any]:
    """Seats and the majority probability from joint vote-share samples ``shares`` ``(T, N)``.

    Returns ``seats`` (T,) won per sample (share > ``threshold``), ``seats_mean``,
    ``seats_median``, ``seats_interval`` (the central ``interval`` of the samples),
    ``p_majority`` = P(seats ≥ ``majority``), ``national_share`` (mean over samples of the
    districts' mean share) with its ``national_interval``, and per district ``share_mean``,
    ``share_std`` and ``p_win`` (N,).
    """
    won = shares > threshold
    seats = won.sum(axis=1)
    national = shares.mean(axis=1)
    tails = [(1.0 - interval) / 2, (1.0 + interval) / 2]
    return {"seats": seats, "seats_mean": float(seats.mean()), "seats_median": float(np.median(seats)),
            "seats_interval": [float(q) for q in np.quantile(seats, tails)],
            "p_majority": float(np.mean(seats >= majority)), "majority": majority,
            "national_share": float(national.mean()),
            "national_interval": [float(q) for q in np.quantile(national, tails)],
            "share_mean": shares.mean(axis=0), "share_std": shares.std(axis=0), "p_win": won.mean(axis=0)}


def forecast_seats(model: nn.Module, info: TabularInfo | Mapping[str, Any], table: Table, *, swing: str | None = SWING,
                   swing_sigma: float = 0.0, swing_shift: float = 0.0, noise_sigma: float = 0.0,
                   samples: int = 1000, mc_dropout: bool = True, threshold: float = 0.5,
                   majority: int = MAJORITY, interval: float = 0.9, seed: int = 0) -> dict[str, Any]:
    """The seat forecast of a trained tabular run for the districts of ``table``, one row each.

    Args:
        model, info: the run's network and its ``prepared.json`` record (regression run): ``load_run(RUN).info``
            or the file's object as read by ``json.load``.
        table: the districts' features (the run's ``info.features``); every row is predicted.
        swing: the national-swing feature, moved by ``swing_shift + swing_sigma · z_t`` (its
            units; one ``z_t ~ N(0, 1)`` per sample, shared by all districts); ``None``: none.
        noise_sigma: independent scatter added to each district's share (target units).
        samples: ``T``, the number of joint samples; ``mc_dropout``: a network draw per sample.
        threshold, majority, interval: see :func:`seat_distribution`.

    Returns :func:`seat_distribution`'s dict, plus ``swings`` (T,) the swing shifts used.
    With no dropout draw, ``swing_sigma = 0`` and ``noise_sigma = 0`` every sample is the
    network's deterministic prediction, so ``seats`` is constant.
    """
    if not isinstance(info, TabularInfo):
        info = TabularInfo.model_validate(info)
    if info.problem != "regression":
        raise DeepfieldError(f"forecast_seats needs a regression run (a vote share), not {info.problem!r}")
    column = None
    if swing is not None:
        if swing not in info.features:
            raise DeepfieldError(f"swing feature {swing!r} is not among the run's features: "
                                 f"{', '.join(info.features)}")
        column = info.features.index(swing)
    rng = np.random.default_rng(seed)
    swings = swing_shift + swing_sigma * rng.standard_normal(samples)
    scaled = swings / info.standardize.std[column] if column is not None else swings
    x = Tabular.transform(table, info)
    outputs = sample_outputs(model, x, scaled, column, mc_dropout=mc_dropout, seed=seed)
    shares = unscale(outputs, info.target_scale) + noise_sigma * rng.standard_normal(outputs.shape)
    return {**seat_distribution(shares, threshold, majority, interval), "swings": swings}
