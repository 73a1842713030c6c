"""Battles in, sufficient statistics out: outcome codes, the table of wins and ties, and its pairs that met."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


class Outcome(IntEnum):
    """Outcome code of one battle between system ``a`` and system ``b``."""

    A_WINS = 0
    B_WINS = 1
    TIE = 2
    BOTH_BAD = 3


@dataclass(frozen=True)
class OutcomeTable:
    """Sufficient statistics of a set of battles: how often each system beat each other one.

    ``wins[i, j]`` is the total weight of battles system ``i`` won against ``j``; ``ties`` is symmetric. The
    ``*_counts`` arrays count battles whatever their weight (they drive the bootstrap and the battle counts);
    the ``*_squared_weights`` arrays sum squared weights (they drive the sandwich estimate). Without weights
    all three agree.
    """

    wins: FloatArray
    ties: FloatArray
    win_counts: FloatArray
    tie_counts: FloatArray
    win_squared_weights: FloatArray
    tie_squared_weights: FloatArray

    @property
    def n_systems(self) -> int:
        return int(self.wins.shape[0])

    @property
    def battles(self) -> FloatArray:
        """Battles between each pair of systems (symmetric), whatever their weight."""
        return self.win_counts + self.win_counts.T + self.tie_counts


def build_outcome_table(
    model_a: ArrayLike,
    model_b: ArrayLike,
    outcome: ArrayLike,
    n_systems: int,
    *,
    both_bad_as_tie: bool = True,
    weights: ArrayLike | None = None,
) -> OutcomeTable:
    """Aggregate battles into the wins/ties table.

    ``model_a``/``model_b`` are system indices, ``outcome`` holds :class:`Outcome` codes. Both-bad battles
    count as ties unless ``both_bad_as_tie`` is false, in which case they are dropped. ``weights`` (per
    battle, non-negative) scale each battle's vote, e.g. by annotator reliability.
    """
    first, second, codes, battle_weights = validated_battles(model_a, model_b, outcome, n_systems, weights)
    # One bincount over "kind, winner, loser" cells (kind 0 decisive, 1 tie, 2 dropped): one pass over the
    # battles rather than a mask per kind.
    cells = n_systems * n_systems
    kind_of_code = np.array([0, 0, 1, 1 if both_bad_as_tie else 2], dtype=np.int64)
    b_won = codes == Outcome.B_WINS
    winner = np.where(b_won, second, first)
    loser = np.where(b_won, first, second)
    cell = kind_of_code[codes] * cells + winner * n_systems + loser

    def tally(values: FloatArray | None) -> tuple[FloatArray, FloatArray]:
        counts = np.bincount(cell, weights=values, minlength=3 * cells)[: 2 * cells].astype(np.float64)
        wins, half_of_ties = counts.reshape(2, n_systems, n_systems)
        return wins, half_of_ties + half_of_ties.T

    win_counts, tie_counts = tally(None)
    if battle_weights is None:
        return OutcomeTable(win_counts, tie_counts, win_counts, tie_counts, win_counts, tie_counts)
    wins, ties = tally(battle_weights)
    win_squared_weights, tie_squared_weights = tally(battle_weights**2)
    return OutcomeTable(wins, ties, win_counts, tie_counts, win_squared_weights, tie_squared_weights)


def integer_vector(values: ArrayLike) -> IntArray:
    array = np.asarray(values)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"expected integer codes, got {array.dtype}")
    return array.astype(np.int64, copy=False).ravel()


def validated_battles(
    model_a: ArrayLike,
    model_b: ArrayLike,
    outcome: ArrayLike,
    n_systems: int,
    weights: ArrayLike | None,
) -> tuple[IntArray, IntArray, IntArray, FloatArray | None]:
    """Battle arrays as int64 vectors (weights as float64, or None), after checking they make sense."""
    if n_systems < 1:
        raise ValueError("n_systems must be at least 1")
    first, second, codes = (integer_vector(values) for values in (model_a, model_b, outcome))
    if not (first.shape == second.shape == codes.shape):
        raise ValueError("model_a, model_b and outcome must have the same length")
    if first.size and (min(first.min(), second.min()) < 0 or max(first.max(), second.max()) >= n_systems):
        raise ValueError(f"system indices must lie in [0, {n_systems})")
    if np.any(first == second):
        raise ValueError("a system cannot battle itself (model_a == model_b)")
    check_outcome_codes(codes)
    return first, second, codes, validated_weights(weights, first.size)


def check_outcome_codes(codes: IntArray) -> None:
    if codes.size and (codes.min() < min(Outcome) or codes.max() > max(Outcome)):
        raise ValueError("outcome codes must be Outcome values (0 a wins, 1 b wins, 2 tie, 3 both bad)")


def validated_weights(weights: ArrayLike | None, battles: int) -> FloatArray | None:
    """Per-battle vote weights as float64 (None stays None), after checking there is one valid weight a battle."""
    if weights is None:
        return None
    battle_weights = np.asarray(weights, dtype=np.float64).ravel()
    if battle_weights.shape != (battles,):
        raise ValueError("weights must have one value per battle")
    if not np.all(np.isfinite(battle_weights)) or np.any(battle_weights < 0):
        raise ValueError("weights must be finite and non-negative")
    return battle_weights


def a_scores(codes: IntArray) -> FloatArray:
    """What each battle scores for side ``a``: 1 for a win, 0 for a loss, 1/2 for a tie or both bad."""
    return np.where(codes == Outcome.A_WINS, 1.0, np.where(codes == Outcome.B_WINS, 0.0, 0.5))


@dataclass(frozen=True)
class Pairs:
    """Upper-triangle view of an outcome table, one entry per pair of systems that met (``first < second``).

    Working on the pairs that met instead of the full matrix halves the arithmetic and keeps sparse
    comparison graphs cheap.
    """

    n_systems: int
    first: IntArray
    second: IntArray
    first_wins: FloatArray
    second_wins: FloatArray
    ties: FloatArray
    first_win_counts: FloatArray
    second_win_counts: FloatArray
    tie_counts: FloatArray
    first_win_squared_weights: FloatArray
    second_win_squared_weights: FloatArray
    tie_squared_weights: FloatArray

    @classmethod
    def from_table(cls, table: OutcomeTable) -> Pairs:
        first, second = np.nonzero(np.triu(table.battles > 0, k=1))
        return cls(
            n_systems=table.n_systems,
            first=first.astype(np.int64),
            second=second.astype(np.int64),
            first_wins=table.wins[first, second],
            second_wins=table.wins[second, first],
            ties=table.ties[first, second],
            first_win_counts=table.win_counts[first, second],
            second_win_counts=table.win_counts[second, first],
            tie_counts=table.tie_counts[first, second],
            first_win_squared_weights=table.win_squared_weights[first, second],
            second_win_squared_weights=table.win_squared_weights[second, first],
            tie_squared_weights=table.tie_squared_weights[first, second],
        )

    @property
    def comparisons(self) -> FloatArray:
        """Weighted battles of each pair."""
        return self.first_wins + self.second_wins + self.ties


def system_labels(systems: Sequence[Hashable] | None, n_systems: int) -> list[Hashable]:
    if systems is None:
        return list(range(n_systems))
    labels = list(systems)
    if len(labels) != n_systems:
        raise ValueError(f"systems has {len(labels)} labels for {n_systems} systems")
    return labels
