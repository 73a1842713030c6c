"""Ratings on the Elo scale as the leaderboard shows them: from a Bradley-Terry fit, or from online Elo
(resampled orderings for the interval, battle by battle for the line over time)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from annotate.models import Judgment
from annotate.services.leaderboard.battles import Battles, FloatArray, IntArray
from annotate.services.leaderboard.options import CONFIDENCE
from annotate.stats.ratings import DEFAULT_ANCHOR_RATING, RatingResult, online_elo

# Chatbot Arena's K: small, because systems do not change while they are judged (ratings.online_elo).
ELO_K_FACTOR = 4.0
# Online Elo is a sequential loop (bench/README.md, ratings.py): its bootstrap runs at most this many battles
# in all, so a large project gets fewer rounds (and a warning) rather than a timeout.
ELO_BOOTSTRAP_BATTLE_BUDGET = 5_000_000
OVER_TIME_POINTS = 200


@dataclass(frozen=True)
class Board:
    """One set of ratings on the Elo scale, indexed like the fitted systems."""

    rating: FloatArray
    lower: FloatArray
    upper: FloatArray
    rank: IntArray
    predicted: FloatArray
    warnings: list[str]
    tie_parameter: float | None = None


def board_from_result(result: RatingResult) -> Board:
    return Board(
        rating=result.rating,
        lower=result.lower,
        upper=result.upper,
        rank=result.rank,
        predicted=result.win_probability,
        warnings=list(result.warnings),
        tie_parameter=result.tie_parameter,
    )


def _rank(lower: FloatArray, upper: FloatArray) -> IntArray:
    """1 + the number of systems whose lower bound is above this one's upper bound (as ratings.fit_ratings)."""
    return (1 + np.sum(lower[None, :] > upper[:, None], axis=1)).astype(np.int64)


def elo_board(
    battles: Battles, n_systems: int, *, anchor: int | None, rounds: int, both_bad_as_tie: bool
) -> Board:
    """Online Elo, order-free: the median and percentile interval of ``rounds`` runs, each over the battles
    resampled with replacement in a random order (Chatbot Arena's original method)."""
    count = battles.count
    rounds_run = min(rounds, max(1, ELO_BOOTSTRAP_BATTLE_BUDGET // max(count, 1)))
    warnings = []
    if rounds_run < rounds:
        warnings.append(
            f"Elo intervals use {rounds_run} resampled orderings instead of {rounds}: online Elo over "
            f"{count:,} battles is sequential, so larger requests would take too long"
        )
    generator = np.random.default_rng(0)
    samples = np.empty((rounds_run, n_systems))
    for round_index in range(rounds_run):
        chosen = generator.integers(0, count, count)
        samples[round_index] = online_elo(
            battles.model_a[chosen],
            battles.model_b[chosen],
            battles.outcome[chosen],
            n_systems,
            k_factor=ELO_K_FACTOR,
            both_bad_as_tie=both_bad_as_tie,
        ).ratings
    if anchor is not None:
        samples = samples - samples[:, anchor : anchor + 1] + DEFAULT_ANCHOR_RATING
    tail = 100 * (1 - CONFIDENCE) / 2
    rating = np.median(samples, axis=0)
    lower, upper = np.percentile(samples, [tail, 100 - tail], axis=0)
    predicted = 1.0 / (1.0 + 10.0 ** ((rating[None, :] - rating[:, None]) / 400.0))
    np.fill_diagonal(predicted, 0.5)
    return Board(rating, lower, upper, _rank(lower, upper), predicted, warnings)


def elo_over_time(
    battles: Battles, names: list[str], order: IntArray, anchor: int | None, both_bad: bool
) -> dict:
    """Online Elo battle by battle, sampled at up to ``OVER_TIME_POINTS`` evenly spaced moments; each
    system's line carries its last rating forward between its battles."""
    trajectory = online_elo(
        battles.model_a,
        battles.model_b,
        battles.outcome,
        len(names),
        k_factor=ELO_K_FACTOR,
        both_bad_as_tie=both_bad,
    )
    processed = trajectory.battle_index.size
    if processed == 0:
        return {"judgments": [], "at": [], "series": []}
    grid = np.unique(np.linspace(0, processed - 1, min(OVER_TIME_POINTS, processed)).round().astype(np.int64))
    lines = np.empty((len(names), grid.size))
    for system in range(len(names)):
        steps, ratings = trajectory.history(system)
        last = np.searchsorted(steps, grid, side="right") - 1
        lines[system] = np.where(last >= 0, ratings[np.maximum(last, 0)], trajectory.initial_rating)
    if anchor is not None:
        lines = lines - lines[anchor] + DEFAULT_ANCHOR_RATING
    sampled_ids = battles.judgment_id[trajectory.battle_index[grid]]
    created = dict(Judgment.objects.filter(pk__in=sampled_ids.tolist()).values_list("pk", "created_at"))
    return {
        "judgments": (grid + 1).tolist(),
        "at": [
            created[judgment].isoformat() if judgment in created else None
            for judgment in sampled_ids.tolist()
        ],
        "series": [
            {"system": names[system], "rating": _rounded(lines[system], 2)} for system in order.tolist()
        ],
    }


def _rounded(values: FloatArray, digits: int) -> list[float]:
    return [round(float(value), digits) for value in values]
