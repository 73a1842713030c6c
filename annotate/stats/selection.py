"""Active comparison selection: which pairs, judged next, would teach the leaderboard the most.

Pure functions on numpy arrays; the service (``annotate/services/selection.py``) turns pair rows into system
indices and writes the scores to ``Pair.priority``.

A pair of responses from systems ``a`` and ``b`` is worth judging in proportion to how much one more vote
would shrink the uncertainty of ``theta_a - theta_b``. Under Bradley-Terry one vote carries Fisher
information ``p (1 - p)`` about that difference (``p = sigmoid(theta_a - theta_b)``), so the expected
information gain of a vote, relative to what is known, is ``p (1 - p) * Var(theta_a - theta_b)``.
``Var(theta_a - theta_b)`` comes from the ratings' covariance: ``C[a, a] + C[b, b] - 2 C[a, b]``.

A leaderboard is a ranking, though, and information about a difference whose sign is already settled changes
no rank. So the gain is weighted by how much the two systems' order is still in doubt, ``2 * Phi(-|d| / s)``
(``d`` the rating difference, ``s`` its standard deviation): 1 when the two are level or unknown, towards 0
once one is clearly ahead. Early estimates are noisy, and a pair that merely looks settled must still be
revisited, so the weight never drops below ``ORDER_WEIGHT_FLOOR``.

The covariance is the model's (the inverse Fisher information of the comparisons made so far, with a weak
prior), not the sandwich estimate the leaderboard reports: the sandwich is robust for intervals, but with a
handful of votes its observed residuals can make a barely measured difference look certain by chance, and
selection would then never look at it again. ``bench/active_selection.py`` measures both choices.

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
from scipy.stats import norm

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# Prior precision on each log-strength: standard deviation 10 (as the ratings' separation prior), so systems
# never compared have a wide but finite variance.
PRIOR_PRECISION = 0.01
# The order weight's floor: a pair that looks settled keeps a fifth of its plain information gain.
ORDER_WEIGHT_FLOOR = 0.2


def fisher_covariance(
    battles: ArrayLike, theta: ArrayLike, *, prior_precision: float = PRIOR_PRECISION
) -> FloatArray:
    """Covariance of the log-strengths from the expected information of the comparisons made so far:
    ``(L + prior_precision * I)^-1`` with ``L`` the Laplacian of ``battles[i, j] * p_ij (1 - p_ij)``.

    ``battles`` is the symmetric matrix of comparisons between each two systems (``OutcomeTable.battles``).
    """
    counts = np.asarray(battles, dtype=np.float64)
    strengths = np.asarray(theta, dtype=np.float64).ravel()
    if counts.shape != (strengths.size, strengths.size):
        raise ValueError("battles must be a square matrix with one row per system in theta")
    if prior_precision <= 0:
        raise ValueError("prior_precision must be positive: systems never compared need a finite variance")
    probability = expit(strengths[:, None] - strengths[None, :])
    weights = counts * probability * (1.0 - probability)
    np.fill_diagonal(weights, 0.0)
    information = np.diag(weights.sum(axis=1)) - weights + prior_precision * np.eye(strengths.size)
    covariance = np.linalg.inv(information)
    return 0.5 * (covariance + covariance.T)


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


def order_uncertainty(difference: ArrayLike, variance: ArrayLike) -> FloatArray:
    """``2 * Phi(-|difference| / sqrt(variance))``: 1 when the two systems are level or nothing is known,
    towards 0 as one is ever more clearly ahead (twice the probability, under the normal approximation, that
    their order is the reverse of the current estimate)."""
    gap = np.abs(np.asarray(difference, dtype=np.float64))
    spread = np.sqrt(np.clip(np.asarray(variance, dtype=np.float64), 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(spread > 0, gap / np.where(spread > 0, spread, 1.0), np.where(gap > 0, np.inf, 0.0))
    return 2.0 * norm.sf(z)


def pair_priorities(
    system_a: ArrayLike,
    system_b: ArrayLike,
    open_slots: ArrayLike,
    theta: ArrayLike,
    covariance: ArrayLike,
    *,
    rank_aware: bool = True,
) -> FloatArray:
    """One priority per pair (higher first): the expected information gain of the pair's next vote, weighted by
    how much its systems' order is in doubt (``rank_aware``; see the module docstring), after the open slots
    of the same system pair that come before it (in input order) have been counted as judged.

    ``covariance`` is that of ``theta`` (e.g. :func:`fisher_covariance`).

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
    gain = information[order] * shrunk_variance
    if rank_aware:
        weight = order_uncertainty(strengths[first][order] - strengths[second][order], shrunk_variance)
        gain = gain * np.maximum(weight, ORDER_WEIGHT_FLOOR)
    priority[order] = gain
    return priority
