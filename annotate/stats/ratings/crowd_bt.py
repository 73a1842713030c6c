"""Crowd-BT: ratings and annotator reliabilities estimated jointly, so a careless or adversarial annotator
counts for less."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import expit, log_expit

from annotate.stats.ratings.half_ties import CHORD_THETA_LIMIT, bradley_terry_information, newton_half_ties
from annotate.stats.ratings.identifiability import identifiability_problems, resolve_l2
from annotate.stats.ratings.numerics import anchor_covariance, cholesky, laplacian, sandwich
from annotate.stats.ratings.outcomes import (
    FloatArray,
    IntArray,
    Outcome,
    Pairs,
    build_outcome_table,
    integer_vector,
    system_labels,
    validated_battles,
)
from annotate.stats.ratings.result import DEFAULT_ANCHOR_RATING, RatingResult, assemble


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
    labels = system_labels(systems, n_systems)
    first, second, codes, _ = validated_battles(model_a, model_b, outcome, n_systems, None)
    annotators = integer_vector(annotator)
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
    warnings = identifiability_problems(table, labels)
    applied_l2 = resolve_l2(l2, warnings)
    pairs = Pairs.from_table(table)
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
        fitted, fit_converged, _ = newton_half_ties(
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
                and np.abs(extrapolated[:n_systems]).max() < CHORD_THETA_LIMIT
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
        covariance = anchor_covariance(
            _covariance(
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
    ratings = assemble(
        table=table,
        systems=labels,
        theta=theta,
        win_probability=expit(theta[:, None] - theta[None, :]),
        covariance=covariance,
        interval=interval,
        confidence=confidence,
        anchor=anchor,
        anchor_rating=anchor_rating,
        l2=applied_l2,
        warnings=warnings,
        converged=converged,
        iterations=iterations,
    )
    return CrowdBTResult(
        ratings=ratings,
        reliability=reliability,
        annotator_battles=votes.astype(np.int64),
        converged=converged,
        iterations=iterations,
        warnings=warnings,
    )


def _covariance(
    theta: FloatArray,
    reliability: FloatArray,
    pairs: Pairs,
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
    bread = laplacian(bread_weights[None], pairs.first, pairs.second, n)[0]
    meat = laplacian(meat_weights[None], pairs.first, pairs.second, n)[0]
    reduced = bread + l2 * np.eye(n) + np.full((n, n), 1.0 / n)
    if not cholesky(reduced[None])[1][0]:
        # Far from the optimum or with very noisy annotators the observed information need not be positive;
        # the complete-data information always is.
        warnings.append(
            "Crowd-BT observed information is not positive definite; intervals use complete-data information"
        )
        comparisons = np.bincount(vote_pair, minlength=size) + np.bincount(tied_pair, minlength=size)
        bread = bradley_terry_information(theta, pairs, comparisons)
    return sandwich(bread, meat, n, l2)
