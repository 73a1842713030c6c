"""Evaluation metrics on hand-made scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rewardtrain.training.evaluate import evaluate_scores, expected_calibration_error, pairwise_accuracy


def test_equal_scores_count_wrong():
    assert pairwise_accuracy([1.0, 0.5, 2.0, 0.0], [0.0, 0.5, 3.0, -1.0]) == pytest.approx(0.5)


def test_a_vote_share_below_one_half_means_the_rejected_response_should_win_and_ties_are_left_out():
    accuracy = pairwise_accuracy([1.0, 1.0, 5.0], [0.0, 2.0, 0.0], vote_share=[1.0, 0.2, 0.5])
    assert accuracy == pytest.approx(1.0)


def test_expected_calibration_error_on_a_known_case():
    # Bin (0.6, 0.7]: confidences 0.61 and 0.66 (mean 0.635), both right (accuracy 1): gap 0.365.
    # Bin (0.9, 1.0]: confidences 0.91 and 1.0 (mean 0.955), one right (accuracy 0.5): gap 0.455.
    ece, table = expected_calibration_error([0.61, 0.66, 0.91, 1.0], [1, 1, 1, 0], bins=10)
    assert ece == pytest.approx(0.5 * 0.365 + 0.5 * 0.455)
    assert [row["count"] for row in table] == [0, 0, 0, 0, 0, 0, 2, 0, 0, 2]
    assert table[6]["confidence"] == pytest.approx(0.635) and table[6]["accuracy"] == 1.0


def test_ece_compares_confidence_with_correctness_not_with_the_vote_share():
    # A single annotator's pairs (vote share 1 throughout): P(chosen) 0.75, 0.75, 0.25 and 0.95. The model
    # prefers the chosen, the chosen, the rejected (wrongly) and the chosen, with confidence 0.75, 0.75, 0.75
    # and 0.95. Bin (0.7, 0.8]: 3 pairs, confidence 0.75, 2 right: gap 1/12; bin (0.9, 1.0]: gap 0.05.
    differences = [math.log(3.0), math.log(3.0), -math.log(3.0), math.log(19.0)]
    report = evaluate_scores(differences, [0.0] * 4, vote_share=[1.0] * 4)
    assert report["accuracy"] == pytest.approx(0.75)
    assert report["ece"] == pytest.approx(0.75 * (0.75 - 2 / 3) + 0.25 * 0.05)
    # Agreement with the soft labels is its own figure: the Brier score against the vote share.
    assert report["brier"] == pytest.approx((0.25**2 + 0.25**2 + 0.75**2 + 0.05**2) / 4)


def test_the_report_calibration_matches_a_binned_ece_computed_with_scikit_learn():
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(0)
    chosen, rejected = rng.normal(0.3, 1.5, 400), rng.normal(0.0, 1.5, 400)
    share = rng.choice([1.0, 0.75, 0.5, 0.25, 0.0], 400)
    report = evaluate_scores(chosen, rejected, vote_share=share)

    decided = share != 0.5
    difference = (chosen - rejected)[decided]
    prefers_chosen = share[decided] > 0.5
    correct = np.where(prefers_chosen, difference > 0, difference < 0).astype(int)
    probability = 1 / (1 + np.exp(-difference))
    confidence = np.maximum(probability, 1 - probability)
    accuracy, mean_confidence = calibration_curve(correct, confidence, n_bins=10, strategy="uniform")
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, 11)[1:-1], confidence), minlength=10)
    expected = np.sum(counts[counts > 0] / len(confidence) * np.abs(accuracy - mean_confidence))
    assert report["ece"] == pytest.approx(expected)
    assert [b["count"] for b in report["calibration"]] == counts.tolist()
    probability_all = 1 / (1 + np.exp(-(chosen - rejected)))
    assert report["brier"] == pytest.approx(np.mean((probability_all - share) ** 2))


def test_a_tie_in_the_label_has_no_right_answer_and_stays_out_of_ece():
    difference = math.log(3.0)  # confidence 0.75
    report = evaluate_scores([difference, difference], [0.0, 0.0], vote_share=[0.75, 0.5])
    assert report["ece"] == pytest.approx(0.25)
    assert sum(b["count"] for b in report["calibration"]) == 1
    assert report["brier"] == pytest.approx((0.0 + 0.25**2) / 2)


def test_agreement_buckets_from_agreement_or_vote_share():
    report = evaluate_scores(
        [1.0, 0.0, 1.0, 0.0],
        [0.0, 1.0, 0.0, 0.0],
        agreement=[1.0, 1.0, 0.6, None],
        vote_share=[1, 1, 0.7, 0.8],
    )
    assert report["by_agreement"]["unanimous"] == {"count": 2, "accuracy": 0.5}
    assert report["by_agreement"]["contested"] == {"count": 2, "accuracy": 0.5}
    report = evaluate_scores([1.0], [0.0], agreement=["expert"])
    assert report["by_agreement"] == {"expert": {"count": 1, "accuracy": 1.0}}


def test_length_bias():
    report = evaluate_scores(
        [3.0, 1.0, 2.0, 0.0],
        [0.0, 2.0, 5.0, 1.0],
        chosen_length=[30, 10, 5, 5],
        rejected_length=[10, 20, 50, 1],
    )
    bias = report["length_bias"]
    assert bias["count_chosen_shorter"] == 2 and bias["accuracy_when_chosen_shorter"] == 0.0
    assert bias["count_chosen_longer"] == 2 and bias["accuracy_when_chosen_longer"] == 0.5
    assert bias["longer_scores_higher"] == pytest.approx(0.75)
    rewards = np.array([3.0, 1.0, 2.0, 0.0, 0.0, 2.0, 5.0, 1.0])
    lengths = np.array([30, 10, 5, 5, 10, 20, 50, 1])
    assert bias["pearson"] == pytest.approx(np.corrcoef(rewards, lengths)[0, 1])


def test_reward_statistics_loss_and_histogram():
    report = evaluate_scores([1.0, 3.0], [-1.0, 1.0], histogram_bins=4)
    assert report["reward_mean"] == pytest.approx(1.0)
    assert report["reward_std"] == pytest.approx(math.sqrt(2.0))
    assert report["loss"] == pytest.approx(math.log1p(math.exp(-2.0)))
    assert report["histogram"]["edges"] == [-1.0, 0.0, 1.0, 2.0, 3.0]
    assert report["histogram"]["chosen"] == [0, 0, 1, 1] and report["histogram"]["rejected"] == [1, 0, 1, 0]


def test_an_empty_report_has_no_numbers_but_serialises():
    import json

    report = evaluate_scores([], [])
    assert report["accuracy"] is None and report["ece"] is None and report["brier"] is None
    json.dumps(report)
