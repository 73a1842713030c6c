"""Pure math over reward-model scores (numpy/scipy, no ORM, no torch): agreement with human majorities,
length bias, drift between model versions, ensembles' scores and uncertainty, calibrated preference
probabilities, and uncertainty priorities for assisted annotation."""

from __future__ import annotations

from typing import Any

import numpy as np


def majority_agreement(score_a: np.ndarray, score_b: np.ndarray, majority: np.ndarray) -> dict[str, Any]:
    """Share of pairs whose human majority (+1: A preferred, -1: B preferred) has the sign of score_a -
    score_b. Equal scores count as wrong, as in training's accuracy."""
    difference = np.asarray(score_a, dtype=np.float64) - np.asarray(score_b, dtype=np.float64)
    majority = np.asarray(majority)
    count = int(majority.size)
    correct = int(np.sum(np.sign(difference) == majority))
    return {"count": count, "correct": correct, "accuracy": correct / count if count else None}


def length_bias(
    scores: np.ndarray,
    lengths: np.ndarray,
    chosen_score: np.ndarray | None = None,
    rejected_score: np.ndarray | None = None,
    chosen_length: np.ndarray | None = None,
    rejected_length: np.ndarray | None = None,
) -> dict[str, Any]:
    """Spearman correlation of score with length over responses, and, over human-decided pairs, the accuracy
    where the chosen response is the shorter one (a model that learnt "longer is better" fails there)."""
    from scipy.stats import spearmanr

    scores, lengths = np.asarray(scores, dtype=np.float64), np.asarray(lengths, dtype=np.float64)
    report: dict[str, Any] = {"responses": int(scores.size), "spearman": None, "pairs_chosen_shorter": 0}
    if scores.size >= 3 and np.ptp(scores) > 0 and np.ptp(lengths) > 0:
        report["spearman"] = float(spearmanr(scores, lengths).statistic)
    report["accuracy_when_chosen_shorter"] = None
    report["accuracy_when_chosen_longer"] = None
    if chosen_score is not None and len(chosen_score):
        right = np.asarray(chosen_score) > np.asarray(rejected_score)
        shorter = np.asarray(chosen_length) < np.asarray(rejected_length)
        longer = np.asarray(chosen_length) > np.asarray(rejected_length)
        report["pairs_chosen_shorter"] = int(shorter.sum())
        report["pairs_chosen_longer"] = int(longer.sum())
        if shorter.any():
            report["accuracy_when_chosen_shorter"] = float(right[shorter].mean())
        if longer.any():
            report["accuracy_when_chosen_longer"] = float(right[longer].mean())
    return report


def score_drift(before: np.ndarray, after: np.ndarray, *, bins: int = 30) -> dict[str, Any]:
    """How far two versions' score distributions over the same responses moved: the two-sample KS statistic
    on standardised scores (each version's scale is arbitrary), the overlap of their histograms (1 = same
    shape), and the Spearman rank correlation of the responses' scores (1 = same order)."""
    from scipy.stats import ks_2samp, spearmanr

    before, after = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    if before.size < 2 or after.size < 2:
        return {"count": int(min(before.size, after.size)), "ks": None, "overlap": None, "spearman": None}

    def standard(values: np.ndarray) -> np.ndarray:
        spread = values.std()
        return (values - values.mean()) / spread if spread > 0 else values - values.mean()

    a, b = standard(before), standard(after)
    edges = np.histogram_bin_edges(np.concatenate([a, b]), bins=bins)
    ha, _ = np.histogram(a, bins=edges)
    hb, _ = np.histogram(b, bins=edges)
    overlap = float(np.minimum(ha / ha.sum(), hb / hb.sum()).sum())
    same = before.size == after.size
    return {
        "count": int(min(before.size, after.size)),
        "ks": float(ks_2samp(a, b).statistic),
        "overlap": overlap,
        "spearman": float(spearmanr(before, after).statistic)
        if same and np.ptp(before) > 0 and np.ptp(after) > 0
        else None,
        "histogram": {"edges": edges.tolist(), "before": ha.tolist(), "after": hb.tolist()},
    }


def ensemble_scores(member_rewards: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(score, uncertainty) of each response from its members' centred rewards, shape (members, responses):
    the members' mean, and their standard deviation (population, so identical members give 0); a single
    model has no uncertainty (None)."""
    rewards = np.asarray(member_rewards, dtype=np.float64)
    if rewards.ndim != 2 or rewards.shape[0] < 1:
        raise ValueError("member rewards must be a (members, responses) array")
    if rewards.shape[0] == 1:
        return rewards[0], None
    return rewards.mean(axis=0), rewards.std(axis=0)


def preference_probability(difference: np.ndarray, temperature: float | None = None) -> np.ndarray:
    """P(first preferred) = sigmoid(difference / temperature), the model's calibrated temperature (1 when the
    model has none)."""
    scaled = np.asarray(difference, dtype=np.float64) / (temperature or 1.0)
    return np.exp(-np.logaddexp(0.0, -scaled))


def win_probabilities(raw: np.ndarray, temperature: float | None = None) -> np.ndarray | None:
    """Per response, the mean calibrated probability that it is preferred to each other response of the same
    request; None with fewer than two responses."""
    raw = np.asarray(raw, dtype=np.float64)
    if raw.size < 2:
        return None
    matrix = preference_probability(raw[:, None] - raw[None, :], temperature)
    return (matrix.sum(axis=1) - np.diag(matrix)) / (raw.size - 1)


def model_uncertainty_priorities(
    score_a: np.ndarray,
    score_b: np.ndarray,
    vote_balance: np.ndarray,
    *,
    disagreement_boost: float = 1.0,
    uncertainty_a: np.ndarray | None = None,
    uncertainty_b: np.ndarray | None = None,
    temperature: float | None = None,
) -> np.ndarray:
    """Priority of each pair for the "uncertain_model" strategy: -|r_a - r_b| (least certain first), plus
    ``disagreement_boost`` times |r_a - r_b| where the first votes (``vote_balance``: votes for A minus votes
    for B) go against the model, so a confident disagreement ranks with the most uncertain pairs. NaN scores
    (unscored responses) give NaN.

    With an ensemble's uncertainties, the margin is measured in units of its whole uncertainty,
    |r_a - r_b| / sqrt(T^2 + u_a^2 + u_b^2) (T the calibrated temperature, the spread the model gives any
    preference): a pair the members disagree on comes before one with the same mean margin they agree on.
    Without uncertainties the order is that of -|r_a - r_b|."""
    difference = np.asarray(score_a, dtype=np.float64) - np.asarray(score_b, dtype=np.float64)
    if uncertainty_a is not None and uncertainty_b is not None:
        spread = np.sqrt(
            (temperature or 1.0) ** 2
            + np.nan_to_num(np.asarray(uncertainty_a, dtype=np.float64)) ** 2
            + np.nan_to_num(np.asarray(uncertainty_b, dtype=np.float64)) ** 2
        )
        difference = difference / spread
    priority = -np.abs(difference)
    balance = np.asarray(vote_balance, dtype=np.float64)
    disagrees = (balance != 0) & (np.sign(balance) != np.sign(difference))
    return np.where(disagrees, priority + disagreement_boost * np.abs(difference) + 1e-6, priority)


def normalise_scores(raw: np.ndarray, mean: float | None, std: float | None) -> np.ndarray | None:
    """(raw - mean) / std with a training run's reward statistics; None without usable statistics."""
    if mean is None or std is None or not np.isfinite(std) or std <= 0:
        return None
    return (np.asarray(raw, dtype=np.float64) - mean) / std
