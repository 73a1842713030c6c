"""A leaderboard: the Elo scale, and the result type every fit reports in (ratings, intervals, ranks)."""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm

from annotate.stats.ratings.outcomes import FloatArray, IntArray, OutcomeTable

ELO_SCALE = 400.0 / math.log(10.0)
DEFAULT_ANCHOR_RATING = 1000.0


@dataclass(frozen=True)
class RatingResult:
    """One leaderboard. Arrays are indexed like ``systems``; ratings and bounds are on the Elo scale."""

    systems: list[Hashable]
    theta: FloatArray
    rating: FloatArray
    lower: FloatArray
    upper: FloatArray
    rank: IntArray
    battles: IntArray
    win_rate: FloatArray
    # Expected score of the row system against the column system (a tie counts half), as the model predicts.
    win_probability: FloatArray
    warnings: list[str]
    converged: bool
    iterations: int
    interval_method: str
    confidence: float
    anchor: int | None
    anchor_rating: float
    l2: float
    # Davidson's nu; None under the half-win tie convention.
    tie_parameter: float | None = None
    # Covariance of ``theta`` in the reported gauge (sandwich intervals only).
    covariance: FloatArray | None = None
    # Ratings of every bootstrap round, rounds x systems (bootstrap intervals only).
    bootstrap_ratings: FloatArray | None = None


def theta_to_elo(
    theta: ArrayLike, *, anchor: int | None = None, anchor_rating: float = DEFAULT_ANCHOR_RATING
) -> FloatArray:
    """Elo-scale ratings ``anchor_rating + 400/ln(10) * theta``, with the anchor (or the mean) at
    ``anchor_rating``. Works on one vector or on rows of many."""
    values = np.asarray(theta, dtype=np.float64)
    reference = (
        values[..., anchor : anchor + 1] if anchor is not None else values.mean(axis=-1, keepdims=True)
    )
    return anchor_rating + ELO_SCALE * (values - reference)


def assemble(
    *,
    table: OutcomeTable,
    systems: list[Hashable],
    theta: FloatArray,
    win_probability: FloatArray,
    interval: str,
    confidence: float,
    anchor: int | None,
    anchor_rating: float,
    l2: float,
    warnings: list[str],
    converged: bool,
    iterations: int,
    covariance: FloatArray | None = None,
    bootstrap_ratings: FloatArray | None = None,
    tie_parameter: float | None = None,
) -> RatingResult:
    """The :class:`RatingResult` of a fit: Elo ratings, intervals from ``covariance`` or from the bootstrap
    ratings, ranks, and the battle counts and win rates of ``table``."""
    rating = theta_to_elo(theta, anchor=anchor, anchor_rating=anchor_rating)
    reported_theta = (rating - anchor_rating) / ELO_SCALE
    if covariance is not None:
        half_width = (
            norm.ppf(0.5 + confidence / 2) * ELO_SCALE * np.sqrt(np.clip(np.diagonal(covariance), 0, None))
        )
        lower, upper = rating - half_width, rating + half_width
    elif bootstrap_ratings is not None:
        tail = 100 * (1 - confidence) / 2
        lower, upper = np.percentile(bootstrap_ratings, [tail, 100 - tail], axis=0)
    else:
        lower, upper = rating.copy(), rating.copy()
    rank = 1 + np.sum(lower[None, :] > upper[:, None], axis=1)

    battles = table.battles.sum(axis=1)
    weighted_battles = (table.wins + table.wins.T + table.ties).sum(axis=1)
    weighted_score = (table.wins + 0.5 * table.ties).sum(axis=1)
    win_rate = np.divide(
        weighted_score, weighted_battles, out=np.zeros_like(weighted_score), where=weighted_battles > 0
    )
    probability = np.array(win_probability, dtype=np.float64)
    np.fill_diagonal(probability, 0.5)
    return RatingResult(
        systems=systems,
        theta=reported_theta,
        rating=rating,
        lower=np.asarray(lower, dtype=np.float64),
        upper=np.asarray(upper, dtype=np.float64),
        rank=rank.astype(np.int64),
        battles=np.rint(battles).astype(np.int64),
        win_rate=win_rate,
        win_probability=probability,
        warnings=warnings,
        converged=converged,
        iterations=iterations,
        interval_method=interval,
        confidence=confidence,
        anchor=anchor,
        anchor_rating=anchor_rating,
        l2=l2,
        tie_parameter=tie_parameter,
        covariance=covariance,
        bootstrap_ratings=bootstrap_ratings,
    )
