"""A percentile bootstrap interval for Krippendorff's alpha, resampling units."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from annotate.stats.agreement.alpha import (
    Level,
    alpha_from_coincidences,
    check_level,
    coincidences_from_table,
    ordinal_positions,
    squared_differences,
)
from annotate.stats.agreement.arrays import check_positive_integer, unit_value_table, validated

# Upper bound on the cells of one bootstrap weight block, so memory stays flat however many rounds are asked.
_BOOTSTRAP_BLOCK_CELLS = 1 << 22


@dataclass(frozen=True, slots=True, eq=False)
class AlphaBootstrap:
    """Point estimate of alpha with a percentile bootstrap interval over resampled units.

    ``samples`` holds one alpha per round; a round whose resample has a single value (alpha undefined) is NaN
    there and left out of ``low`` and ``high``.
    """

    estimate: float
    low: float
    high: float
    confidence: float
    samples: NDArray[np.float64]


def krippendorff_alpha_bootstrap(
    *,
    units: ArrayLike,
    coders: ArrayLike,
    values: ArrayLike,
    level: Level = "nominal",
    rounds: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> AlphaBootstrap:
    """Krippendorff's alpha with a percentile bootstrap interval that resamples units (pairs).

    Pairable units are drawn with replacement, as many as there are, ``rounds`` times; the interval is the
    central ``confidence`` share of the resampled alphas. Units are the resampling level because judgments on
    one pair are not independent of each other. The same ``seed`` gives the same result.

    Units with the same value counts contribute identically, so a resample is fully described by how many
    times each distinct count profile is drawn; that is a multinomial over profiles, which makes a round a
    weighted sum over the distinct profiles (hundreds to a few thousand on real data) instead of a pass over
    every unit.

    ``estimate`` is NaN when alpha is undefined (see ``krippendorff_alpha``), and then so are ``low`` and
    ``high``; rounds whose resample happens to be degenerate are NaN in ``samples`` and skipped.
    """
    check_positive_integer(rounds, "rounds")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    judgments = validated(units, coders, values)
    check_level(level, judgments.values)
    table, domain, _, _ = unit_value_table(judgments, compress_units=True)
    matrix = coincidences_from_table(table)
    estimate = alpha_from_coincidences(matrix, domain, level)
    samples = np.full(rounds, np.nan)
    if np.isnan(estimate):
        return AlphaBootstrap(estimate, np.nan, np.nan, confidence, samples)

    pairable_table = table[table.sum(axis=1) >= 2]
    profiles, frequency = _distinct_rows(pairable_table)
    probabilities = frequency / frequency.sum()
    generator = np.random.default_rng(seed)
    block = max(1, min(rounds, _BOOTSTRAP_BLOCK_CELLS // profiles.shape[0]))
    for start in range(0, rounds, block):
        size = min(block, rounds - start)
        weights = generator.multinomial(pairable_table.shape[0], probabilities, size=size)
        samples[start : start + size] = _alpha_from_profile_weights(weights, profiles, domain, level)

    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return AlphaBootstrap(estimate, np.nan, np.nan, confidence, samples)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return AlphaBootstrap(estimate, float(low), float(high), confidence, samples)


def _distinct_rows(table: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Distinct rows of a count table and how often each occurs."""
    radix = int(table.max()) + 1 if table.size else 1
    if radix ** table.shape[1] < 2**63:
        # Counts read as digits of one integer: a 1-D unique is far faster than unique over rows.
        keys = table @ (radix ** np.arange(table.shape[1], dtype=np.int64))
        _, first, frequency = np.unique(keys, return_index=True, return_counts=True)
        return table[first], frequency
    return np.unique(table, axis=0, return_counts=True)


def _alpha_from_profile_weights(
    weights: NDArray[np.int64], profiles: NDArray[np.int64], domain: NDArray[np.float64], level: Level
) -> NDArray[np.float64]:
    """Alpha for each row of ``weights``, the number of units drawn with each distinct value-count profile.

    Equivalent to building each round's coincidence matrix, but uses only per-profile sufficient
    statistics, so a round costs O(profiles x values) rather than O(profiles x values^2).
    """
    counts = profiles.astype(np.float64)
    unit_weight = 1.0 / (counts.sum(axis=1) - 1.0)
    marginals = weights @ counts
    total = marginals.sum(axis=1)
    if level == "ordinal":
        # Mid-ranks depend on each round's marginals; centring them keeps sums of squares well conditioned.
        positions = ordinal_positions(marginals)
        positions -= ((marginals * positions).sum(axis=1) / total)[:, None]
        linear = positions @ counts.T
        quadratic = (positions**2) @ counts.T
        pairable_values = counts.sum(axis=1)
        # Sum over ordered value pairs within a unit of (rank_c - rank_k)^2, written with per-unit sums.
        within = 2.0 * pairable_values * quadratic - 2.0 * linear**2
        # A one-valued profile has no disagreement; set it exactly so perfect agreement gives exactly 1.
        within[:, np.count_nonzero(profiles, axis=1) <= 1] = 0.0
        observed = (weights * within * unit_weight).sum(axis=1)
        expected = (
            2.0 * total * (marginals * positions**2).sum(axis=1)
            - 2.0 * (marginals * positions).sum(axis=1) ** 2
        )
    else:
        distances = squared_differences(domain, level)
        per_profile = np.einsum("pc,ck,pk->p", counts, distances, counts) * unit_weight
        observed = weights @ per_profile
        expected = np.einsum("rc,ck,rk->r", marginals, distances, marginals)
    alpha = np.full(weights.shape[0], np.nan)
    defined = expected > 0.0
    alpha[defined] = 1.0 - (total[defined] - 1.0) * observed[defined] / expected[defined]
    return alpha
