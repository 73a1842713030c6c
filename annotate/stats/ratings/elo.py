"""Online Elo, battle by battle: the rating-over-time view (leaderboards use the Bradley-Terry fit instead)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from annotate.stats.ratings.outcomes import (
    FloatArray,
    IntArray,
    Outcome,
    a_scores,
    system_labels,
    validated_battles,
)
from annotate.stats.ratings.result import DEFAULT_ANCHOR_RATING


@dataclass(frozen=True)
class EloTrajectory:
    """Online Elo, battle by battle in processing (time) order."""

    systems: list[Hashable]
    ratings: FloatArray
    # Index into the input arrays of each processed battle; dropped battles (both-bad) are absent.
    battle_index: IntArray
    model_a: IntArray
    model_b: IntArray
    # Ratings of the two systems right after each processed battle.
    rating_a: FloatArray
    rating_b: FloatArray
    initial_rating: float

    def history(self, system: int) -> tuple[IntArray, FloatArray]:
        """Steps (positions in processing order) at which ``system`` played, and its rating after each."""
        played_as_a = self.model_a == system
        steps = np.flatnonzero(played_as_a | (self.model_b == system))
        return steps, np.where(played_as_a[steps], self.rating_a[steps], self.rating_b[steps])


def online_elo(
    model_a: ArrayLike,
    model_b: ArrayLike,
    outcome: ArrayLike,
    n_systems: int,
    *,
    k_factor: float = 4.0,
    initial_rating: float = DEFAULT_ANCHOR_RATING,
    timestamps: ArrayLike | None = None,
    both_bad_as_tie: bool = True,
    systems: Sequence[Hashable] | None = None,
) -> EloTrajectory:
    """Classic sequential Elo (for the "rating over time" view; leaderboards should use :func:`fit_ratings`,
    which does not depend on the order of battles).

    Battles are processed in ``timestamps`` order (stable, so equal times keep input order) or in input
    order. Each battle moves the two ratings by ``k_factor * (score - expected)``, with expected score
    ``1 / (1 + 10 ** ((r_b - r_a) / 400))`` and a tie scoring 1/2. The default K of 4 is Chatbot Arena's:
    small, because Elo's recency weighting is noise when systems do not change.
    """
    labels = system_labels(systems, n_systems)
    first, second, codes, _ = validated_battles(model_a, model_b, outcome, n_systems, None)
    if timestamps is None:
        order = np.arange(first.size)
    else:
        times = np.asarray(timestamps).ravel()
        if times.shape != first.shape:
            raise ValueError("timestamps must have one value per battle")
        order = np.argsort(times, kind="stable")
    if not both_bad_as_tie:
        order = order[codes[order] != Outcome.BOTH_BAD]
    processed_a, processed_b = first[order], second[order]
    scores = a_scores(codes[order])

    # Inherently sequential; plain Python floats are several times faster than numpy scalars here.
    ratings = [float(initial_rating)] * n_systems
    rating_a = np.empty(order.size)
    rating_b = np.empty(order.size)
    for step, (a, b, score) in enumerate(
        zip(processed_a.tolist(), processed_b.tolist(), scores.tolist(), strict=True)
    ):
        expected = 1.0 / (1.0 + 10.0 ** ((ratings[b] - ratings[a]) / 400.0))
        change = k_factor * (score - expected)
        ratings[a] += change
        ratings[b] -= change
        rating_a[step] = ratings[a]
        rating_b[step] = ratings[b]
    return EloTrajectory(
        systems=labels,
        ratings=np.array(ratings),
        battle_index=order.astype(np.int64),
        model_a=processed_a,
        model_b=processed_b,
        rating_a=rating_a,
        rating_b=rating_b,
        initial_rating=float(initial_rating),
    )
