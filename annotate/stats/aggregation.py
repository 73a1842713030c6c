"""From individual votes to dataset labels: pure numpy, no Django.

Export services read judgments as arrays and call in; everything that decides what a pair's label is lives
here, so each rule can be tested on hand-made votes and benchmarked alone.

Conventions:

- A vote is one judgment of one pair, coded like ``annotate.stats.ratings.Outcome``: ``A`` (0), ``B`` (1),
  ``TIE`` (2), ``BOTH_BAD`` (3). NaN means "no vote" (e.g. a criterion the annotator did not answer) and is
  ignored.
- Pairs are dense indices ``0 .. pair_count-1`` (``units``), aligned with every per-pair result.
- Weights are per vote: 1.0 for plain majority, an annotator's reliability for the weighted rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

A, B, TIE, BOTH_BAD = 0, 1, 2, 3
OUTCOMES = 4
NO_LABEL = -1

Rule = Literal["majority", "unanimous", "weighted"]
TiedVote = Literal["drop", "tie"]
Keep = Literal["drop", "keep"]

# Weighted sums are compared at this many decimals, so that 0.1 + 0.2 and 0.3 count as a tied vote.
_WEIGHT_DECIMALS = 9


class Reason(IntEnum):
    """Why a pair has no row in the dataset (KEPT: it has one). Checked in this order."""

    KEPT = 0
    NO_VOTES = 1
    TOO_FEW_VOTES = 2
    NOT_UNANIMOUS = 3
    TIED_VOTE = 4
    LOW_AGREEMENT = 5
    TIE_DROPPED = 6
    BOTH_BAD_DROPPED = 7


@dataclass(frozen=True, slots=True)
class VoteTable:
    """Per pair: the weight of each outcome's votes, how many votes there were, and the strength they carry.

    ``weights[i, o]`` is the summed weight of pair ``i``'s votes for outcome ``o``; ``votes[i]`` counts the
    votes whatever their weight. ``strength_sum[i]`` / ``strength_weight[i]`` is the weighted mean signed
    strength in A's favour (A by s is +s, B by s is -s, a tie is 0; "both bad" and sided votes without a
    strength are left out). ``counts[i, o]`` counts votes per outcome, unweighted (for agreement statistics).
    """

    weights: NDArray[np.float64]
    counts: NDArray[np.int64]
    votes: NDArray[np.int64]
    strength_sum: NDArray[np.float64]
    strength_weight: NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Labels:
    """One entry per pair. ``label`` is A or B (a preference), TIE (a tie row: "both bad" kept, a tie kept, or
    a tied vote kept as a tie) or NO_LABEL, in which case ``reason`` says why.

    ``agreement`` is the weighted share of the votes that went to the winning outcome; ``share_a`` is the
    soft label P(A preferred), ties and "both bad" counting half to each side (0.5 exactly for tie rows);
    ``margin_a`` is the mean signed strength in A's favour (0 for tie rows and when no vote has a strength).
    """

    label: NDArray[np.int64]
    reason: NDArray[np.int64]
    votes: NDArray[np.int64]
    agreement: NDArray[np.float64]
    share_a: NDArray[np.float64]
    margin_a: NDArray[np.float64]


def vote_table(
    *,
    units: ArrayLike,
    choices: ArrayLike,
    pair_count: int,
    weights: ArrayLike | None = None,
    strength: ArrayLike | None = None,
) -> VoteTable:
    """Sums the votes of each pair. ``units`` are pair indices, ``choices`` outcome codes (NaN: no vote)."""
    unit = np.asarray(units, dtype=np.int64).ravel()
    choice = np.asarray(choices, dtype=np.float64).ravel()
    weight = np.ones(unit.size) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    signed_strength = (
        np.full(unit.size, np.nan) if strength is None else np.asarray(strength, dtype=np.float64).ravel()
    )
    if not (unit.shape == choice.shape == weight.shape == signed_strength.shape):
        raise ValueError("units, choices, weights and strength must have the same length")
    if unit.size and (unit.min() < 0 or unit.max() >= pair_count):
        raise ValueError("units must be pair indices in 0 .. pair_count-1")
    if np.any(weight < 0) or not np.all(np.isfinite(weight)):
        raise ValueError("weights must be finite and non-negative")
    present = ~np.isnan(choice)
    if np.any((choice[present] < 0) | (choice[present] >= OUTCOMES) | (choice[present] % 1 != 0)):
        raise ValueError("choices must be outcome codes 0..3 or NaN")
    unit, code, weight, signed_strength = (
        unit[present],
        choice[present].astype(np.int64),
        weight[present],
        signed_strength[present],
    )

    cell = unit * OUTCOMES + code
    table = np.bincount(cell, weights=weight, minlength=pair_count * OUTCOMES).reshape(pair_count, OUTCOMES)
    counts = np.bincount(cell, minlength=pair_count * OUTCOMES).reshape(pair_count, OUTCOMES).astype(np.int64)
    votes = counts.sum(axis=1)

    signed = np.full(unit.size, np.nan)
    signed[code == A] = signed_strength[code == A]
    signed[code == B] = -signed_strength[code == B]
    signed[code == TIE] = 0.0
    has_strength = ~np.isnan(signed)
    strength_sum = np.bincount(
        unit[has_strength], weights=signed[has_strength] * weight[has_strength], minlength=pair_count
    )
    strength_weight = np.bincount(unit[has_strength], weights=weight[has_strength], minlength=pair_count)
    return VoteTable(table, counts, votes.astype(np.int64), strength_sum, strength_weight)


def label_pairs(
    table: VoteTable,
    *,
    rule: Rule = "majority",
    tied_vote: TiedVote = "drop",
    min_votes: int = 1,
    min_agreement: float = 0.0,
    ties: Keep = "drop",
    both_bad: Keep = "drop",
) -> Labels:
    """Turns each pair's votes into a label, or a reason it has none.

    The winning outcome is the one with the most (weighted) votes; ``rule="weighted"`` only means the table
    was built with reliability weights, and ``"unanimous"`` keeps only pairs whose votes all agree. Checks, in
    order: no votes, fewer than ``min_votes`` (counted unweighted), not unanimous, a tied vote (two outcomes
    share the top weight: dropped, or with ``tied_vote="tie"`` labelled a tie), an agreement share below
    ``min_agreement``, then a winning tie or "both bad", which is dropped or kept as a tie row.
    """
    if rule not in ("majority", "unanimous", "weighted"):
        raise ValueError(f"unknown rule {rule!r}")
    weights = table.weights
    pair_count = weights.shape[0]
    total = weights.sum(axis=1)
    rounded = np.round(weights, _WEIGHT_DECIMALS)
    top = rounded.max(axis=1) if pair_count else np.zeros(0)
    winners = (rounded == top[:, None]) & (top[:, None] > 0)
    winner_count = winners.sum(axis=1)
    winner = np.argmax(winners, axis=1).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        agreement = np.where(
            total > 0, weights[np.arange(pair_count), winner] / np.where(total > 0, total, 1.0), np.nan
        )
        share_a = np.where(
            total > 0,
            (weights[:, A] + 0.5 * (weights[:, TIE] + weights[:, BOTH_BAD]))
            / np.where(total > 0, total, 1.0),
            np.nan,
        )
        margin_a = np.where(
            table.strength_weight > 0,
            table.strength_sum / np.where(table.strength_weight > 0, table.strength_weight, 1.0),
            0.0,
        )

    reason = np.full(pair_count, Reason.KEPT, dtype=np.int64)
    label = winner.copy()

    def mark(condition: NDArray[np.bool_], why: Reason) -> None:
        reason[(reason == Reason.KEPT) & condition] = why

    mark(table.votes == 0, Reason.NO_VOTES)
    mark(table.votes < min_votes, Reason.TOO_FEW_VOTES)
    if rule == "unanimous":
        mark(table.counts.max(axis=1, initial=0) < table.votes, Reason.NOT_UNANIMOUS)
    tied = winner_count > 1
    if tied_vote == "tie":
        label[tied] = TIE
    else:
        mark(tied, Reason.TIED_VOTE)
    with np.errstate(invalid="ignore"):
        mark(agreement < min_agreement, Reason.LOW_AGREEMENT)
    mark(label == TIE if ties == "drop" else np.zeros(pair_count, dtype=bool), Reason.TIE_DROPPED)
    mark(
        label == BOTH_BAD if both_bad == "drop" else np.zeros(pair_count, dtype=bool), Reason.BOTH_BAD_DROPPED
    )

    label[label == BOTH_BAD] = TIE
    label[reason != Reason.KEPT] = NO_LABEL
    tie_rows = label == TIE
    share_a[tie_rows] = 0.5
    margin_a[tie_rows] = 0.0
    return Labels(label, reason, table.votes, agreement, share_a, margin_a)


def settle_labels(
    labels: Labels,
    table: VoteTable,
    *,
    settled: ArrayLike,
    outcomes: ArrayLike,
    ties: Keep = "drop",
    both_bad: Keep = "drop",
) -> Labels:
    """Pairs a lead settled (``settled``: pair indices, ``outcomes``: their outcome codes) take the lead's
    label whatever the votes say: no vote count, agreement share or unanimity can drop them, but a settled tie
    or "both bad" is dropped or kept as a tie row like any other (``ties``, ``both_bad``).

    A settled pair's ``share_a`` is the lead's certainty (1 for A, 0 for B, 0.5 for a tie row), its
    ``agreement`` the weighted share of the votes that went to the lead's outcome (0 with no votes), and its
    ``margin_a`` the votes' mean strength when it points the lead's way, else 0. Other pairs are unchanged.
    """
    unit = np.asarray(settled, dtype=np.int64).ravel()
    outcome = np.asarray(outcomes, dtype=np.int64).ravel()
    if unit.shape != outcome.shape:
        raise ValueError("settled and outcomes must have the same length")
    if np.any((outcome < 0) | (outcome >= OUTCOMES)):
        raise ValueError("outcomes must be outcome codes 0..3")
    label, reason = labels.label.copy(), labels.reason.copy()
    agreement, share_a, margin_a = labels.agreement.copy(), labels.share_a.copy(), labels.margin_a.copy()
    if not unit.size:
        return Labels(label, reason, labels.votes, agreement, share_a, margin_a)

    reason[unit] = Reason.KEPT
    if ties == "drop":
        reason[unit[outcome == TIE]] = Reason.TIE_DROPPED
    if both_bad == "drop":
        reason[unit[outcome == BOTH_BAD]] = Reason.BOTH_BAD_DROPPED
    final = np.where(outcome == BOTH_BAD, TIE, outcome)
    label[unit] = np.where(reason[unit] == Reason.KEPT, final, NO_LABEL)

    total = table.weights[unit].sum(axis=1)
    agreeing = table.weights[unit, outcome]
    agreement[unit] = np.divide(agreeing, total, out=np.zeros(unit.size), where=total > 0)
    share_a[unit] = np.select([final == A, final == B], [1.0, 0.0], 0.5)
    strength_weight = table.strength_weight[unit]
    votes_margin = np.divide(
        table.strength_sum[unit], strength_weight, out=np.zeros(unit.size), where=strength_weight > 0
    )
    same_way = ((final == A) & (votes_margin > 0)) | ((final == B) & (votes_margin < 0))
    margin_a[unit] = np.where(same_way, votes_margin, 0.0)
    return Labels(label, reason, labels.votes, agreement, share_a, margin_a)


def gold_accuracy(
    *, annotators: ArrayLike, choices: ArrayLike, gold: ArrayLike, annotator_count: int
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Per annotator index: the share of their gold-pair votes that match the gold answer (NaN with none),
    and how many gold-pair votes they have. Rows with NaN ``gold`` are not on gold pairs and are ignored."""
    annotator = np.asarray(annotators, dtype=np.int64).ravel()
    choice = np.asarray(choices, dtype=np.float64).ravel()
    answer = np.asarray(gold, dtype=np.float64).ravel()
    on_gold = ~np.isnan(answer) & ~np.isnan(choice)
    judged = np.bincount(annotator[on_gold], minlength=annotator_count).astype(np.int64)
    correct = np.bincount(
        annotator[on_gold], weights=choice[on_gold] == answer[on_gold], minlength=annotator_count
    )
    accuracy = np.divide(correct, judged, out=np.full(annotator_count, np.nan), where=judged > 0)
    return accuracy, judged


def reliability(accuracy: ArrayLike, judged: ArrayLike) -> NDArray[np.float64]:
    """An annotator's vote weight: gold accuracy with add-one smoothing, (correct + 1) / (judged + 2).

    An annotator with no gold votes weighs 0.5, like one with one right and one wrong: weighting never
    silences anyone on thin evidence, and with no gold pairs at all it is the plain majority."""
    accuracy = np.asarray(accuracy, dtype=np.float64)
    judged = np.asarray(judged, dtype=np.float64)
    correct = np.where(judged > 0, np.nan_to_num(accuracy) * judged, 0.0)
    return (correct + 1.0) / (judged + 2.0)


def coincidences(counts: ArrayLike) -> NDArray[np.float64]:
    """Krippendorff's coincidence matrix from per-pair vote counts (pairs x outcomes). Pairs with fewer than
    two votes are not pairable and add nothing. Sums over chunks of pairs, so it can be built incrementally."""
    table = np.asarray(counts, dtype=np.float64)
    per_pair = table.sum(axis=1)
    pairable = per_pair >= 2
    table, per_pair = table[pairable], per_pair[pairable]
    scaled = table / (per_pair - 1.0)[:, None]
    matrix = scaled.T @ table
    matrix[np.diag_indices_from(matrix)] -= scaled.sum(axis=0)
    return matrix


def nominal_alpha(coincidence: ArrayLike) -> float:
    """Krippendorff's alpha (nominal) from a coincidence matrix; NaN when there is no variation."""
    matrix = np.asarray(coincidence, dtype=np.float64)
    total = matrix.sum()
    if total <= 1:
        return float("nan")
    marginals = matrix.sum(axis=1)
    observed = total - np.trace(matrix)
    expected = (total * total - np.sum(marginals * marginals)) / (total - 1.0)
    if expected <= 0:
        return float("nan")
    return float(1.0 - observed / expected)


# ----------------------------------------------------------------------------------------------------------
# Train / test split


def _splitmix64(values: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """A fixed, well-mixed 64-bit hash (Steele et al.'s SplitMix64 finaliser); arithmetic wraps mod 2**64."""
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def split_by_prompt(
    *, prompts: ArrayLike, test_share: float, seed: int, strata: ArrayLike | None = None
) -> NDArray[np.bool_]:
    """Which prompts go to the test split: ``True`` for test. ``prompts`` are distinct integer ids.

    Each prompt gets a pseudo-random rank from a hash of (seed, prompt id), and the lowest-ranked prompts of
    each stratum form the test split. The test size is ``round(n * test_share)`` (but at least one prompt
    stays in train when ``test_share < 1``); with strata it is shared
    out by largest remainder so each stratum holds its proportion as closely as whole prompts allow. A
    prompt's rank does not depend on the other prompts, so adding data moves few prompts between splits.
    """
    ids = np.asarray(prompts, dtype=np.int64).ravel()
    if not 0.0 <= test_share <= 1.0:
        raise ValueError("test_share must be between 0 and 1")
    if np.unique(ids).size != ids.size:
        raise ValueError("prompts must be distinct")
    groups = (
        np.zeros(ids.size, dtype=np.int64) if strata is None else np.asarray(strata, dtype=np.int64).ravel()
    )
    if groups.shape != ids.shape:
        raise ValueError("strata must have one entry per prompt")
    is_test = np.zeros(ids.size, dtype=bool)
    if not ids.size or test_share == 0.0:
        return is_test

    seed_mix = _splitmix64(np.array([np.uint64(seed & 0xFFFFFFFFFFFFFFFF)], dtype=np.uint64))[0]
    rank = _splitmix64(ids.astype(np.uint64) ^ seed_mix)
    group_values, group = np.unique(groups, return_inverse=True)
    sizes = np.bincount(group, minlength=group_values.size)
    quotas = sizes * test_share
    wanted = int(np.floor(ids.size * test_share + 0.5))
    if test_share < 1.0:
        # A split that asks for any training data keeps at least one prompt for it.
        wanted = min(wanted, ids.size - 1)
    take = np.floor(quotas).astype(np.int64)
    remainder = quotas - take
    # Largest remainders first; among equal remainders, the earlier stratum.
    order = np.lexsort((np.arange(group_values.size), -remainder))
    extra = max(0, wanted - int(take.sum()))
    for index in order[:extra]:
        if take[index] < sizes[index]:
            take[index] += 1
    # Rank within each stratum: sort by (stratum, hash, id).
    ordered = np.lexsort((ids, rank, group))
    starts = np.cumsum(sizes) - sizes
    position = np.empty(ids.size, dtype=np.int64)
    position[ordered] = np.arange(ids.size) - starts[group[ordered]]
    is_test = position < take[group]
    return is_test
