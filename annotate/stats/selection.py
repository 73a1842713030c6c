"""Active comparison selection: which pairs, judged next, would teach the leaderboard the most.

Pure functions on numpy arrays; the service (``annotate/services/selection.py``) turns pair rows into system
indices and writes the scores to ``Pair.priority``.

A pair of responses from systems ``a`` and ``b`` is worth judging in proportion to how much one more vote
would shrink the uncertainty of ``theta_a - theta_b``. Under Bradley-Terry one vote carries Fisher
information ``p (1 - p)`` about that difference (``p = sigmoid(theta_a - theta_b)``), so the expected
information gain of a vote, relative to what is known, is ``p (1 - p) * Var(theta_a - theta_b)``: large when
the two systems' order is both close and poorly measured, small when one clearly beats the other (``p`` near
0 or 1) or when their difference is already pinned down. ``Var(theta_a - theta_b)`` comes from the ratings'
covariance: ``C[a, a] + C[b, b] - 2 C[a, b]``.

Many pairs share the same two systems (one per prompt), and priorities are refreshed only every few dozen
judgments. Giving all of them the same score would send every annotator to the same two systems until the
next refresh; instead the ``k``-th open slot of a system pair is scored as if the ``k`` before it had been
judged already, with the variance shrunk accordingly (``1 / Var_k = 1 / Var + k p (1 - p)``), so the
handed-out order interleaves system pairs the way a fresh refit after every vote would.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def difference_variance(system_a: ArrayLike, system_b: ArrayLike, covariance: ArrayLike) -> FloatArray:
    """``Var(theta_a - theta_b)`` for each (a, b), from the covariance of the log-strengths."""
    first = np.asarray(system_a, dtype=np.int64).ravel()
    second = np.asarray(system_b, dtype=np.int64).ravel()
    matrix = np.asarray(covariance, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError("covariance must be a square matrix")
    if first.shape != second.shape:
        raise ValueError("system_a and system_b must have the same length")
    size = matrix.shape[0]
    if first.size and (min(first.min(), second.min()) < 0 or max(first.max(), second.max()) >= size):
        raise ValueError(f"system indices must lie in [0, {size})")
    variance = matrix[first, first] + matrix[second, second] - 2.0 * matrix[first, second]
    # Rounding can leave a tiny negative number where the difference is known exactly (a == b, say).
    return np.clip(variance, 0.0, None)


def expected_information_gain(
    system_a: ArrayLike, system_b: ArrayLike, theta: ArrayLike, covariance: ArrayLike
) -> FloatArray:
    """``p (1 - p) * Var(theta_a - theta_b)`` per (a, b): the share of the difference's uncertainty one vote
    removes (for small values; see the module docstring)."""
    first = np.asarray(system_a, dtype=np.int64).ravel()
    second = np.asarray(system_b, dtype=np.int64).ravel()
    strengths = np.asarray(theta, dtype=np.float64).ravel()
    variance = difference_variance(first, second, covariance)
    if strengths.size != np.asarray(covariance).shape[0]:
        raise ValueError("theta must have one value per row of the covariance")
    probability = expit(strengths[first] - strengths[second])
    return probability * (1.0 - probability) * variance


def pair_priorities(
    system_a: ArrayLike,
    system_b: ArrayLike,
    open_slots: ArrayLike,
    theta: ArrayLike,
    covariance: ArrayLike,
) -> FloatArray:
    """One priority per pair (higher first): the expected information gain of the pair's next vote, after the
    open slots of the same system pair that come before it (in input order) have been counted as judged.

    ``system_a``/``system_b`` are the pairs' system indices, ``open_slots`` how many more judgments each pair
    still takes (pairs with none get -1, below any open pair). Pairs keep their input order within a system
    pair, so callers pass them in the order they should be filled (e.g. fullest first, then by id).
    Unordered: (a, b) and (b, a) are the same system pair.
    """
    first = np.asarray(system_a, dtype=np.int64).ravel()
    second = np.asarray(system_b, dtype=np.int64).ravel()
    slots = np.asarray(open_slots, dtype=np.int64).ravel()
    strengths = np.asarray(theta, dtype=np.float64).ravel()
    if not (first.shape == second.shape == slots.shape):
        raise ValueError("system_a, system_b and open_slots must have the same length")
    priority = np.full(first.size, -1.0)
    is_open = slots > 0
    if not is_open.any():
        return priority
    variance = difference_variance(first, second, covariance)
    probability = expit(strengths[first] - strengths[second])
    information = probability * (1.0 - probability)

    # Votes already queued ahead of each open pair within its system pair: a cumulative sum of open slots
    # within groups, in input order.
    size = strengths.size
    low, high = np.minimum(first, second), np.maximum(first, second)
    group = low * size + high
    open_index = np.flatnonzero(is_open)
    order = open_index[np.argsort(group[open_index], kind="stable")]
    ordered_slots = slots[order]
    running = np.cumsum(ordered_slots) - ordered_slots
    group_start = np.r_[True, group[order][1:] != group[order][:-1]]
    start_offset = np.maximum.accumulate(np.where(group_start, running, 0))
    queued_before = running - start_offset

    with np.errstate(divide="ignore"):
        precision = np.where(variance[order] > 0, 1.0 / variance[order], np.inf)
    shrunk_variance = 1.0 / (precision + queued_before * information[order])
    priority[order] = information[order] * shrunk_variance
    return priority
