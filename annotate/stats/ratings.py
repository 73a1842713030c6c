"""Bradley-Terry ratings, confidence intervals and Elo leaderboards from pairwise preference judgments.

Pure functions on numpy arrays. Services turn judgment rows into integer system indices
(``0 .. n_systems-1``) and :class:`Outcome` codes, call these functions and store the arrays they return;
nothing here imports Django.

The model
---------
System ``i`` has a log-strength ``theta[i]``; under Bradley-Terry it is preferred to system ``j`` with
probability ``sigmoid(theta[i] - theta[j])``. By default a tie counts as half a win for each side (Chatbot
Arena's convention), so the likelihood depends on the battles only through the table of wins and ties between
every pair of systems: a million battles among a hundred systems reduce to a 100 x 100 table, and the maximum
likelihood fit is a handful of Newton steps on a small, dense, concave problem.

``ties="davidson"`` models ties explicitly (Davidson, 1970), with one tie parameter ``nu`` for all pairs::

    P(i beats j) = pi_i / (pi_i + pi_j + nu * sqrt(pi_i * pi_j)),   pi = exp(theta)
    P(i ties j)  = nu * sqrt(pi_i * pi_j) / (pi_i + pi_j + nu * sqrt(pi_i * pi_j))

Log-strengths are defined only up to a common shift. ``theta`` sums to zero, or is zero at the ``anchor``
system. The Elo scale is ``rating = anchor_rating + 400 / ln(10) * theta``: a 400-point gap means 10:1 odds,
the anchor gets exactly ``anchor_rating`` and, without an anchor, the mean rating is ``anchor_rating``.

When the maximum likelihood estimate does not exist (the comparison graph is disconnected, or some system
never lost or never won, so its log-strength runs off to infinity) the fit says so in ``warnings`` and adds an
L2 penalty ``SEPARATION_L2 / 2 * |theta|^2``: a Gaussian prior with standard deviation 10 in log-strength
(about 1,700 Elo points), enough to keep every number finite while barely moving identified systems.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.special import expit, log_expit
from scipy.stats import norm

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


class Outcome(IntEnum):
    """Outcome code of one battle between system ``a`` and system ``b``."""

    A_WINS = 0
    B_WINS = 1
    TIE = 2
    BOTH_BAD = 3


ELO_SCALE = 400.0 / math.log(10.0)
DEFAULT_ANCHOR_RATING = 1000.0
# Gaussian prior precision on log-strengths used only when the data cannot identify them (module docstring).
SEPARATION_L2 = 0.01
# Per-prompt problems are tiny (often a single comparison), so they need a real prior: standard deviation
# sqrt(10) ~ 3.2 in log-strength, so one win gives the winner about +1.1 and the loser about -1.1.
PROMPT_SCORE_L2 = 0.1
# Bootstrap rounds are drawn and fitted in chunks, each with its own child random generator, so the result
# depends only on the seed and not on how many worker threads share the chunks.
BOOTSTRAP_CHUNK_ROUNDS = 50
_MAX_HALVINGS = 60
_CHORD_ITERATIONS = 30
_REUSE_FACTOR_BELOW = 1e-3
# Bootstrap rounds only feed percentiles: a hundred-millionth in log-strength (1e-6 Elo) is plenty.
_BOOTSTRAP_TOLERANCE = 1e-8
# Beyond this a chord iteration is running away (exp would overflow soon); Newton with line search takes over.
_CHORD_THETA_LIMIT = 50.0
# Bootstrap rounds are fitted as dense rounds x n x n arrays of at most this many entries (16 MB).
_DENSE_BATCH_ENTRIES = 2_000_000


# ------------------------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------------------------


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

    @classmethod
    def from_counts(cls, wins: ArrayLike, ties: ArrayLike | None = None) -> OutcomeTable:
        """Table from unweighted counts: ``wins[i, j]`` battles ``i`` won against ``j``; symmetric ties."""
        win_matrix = np.array(wins, dtype=np.float64)
        if win_matrix.ndim != 2 or win_matrix.shape[0] != win_matrix.shape[1]:
            raise ValueError("wins must be a square matrix")
        tie_matrix = np.zeros_like(win_matrix) if ties is None else np.array(ties, dtype=np.float64)
        if tie_matrix.shape != win_matrix.shape:
            raise ValueError("ties must have the same shape as wins")
        for name, matrix in (("wins", win_matrix), ("ties", tie_matrix)):
            if not np.all(np.isfinite(matrix)) or np.any(matrix < 0):
                raise ValueError(f"{name} must be finite and non-negative")
            if np.any(np.diagonal(matrix) != 0):
                raise ValueError(f"{name} must have a zero diagonal: a system cannot battle itself")
        if not np.allclose(tie_matrix, tie_matrix.T):
            raise ValueError("ties must be symmetric")
        return cls(win_matrix, tie_matrix, win_matrix.copy(), tie_matrix.copy(), win_matrix, tie_matrix)

    @property
    def n_systems(self) -> int:
        return int(self.wins.shape[0])

    @property
    def battles(self) -> FloatArray:
        """Battles between each pair of systems (symmetric), whatever their weight."""
        return self.win_counts + self.win_counts.T + self.tie_counts


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


@dataclass(frozen=True)
class CrowdBTResult:
    """Ratings and annotator reliabilities estimated jointly (see :func:`fit_crowd_bt`)."""

    ratings: RatingResult
    # eta_k: probability that annotator k's decisive vote agrees with the true Bradley-Terry ordering.
    reliability: FloatArray
    # Decisive votes per annotator: only they inform reliability.
    annotator_battles: IntArray
    converged: bool
    iterations: int
    warnings: list[str]


@dataclass(frozen=True)
class ResponseScores:
    """One score per (prompt, response): Bradley-Terry log-strength within its prompt (summing to zero)."""

    prompt: NDArray[Any]
    response: NDArray[Any]
    score: FloatArray
    battles: IntArray
    converged: bool
    iterations: int
    warnings: list[str]


# ------------------------------------------------------------------------------------------------------------
# Building the outcome table
# ------------------------------------------------------------------------------------------------------------


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
    first, second, codes, battle_weights = _validated_battles(model_a, model_b, outcome, n_systems, weights)
    # One bincount over "kind, winner, loser" cells (kind 0 decisive, 1 tie, 2 dropped) is several times
    # faster on a million battles than masking the arrays kind by kind.
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


def _integer_vector(values: ArrayLike) -> IntArray:
    array = np.asarray(values)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"expected integer codes, got {array.dtype}")
    return array.astype(np.int64, copy=False).ravel()


def _validated_battles(
    model_a: ArrayLike,
    model_b: ArrayLike,
    outcome: ArrayLike,
    n_systems: int,
    weights: ArrayLike | None,
) -> tuple[IntArray, IntArray, IntArray, FloatArray | None]:
    """Battle arrays as int64 vectors (weights as float64, or None), after checking they make sense."""
    if n_systems < 1:
        raise ValueError("n_systems must be at least 1")
    first, second, codes = (_integer_vector(values) for values in (model_a, model_b, outcome))
    if not (first.shape == second.shape == codes.shape):
        raise ValueError("model_a, model_b and outcome must have the same length")
    if first.size and (min(first.min(), second.min()) < 0 or max(first.max(), second.max()) >= n_systems):
        raise ValueError(f"system indices must lie in [0, {n_systems})")
    if np.any(first == second):
        raise ValueError("a system cannot battle itself (model_a == model_b)")
    if codes.size and (codes.min() < min(Outcome) or codes.max() > max(Outcome)):
        raise ValueError("outcome codes must be Outcome values (0 a wins, 1 b wins, 2 tie, 3 both bad)")
    if weights is None:
        return first, second, codes, None
    battle_weights = np.asarray(weights, dtype=np.float64).ravel()
    if battle_weights.shape != first.shape:
        raise ValueError("weights must have one value per battle")
    if not np.all(np.isfinite(battle_weights)) or np.any(battle_weights < 0):
        raise ValueError("weights must be finite and non-negative")
    return first, second, codes, battle_weights


# ------------------------------------------------------------------------------------------------------------
# Pair statistics: the table restricted to pairs that actually met
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pairs:
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
    def from_table(cls, table: OutcomeTable) -> _Pairs:
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


def _scatter(
    values: FloatArray, first: IntArray, second: IntArray, n_systems: int, sign: float
) -> FloatArray:
    """Per-system sums of per-pair values (problems x pairs): ``+value`` to ``first``, ``sign * value`` to
    ``second``. ``bincount`` on flattened indices is the fast, allocation-light scatter-add numpy offers."""
    problems = values.shape[0]
    offsets = (np.arange(problems, dtype=np.int64) * n_systems)[:, None]
    flat_values = values.ravel()
    size = problems * n_systems
    # bincount of nothing is an integer array: start from float zeros so empty pair lists work too.
    total = np.zeros(size)
    total += np.bincount((offsets + first).ravel(), weights=flat_values, minlength=size)
    total += sign * np.bincount((offsets + second).ravel(), weights=flat_values, minlength=size)
    return total.reshape(problems, n_systems)


def _laplacian(edge_weights: FloatArray, first: IntArray, second: IntArray, n_systems: int) -> FloatArray:
    """Weighted graph Laplacians (problems x n x n): the curvature of any pairwise-difference likelihood."""
    problems = edge_weights.shape[0]
    matrix = np.zeros((problems, n_systems * n_systems))
    matrix[:, first * n_systems + second] = -edge_weights
    matrix[:, second * n_systems + first] = -edge_weights
    matrix[:, :: n_systems + 1] = _scatter(edge_weights, first, second, n_systems, sign=1.0)
    return matrix.reshape(problems, n_systems, n_systems)


# ------------------------------------------------------------------------------------------------------------
# Newton's method, half-win ties (many problems at once: bootstrap rounds, prompts)
# ------------------------------------------------------------------------------------------------------------


def _cholesky(matrix: FloatArray) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Lower Cholesky factors of a batch of symmetric matrices (problems x n x n), and which were positive
    definite (a non-positive pivot is replaced by a tiny one so the factor stays finite).

    Written as n vectorised rank-one updates rather than calling LAPACK: numpy's multithreaded OpenBLAS
    takes tens of milliseconds instead of tens of microseconds on a 100 x 100 solve when other processes
    keep the cores busy (its worker threads spin waiting for each other), and a web or Celery host is
    exactly such a machine. Problems here are small (a few hundred systems at most) or batched.
    """
    factor = np.array(matrix, dtype=np.float64)
    size = factor.shape[-1]
    positive = np.ones(factor.shape[0], dtype=bool)
    floor = 1e-13 * np.maximum(np.abs(np.diagonal(factor, axis1=1, axis2=2)).max(axis=1), 1e-300)
    for pivot_index in range(size):
        pivot = factor[:, pivot_index, pivot_index]
        positive &= pivot > floor
        root = np.sqrt(np.maximum(pivot, floor))
        factor[:, pivot_index, pivot_index] = root
        column = factor[:, pivot_index + 1 :, pivot_index] / root[:, None]
        factor[:, pivot_index + 1 :, pivot_index] = column
        factor[:, pivot_index + 1 :, pivot_index + 1 :] -= column[:, :, None] * column[:, None, :]
    return np.tril(factor), positive


def _solve_positive_definite(matrix: FloatArray, right_hand_side: FloatArray) -> FloatArray:
    """Solve ``matrix @ x = right_hand_side`` for a batch (problems x n x n, problems x n x m)."""
    return _solve_with_cholesky(_cholesky(matrix)[0], right_hand_side)


def _solve_with_cholesky(factor: FloatArray, right_hand_side: FloatArray) -> FloatArray:
    solution = np.array(right_hand_side, dtype=np.float64)
    size = factor.shape[-1]
    for row in range(size):
        solution[:, row] /= factor[:, row, row, None]
        solution[:, row + 1 :] -= factor[:, row + 1 :, row, None] * solution[:, None, row]
    for row in reversed(range(size)):
        solution[:, row] /= factor[:, row, row, None]
        solution[:, :row] -= factor[:, row, :row, None] * solution[:, None, row]
    return solution


def _inverse_positive_definite(matrix: FloatArray) -> FloatArray:
    size = matrix.shape[-1]
    inverse = _solve_positive_definite(matrix[None], np.eye(size)[None])[0]
    return 0.5 * (inverse + inverse.T)


def _half_ties_objective(
    theta: FloatArray,
    first: IntArray,
    second: IntArray,
    first_score: FloatArray,
    comparisons: FloatArray,
    l2: float,
) -> FloatArray:
    # first_score*log(s(d)) + second_score*log(s(-d)) == first_score*d - comparisons*log(1 + e^d)
    difference = theta[:, first] - theta[:, second]
    log_likelihood = (first_score * difference + comparisons * log_expit(-difference)).sum(axis=1)
    return log_likelihood - 0.5 * l2 * np.einsum("ij,ij->i", theta, theta)


def _newton_half_ties(
    first: IntArray,
    second: IntArray,
    n_systems: int,
    first_score: FloatArray,
    second_score: FloatArray,
    theta: FloatArray,
    l2: float,
    tolerance: float,
    max_iterations: int,
) -> tuple[FloatArray, NDArray[np.bool_], int]:
    """Maximise the (penalised) Bradley-Terry log-likelihood of every problem (row) at once.

    ``first_score`` holds, per problem and pair, the weighted wins of ``first`` over ``second`` plus half
    the ties. Newton's method with backtracking: the objective is concave, so every accepted step increases
    it and the iteration converges quadratically near the optimum. The gauge direction (all log-strengths
    shifted together) is removed by adding ``1/n`` to every Hessian entry; the gradient is orthogonal to it,
    so steps keep ``theta`` summing to zero. Returns theta, converged flags and the iterations used.
    """
    problems = first_score.shape[0]
    comparisons = first_score + second_score
    theta = theta - theta.mean(axis=1, keepdims=True)
    objective = _half_ties_objective(theta, first, second, first_score, comparisons, l2)
    converged = np.zeros(problems, dtype=bool)
    active = np.arange(problems)
    gauge_and_ridge = np.full((n_systems, n_systems), 1.0 / n_systems) + l2 * np.eye(n_systems)
    factor = None
    previous_step = np.inf
    iterations = 0
    while active.size and iterations < max_iterations:
        iterations += 1
        current = theta[active]
        score = first_score[active]
        count = comparisons[active]
        probability = expit(current[:, first] - current[:, second])
        gradient = _scatter(score - count * probability, first, second, n_systems, sign=-1.0) - l2 * current
        if factor is None or previous_step > _REUSE_FACTOR_BELOW:
            # Once steps are small the Hessian barely changes: reusing its factor makes each remaining
            # step a cheap solve and still converges (linearly, at a rate of about the last step size).
            hessian = _laplacian(count * probability * (1.0 - probability), first, second, n_systems)
            factor = _cholesky(hessian + gauge_and_ridge)[0]
        step = _solve_with_cholesky(factor, gradient[..., None])[..., 0]

        def evaluate(
            candidate: FloatArray, rows: IntArray, score: FloatArray = score, count: FloatArray = count
        ) -> FloatArray:
            return _half_ties_objective(candidate, first, second, score[rows], count[rows], l2)

        new_theta, new_objective = _backtrack(current, step, objective[active], evaluate)
        theta[active] = new_theta
        objective[active] = new_objective
        step_size = np.abs(step).max(axis=1, initial=0.0)
        done = step_size <= tolerance
        converged[active[done]] = True
        active = active[~done]
        factor = factor[~done]
        previous_step = step_size[~done].max(initial=0.0)
    return theta, converged, iterations


def _backtrack(
    current: FloatArray,
    step: FloatArray,
    objective: FloatArray,
    evaluate: Callable[[FloatArray, IntArray], FloatArray],
) -> tuple[FloatArray, FloatArray]:
    """Halve each problem's step until the objective does not decrease (beyond rounding)."""
    step_size = np.ones(current.shape[0])
    candidate = current + step
    candidate_objective = evaluate(candidate, np.arange(current.shape[0]))
    slack = 1e-12 * (1.0 + np.abs(objective))
    for _ in range(_MAX_HALVINGS):
        worse = np.flatnonzero(~(candidate_objective >= objective - slack))
        if worse.size == 0:
            break
        step_size[worse] *= 0.5
        candidate[worse] = current[worse] + step_size[worse, None] * step[worse]
        candidate_objective[worse] = evaluate(candidate[worse], worse)
    else:
        # No step size helps only at a rounding-level optimum; stay put rather than accept a worse point.
        worse = np.flatnonzero(~(candidate_objective >= objective - slack))
        candidate[worse] = current[worse]
        candidate_objective[worse] = objective[worse]
    return candidate, candidate_objective


# ------------------------------------------------------------------------------------------------------------
# Newton's method, Davidson ties (one problem; parameters theta and gamma = log(nu))
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _DavidsonTerms:
    difference: FloatArray
    log_normaliser: FloatArray
    first_wins: FloatArray
    second_wins: FloatArray
    tie: FloatArray


def _davidson_terms(theta: FloatArray, gamma: float, pairs: _Pairs) -> _DavidsonTerms:
    # Dividing numerator and denominator by sqrt(pi_i * pi_j) leaves exp(+-d/2) and nu: stable for any d.
    difference = theta[pairs.first] - theta[pairs.second]
    half = 0.5 * difference
    log_normaliser = np.logaddexp(np.logaddexp(half, -half), gamma)
    return _DavidsonTerms(
        difference=difference,
        log_normaliser=log_normaliser,
        first_wins=np.exp(half - log_normaliser),
        second_wins=np.exp(-half - log_normaliser),
        tie=np.exp(gamma - log_normaliser),
    )


def _davidson_log_likelihood(
    theta: FloatArray,
    gamma: float,
    pairs: _Pairs,
    first_wins: FloatArray,
    second_wins: FloatArray,
    ties: FloatArray,
) -> float:
    terms = _davidson_terms(theta, gamma, pairs)
    comparisons = first_wins + second_wins + ties
    return float(
        np.sum(
            0.5 * (first_wins - second_wins) * terms.difference
            + ties * gamma
            - comparisons * terms.log_normaliser
        )
    )


def _davidson_derivatives(
    theta: FloatArray,
    gamma: float,
    pairs: _Pairs,
    first_wins: FloatArray,
    second_wins: FloatArray,
    ties: FloatArray,
) -> tuple[FloatArray, FloatArray, _DavidsonTerms]:
    """Gradient and negative Hessian of the Davidson log-likelihood in (theta, gamma), unpenalised.

    Per battle the model is an exponential family in the statistics X (+1/2 win, -1/2 loss, 0 tie, the
    coefficient of d) and T (1 for a tie, the coefficient of gamma), so the curvature is their covariance.
    """
    n = pairs.n_systems
    terms = _davidson_terms(theta, gamma, pairs)
    comparisons = first_wins + second_wins + ties
    mean_x = 0.5 * (terms.first_wins - terms.second_wins)
    variance_x = 0.25 * (terms.first_wins + terms.second_wins) - mean_x**2
    covariance_xt = -mean_x * terms.tie
    gradient = np.empty(n + 1)
    gradient[:n] = _scatter(
        (0.5 * (first_wins - second_wins) - comparisons * mean_x)[None], pairs.first, pairs.second, n, -1.0
    )[0]
    gradient[n] = np.sum(ties - comparisons * terms.tie)
    information = np.zeros((n + 1, n + 1))
    information[:n, :n] = _laplacian((comparisons * variance_x)[None], pairs.first, pairs.second, n)[0]
    information[:n, n] = information[n, :n] = _scatter(
        (comparisons * covariance_xt)[None], pairs.first, pairs.second, n, -1.0
    )[0]
    information[n, n] = np.sum(comparisons * terms.tie * (1.0 - terms.tie))
    return gradient, information, terms


def _newton_davidson(
    pairs: _Pairs,
    first_wins: FloatArray,
    second_wins: FloatArray,
    ties: FloatArray,
    theta: FloatArray,
    gamma: float,
    l2: float,
    tolerance: float,
    max_iterations: int,
) -> tuple[FloatArray, float, bool, int]:
    n = pairs.n_systems
    parameters = np.append(theta - theta.mean(), gamma)
    gauge = np.zeros((n + 1, n + 1))
    gauge[:n, :n] = 1.0 / n

    def penalised(candidate: FloatArray, rows: IntArray) -> FloatArray:
        values = [
            _davidson_log_likelihood(row[:n], row[n], pairs, first_wins, second_wins, ties)
            - 0.5 * l2 * row @ row
            for row in candidate
        ]
        return np.array(values)

    objective = penalised(parameters[None], np.zeros(1, dtype=np.int64))
    converged = False
    iterations = 0
    while not converged and iterations < max_iterations:
        iterations += 1
        gradient, information, _ = _davidson_derivatives(
            parameters[:n], parameters[n], pairs, first_wins, second_wins, ties
        )
        gradient -= l2 * parameters
        step = _solve_positive_definite(
            (information + l2 * np.eye(n + 1) + gauge)[None], gradient[None, :, None]
        )[0, :, 0]
        new_parameters, objective = _backtrack(parameters[None], step[None], objective, penalised)
        parameters = new_parameters[0]
        converged = bool(np.abs(step).max() <= tolerance)
    return parameters[:n], float(parameters[n]), converged, iterations


# ------------------------------------------------------------------------------------------------------------
# Identifiability
# ------------------------------------------------------------------------------------------------------------


def _describe(systems: Sequence[Hashable], mask: NDArray[np.bool_], limit: int = 8) -> str:
    names = [str(systems[index]) for index in np.flatnonzero(mask)]
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def _identifiability_problems(
    table: OutcomeTable, systems: Sequence[Hashable], ties_score_half: bool = True
) -> list[str]:
    """Reasons the maximum likelihood estimate does not exist (empty when it does).

    Under the half-win convention it exists exactly when the directed graph "i scored against j" (won or
    tied) is strongly connected (Ford, 1957). Davidson's model needs that of decisive wins alone: a tie
    scores nothing there, so a system with wins and ties but no loss runs off to infinity (and the tie
    parameter with it). Otherwise either the comparison graph is disconnected, or some group of systems won
    every battle against the rest; the messages name the simplest culprits.
    """
    scored = "lost or tied" if ties_score_half else "lost"
    score = table.wins + 0.5 * table.ties
    met = (score + score.T) > 0
    played = met.any(axis=1)
    problems = []
    if not played.all():
        problems.append(
            f"no battles for {_describe(systems, ~played)}: their ratings come from the regularisation alone"
        )
    if played.sum() < 2:
        return problems
    _, component = connected_components(csr_matrix(met), directed=False)
    groups = np.unique(component[played])
    if groups.size > 1:
        sizes = sorted((int(np.sum(component[played] == group)) for group in groups), reverse=True)
        problems.append(
            f"the comparison graph is disconnected: {groups.size} groups of systems (sizes {sizes}) were "
            "never compared with each other, so ratings across groups are not comparable"
        )
    beat = score if ties_score_half else table.wins
    _, strong_component = connected_components(csr_matrix(beat > 0), directed=True, connection="strong")
    if np.unique(strong_component[played]).size > groups.size:
        never_lost = played & (beat.sum(axis=0) == 0)
        never_won = played & (beat.sum(axis=1) == 0)
        if never_lost.any():
            problems.append(f"undefeated (never {scored}): {_describe(systems, never_lost)}")
        if never_won.any():
            won = "won or tied" if ties_score_half else "won"
            problems.append(f"never {won}: {_describe(systems, never_won)}")
        if not (never_lost.any() or never_won.any()):
            problems.append(
                "the outcomes are separable: a group of systems won every battle against the others"
            )
    return problems


def _identified(score: FloatArray) -> bool:
    """Whether a score matrix (wins plus half ties) has a finite maximum likelihood estimate: every system
    played, and "scored against" is strongly connected (Ford, 1957)."""
    if not np.all((score + score.T).sum(axis=1) > 0):
        return False
    components, _ = connected_components(csr_matrix(score > 0), directed=True, connection="strong")
    return components == 1


# ------------------------------------------------------------------------------------------------------------
# Exact multinomial resampling
# ------------------------------------------------------------------------------------------------------------


class _MultinomialSampler:
    """Exact multinomial(total, probabilities) draws, about twice as fast as ``Generator.multinomial``.

    Independent Poisson counts are, given their sum ``s``, multinomial(``s``, probabilities); adding an
    independent multinomial(``total - s``) draw makes them multinomial(``total``) for every ``s <= total``.
    The Poisson mean sits two standard deviations below ``total`` so the sum rarely exceeds it (such rows are
    redrawn, which only conditions on ``s`` and so keeps the result exact), and the remaining couple of
    thousand items are drawn one by one from Walker's alias table. A Poisson variate costs about a third of
    one of the sequential binomials numpy's multinomial draws for every cell.
    """

    def __init__(self, total: int, probabilities: FloatArray) -> None:
        self.total = int(total)
        self.cells = probabilities.size
        normalised = probabilities / probabilities.sum()
        self.poisson_means = max(self.total - 2.0 * math.sqrt(self.total), 0.0) * normalised
        self.keep_probability, self.alias = _alias_table(normalised)

    def draw(self, rng: np.random.Generator, rounds: int) -> NDArray[np.int64]:
        counts = rng.poisson(self.poisson_means, size=(rounds, self.cells))
        sums = counts.sum(axis=1)
        over = np.flatnonzero(sums > self.total)
        while over.size:
            counts[over] = rng.poisson(self.poisson_means, size=(over.size, self.cells))
            sums[over] = counts[over].sum(axis=1)
            over = over[sums[over] > self.total]
        rows = np.repeat(np.arange(rounds, dtype=np.int64), self.total - sums)
        column = rng.integers(0, self.cells, size=rows.size)
        column = np.where(rng.random(rows.size) < self.keep_probability[column], column, self.alias[column])
        counts += np.bincount(rows * self.cells + column, minlength=rounds * self.cells).reshape(rounds, -1)
        return counts


def _alias_table(probabilities: FloatArray) -> tuple[FloatArray, IntArray]:
    """Walker's alias method (Vose's construction): pick a column uniformly, keep it with its keep
    probability, otherwise take its alias. Every draw is then O(1)."""
    size = probabilities.size
    scaled = probabilities * size
    keep_probability = np.ones(size)
    alias = np.arange(size, dtype=np.int64)
    small = [int(index) for index in np.flatnonzero(scaled < 1.0)]
    large = [int(index) for index in np.flatnonzero(scaled >= 1.0)]
    scaled_list = scaled.tolist()
    while small and large:
        underfull, overfull = small.pop(), large.pop()
        keep_probability[underfull] = scaled_list[underfull]
        alias[underfull] = overfull
        scaled_list[overfull] += scaled_list[underfull] - 1.0
        (small if scaled_list[overfull] < 1.0 else large).append(overfull)
    # Whatever is left is 1 up to rounding, and keeps itself.
    return keep_probability, alias


@dataclass(frozen=True)
class _Cells:
    """Deduplicated outcome rows (pair, outcome) with their counts: what the bootstrap resamples."""

    pair: IntArray
    kind: IntArray  # 0: first wins, 1: second wins, 2: tie
    count: FloatArray
    mean_weight: FloatArray

    @classmethod
    def from_pairs(cls, pairs: _Pairs) -> _Cells:
        pair_list, kind_list, count_list, weight_list = [], [], [], []
        columns = (
            (pairs.first_win_counts, pairs.first_wins),
            (pairs.second_win_counts, pairs.second_wins),
            (pairs.tie_counts, pairs.ties),
        )
        for kind, (counts, weights) in enumerate(columns):
            present = np.flatnonzero(counts > 0)
            pair_list.append(present)
            kind_list.append(np.full(present.size, kind, dtype=np.int64))
            count_list.append(counts[present])
            # Battles of one cell are resampled with the cell's mean weight: exact when weights are constant
            # within a cell (e.g. no weights), and it keeps the expected table in any case.
            weight_list.append(weights[present] / counts[present])
        return cls(
            pair=np.concatenate(pair_list).astype(np.int64),
            kind=np.concatenate(kind_list),
            count=np.concatenate(count_list),
            mean_weight=np.concatenate(weight_list),
        )

    def score_matrix(self, pairs: _Pairs) -> csr_matrix:
        """Sparse (n*n) x cells map from cell counts to a flattened score matrix (wins of the row system plus
        half the ties): a win adds to one entry, a tie half to two. One sparse product then scatters a whole
        chunk of rounds, several times faster than fancy-index assignment."""
        n = pairs.n_systems
        first, second = pairs.first[self.pair], pairs.second[self.pair]
        tied = np.flatnonzero(self.kind == 2)
        source = np.concatenate([np.arange(self.kind.size), tied])
        entry = np.where(self.kind == 1, second * n + first, first * n + second)
        entry = np.concatenate([entry, second[tied] * n + first[tied]])
        share = np.where(self.kind == 2, 0.5, 1.0)[source] * self.mean_weight[source]
        return csr_matrix((share, (entry, source)), shape=(n * n, self.kind.size))

    def tables(self, counts: NDArray[np.int64], n_pairs: int) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Per-round (first wins, second wins, ties) arrays, rounds x pairs, from resampled cell counts."""
        values = counts * self.mean_weight
        columns = []
        for kind in range(3):
            column = np.zeros((counts.shape[0], n_pairs))
            selected = self.kind == kind
            column[:, self.pair[selected]] = values[:, selected]
            columns.append(column)
        return columns[0], columns[1], columns[2]


def _run_chunks(
    seed: int | None, rounds: int, workers: int | None, work: Callable[[np.random.Generator, int], Any]
) -> list[Any]:
    chunk_sizes = [
        min(BOOTSTRAP_CHUNK_ROUNDS, rounds - start) for start in range(0, rounds, BOOTSTRAP_CHUNK_ROUNDS)
    ]
    generators = [
        np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(len(chunk_sizes))
    ]
    worker_count = min(len(chunk_sizes), workers if workers is not None else (os.cpu_count() or 1))
    if worker_count <= 1:
        return [work(generator, size) for generator, size in zip(generators, chunk_sizes, strict=True)]
    # numpy's random generators and ufuncs release the GIL, so threads can share the cores.
    with ThreadPoolExecutor(max_workers=worker_count) as pool:
        return list(pool.map(work, generators, chunk_sizes))


# ------------------------------------------------------------------------------------------------------------
# Public fitting functions
# ------------------------------------------------------------------------------------------------------------


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


def fit_ratings(
    table: OutcomeTable,
    *,
    systems: Sequence[Hashable] | None = None,
    ties: Literal["half", "davidson"] = "half",
    anchor: int | None = None,
    anchor_rating: float = DEFAULT_ANCHOR_RATING,
    interval: Literal["sandwich", "bootstrap", "none"] = "sandwich",
    confidence: float = 0.95,
    bootstrap_rounds: int = 1000,
    seed: int | None = 0,
    l2: float | None = None,
    tolerance: float = 1e-10,
    max_iterations: int = 100,
    workers: int | None = 1,
) -> RatingResult:
    """Bradley-Terry maximum likelihood ratings with confidence intervals from an :class:`OutcomeTable`.

    ``anchor`` is a system index. ``l2=None`` regularises only when the data cannot identify the ratings
    (then with ``SEPARATION_L2``); a positive ``l2`` is always applied. ``interval="sandwich"`` gives robust
    (misspecification-proof) Wald intervals from the sandwich covariance; ``"bootstrap"`` resamples the
    deduplicated outcome rows with a multinomial over the total number of battles, ``bootstrap_rounds`` times
    from ``seed``, refitting each round warm-started from the full-data fit, and reports percentile intervals.
    ``workers`` threads share the bootstrap (``None``: one per CPU); results do not depend on it. The
    default is one: web and Celery processes already share the cores, and there threads only add contention.
    Rank = 1 + the number of systems whose lower bound is above this system's upper bound.
    """
    n = table.n_systems
    labels = _system_labels(systems, n)
    if ties not in ("half", "davidson"):
        raise ValueError("ties must be 'half' or 'davidson'")
    if interval not in ("sandwich", "bootstrap", "none"):
        raise ValueError("interval must be 'sandwich', 'bootstrap' or 'none'")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must lie strictly between 0 and 1")
    if anchor is not None and not 0 <= anchor < n:
        raise ValueError(f"anchor must be a system index in [0, {n})")
    if interval == "bootstrap" and bootstrap_rounds < 1:
        raise ValueError("bootstrap_rounds must be positive")

    notes = []
    pairs = _Pairs.from_table(table)
    total_ties = float(pairs.ties.sum())
    total_decisive = float(pairs.first_wins.sum() + pairs.second_wins.sum())
    davidson_without_ties = ties == "davidson" and total_ties == 0.0
    if davidson_without_ties:
        # nu -> 0 is the exact maximum: Davidson without ties is Bradley-Terry, fitted as such.
        notes.append(
            "no ties in the data: the Davidson tie parameter is 0 and the fit is plain Bradley-Terry"
        )
        ties = "half"
    # With ties only, Davidson's strengths are identified by the ties (all equal within a connected graph);
    # it is nu that runs off to infinity.
    only_ties = ties == "davidson" and total_decisive == 0.0
    problems = _identifiability_problems(table, labels, ties_score_half=ties == "half" or only_ties)
    if only_ties:
        problems.append("only ties in the data: the Davidson tie parameter is not identified")
    applied_l2 = _resolve_l2(l2, problems)
    warnings = problems + notes

    if ties == "half":
        fit = _fit_half_ties(pairs, applied_l2, tolerance, max_iterations)
    else:
        fit = _fit_davidson(pairs, applied_l2, tolerance, max_iterations)
    if not fit.converged:
        warnings.append(
            f"Newton's method did not converge within {max_iterations} iterations; "
            "the ratings are approximate"
        )

    covariance = None
    bootstrap_ratings = None
    if interval == "sandwich":
        covariance = _anchor_covariance(fit.covariance(), anchor)
    elif interval == "bootstrap":
        theta_samples, notes = fit.bootstrap(bootstrap_rounds, seed, workers, tolerance, max_iterations)
        warnings.extend(notes)
        bootstrap_ratings = theta_to_elo(theta_samples, anchor=anchor, anchor_rating=anchor_rating)
    if ties == "davidson":
        fit_probability = fit.win_probability()
    else:
        fit_probability = expit(fit.theta[:, None] - fit.theta[None, :])
    return _assemble(
        table=table,
        systems=labels,
        theta=fit.theta,
        win_probability=fit_probability,
        covariance=covariance,
        bootstrap_ratings=bootstrap_ratings,
        interval=interval,
        confidence=confidence,
        anchor=anchor,
        anchor_rating=anchor_rating,
        l2=applied_l2,
        warnings=warnings,
        converged=fit.converged,
        iterations=fit.iterations,
        tie_parameter=0.0 if davidson_without_ties else fit.tie_parameter,
    )


def fit_battle_ratings(
    model_a: ArrayLike,
    model_b: ArrayLike,
    outcome: ArrayLike,
    n_systems: int,
    *,
    both_bad_as_tie: bool = True,
    weights: ArrayLike | None = None,
    **options: Any,
) -> RatingResult:
    """:func:`fit_ratings` on the table built from battle arrays (see :func:`build_outcome_table`).

    ``weights`` are per-battle vote weights, e.g. each battle's annotator reliability; ``options`` are
    :func:`fit_ratings` keyword arguments.
    """
    table = build_outcome_table(
        model_a, model_b, outcome, n_systems, both_bad_as_tie=both_bad_as_tie, weights=weights
    )
    return fit_ratings(table, **options)


def ratings_by_group(
    group: ArrayLike,
    model_a: ArrayLike,
    model_b: ArrayLike,
    outcome: ArrayLike,
    n_systems: int,
    *,
    systems: Sequence[Hashable] | None = None,
    both_bad_as_tie: bool = True,
    weights: ArrayLike | None = None,
    anchor: int | None = None,
    drop_absent_systems: bool = True,
    **options: Any,
) -> dict[Hashable, RatingResult]:
    """One leaderboard per value of ``group`` (criterion, category, annotator pool...), fitted independently.

    With ``drop_absent_systems`` each leaderboard lists only the systems that battled in its group (a system
    never judged on a criterion has no rating there); an anchor absent from a group is dropped with a warning.
    """
    labels = _system_labels(systems, n_systems)
    first, second, codes, battle_weights = _validated_battles(model_a, model_b, outcome, n_systems, weights)
    keys = np.asarray(group).ravel()
    if keys.shape != first.shape:
        raise ValueError("group must have one value per battle")
    unique_keys, group_index = np.unique(keys, return_inverse=True)
    order = np.argsort(group_index, kind="stable")
    boundaries = np.cumsum(np.bincount(group_index, minlength=unique_keys.size))[:-1]
    results: dict[Hashable, RatingResult] = {}
    for key, rows in zip(unique_keys, np.split(order, boundaries), strict=True):
        group_first, group_second = first[rows], second[rows]
        group_weights = battle_weights[rows] if battle_weights is not None else None
        group_systems = np.arange(n_systems)
        group_anchor = anchor
        notes = []
        if drop_absent_systems:
            group_systems = np.unique(np.concatenate([group_first, group_second]))
            position = np.full(n_systems, -1, dtype=np.int64)
            position[group_systems] = np.arange(group_systems.size)
            group_first, group_second = position[group_first], position[group_second]
            if anchor is not None:
                group_anchor = int(position[anchor]) if position[anchor] >= 0 else None
                if group_anchor is None:
                    notes.append(
                        f"anchor {labels[anchor]} has no battles in this group; ratings are mean-centred"
                    )
        result = fit_battle_ratings(
            group_first,
            group_second,
            codes[rows],
            group_systems.size,
            both_bad_as_tie=both_bad_as_tie,
            weights=group_weights,
            systems=[labels[index] for index in group_systems],
            anchor=group_anchor,
            **options,
        )
        results[key.item() if isinstance(key, np.generic) else key] = replace(
            result, warnings=notes + result.warnings
        )
    return results


# ------------------------------------------------------------------------------------------------------------
# Fits with their covariance and bootstrap
# ------------------------------------------------------------------------------------------------------------


def _resolve_l2(l2: float | None, problems: list[str]) -> float:
    """The L2 strength to fit with; says in ``problems`` when regularisation had to be added."""
    if l2 is not None and l2 < 0:
        raise ValueError("l2 must be non-negative")
    if not problems:
        return float(l2 or 0.0)
    if l2:
        return float(l2)
    if l2 == 0:
        problems.append("l2=0 was requested, but the ratings are not identified without regularisation")
    problems.append(
        f"applied L2 regularisation of strength {SEPARATION_L2} (a Gaussian prior with standard deviation "
        f"{1 / math.sqrt(SEPARATION_L2):g} on log-strengths) to keep every rating finite"
    )
    return SEPARATION_L2


@dataclass
class _HalfTiesFit:
    pairs: _Pairs
    theta: FloatArray
    l2: float
    converged: bool
    iterations: int
    tie_parameter: float | None = None

    def covariance(self) -> FloatArray:
        """Sandwich covariance A^-1 B A^-1 of theta in the sum-zero gauge.

        A is the curvature of the (penalised) log-likelihood; B sums the outer products of per-battle
        scores, which for a battle of ``first`` against ``second`` is ``(y - p) (e_first - e_second)``, with
        ``y`` 1 for a win, 0 for a loss and 1/2 for a tie. Ties make the half-win model misspecified, which
        is exactly what the sandwich is robust to. The prior's precision is added to B as well, so a system
        known only through the prior gets the prior's width rather than a zero-width interval.
        """
        pairs = self.pairs
        n = pairs.n_systems
        probability = expit(self.theta[pairs.first] - self.theta[pairs.second])
        comparisons = pairs.first_wins + pairs.second_wins + pairs.ties
        bread = _laplacian(
            (comparisons * probability * (1 - probability))[None], pairs.first, pairs.second, n
        )[0]
        score_squares = (
            pairs.first_win_squared_weights * (1 - probability) ** 2
            + pairs.second_win_squared_weights * probability**2
            + pairs.tie_squared_weights * (0.5 - probability) ** 2
        )
        meat = _laplacian(score_squares[None], pairs.first, pairs.second, n)[0]
        return _sandwich(bread, meat, n, self.l2)

    def bootstrap(
        self, rounds: int, seed: int | None, workers: int | None, tolerance: float, max_iterations: int
    ) -> tuple[FloatArray, list[str]]:
        pairs = self.pairs
        n = pairs.n_systems
        cells = _Cells.from_pairs(pairs)
        if cells.count.size == 0:
            return np.tile(self.theta, (rounds, 1)), []
        sampler = _MultinomialSampler(round(float(cells.count.sum())), cells.count)
        # Every resample has the full data's size and nearly its curvature, so the full fit's Hessian
        # stands in for each round's: no factorisation per round, and a contraction of a few percent per step.
        probability = expit(self.theta[pairs.first] - self.theta[pairs.second])
        comparisons = pairs.first_wins + pairs.second_wins + pairs.ties
        hessian = _laplacian(
            (comparisons * probability * (1 - probability))[None], pairs.first, pairs.second, n
        )[0]
        hessian_inverse = _inverse_positive_definite(hessian + self.l2 * np.eye(n) + 1.0 / n)
        rounds_per_batch = max(1, _DENSE_BATCH_ENTRIES // (n * n))
        score_matrix = cells.score_matrix(pairs)

        def work(rng: np.random.Generator, size: int) -> tuple[FloatArray, int, int]:
            counts = sampler.draw(rng, size)
            theta = np.empty((size, n))
            regularised = failed = 0
            for start in range(0, size, rounds_per_batch):
                score = (score_matrix @ counts[start : start + rounds_per_batch].T).T.reshape(-1, n, n)
                batch, converged = _chord_half_ties(
                    score, self.theta, hessian_inverse, self.l2, max(tolerance, _BOOTSTRAP_TOLERANCE)
                )
                retry = np.flatnonzero(~converged)
                if retry.size:
                    # Far from the full data (tiny samples) the fixed Hessian is too crude: use Newton proper,
                    # regularised straight away where the resample is separable (say a rarely seen system
                    # never loses in it), since Newton would only chase that system to infinity.
                    separable = np.array([self.l2 == 0 and not _identified(score[row]) for row in retry])
                    regularised += int(separable.sum())
                    for l2, rows in ((self.l2, retry[~separable]), (SEPARATION_L2, retry[separable])):
                        if rows.size:
                            batch[rows], converged[rows], _ = _newton_half_ties(
                                pairs.first,
                                pairs.second,
                                n,
                                score[rows][:, pairs.first, pairs.second],
                                score[rows][:, pairs.second, pairs.first],
                                np.tile(self.theta, (rows.size, 1)),
                                l2,
                                tolerance,
                                max_iterations,
                            )
                theta[start : start + rounds_per_batch] = batch
                failed += int(np.sum(~converged))
            return theta, regularised, failed

        return _bootstrap_outputs(_run_chunks(seed, rounds, workers, work))


def _chord_half_ties(
    score: FloatArray,
    theta_start: FloatArray,
    hessian_inverse: FloatArray,
    l2: float,
    tolerance: float,
) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Fixed-Hessian Newton ("chord") iterations for many score tables (rounds x n x n) at once.

    The expected score of ``i`` is ``e_i * sum_j N_ij / (e_i + e_j)`` with ``e = exp(theta)``: one division
    per matrix entry and no logarithm or exponential there. Iterating stops for a round when its step is
    below ``tolerance``; a round whose step grows, or that is still moving after ``_CHORD_ITERATIONS``, is
    reported unconverged for a proper Newton fit.
    """
    rounds = score.shape[0]
    theta = np.tile(theta_start, (rounds, 1))
    converged = np.zeros(rounds, dtype=bool)
    index = np.arange(rounds)
    comparisons = score + score.transpose(0, 2, 1)
    won = score.sum(axis=2)
    current = theta.copy()
    previous_step = np.full(rounds, np.inf)
    for _ in range(_CHORD_ITERATIONS):
        strength = np.exp(current)
        pair_strength = strength[:, :, None] + strength[:, None, :]
        expected = strength * (comparisons / pair_strength).sum(axis=2)
        # einsum keeps this in numpy's own loops (see _cholesky on multithreaded BLAS).
        step = np.einsum("ri,ij->rj", won - expected - l2 * current, hessian_inverse)
        current += step
        step_size = np.abs(step).max(axis=1)
        done = step_size <= tolerance
        stalled = ~done & ((step_size > previous_step) | (np.abs(current).max(axis=1) > _CHORD_THETA_LIMIT))
        finished = done | stalled
        theta[index[finished]] = current[finished]
        converged[index[done]] = True
        if finished.all():
            break
        if finished.any():
            keep = ~finished
            index, current, comparisons, won = index[keep], current[keep], comparisons[keep], won[keep]
            step_size = step_size[keep]
        previous_step = step_size
    else:
        theta[index] = current
    return theta, converged


def _bootstrap_outputs(outputs: list[tuple[FloatArray, int, int]]) -> tuple[FloatArray, list[str]]:
    theta = np.concatenate([output[0] for output in outputs])
    regularised = sum(output[1] for output in outputs)
    failed = sum(output[2] for output in outputs)
    notes = []
    if regularised:
        notes.append(
            f"{regularised} bootstrap rounds resampled separable data and were fitted with L2 "
            f"regularisation {SEPARATION_L2}"
        )
    if failed:
        notes.append(f"{failed} bootstrap rounds did not converge; the intervals are approximate")
    return theta, notes


def _fit_half_ties(pairs: _Pairs, l2: float, tolerance: float, max_iterations: int) -> _HalfTiesFit:
    n = pairs.n_systems
    first_score = pairs.first_wins + 0.5 * pairs.ties
    second_score = pairs.second_wins + 0.5 * pairs.ties
    # The log-odds of each system's score rate is a cheap start that saves a Newton step or two.
    scored = _scatter(first_score[None], pairs.first, pairs.second, n, 0.0)[0]
    scored += _scatter(second_score[None], pairs.second, pairs.first, n, 0.0)[0]
    played = _scatter((first_score + second_score)[None], pairs.first, pairs.second, n, 1.0)[0]
    rate = np.clip(np.divide(scored, played, out=np.full(n, 0.5), where=played > 0), 0.02, 0.98)
    theta, converged, iterations = _newton_half_ties(
        pairs.first,
        pairs.second,
        n,
        first_score[None],
        second_score[None],
        np.log(rate / (1 - rate))[None],
        l2,
        tolerance,
        max_iterations,
    )
    return _HalfTiesFit(pairs, theta[0], l2, bool(converged[0]), iterations)


@dataclass
class _DavidsonFit:
    pairs: _Pairs
    theta: FloatArray
    gamma: float
    l2: float
    converged: bool
    iterations: int

    @property
    def tie_parameter(self) -> float:
        return math.exp(self.gamma)

    def win_probability(self) -> FloatArray:
        difference = self.theta[:, None] - self.theta[None, :]
        half = 0.5 * difference
        log_normaliser = np.logaddexp(np.logaddexp(half, -half), self.gamma)
        return np.exp(half - log_normaliser) + 0.5 * np.exp(self.gamma - log_normaliser)

    def covariance(self) -> FloatArray:
        """Sandwich covariance of theta, from the joint (theta, gamma) sandwich; see _HalfTiesFit."""
        pairs = self.pairs
        n = pairs.n_systems
        _, bread, terms = _davidson_derivatives(
            self.theta, self.gamma, pairs, pairs.first_wins, pairs.second_wins, pairs.ties
        )
        mean_x = 0.5 * (terms.first_wins - terms.second_wins)
        # Per-battle scores: x - mean_x for theta_first, minus that for theta_second, t - P(tie) for gamma.
        win_x, loss_x, tie_x = 0.5 - mean_x, -0.5 - mean_x, -mean_x
        win_t, tie_t = -terms.tie, 1.0 - terms.tie
        first_sq, second_sq, tie_sq = (
            pairs.first_win_squared_weights,
            pairs.second_win_squared_weights,
            pairs.tie_squared_weights,
        )
        theta_theta = first_sq * win_x**2 + second_sq * loss_x**2 + tie_sq * tie_x**2
        theta_gamma = first_sq * win_x * win_t + second_sq * loss_x * win_t + tie_sq * tie_x * tie_t
        gamma_gamma = (first_sq + second_sq) * win_t**2 + tie_sq * tie_t**2
        meat = np.zeros((n + 1, n + 1))
        meat[:n, :n] = _laplacian(theta_theta[None], pairs.first, pairs.second, n)[0]
        meat[:n, n] = meat[n, :n] = _scatter(theta_gamma[None], pairs.first, pairs.second, n, -1.0)[0]
        meat[n, n] = gamma_gamma.sum()
        return _sandwich(bread, meat, n, self.l2)[:n, :n]

    def bootstrap(
        self, rounds: int, seed: int | None, workers: int | None, tolerance: float, max_iterations: int
    ) -> tuple[FloatArray, list[str]]:
        pairs = self.pairs
        cells = _Cells.from_pairs(pairs)
        sampler = _MultinomialSampler(round(float(cells.count.sum())), cells.count)

        def work(rng: np.random.Generator, size: int) -> tuple[FloatArray, int, int]:
            first_wins, second_wins, ties = cells.tables(sampler.draw(rng, size), pairs.first.size)
            theta = np.empty((size, pairs.n_systems))
            failed = 0
            regularised = 0
            for index in range(size):
                l2 = self.l2
                for _attempt in range(2):
                    theta[index], _, converged, _ = _newton_davidson(
                        pairs,
                        first_wins[index],
                        second_wins[index],
                        ties[index],
                        self.theta,
                        self.gamma,
                        l2,
                        tolerance,
                        max_iterations,
                    )
                    if converged or l2 > 0:
                        break
                    l2 = SEPARATION_L2
                    regularised += 1
                failed += not converged
            return theta, regularised, failed

        return _bootstrap_outputs(_run_chunks(seed, rounds, workers, work))


def _fit_davidson(pairs: _Pairs, l2: float, tolerance: float, max_iterations: int) -> _DavidsonFit:
    # Start from the half-win fit and the tie rate: at equal strengths P(tie) = nu / (2 + nu).
    start = _fit_half_ties(pairs, l2, tolerance, max_iterations)
    tie_fraction = pairs.ties.sum() / (pairs.first_wins + pairs.second_wins + pairs.ties).sum()
    tie_fraction = min(max(tie_fraction, 1e-6), 1 - 1e-6)
    theta, gamma, converged, iterations = _newton_davidson(
        pairs,
        pairs.first_wins,
        pairs.second_wins,
        pairs.ties,
        start.theta,
        math.log(2 * tie_fraction / (1 - tie_fraction)),
        l2,
        tolerance,
        max_iterations,
    )
    return _DavidsonFit(pairs, theta, gamma, l2, converged, iterations)


def _sandwich(bread: FloatArray, meat: FloatArray, n_theta: int, l2: float) -> FloatArray:
    """A^-1 B A^-1 for the parameters (theta first), with theta centred to sum zero.

    Without regularisation A is singular along "shift every theta"; (A + J/n)^-1 - J/n is its
    pseudo-inverse there, with J the all-ones block on theta.
    """
    size = bread.shape[0]
    gauge = np.zeros((size, size))
    gauge[:n_theta, :n_theta] = 1.0 / n_theta
    ridge = l2 * np.eye(size)
    inverse = (
        _inverse_positive_definite(bread + ridge)
        if l2 > 0
        else _inverse_positive_definite(bread + gauge) - gauge
    )
    covariance = inverse @ (meat + ridge) @ inverse
    centre = np.eye(size) - gauge
    covariance = centre @ covariance @ centre
    return 0.5 * (covariance + covariance.T)


def _anchor_covariance(covariance: FloatArray, anchor: int | None) -> FloatArray:
    if anchor is None:
        return covariance
    # theta - theta[anchor] = M theta with M = I - 1 e_anchor^T
    transform = np.eye(covariance.shape[0])
    transform[:, anchor] -= 1.0
    return transform @ covariance @ transform.T


def _assemble(
    *,
    table: OutcomeTable,
    systems: list[Hashable],
    theta: FloatArray,
    win_probability: FloatArray,
    covariance: FloatArray | None,
    bootstrap_ratings: FloatArray | None,
    interval: str,
    confidence: float,
    anchor: int | None,
    anchor_rating: float,
    l2: float,
    warnings: list[str],
    converged: bool,
    iterations: int,
    tie_parameter: float | None,
) -> RatingResult:
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


def _system_labels(systems: Sequence[Hashable] | None, n_systems: int) -> list[Hashable]:
    if systems is None:
        return list(range(n_systems))
    labels = list(systems)
    if len(labels) != n_systems:
        raise ValueError(f"systems has {len(labels)} labels for {n_systems} systems")
    return labels


# ------------------------------------------------------------------------------------------------------------
# Online Elo
# ------------------------------------------------------------------------------------------------------------


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
    labels = _system_labels(systems, n_systems)
    first, second, codes, _ = _validated_battles(model_a, model_b, outcome, n_systems, None)
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
    scores = np.where(codes[order] == Outcome.A_WINS, 1.0, np.where(codes[order] == Outcome.B_WINS, 0.0, 0.5))

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


# ------------------------------------------------------------------------------------------------------------
# Annotator-aware ratings: Crowd-BT
# ------------------------------------------------------------------------------------------------------------


def fit_crowd_bt(
    model_a: ArrayLike,
    model_b: ArrayLike,
    outcome: ArrayLike,
    annotator: ArrayLike,
    n_systems: int,
    *,
    n_annotators: int | None = None,
    systems: Sequence[Hashable] | None = None,
    both_bad_as_tie: bool = True,
    prior_agreements: float = 4.0,
    prior_disagreements: float = 1.0,
    anchor: int | None = None,
    anchor_rating: float = DEFAULT_ANCHOR_RATING,
    interval: Literal["sandwich", "none"] = "sandwich",
    confidence: float = 0.95,
    l2: float | None = None,
    tolerance: float = 1e-8,
    max_iterations: int = 500,
) -> CrowdBTResult:
    """Ratings and annotator reliabilities estimated jointly by EM (Crowd-BT, Chen et al., WSDM 2013).

    Model: annotator ``k`` reports the true Bradley-Terry outcome with probability ``eta_k`` and the reverse
    otherwise, so on a decisive vote between ``i`` and ``j``::

        P(k votes i over j) = eta_k * sigmoid(theta_i - theta_j) + (1 - eta_k) * sigmoid(theta_j - theta_i)

    An adversarial annotator (``eta_k < 1/2``) is read backwards, a random one (``eta_k ~ 1/2``) is ignored.
    Ties (and both-bad votes counted as ties) say nothing about direction: they keep the half-win
    convention and do not inform reliability. Each ``eta_k`` has a Beta prior worth ``prior_agreements``
    agreeing and ``prior_disagreements`` disagreeing pseudo-votes (mean 0.8 by default): annotators are
    presumed mostly right, which also picks the sensible one of the two mirror-image solutions
    (``theta -> -theta``, ``eta -> 1 - eta``), and reliabilities stay strictly inside (0, 1).

    EM: the E-step computes, per decisive vote, the posterior probability ``q`` that it agrees with the
    truth; the M-step sets ``eta_k`` to annotator k's (prior-smoothed) mean ``q`` and refits Bradley-Terry on
    the soft table (``q`` of a win to the voted winner, ``1 - q`` to the other). Each iteration increases
    the posterior. Sandwich intervals treat the reliabilities as known.
    """
    labels = _system_labels(systems, n_systems)
    first, second, codes, _ = _validated_battles(model_a, model_b, outcome, n_systems, None)
    annotators = _integer_vector(annotator)
    if annotators.shape != first.shape:
        raise ValueError("annotator must have one value per battle")
    if annotators.size and annotators.min() < 0:
        raise ValueError("annotator indices must be non-negative")
    annotator_count = n_annotators if n_annotators is not None else int(annotators.max(initial=-1)) + 1
    if annotators.size and annotators.max() >= annotator_count:
        raise ValueError(f"annotator indices must lie in [0, {annotator_count})")
    if prior_agreements <= 0 or prior_disagreements <= 0:
        raise ValueError("prior pseudo-votes must be positive")
    if interval not in ("sandwich", "none"):
        raise ValueError("interval must be 'sandwich' or 'none'")
    if not both_bad_as_tie:
        keep = codes != Outcome.BOTH_BAD
        first, second, codes, annotators = first[keep], second[keep], codes[keep], annotators[keep]

    table = build_outcome_table(first, second, codes, n_systems)
    warnings = _identifiability_problems(table, labels)
    applied_l2 = _resolve_l2(l2, warnings)
    pairs = _Pairs.from_table(table)
    pair_number = np.full((n_systems, n_systems), -1, dtype=np.int64)
    pair_number[pairs.first, pairs.second] = np.arange(pairs.first.size)

    decisive = (codes == Outcome.A_WINS) | (codes == Outcome.B_WINS)
    a_won = codes[decisive] == Outcome.A_WINS
    winner = np.where(a_won, first[decisive], second[decisive])
    loser = np.where(a_won, second[decisive], first[decisive])
    voter = annotators[decisive]
    vote_pair = pair_number[np.minimum(winner, loser), np.maximum(winner, loser)]
    winner_is_first = winner < loser
    tied_first = np.minimum(first[~decisive], second[~decisive])
    tied_second = np.maximum(first[~decisive], second[~decisive])
    tied_pair = pair_number[tied_first, tied_second]
    half_ties = 0.5 * np.bincount(tied_pair, minlength=pairs.first.size).astype(np.float64)
    votes = np.bincount(voter, minlength=annotator_count)

    def soft_scores(agreement: FloatArray) -> tuple[FloatArray, FloatArray]:
        to_first = np.where(winner_is_first, agreement, 1.0 - agreement)
        first_score = np.bincount(vote_pair, weights=to_first, minlength=pairs.first.size) + half_ties
        second_score = np.bincount(vote_pair, weights=1.0 - to_first, minlength=pairs.first.size) + half_ties
        return first_score, second_score

    def posterior_agreement(theta: FloatArray, reliability: FloatArray) -> FloatArray:
        probability = expit(theta[winner] - theta[loser])
        eta = reliability[voter]
        agree = eta * probability
        return agree / (agree + (1.0 - eta) * (1.0 - probability))

    newton_failures = 0

    def log_posterior(theta: FloatArray, reliability: FloatArray) -> float:
        eta = reliability[voter]
        vote_likelihood = (1.0 - eta) + (2.0 * eta - 1.0) * expit(theta[winner] - theta[loser])
        tie_difference = theta[tied_first] - theta[tied_second]
        return float(
            np.log(vote_likelihood).sum()
            + 0.5 * (log_expit(tie_difference) + log_expit(-tie_difference)).sum()
            - 0.5 * applied_l2 * theta @ theta
            + np.sum(prior_agreements * np.log(reliability) + prior_disagreements * np.log1p(-reliability))
        )

    def em_step(theta: FloatArray, reliability: FloatArray) -> tuple[FloatArray, FloatArray]:
        nonlocal newton_failures
        agreement = posterior_agreement(theta, reliability)
        first_score, second_score = soft_scores(agreement)
        fitted, fit_converged, _ = _newton_half_ties(
            pairs.first,
            pairs.second,
            n_systems,
            first_score[None],
            second_score[None],
            theta[None],
            applied_l2,
            1e-12,
            100,
        )
        newton_failures += int(not fit_converged[0])
        new_reliability = (
            np.bincount(voter, weights=agreement, minlength=annotator_count) + prior_agreements
        ) / (votes + prior_agreements + prior_disagreements)
        return fitted[0], new_reliability

    def pack(theta: FloatArray, reliability: FloatArray) -> FloatArray:
        return np.concatenate([theta, np.log(reliability) - np.log1p(-reliability)])

    def unpack(parameters: FloatArray) -> tuple[FloatArray, FloatArray]:
        return parameters[:n_systems], expit(parameters[n_systems:])

    # Plain EM crawls along the near-flat ridge "wider spread of strengths, lower reliabilities" (hundreds of
    # iterations); SQUAREM (Varadhan and Roland, 2008) extrapolates from two EM steps and keeps the result
    # only if it beats them, so the posterior still never decreases.
    theta = np.zeros(n_systems)
    reliability = np.full(annotator_count, prior_agreements / (prior_agreements + prior_disagreements))
    current = pack(theta, reliability)
    converged = False
    iterations = 0
    while not converged and iterations < max_iterations:
        once = pack(*em_step(*unpack(current)))
        twice = pack(*em_step(*unpack(once)))
        iterations += 2
        change = once - current
        curvature = twice - once - change
        best, best_objective = twice, log_posterior(*unpack(twice))
        curvature_norm = np.linalg.norm(curvature)
        if curvature_norm > 0:
            step_length = max(np.linalg.norm(change) / curvature_norm, 1.0)
            extrapolated = current + 2 * step_length * change + step_length**2 * curvature
            if (
                np.all(np.isfinite(extrapolated))
                and np.abs(extrapolated[:n_systems]).max() < _CHORD_THETA_LIMIT
            ):
                stabilised = pack(*em_step(*unpack(extrapolated)))
                iterations += 1
                stabilised_objective = log_posterior(*unpack(stabilised))
                if stabilised_objective >= best_objective:
                    best, best_objective = stabilised, stabilised_objective
        previous_theta, previous_reliability = unpack(current)
        current = best
        theta, reliability = unpack(current)
        converged = (
            max(
                np.abs(theta - previous_theta).max(initial=0.0),
                np.abs(reliability - previous_reliability).max(initial=0.0),
            )
            <= tolerance
        )
    if not converged:
        warnings.append(
            f"Crowd-BT EM did not converge within {max_iterations} iterations; results are approximate"
        )
    if newton_failures:
        warnings.append(f"{newton_failures} Bradley-Terry M-steps did not converge; results are approximate")

    covariance = None
    if interval == "sandwich":
        covariance = _anchor_covariance(
            _crowd_bt_covariance(
                theta,
                reliability,
                pairs,
                winner,
                loser,
                voter,
                vote_pair,
                tied_first,
                tied_second,
                tied_pair,
                applied_l2,
                warnings,
            ),
            anchor,
        )
    ratings = _assemble(
        table=table,
        systems=labels,
        theta=theta,
        win_probability=expit(theta[:, None] - theta[None, :]),
        covariance=covariance,
        bootstrap_ratings=None,
        interval=interval,
        confidence=confidence,
        anchor=anchor,
        anchor_rating=anchor_rating,
        l2=applied_l2,
        warnings=warnings,
        converged=converged,
        iterations=iterations,
        tie_parameter=None,
    )
    return CrowdBTResult(
        ratings=ratings,
        reliability=reliability,
        annotator_battles=votes.astype(np.int64),
        converged=converged,
        iterations=iterations,
        warnings=warnings,
    )


def _crowd_bt_covariance(
    theta: FloatArray,
    reliability: FloatArray,
    pairs: _Pairs,
    winner: IntArray,
    loser: IntArray,
    voter: IntArray,
    vote_pair: IntArray,
    tied_first: IntArray,
    tied_second: IntArray,
    tied_pair: IntArray,
    l2: float,
    warnings: list[str],
) -> FloatArray:
    """Sandwich covariance of theta under the Crowd-BT observed-data likelihood, reliabilities held fixed.

    Per decisive vote, with m = (1 - eta) + (2 eta - 1) s(d) and d = theta_winner - theta_loser, the score
    along d is l' = (2 eta - 1) s (1 - s) / m (equal to q - s) and the curvature is
    -l'' = l'^2 - (2 eta - 1) s (1 - s) (1 - 2 s) / m.
    """
    n = pairs.n_systems
    size = pairs.first.size
    probability = expit(theta[winner] - theta[loser])
    signal = 2.0 * reliability[voter] - 1.0
    base = probability * (1.0 - probability)
    mixture = (1.0 - reliability[voter]) + signal * probability
    slope = signal * base / mixture
    curvature = slope**2 - signal * base * (1.0 - 2.0 * probability) / mixture

    tie_probability = expit(theta[tied_first] - theta[tied_second])
    bread_weights = np.bincount(vote_pair, weights=curvature, minlength=size) + np.bincount(
        tied_pair, weights=tie_probability * (1 - tie_probability), minlength=size
    )
    meat_weights = np.bincount(vote_pair, weights=slope**2, minlength=size) + np.bincount(
        tied_pair, weights=(0.5 - tie_probability) ** 2, minlength=size
    )
    bread = _laplacian(bread_weights[None], pairs.first, pairs.second, n)[0]
    meat = _laplacian(meat_weights[None], pairs.first, pairs.second, n)[0]
    reduced = bread + l2 * np.eye(n) + np.full((n, n), 1.0 / n)
    if not _cholesky(reduced[None])[1][0]:
        # Far from the optimum or with very noisy annotators the observed information need not be positive;
        # the complete-data information always is.
        warnings.append(
            "Crowd-BT observed information is not positive definite; intervals use complete-data information"
        )
        pair_probability = expit(theta[pairs.first] - theta[pairs.second])
        comparisons = np.bincount(vote_pair, minlength=size) + np.bincount(tied_pair, minlength=size)
        bread = _laplacian(
            (comparisons * pair_probability * (1 - pair_probability))[None], pairs.first, pairs.second, n
        )[0]
    return _sandwich(bread, meat, n, l2)


# ------------------------------------------------------------------------------------------------------------
# Per-prompt response scores
# ------------------------------------------------------------------------------------------------------------


def prompt_response_scores(
    prompt: ArrayLike,
    response_a: ArrayLike,
    response_b: ArrayLike,
    outcome: ArrayLike,
    *,
    both_bad_as_tie: bool = True,
    weights: ArrayLike | None = None,
    l2: float = PROMPT_SCORE_L2,
    tolerance: float = 1e-9,
    max_iterations: int = 100,
) -> ResponseScores:
    """Bradley-Terry within each prompt: one log-strength per (prompt, response), e.g. as reward targets.

    ``prompt`` and the response ids are any integer (or sortable) ids; a response is identified by its
    (prompt, response) pair. Every prompt is an independent, L2-regularised problem (``l2 > 0``, default
    ``PROMPT_SCORE_L2``), so a prompt with a single comparison still gets finite scores. Prompts with the same
    number of responses are solved together as one batch of small Newton problems, which keeps 100,000
    prompts well under a second.
    """
    if l2 <= 0:
        raise ValueError("l2 must be positive: single-comparison prompts have no finite unregularised scores")
    prompts = np.asarray(prompt).ravel()
    left = np.asarray(response_a).ravel()
    right = np.asarray(response_b).ravel()
    codes = _integer_vector(outcome)
    if not (prompts.shape == left.shape == right.shape == codes.shape):
        raise ValueError("prompt, response_a, response_b and outcome must have the same length")
    if np.any(left == right):
        raise ValueError("a response cannot battle itself")
    if codes.size and (codes.min() < min(Outcome) or codes.max() > max(Outcome)):
        raise ValueError("outcome codes must be Outcome values (0 a wins, 1 b wins, 2 tie, 3 both bad)")
    battle_weights = np.ones(codes.size) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if (
        battle_weights.shape != codes.shape
        or not np.all(np.isfinite(battle_weights))
        or np.any(battle_weights < 0)
    ):
        raise ValueError("weights must be finite, non-negative and one per battle")
    if not both_bad_as_tie:
        keep = codes != Outcome.BOTH_BAD
        prompts, left, right, codes, battle_weights = (
            prompts[keep],
            left[keep],
            right[keep],
            codes[keep],
            battle_weights[keep],
        )

    # Number responses consecutively, grouped by prompt: slot = position among sorted (prompt, response).
    prompt_values, prompt_code = np.unique(prompts, return_inverse=True)
    response_values, response_code = np.unique(np.concatenate([left, right]), return_inverse=True)
    count = prompts.size
    keys = np.concatenate([prompt_code, prompt_code]).astype(np.int64) * response_values.size + response_code
    unique_keys, slot = np.unique(keys, return_inverse=True)
    slot_a, slot_b = slot[:count], slot[count:]
    slot_prompt = unique_keys // response_values.size
    prompt_start = np.searchsorted(slot_prompt, np.arange(prompt_values.size))
    prompt_size = np.bincount(slot_prompt, minlength=prompt_values.size)
    local_a = slot_a - prompt_start[prompt_code]
    local_b = slot_b - prompt_start[prompt_code]

    # Score of the lower-numbered response of each battle: 1 win, 0 loss, 1/2 tie.
    a_score = np.where(codes == Outcome.A_WINS, 1.0, np.where(codes == Outcome.B_WINS, 0.0, 0.5))
    low, high = np.minimum(local_a, local_b), np.maximum(local_a, local_b)
    low_score = np.where(local_a < local_b, a_score, 1.0 - a_score) * battle_weights
    high_score = battle_weights - low_score

    score = np.zeros(unique_keys.size)
    converged = True
    iterations = 0
    for size in np.unique(prompt_size):
        size = int(size)
        group_prompts = np.flatnonzero(prompt_size == size)
        position = np.full(prompt_values.size, -1, dtype=np.int64)
        position[group_prompts] = np.arange(group_prompts.size)
        rows = np.flatnonzero(position[prompt_code] >= 0)
        first, second = np.triu_indices(size, k=1)
        pair_number = np.full((size, size), -1, dtype=np.int64)
        pair_number[first, second] = np.arange(first.size)
        cell = position[prompt_code[rows]] * first.size + pair_number[low[rows], high[rows]]
        cells = group_prompts.size * first.size
        first_score = np.bincount(cell, weights=low_score[rows], minlength=cells).reshape(-1, first.size)
        second_score = np.bincount(cell, weights=high_score[rows], minlength=cells).reshape(-1, first.size)
        theta, group_converged, group_iterations = _newton_half_ties(
            first.astype(np.int64),
            second.astype(np.int64),
            size,
            first_score,
            second_score,
            np.zeros((group_prompts.size, size)),
            l2,
            tolerance,
            max_iterations,
        )
        slots = prompt_start[group_prompts][:, None] + np.arange(size)[None, :]
        score[slots] = theta
        converged &= bool(group_converged.all())
        iterations = max(iterations, group_iterations)

    warnings = (
        [] if converged else [f"some prompts did not converge within {max_iterations} Newton iterations"]
    )
    battles = np.bincount(np.concatenate([slot_a, slot_b]), minlength=unique_keys.size)
    return ResponseScores(
        prompt=prompt_values[slot_prompt],
        response=response_values[unique_keys % response_values.size],
        score=score,
        battles=battles.astype(np.int64),
        converged=converged,
        iterations=iterations,
        warnings=warnings,
    )
