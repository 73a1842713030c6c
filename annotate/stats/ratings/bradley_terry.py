"""Bradley-Terry leaderboards: the maximum likelihood fit of an outcome table, from battles, and one per group."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import replace
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import expit

from annotate.stats.ratings.davidson import fit_davidson
from annotate.stats.ratings.half_ties import fit_half_ties
from annotate.stats.ratings.identifiability import identifiability_problems, resolve_l2
from annotate.stats.ratings.numerics import anchor_covariance
from annotate.stats.ratings.outcomes import (
    OutcomeTable,
    Pairs,
    build_outcome_table,
    system_labels,
    validated_battles,
)
from annotate.stats.ratings.result import DEFAULT_ANCHOR_RATING, RatingResult, assemble, theta_to_elo


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
    labels = system_labels(systems, n)
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
    pairs = Pairs.from_table(table)
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
    problems = identifiability_problems(table, labels, ties_score_half=ties == "half" or only_ties)
    if only_ties:
        problems.append("only ties in the data: the Davidson tie parameter is not identified")
    applied_l2 = resolve_l2(l2, problems)
    warnings = problems + notes

    if ties == "half":
        fit = fit_half_ties(pairs, applied_l2, tolerance, max_iterations)
    else:
        fit = fit_davidson(pairs, applied_l2, tolerance, max_iterations)
    if not fit.converged:
        warnings.append(
            f"Newton's method did not converge within {max_iterations} iterations; "
            "the ratings are approximate"
        )

    covariance = None
    bootstrap_ratings = None
    if interval == "sandwich":
        covariance = anchor_covariance(fit.covariance(), anchor)
    elif interval == "bootstrap":
        theta_samples, notes = fit.bootstrap(bootstrap_rounds, seed, workers, tolerance, max_iterations)
        warnings.extend(notes)
        bootstrap_ratings = theta_to_elo(theta_samples, anchor=anchor, anchor_rating=anchor_rating)
    if ties == "davidson":
        fit_probability = fit.win_probability()
    else:
        fit_probability = expit(fit.theta[:, None] - fit.theta[None, :])
    return assemble(
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
    labels = system_labels(systems, n_systems)
    first, second, codes, battle_weights = validated_battles(model_a, model_b, outcome, n_systems, weights)
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
