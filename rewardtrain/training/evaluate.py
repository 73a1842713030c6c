"""Held-out evaluation of a reward model from its scores: numpy only, no torch.

``evaluate_scores`` takes the rewards of each pair's chosen and rejected response (and what the rows say
about each pair) and returns a JSON-serialisable report; metrics that the input cannot define are ``None``.

- accuracy: the chosen response scores strictly above the rejected one; equal scores count wrong, as in
  RewardBench. A pair whose vote share is below 0.5 counts right when the rejected response scores higher;
  ties (vote share 0.5) have no right answer and are left out of accuracy (they stay in the loss);
- loss: the training objective's per-pair loss (soft labels where a vote share is given);
- accuracy by agreement bucket: "unanimous" (agreement 1, or a vote share of 0 or 1) against "contested";
  a text ``agreement`` is its own bucket;
- calibration (Guo et al. 2017, "On Calibration of Modern Neural Networks"): the model prefers the response
  it scores higher with confidence max(p, 1 - p), p = sigma(r_c - r_r); confidences in equal-width bins
  (lower, upper] against the share of those pairs ranked right (as accuracy counts them), and
  ECE = sum_b (n_b / n) |accuracy_b - mean confidence_b| over the pairs with a right answer;
- agreement with soft labels, a separate figure: the Brier score mean((p - vote share)^2) of P(chosen
  preferred) against the vote share (1 for a plain preference);
- length bias: Pearson and Spearman correlation of reward with response length, accuracy where the chosen
  response is the shorter and where it is the longer, and how often the longer response scores higher;
- reward mean and std over all scored responses (stored in the model config to normalise rewards);
- histogram of chosen and rejected rewards on shared bin edges.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike


def _number(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(_log_sigmoid(x))


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    if len(x) < 2 or np.std(x) == 0 or np.std(y) == 0:
        return None
    return _number(np.corrcoef(x, y)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    # Ties share their mean rank.
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def _spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    if len(x) < 2:
        return None
    return _pearson(_ranks(x), _ranks(y))


def ranked_right(
    chosen: ArrayLike, rejected: ArrayLike, vote_share: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per pair, whether it is ranked right (equal scores are wrong) and whether it has a right answer (a tie
    in the label, vote share 0.5, has none)."""
    chosen, rejected = np.asarray(chosen, dtype=np.float64), np.asarray(rejected, dtype=np.float64)
    prefers_chosen = np.ones(len(chosen), dtype=bool)
    decided = np.ones(len(chosen), dtype=bool)
    if vote_share is not None:
        share = np.asarray(vote_share, dtype=np.float64)
        known = ~np.isnan(share)
        prefers_chosen = ~known | (share > 0.5)
        decided = ~known | (share != 0.5)
    return np.where(prefers_chosen, chosen > rejected, rejected > chosen), decided


def pairwise_accuracy(
    chosen: ArrayLike, rejected: ArrayLike, vote_share: ArrayLike | None = None
) -> float | None:
    """Share of pairs ranked right; equal scores are wrong; ties in the label are left out."""
    right, decided = ranked_right(chosen, rejected, vote_share)
    return _number(right[decided].mean()) if decided.any() else None


def expected_calibration_error(
    confidence: ArrayLike, correct: ArrayLike, bins: int = 10
) -> tuple[float | None, list[dict[str, Any]]]:
    """ECE of ``confidence`` (the probability given to the predicted answer) against ``correct`` (whether
    that answer was right, 1 or 0), in ``bins`` equal-width bins (lower, upper], with the bin table."""
    confidence, correct = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.searchsorted(edges[1:-1], confidence, side="left")
    table = []
    error = 0.0
    for b in range(bins):
        members = which == b
        count = int(members.sum())
        mean_confidence = _number(confidence[members].mean()) if count else None
        accuracy = _number(correct[members].mean()) if count else None
        if count:
            error += count / len(confidence) * abs(accuracy - mean_confidence)
        table.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "count": count,
                "confidence": mean_confidence,
                "accuracy": accuracy,
            }
        )
    return (_number(error) if len(confidence) else None), table


def _bucket(agreement: Any, vote_share: float) -> str | None:
    if isinstance(agreement, str):
        return agreement
    if agreement is not None and np.isfinite(agreement):
        return "unanimous" if agreement >= 1.0 - 1e-9 else "contested"
    if np.isfinite(vote_share):
        return "unanimous" if vote_share in (0.0, 1.0) else "contested"
    return None


def evaluate_scores(
    chosen: ArrayLike,
    rejected: ArrayLike,
    *,
    vote_share: ArrayLike | None = None,
    agreement: Sequence[Any] | None = None,
    margin: ArrayLike | None = None,
    chosen_length: ArrayLike | None = None,
    rejected_length: ArrayLike | None = None,
    calibration_bins: int = 10,
    histogram_bins: int = 20,
) -> dict[str, Any]:
    """The evaluation report for pairs scored ``chosen`` and ``rejected`` (see the module docstring)."""
    chosen, rejected = np.asarray(chosen, dtype=np.float64), np.asarray(rejected, dtype=np.float64)
    if chosen.shape != rejected.shape or chosen.ndim != 1:
        raise ValueError("chosen and rejected must be 1-D arrays of the same length")
    count = len(chosen)
    share = np.full(count, np.nan) if vote_share is None else np.asarray(vote_share, dtype=np.float64)
    margins = np.zeros(count) if margin is None else np.asarray(margin, dtype=np.float64)
    difference = chosen - rejected
    target = np.where(np.isnan(share), 1.0, share)
    shifted = difference - margins
    losses = -(target * _log_sigmoid(shifted) + (1 - target) * _log_sigmoid(-shifted))
    predicted = _sigmoid(difference)
    right, decided = ranked_right(chosen, rejected, share)
    confidence = np.maximum(predicted, 1.0 - predicted)
    ece, calibration = expected_calibration_error(confidence[decided], right[decided], calibration_bins)

    by_agreement: dict[str, dict[str, Any]] = {}
    if agreement is not None or vote_share is not None:
        agreement = list(agreement) if agreement is not None else [None] * count
        buckets = np.array([_bucket(a, s) for a, s in zip(agreement, share, strict=True)], dtype=object)
        for name in sorted({b for b in buckets if b is not None}):
            members = buckets == name
            by_agreement[name] = {
                "count": int(members.sum()),
                "accuracy": pairwise_accuracy(chosen[members], rejected[members], share[members]),
            }

    length_bias: dict[str, Any] = {}
    if chosen_length is not None and rejected_length is not None:
        chosen_length = np.asarray(chosen_length, dtype=np.float64)
        rejected_length = np.asarray(rejected_length, dtype=np.float64)
        rewards = np.concatenate([chosen, rejected])
        lengths = np.concatenate([chosen_length, rejected_length])
        shorter, longer = chosen_length < rejected_length, chosen_length > rejected_length
        differ = chosen_length != rejected_length
        longer_scores_higher = np.where(chosen_length > rejected_length, chosen > rejected, rejected > chosen)
        length_bias = {
            "pearson": _pearson(rewards, lengths),
            "spearman": _spearman(rewards, lengths),
            "accuracy_when_chosen_shorter": (
                pairwise_accuracy(chosen[shorter], rejected[shorter], share[shorter])
                if shorter.any()
                else None
            ),
            "count_chosen_shorter": int(shorter.sum()),
            "accuracy_when_chosen_longer": (
                pairwise_accuracy(chosen[longer], rejected[longer], share[longer]) if longer.any() else None
            ),
            "count_chosen_longer": int(longer.sum()),
            "longer_scores_higher": _number(longer_scores_higher[differ].mean()) if differ.any() else None,
        }

    all_rewards = np.concatenate([chosen, rejected])
    histogram: dict[str, Any] = {"edges": [], "chosen": [], "rejected": []}
    if count:
        low, high = float(all_rewards.min()), float(all_rewards.max())
        if low == high:
            low, high = low - 0.5, high + 0.5
        edges = np.linspace(low, high, histogram_bins + 1)
        histogram = {
            "edges": edges.tolist(),
            "chosen": np.histogram(chosen, edges)[0].tolist(),
            "rejected": np.histogram(rejected, edges)[0].tolist(),
        }
    return {
        "count": count,
        "label_ties": int((share == 0.5).sum()),
        "accuracy": pairwise_accuracy(chosen, rejected, share) if count else None,
        "loss": _number(losses.mean()) if count else None,
        "mean_difference": _number(difference.mean()) if count else None,
        "equal_scores": int((difference == 0).sum()),
        "by_agreement": by_agreement,
        "ece": ece,
        "brier": _number(np.mean((predicted - target) ** 2)) if count else None,
        "calibration": calibration,
        "length_bias": length_bias,
        "reward_mean": _number(all_rewards.mean()) if count else None,
        "reward_std": _number(all_rewards.std()) if count else None,
        "histogram": histogram,
    }
