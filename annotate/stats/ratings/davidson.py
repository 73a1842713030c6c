"""Bradley-Terry with Davidson's (1970) tie parameter: Newton's method on (theta, log nu), the sandwich
covariance and the bootstrap."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from annotate.stats.ratings.bootstrap import Cells, bootstrap_outputs, run_chunks
from annotate.stats.ratings.half_ties import fit_half_ties
from annotate.stats.ratings.identifiability import SEPARATION_L2
from annotate.stats.ratings.numerics import backtrack, laplacian, sandwich, scatter, solve_positive_definite
from annotate.stats.ratings.outcomes import FloatArray, IntArray, Pairs

# Weighted (first wins, second wins, ties) of each pair.
_Counts = tuple[FloatArray, FloatArray, FloatArray]


@dataclass(frozen=True)
class _Terms:
    difference: FloatArray
    log_normaliser: FloatArray
    first_wins: FloatArray
    second_wins: FloatArray
    tie: FloatArray


def _terms(difference: FloatArray, gamma: float) -> _Terms:
    """Outcome probabilities at log-strength differences ``difference`` (any shape)."""
    # Dividing numerator and denominator by sqrt(pi_i * pi_j) leaves exp(+-d/2) and nu: stable for any d.
    half = 0.5 * difference
    log_normaliser = np.logaddexp(np.logaddexp(half, -half), gamma)
    return _Terms(
        difference=difference,
        log_normaliser=log_normaliser,
        first_wins=np.exp(half - log_normaliser),
        second_wins=np.exp(-half - log_normaliser),
        tie=np.exp(gamma - log_normaliser),
    )


def _log_likelihood(theta: FloatArray, gamma: float, pairs: Pairs, counts: _Counts) -> float:
    first_wins, second_wins, ties = counts
    terms = _terms(theta[pairs.first] - theta[pairs.second], gamma)
    comparisons = first_wins + second_wins + ties
    return float(
        np.sum(
            0.5 * (first_wins - second_wins) * terms.difference
            + ties * gamma
            - comparisons * terms.log_normaliser
        )
    )


def _derivatives(
    theta: FloatArray, gamma: float, pairs: Pairs, counts: _Counts
) -> tuple[FloatArray, FloatArray, _Terms]:
    """Gradient and negative Hessian of the Davidson log-likelihood in (theta, gamma), unpenalised.

    Per battle the model is an exponential family in the statistics X (+1/2 win, -1/2 loss, 0 tie, the
    coefficient of d) and T (1 for a tie, the coefficient of gamma), so the curvature is their covariance.
    """
    n = pairs.n_systems
    first_wins, second_wins, ties = counts
    terms = _terms(theta[pairs.first] - theta[pairs.second], gamma)
    comparisons = first_wins + second_wins + ties
    mean_x = 0.5 * (terms.first_wins - terms.second_wins)
    variance_x = 0.25 * (terms.first_wins + terms.second_wins) - mean_x**2
    covariance_xt = -mean_x * terms.tie
    gradient = np.empty(n + 1)
    gradient[:n] = scatter(
        (0.5 * (first_wins - second_wins) - comparisons * mean_x)[None], pairs.first, pairs.second, n, -1.0
    )[0]
    gradient[n] = np.sum(ties - comparisons * terms.tie)
    information = np.zeros((n + 1, n + 1))
    information[:n, :n] = laplacian((comparisons * variance_x)[None], pairs.first, pairs.second, n)[0]
    information[:n, n] = information[n, :n] = scatter(
        (comparisons * covariance_xt)[None], pairs.first, pairs.second, n, -1.0
    )[0]
    information[n, n] = np.sum(comparisons * terms.tie * (1.0 - terms.tie))
    return gradient, information, terms


def _newton(
    pairs: Pairs,
    counts: _Counts,
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
        values = [_log_likelihood(row[:n], row[n], pairs, counts) - 0.5 * l2 * row @ row for row in candidate]
        return np.array(values)

    objective = penalised(parameters[None], np.zeros(1, dtype=np.int64))
    converged = False
    iterations = 0
    while not converged and iterations < max_iterations:
        iterations += 1
        gradient, information, _ = _derivatives(parameters[:n], parameters[n], pairs, counts)
        gradient -= l2 * parameters
        step = solve_positive_definite(
            (information + l2 * np.eye(n + 1) + gauge)[None], gradient[None, :, None]
        )[0, :, 0]
        new_parameters, objective = backtrack(parameters[None], step[None], objective, penalised)
        parameters = new_parameters[0]
        converged = bool(np.abs(step).max() <= tolerance)
    return parameters[:n], float(parameters[n]), converged, iterations


@dataclass
class DavidsonFit:
    pairs: Pairs
    theta: FloatArray
    gamma: float
    l2: float
    converged: bool
    iterations: int

    @property
    def tie_parameter(self) -> float:
        return math.exp(self.gamma)

    def win_probability(self) -> FloatArray:
        terms = _terms(self.theta[:, None] - self.theta[None, :], self.gamma)
        return terms.first_wins + 0.5 * terms.tie

    def covariance(self) -> FloatArray:
        """Sandwich covariance of theta, from the joint (theta, gamma) sandwich; see _HalfTiesFit."""
        pairs = self.pairs
        n = pairs.n_systems
        _, bread, terms = _derivatives(
            self.theta, self.gamma, pairs, (pairs.first_wins, pairs.second_wins, pairs.ties)
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
        meat[:n, :n] = laplacian(theta_theta[None], pairs.first, pairs.second, n)[0]
        meat[:n, n] = meat[n, :n] = scatter(theta_gamma[None], pairs.first, pairs.second, n, -1.0)[0]
        meat[n, n] = gamma_gamma.sum()
        return sandwich(bread, meat, n, self.l2)[:n, :n]

    def bootstrap(
        self, rounds: int, seed: int | None, workers: int | None, tolerance: float, max_iterations: int
    ) -> tuple[FloatArray, list[str]]:
        pairs = self.pairs
        cells = Cells.from_pairs(pairs)
        sampler = cells.sampler()

        def work(rng: np.random.Generator, size: int) -> tuple[FloatArray, int, int]:
            first_wins, second_wins, ties = cells.tables(sampler.draw(rng, size), pairs.first.size)
            theta = np.empty((size, pairs.n_systems))
            failed = 0
            regularised = 0
            for index in range(size):
                l2 = self.l2
                for _attempt in range(2):
                    theta[index], _, converged, _ = _newton(
                        pairs,
                        (first_wins[index], second_wins[index], ties[index]),
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

        return bootstrap_outputs(run_chunks(seed, rounds, workers, work))


def fit_davidson(pairs: Pairs, l2: float, tolerance: float, max_iterations: int) -> DavidsonFit:
    # Start from the half-win fit and the tie rate: at equal strengths P(tie) = nu / (2 + nu).
    start = fit_half_ties(pairs, l2, tolerance, max_iterations)
    tie_fraction = pairs.ties.sum() / pairs.comparisons.sum()
    tie_fraction = min(max(tie_fraction, 1e-6), 1 - 1e-6)
    theta, gamma, converged, iterations = _newton(
        pairs,
        (pairs.first_wins, pairs.second_wins, pairs.ties),
        start.theta,
        math.log(2 * tie_fraction / (1 - tie_fraction)),
        l2,
        tolerance,
        max_iterations,
    )
    return DavidsonFit(pairs, theta, gamma, l2, converged, iterations)
