"""Krippendorff's alpha from the coincidence matrix, overall and within and between coder groups."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from annotate.stats.agreement.arrays import LongJudgments, index_array, unit_value_table, validated

Level = Literal["nominal", "ordinal", "interval", "ratio"]

LEVELS: tuple[Level, ...] = ("nominal", "ordinal", "interval", "ratio")


@dataclass(frozen=True, slots=True, eq=False)
class GroupAlpha:
    """Krippendorff's alpha inside each coder group and across groups (see ``group_alpha``)."""

    within: NDArray[np.float64]
    between: float


def krippendorff_alpha(
    *, units: ArrayLike, coders: ArrayLike, values: ArrayLike, level: Level = "nominal"
) -> float:
    """Krippendorff's alpha for any number of coders per unit, with missing judgments.

    Follows Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": units with fewer than two
    values are not pairable and are ignored; alpha = 1 - D_observed / D_expected from the coincidence matrix.
    ``level`` picks the difference function: "nominal" (categories), "ordinal" (ranks), "interval"
    (differences) or "ratio" (relative differences; values must be >= 0).

    Returns NaN when alpha is undefined: no unit has two values, or every pairable value is the same, so
    there is no variation against which to judge agreement.
    """
    judgments = validated(units, coders, values)
    check_level(level, judgments.values)
    matrix, domain = coincidences(judgments)
    return alpha_from_coincidences(matrix, domain, level)


def group_alpha(
    *,
    units: ArrayLike,
    coders: ArrayLike,
    values: ArrayLike,
    coder_groups: ArrayLike,
    level: Level = "nominal",
) -> GroupAlpha:
    """Krippendorff's alpha within each group of coders and between groups.

    ``coder_groups[coder]`` is the group index (>= 0) of each coder, e.g. in-house vs vendor annotators.

    ``within[g]`` is ordinary alpha on the judgments of group ``g``'s coders only.

    ``between`` is alpha where values are paired only across groups: the coincidence matrix counts only pairs
    of values given by coders of different groups. Each unit keeps the weight it has in ordinary alpha (its
    number of pairable values, m) and spreads it evenly over its cross-group ordered pairs, so the unit adds
    m / P * (n n^T - sum_g n_g n_g^T) to the matrix, with n the unit's value counts, n_g those of group g and
    P = m^2 - sum_g m_g^2 its number of cross-group ordered pairs. Units seen by one group only drop out.
    Expected disagreement comes from the marginals of that matrix as usual. When every coder is a group of
    their own this is exactly ordinary alpha. A ``between`` clearly below the ``within`` values means each
    group is consistent but the groups read the guidelines differently.

    Entries are NaN where alpha is undefined (see ``krippendorff_alpha``), including groups with no pairable
    unit.
    """
    judgments = validated(units, coders, values)
    check_level(level, judgments.values)
    group_of_coder = index_array(coder_groups, "coder_groups")
    if judgments.coders.size and judgments.coders.max() >= group_of_coder.size:
        raise ValueError(
            f"coder_groups has {group_of_coder.size} entries but coder index {judgments.coders.max()} is used"
        )
    groups = group_of_coder[judgments.coders]
    group_count = int(group_of_coder.max()) + 1 if group_of_coder.size else 0
    group_span = max(group_count, 1)

    within = np.full(group_count, np.nan)
    for group in range(group_count):
        member = groups == group
        subset = LongJudgments(judgments.units[member], judgments.coders[member], judgments.values[member])
        within[group] = alpha_from_coincidences(*coincidences(subset), level)

    table, domain, unit_codes, value_codes = unit_value_table(judgments, compress_units=True)
    # One row per (unit, group) present: its value counts n_g.
    unit_group_rows, row_of_judgment = np.unique(unit_codes * group_span + groups, return_inverse=True)
    group_table = np.bincount(
        row_of_judgment * domain.size + value_codes, minlength=unit_group_rows.size * domain.size
    ).reshape(unit_group_rows.size, domain.size)
    unit_of_row = unit_group_rows // group_span

    per_unit = table.sum(axis=1).astype(np.float64)
    per_unit_group = group_table.sum(axis=1).astype(np.float64)
    cross_pairs = per_unit**2 - np.bincount(unit_of_row, weights=per_unit_group**2, minlength=table.shape[0])
    unit_weight = np.divide(per_unit, cross_pairs, out=np.zeros_like(per_unit), where=cross_pairs > 0)
    matrix = (table * unit_weight[:, None]).T @ table - (
        group_table * unit_weight[unit_of_row, None]
    ).T @ group_table
    return GroupAlpha(within, alpha_from_coincidences(matrix, domain, level))


def check_level(level: str, values: NDArray[np.float64]) -> None:
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}; got {level!r}")
    if level == "ratio" and values.size and values.min() < 0:
        raise ValueError("ratio level needs values >= 0 (a ratio scale has an absolute zero)")


def coincidences(judgments: LongJudgments) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    table, domain, _, _ = unit_value_table(judgments, compress_units=True)
    return coincidences_from_table(table), domain


def coincidences_from_table(table: NDArray[np.int64]) -> NDArray[np.float64]:
    per_unit = table.sum(axis=1)
    pairable = per_unit >= 2
    counts = table[pairable].astype(np.float64)
    weighted = counts / (per_unit[pairable, None] - 1.0)
    matrix = weighted.T @ counts
    matrix[np.diag_indices_from(matrix)] -= weighted.sum(axis=0)
    return matrix


def squared_differences(domain: NDArray[np.float64], level: Level) -> NDArray[np.float64]:
    """Krippendorff's difference function delta^2(c, k) for the levels where it is fixed (not ordinal)."""
    difference = domain[:, None] - domain[None, :]
    if level == "nominal":
        return (difference != 0).astype(np.float64)
    if level == "interval":
        return difference**2
    total = domain[:, None] + domain[None, :]
    return np.divide(difference, total, out=np.zeros_like(difference), where=total != 0) ** 2


def ordinal_positions(marginals: NDArray[np.float64]) -> NDArray[np.float64]:
    """Mid-ranks of each value: Krippendorff's ordinal difference between c and k is (rank_c - rank_k)^2."""
    return np.cumsum(marginals, axis=-1) - marginals / 2.0


def alpha_from_coincidences(matrix: NDArray[np.float64], domain: NDArray[np.float64], level: Level) -> float:
    marginals = matrix.sum(axis=1)
    total = marginals.sum()
    if level == "ordinal":
        positions = ordinal_positions(marginals)
        distances = (positions[:, None] - positions[None, :]) ** 2
    else:
        distances = squared_differences(domain, level)
    observed = float((matrix * distances).sum())
    expected = float(marginals @ distances @ marginals)
    if not expected > 0.0:
        return float("nan")
    return float(1.0 - (total - 1.0) * observed / expected)
