"""Votes to labels, on hand-made votes whose labels can be checked by eye; the split by prompt; the
coincidence-matrix alpha against the reference package."""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annotate.stats.aggregation import (
    BOTH_BAD,
    NO_LABEL,
    TIE,
    A,
    B,
    Reason,
    coincidences,
    gold_accuracy,
    label_pairs,
    nominal_alpha,
    reliability,
    settle_labels,
    split_by_prompt,
    vote_table,
)

CODE = {"a": A, "b": B, "tie": TIE, "both_bad": BOTH_BAD}


def table_of(
    *pairs: list[str], strengths: list[list[float]] | None = None, weights: list[list[float]] | None = None
):
    """A vote table from each pair's votes, e.g. table_of(["a", "a", "b"], ["tie"])."""
    units = [index for index, votes in enumerate(pairs) for _ in votes]
    choices = [CODE[vote] for votes in pairs for vote in votes]
    strength = None if strengths is None else [value for row in strengths for value in row]
    weight = None if weights is None else [value for row in weights for value in row]
    return vote_table(units=units, choices=choices, pair_count=len(pairs), strength=strength, weights=weight)


def test_the_majority_wins_and_its_share_is_the_agreement():
    labels = label_pairs(table_of(["a", "a", "b"], ["b", "b", "b", "a"], ["b"]))

    assert labels.label.tolist() == [A, B, B]
    assert labels.reason.tolist() == [Reason.KEPT] * 3
    assert labels.agreement.tolist() == pytest.approx([2 / 3, 3 / 4, 1.0])
    assert labels.votes.tolist() == [3, 4, 1]


def test_the_soft_label_counts_ties_and_both_bad_as_half_to_each_side():
    labels = label_pairs(table_of(["a", "a", "tie", "both_bad"], ["b", "b", "a"]))

    assert labels.share_a.tolist() == pytest.approx([(2 + 0.5 + 0.5) / 4, 1 / 3])


def test_a_tied_vote_is_dropped_or_becomes_a_tie_row():
    table = table_of(["a", "b"], ["a", "b", "tie"], ["a", "a", "b"])

    dropped = label_pairs(table)
    kept = label_pairs(table, tied_vote="tie", ties="keep")

    assert dropped.reason.tolist() == [Reason.TIED_VOTE, Reason.TIED_VOTE, Reason.KEPT]
    assert dropped.label.tolist() == [NO_LABEL, NO_LABEL, A]
    assert kept.label.tolist() == [TIE, TIE, A]
    assert kept.share_a.tolist()[:2] == [0.5, 0.5]


def test_winning_ties_and_both_bad_are_dropped_or_kept_as_tie_rows():
    table = table_of(["tie", "tie", "a"], ["both_bad", "both_bad", "b"])

    assert label_pairs(table).reason.tolist() == [Reason.TIE_DROPPED, Reason.BOTH_BAD_DROPPED]
    kept = label_pairs(table, ties="keep", both_bad="keep")
    assert kept.label.tolist() == [TIE, TIE]
    # A tie row is a coin flip by definition, whatever minority vote it had.
    assert kept.share_a.tolist() == [0.5, 0.5]
    assert kept.margin_a.tolist() == [0.0, 0.0]
    only_ties = label_pairs(table, ties="keep")
    assert only_ties.reason.tolist() == [Reason.KEPT, Reason.BOTH_BAD_DROPPED]


def test_unanimous_keeps_only_pairs_whose_votes_all_agree():
    labels = label_pairs(table_of(["a", "a", "a"], ["a", "a", "b"], ["b"]), rule="unanimous")

    assert labels.label.tolist() == [A, NO_LABEL, B]
    assert labels.reason[1] == Reason.NOT_UNANIMOUS


def test_min_votes_drops_pairs_with_fewer_votes_and_pairs_without_votes_are_told_apart():
    labels = label_pairs(table_of(["a", "a", "a"], ["b", "b"], []), min_votes=3)

    assert labels.reason.tolist() == [Reason.KEPT, Reason.TOO_FEW_VOTES, Reason.NO_VOTES]


def test_min_agreement_drops_pairs_whose_winner_has_a_smaller_share():
    labels = label_pairs(table_of(["a", "a", "a", "b"], ["a", "a", "b"]), min_agreement=0.7)

    assert labels.reason.tolist() == [Reason.KEPT, Reason.LOW_AGREEMENT]


def test_reliability_weights_let_a_reliable_minority_win():
    # Two unreliable annotators say A, one reliable annotator says B.
    weights = [[0.3, 0.3, 0.9]]
    plain = label_pairs(table_of(["a", "a", "b"]))
    weighted = label_pairs(table_of(["a", "a", "b"], weights=weights), rule="weighted")

    assert plain.label.tolist() == [A]
    assert weighted.label.tolist() == [B]
    assert weighted.agreement.tolist() == pytest.approx([0.9 / 1.5])


def test_weighted_sums_that_differ_only_by_rounding_are_a_tied_vote():
    labels = label_pairs(table_of(["a", "a", "b"], weights=[[0.1, 0.2, 0.3]]), rule="weighted")

    assert labels.reason.tolist() == [Reason.TIED_VOTE]


def test_margin_is_the_mean_signed_strength_and_ignores_votes_without_one():
    table = table_of(
        ["a", "a", "b", "tie", "both_bad"], ["b", "b"], strengths=[[3, 1, 2, np.nan, np.nan], [np.nan, 2]]
    )

    labels = label_pairs(table)

    # (3 + 1 - 2 + 0) / 4 in A's favour; B by 2 is -2 (the strength-less vote is left out).
    assert labels.margin_a.tolist() == pytest.approx([0.5, -2.0])


def test_votes_without_a_choice_are_ignored():
    table = vote_table(units=[0, 0, 0], choices=[A, np.nan, B], pair_count=1)

    assert table.votes.tolist() == [2]


def test_malformed_votes_are_refused():
    with pytest.raises(ValueError, match="outcome codes"):
        vote_table(units=[0], choices=[7], pair_count=1)
    with pytest.raises(ValueError, match="pair indices"):
        vote_table(units=[3], choices=[A], pair_count=1)
    with pytest.raises(ValueError, match="non-negative"):
        vote_table(units=[0], choices=[A], pair_count=1, weights=[-1.0])


def test_gold_accuracy_counts_only_votes_on_gold_pairs():
    accuracy, judged = gold_accuracy(
        annotators=[0, 0, 0, 1, 1, 2],
        choices=[A, B, A, A, A, B],
        gold=[A, A, np.nan, A, A, np.nan],
        annotator_count=3,
    )

    assert accuracy[:2].tolist() == [0.5, 1.0]
    assert np.isnan(accuracy[2])
    assert judged.tolist() == [2, 2, 0]


def test_reliability_is_smoothed_gold_accuracy_and_a_half_without_gold():
    assert reliability([1.0, 0.0, np.nan], [8, 2, 0]).tolist() == pytest.approx([0.9, 0.25, 0.5])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from([A, B, TIE, BOTH_BAD]), min_size=0, max_size=5), min_size=1, max_size=25
    )
)
def test_alpha_from_the_coincidences_of_vote_counts_matches_the_krippendorff_package(pairs):
    table = vote_table(
        units=[index for index, votes in enumerate(pairs) for _ in votes],
        choices=[vote for votes in pairs for vote in votes],
        pair_count=len(pairs),
    )
    # Split the pairs in two chunks: coincidences add up.
    middle = len(pairs) // 2
    ours = nominal_alpha(coincidences(table.counts[:middle]) + coincidences(table.counts[middle:]))

    width = max((len(votes) for votes in pairs), default=0)
    matrix = np.full((max(width, 1), len(pairs)), np.nan)
    for unit, votes in enumerate(pairs):
        matrix[: len(votes), unit] = votes
    pairable = sum(len(votes) for votes in pairs if len(votes) >= 2)
    values = {vote for votes in pairs if len(votes) >= 2 for vote in votes}
    if pairable < 2 or len(values) < 2:
        assert np.isnan(ours)
    else:
        reference = krippendorff.alpha(
            reliability_data=matrix, level_of_measurement="nominal", value_domain=[0, 1, 2, 3]
        )
        assert ours == pytest.approx(reference, abs=1e-9)


# Split ------------------------------------------------------------------------------------------------------


def test_the_split_has_the_asked_share_is_seeded_and_deterministic():
    prompts = np.arange(1, 1001) * 7

    first = split_by_prompt(prompts=prompts, test_share=0.1, seed=0)
    again = split_by_prompt(prompts=prompts, test_share=0.1, seed=0)
    other = split_by_prompt(prompts=prompts, test_share=0.1, seed=1)

    assert first.sum() == 100
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_stratification_gives_each_category_its_share_by_largest_remainder():
    strata = np.repeat([0, 1, 2], [50, 30, 20])
    is_test = split_by_prompt(prompts=np.arange(100), test_share=0.25, seed=3, strata=strata)

    per_stratum = [int(is_test[strata == group].sum()) for group in range(3)]
    # 12.5, 7.5 and 5: 25 in all, the half prompts going to the largest remainders (first stratum first).
    assert sum(per_stratum) == 25
    assert per_stratum in ([13, 7, 5], [12, 8, 5])


def test_adding_prompts_moves_few_prompts_between_splits():
    small = split_by_prompt(prompts=np.arange(1000), test_share=0.2, seed=0)
    large = split_by_prompt(prompts=np.arange(1100), test_share=0.2, seed=0)

    moved_to_train = np.count_nonzero(small & ~large[:1000])
    assert moved_to_train <= 5


def test_a_split_that_wants_training_data_keeps_at_least_one_training_prompt():
    assert split_by_prompt(prompts=[5], test_share=0.9, seed=0).tolist() == [False]
    assert split_by_prompt(prompts=[5, 6], test_share=0.9, seed=0).sum() == 1
    assert split_by_prompt(prompts=[5, 6], test_share=1.0, seed=0).tolist() == [True, True]


def test_settled_pairs_take_the_leads_label_whatever_the_votes_say():
    # Pair 0: A by 2-1 with strengths, settled B; pair 1: a tied vote, settled A; pair 2: no votes, settled
    # tie; pair 3: no votes, settled both bad; pair 4: unsettled, B unanimous.
    table = vote_table(
        units=[0, 0, 0, 1, 1, 4, 4],
        choices=[A, A, B, A, B, B, B],
        strength=[2, 2, 1, 1, 1, np.nan, np.nan],
        pair_count=5,
    )
    labels = label_pairs(table, min_votes=2)
    settled = settle_labels(
        labels, table, settled=[0, 1, 2, 3], outcomes=[B, A, TIE, BOTH_BAD], ties="keep", both_bad="drop"
    )
    assert settled.label.tolist() == [B, A, TIE, NO_LABEL, B]
    assert settled.reason.tolist() == [Reason.KEPT] * 3 + [Reason.BOTH_BAD_DROPPED, Reason.KEPT]
    assert settled.share_a[:3].tolist() == [0.0, 1.0, 0.5]
    assert settled.agreement[:3] == pytest.approx([1 / 3, 0.5, 0.0])
    # The votes' mean strength (A by 1) points against B: no margin; pair 1's points A's way (by 0).
    assert settled.margin_a[:2].tolist() == [0.0, 0.0]
    # The unsettled pair and the inputs are left alone.
    assert (settled.label[4], settled.share_a[4]) == (labels.label[4], labels.share_a[4])
    assert labels.label[2] == NO_LABEL


def test_a_settled_tie_follows_the_ties_policy_and_a_matching_margin_is_kept():
    table = vote_table(units=[0, 0], choices=[A, A], strength=[3, 1], pair_count=2)
    labels = label_pairs(table)
    settled = settle_labels(labels, table, settled=[0, 1], outcomes=[A, TIE], ties="drop")
    assert settled.label.tolist() == [A, NO_LABEL]
    assert settled.reason[1] == Reason.TIE_DROPPED
    assert settled.margin_a[0] == pytest.approx(2.0)
    with pytest.raises(ValueError):
        settle_labels(labels, table, settled=[0], outcomes=[7])
