"""Bradley-Terry with a tie as half a win each way: Newton's method on many problems at once, the sandwich
covariance and the warm-started bootstrap."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit, log_expit

from annotate.stats.ratings.bootstrap import Cells, bootstrap_outputs, run_chunks
from annotate.stats.ratings.identifiability import SEPARATION_L2, identified
from annotate.stats.ratings.numerics import (
    backtrack,
    cholesky,
    inverse_positive_definite,
    laplacian,
    sandwich,
    scatter,
    solve_with_cholesky,
)
from annotate.stats.ratings.outcomes import FloatArray, IntArray, Pairs

_CHORD_ITERATIONS = 30
_REUSE_FACTOR_BELOW = 1e-3
# Bootstrap rounds only feed percentiles: a hundred-millionth in log-strength (1e-6 Elo) is plenty.
_BOOTSTRAP_TOLERANCE = 1e-8
# Beyond this a chord iteration is running away (exp would overflow soon); Newton with line search takes over.
CHORD_THETA_LIMIT = 50.0
# Bootstrap rounds are fitted as dense rounds x n x n arrays of at most this many entries (16 MB).
_DENSE_BATCH_ENTRIES = 2_000_000


def _objective(
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


def newton_half_ties(
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
    objective = _objective(theta, first, second, first_score, comparisons, l2)
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
        gradient = scatter(score - count * probability, first, second, n_systems, sign=-1.0) - l2 * current
        if factor is None or previous_step > _REUSE_FACTOR_BELOW:
            # Once steps are small the Hessian barely changes: reusing its factor makes each remaining
            # step a cheap solve and still converges (linearly, at a rate of about the last step size).
            hessian = laplacian(count * probability * (1.0 - probability), first, second, n_systems)
            factor = cholesky(hessian + gauge_and_ridge)[0]
        step = solve_with_cholesky(factor, gradient[..., None])[..., 0]

        def evaluate(
            candidate: FloatArray, rows: IntArray, score: FloatArray = score, count: FloatArray = count
        ) -> FloatArray:
            return _objective(candidate, first, second, score[rows], count[rows], l2)

        new_theta, new_objective = backtrack(current, step, objective[active], evaluate)
        theta[active] = new_theta
        objective[active] = new_objective
        step_size = np.abs(step).max(axis=1, initial=0.0)
        done = step_size <= tolerance
        converged[active[done]] = True
        active = active[~done]
        factor = factor[~done]
        previous_step = step_size[~done].max(initial=0.0)
    return theta, converged, iterations


def bradley_terry_information(theta: FloatArray, pairs: Pairs, comparisons: FloatArray) -> FloatArray:
    """Fisher information of the log-strengths (n x n, a graph Laplacian) with ``comparisons`` battles per
    pair: the curvature the sandwich's bread and the bootstrap's fixed Hessian are built from."""
    probability = expit(theta[pairs.first] - theta[pairs.second])
    return laplacian(
        (comparisons * probability * (1 - probability))[None], pairs.first, pairs.second, pairs.n_systems
    )[0]


@dataclass
class HalfTiesFit:
    pairs: Pairs
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
        bread = bradley_terry_information(self.theta, pairs, pairs.comparisons)
        probability = expit(self.theta[pairs.first] - self.theta[pairs.second])
        score_squares = (
            pairs.first_win_squared_weights * (1 - probability) ** 2
            + pairs.second_win_squared_weights * probability**2
            + pairs.tie_squared_weights * (0.5 - probability) ** 2
        )
        meat = laplacian(score_squares[None], pairs.first, pairs.second, n)[0]
        return sandwich(bread, meat, n, self.l2)

    def bootstrap(
        self, rounds: int, seed: int | None, workers: int | None, tolerance: float, max_iterations: int
    ) -> tuple[FloatArray, list[str]]:
        pairs = self.pairs
        n = pairs.n_systems
        cells = Cells.from_pairs(pairs)
        if cells.count.size == 0:
            return np.tile(self.theta, (rounds, 1)), []
        sampler = cells.sampler()
        # Every resample has the full data's size and nearly its curvature, so the full fit's Hessian
        # stands in for each round's: no factorisation per round, and a contraction of a few percent per step.
        hessian = bradley_terry_information(self.theta, pairs, pairs.comparisons)
        hessian_inverse = inverse_positive_definite(hessian + self.l2 * np.eye(n) + 1.0 / n)
        rounds_per_batch = max(1, _DENSE_BATCH_ENTRIES // (n * n))
        score_matrix = cells.score_matrix(pairs)

        def work(rng: np.random.Generator, size: int) -> tuple[FloatArray, int, int]:
            counts = sampler.draw(rng, size)
            theta = np.empty((size, n))
            regularised = failed = 0
            for start in range(0, size, rounds_per_batch):
                score = (score_matrix @ counts[start : start + rounds_per_batch].T).T.reshape(-1, n, n)
                batch, converged = _chord(
                    score, self.theta, hessian_inverse, self.l2, max(tolerance, _BOOTSTRAP_TOLERANCE)
                )
                retry = np.flatnonzero(~converged)
                if retry.size:
                    # Far from the full data (tiny samples) the fixed Hessian is too crude: use Newton proper,
                    # regularised straight away where the resample is separable (say a rarely seen system
                    # never loses in it), since Newton would only chase that system to infinity.
                    separable = np.array([self.l2 == 0 and not identified(score[row]) for row in retry])
                    regularised += int(separable.sum())
                    for l2, rows in ((self.l2, retry[~separable]), (SEPARATION_L2, retry[separable])):
                        if rows.size:
                            batch[rows], converged[rows], _ = newton_half_ties(
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

        return bootstrap_outputs(run_chunks(seed, rounds, workers, work))


def _chord(
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
        # einsum keeps this in numpy's own loops (see cholesky on multithreaded BLAS).
        step = np.einsum("ri,ij->rj", won - expected - l2 * current, hessian_inverse)
        current += step
        step_size = np.abs(step).max(axis=1)
        done = step_size <= tolerance
        stalled = ~done & ((step_size > previous_step) | (np.abs(current).max(axis=1) > CHORD_THETA_LIMIT))
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


def fit_half_ties(pairs: Pairs, l2: float, tolerance: float, max_iterations: int) -> HalfTiesFit:
    n = pairs.n_systems
    first_score = pairs.first_wins + 0.5 * pairs.ties
    second_score = pairs.second_wins + 0.5 * pairs.ties
    # The log-odds of each system's score rate is a cheap start that saves a Newton step or two.
    scored = scatter(first_score[None], pairs.first, pairs.second, n, 0.0)[0]
    scored += scatter(second_score[None], pairs.second, pairs.first, n, 0.0)[0]
    played = scatter((first_score + second_score)[None], pairs.first, pairs.second, n, 1.0)[0]
    rate = np.clip(np.divide(scored, played, out=np.full(n, 0.5), where=played > 0), 0.02, 0.98)
    theta, converged, iterations = newton_half_ties(
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
    return HalfTiesFit(pairs, theta[0], l2, bool(converged[0]), iterations)
