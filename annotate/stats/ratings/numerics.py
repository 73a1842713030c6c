"""Numerical building blocks shared by the fits: scatter-adds, graph Laplacians, small batched Cholesky solves,
a backtracking line search and the sandwich covariance."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from annotate.stats.ratings.outcomes import FloatArray, IntArray

_MAX_HALVINGS = 60


def scatter(values: FloatArray, first: IntArray, second: IntArray, n_systems: int, sign: float) -> FloatArray:
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


def laplacian(edge_weights: FloatArray, first: IntArray, second: IntArray, n_systems: int) -> FloatArray:
    """Weighted graph Laplacians (problems x n x n): the curvature of any pairwise-difference likelihood."""
    problems = edge_weights.shape[0]
    matrix = np.zeros((problems, n_systems * n_systems))
    matrix[:, first * n_systems + second] = -edge_weights
    matrix[:, second * n_systems + first] = -edge_weights
    matrix[:, :: n_systems + 1] = scatter(edge_weights, first, second, n_systems, sign=1.0)
    return matrix.reshape(problems, n_systems, n_systems)


def cholesky(matrix: FloatArray) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Lower Cholesky factors of a batch of symmetric matrices (problems x n x n), and which were positive
    definite (a non-positive pivot is replaced by a tiny one so the factor stays finite).

    Written as n vectorised rank-one updates rather than calling LAPACK: multithreaded OpenBLAS stalls on
    small solves when other processes keep the cores busy, as on any web or Celery host (bench/README.md).
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


def solve_positive_definite(matrix: FloatArray, right_hand_side: FloatArray) -> FloatArray:
    """Solve ``matrix @ x = right_hand_side`` for a batch (problems x n x n, problems x n x m)."""
    return solve_with_cholesky(cholesky(matrix)[0], right_hand_side)


def solve_with_cholesky(factor: FloatArray, right_hand_side: FloatArray) -> FloatArray:
    solution = np.array(right_hand_side, dtype=np.float64)
    size = factor.shape[-1]
    for row in range(size):
        solution[:, row] /= factor[:, row, row, None]
        solution[:, row + 1 :] -= factor[:, row + 1 :, row, None] * solution[:, None, row]
    for row in reversed(range(size)):
        solution[:, row] /= factor[:, row, row, None]
        solution[:, :row] -= factor[:, row, :row, None] * solution[:, None, row]
    return solution


def inverse_positive_definite(matrix: FloatArray) -> FloatArray:
    size = matrix.shape[-1]
    inverse = solve_positive_definite(matrix[None], np.eye(size)[None])[0]
    return 0.5 * (inverse + inverse.T)


def backtrack(
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


def sandwich(bread: FloatArray, meat: FloatArray, n_theta: int, l2: float) -> FloatArray:
    """A^-1 B A^-1 for the parameters (theta first), with theta centred to sum zero.

    Without regularisation A is singular along "shift every theta"; (A + J/n)^-1 - J/n is its
    pseudo-inverse there, with J the all-ones block on theta.
    """
    size = bread.shape[0]
    gauge = np.zeros((size, size))
    gauge[:n_theta, :n_theta] = 1.0 / n_theta
    ridge = l2 * np.eye(size)
    inverse = (
        inverse_positive_definite(bread + ridge)
        if l2 > 0
        else inverse_positive_definite(bread + gauge) - gauge
    )
    covariance = inverse @ (meat + ridge) @ inverse
    centre = np.eye(size) - gauge
    covariance = centre @ covariance @ centre
    return 0.5 * (covariance + covariance.T)


def anchor_covariance(covariance: FloatArray, anchor: int | None) -> FloatArray:
    if anchor is None:
        return covariance
    # theta - theta[anchor] = M theta with M = I - 1 e_anchor^T
    transform = np.eye(covariance.shape[0])
    transform[:, anchor] -= 1.0
    return transform @ covariance @ transform.T
