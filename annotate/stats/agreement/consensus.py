"""How far each unit's judgments agree with each other: raw agreement, agreement with the majority of the
others, and vote entropy."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

from annotate.stats.agreement.arrays import (
    LongJudgments,
    index_count,
    raw_arrays,
    unit_value_table,
    validated,
)


def percent_agreement(*, units: ArrayLike, coders: ArrayLike, values: ArrayLike) -> float:
    """Raw pairwise agreement: per unit, the share of coder pairs giving the same value, averaged over units.

    Units with fewer than two judgments are ignored and every other unit weighs the same, so with a fixed
    number of coders per unit this is Fleiss' P-bar. Values are compared exactly (nominal). Returns NaN when
    no unit has two judgments.
    """
    table, _, _, _ = unit_value_table(validated(units, coders, values), compress_units=True)
    per_unit = table.sum(axis=1).astype(np.float64)
    pairable = per_unit >= 2
    if not pairable.any():
        return float("nan")
    counts = table[pairable].astype(np.float64)
    pairs = per_unit[pairable] * (per_unit[pairable] - 1)
    return float(((counts * (counts - 1)).sum(axis=1) / pairs).mean())


def majority_agreement_outcomes(
    *, units: ArrayLike, coders: ArrayLike, values: ArrayLike
) -> NDArray[np.float64]:
    """For each judgment: 1.0 if it matches the majority of the other coders on its unit, else 0.0.

    NaN (not scored) when no other coder judged the unit or when the other coders' most common value is
    tied. Values are compared exactly (nominal). Aligned with the input rows; rows with a NaN value are NaN.
    """
    unit_array, coder_array, value_array = raw_arrays(units, coders, values)
    outcomes = np.full(value_array.size, np.nan)
    present = ~np.isnan(value_array)
    judgments = validated(unit_array[present], coder_array[present], value_array[present])
    outcomes[present] = _majority_outcomes(judgments)
    return outcomes


def vote_entropy(
    *,
    units: ArrayLike,
    coders: ArrayLike,
    values: ArrayLike,
    unit_count: int | None = None,
    base: float = 2.0,
) -> NDArray[np.float64]:
    """Shannon entropy of the value distribution on each unit (0 = unanimous), in units of ``base``.

    Entry ``u`` belongs to unit index ``u``; ``unit_count`` sets the length (default: largest index + 1).
    A unit with no judgment is NaN; one with a single judgment is 0.
    """
    if not base > 1.0:
        raise ValueError(f"base must be greater than 1, got {base!r}")
    judgments = validated(units, coders, values)
    size = index_count(judgments.units, unit_count, name="unit_count", what="unit")
    table, _, _, _ = unit_value_table(judgments, compress_units=False, unit_count=size)
    per_unit = table.sum(axis=1, keepdims=True).astype(np.float64)
    shares = np.divide(table, per_unit, out=np.zeros(table.shape), where=per_unit > 0)
    # entr(p) = -p log p with entr(0) = 0, the limit, so values nobody chose add nothing.
    entropy = special.entr(shares).sum(axis=1) / np.log(base)
    entropy[per_unit[:, 0] == 0] = np.nan
    return entropy


def _majority_outcomes(judgments: LongJudgments) -> NDArray[np.float64]:
    """Leave-one-out majority agreement per judgment, from each unit's three largest value counts.

    Removing one judgment of value x only lowers x's count by one, so the others' majority follows from the
    unit's top counts: if x was below the top, the top value wins unless it is tied; if x was the unique top,
    x still wins when it led by at least two and ties when it led by one; if x shared the top, the other top
    value wins unless a third value shared it too.
    """
    table, _, unit_codes, value_codes = unit_value_table(judgments, compress_units=True)
    padded = np.zeros((table.shape[0], max(3, table.shape[1])), dtype=table.dtype)
    padded[:, : table.shape[1]] = table
    top = -np.sort(-padded, axis=1)[:, :3]
    first, second, third = (top[unit_codes, rank] for rank in range(3))
    own = table[unit_codes, value_codes]
    has_others = table.sum(axis=1)[unit_codes] > 1

    outcomes = np.full(judgments.values.size, np.nan)
    below_top = own < first
    outcomes[below_top & (first > second)] = 0.0
    unique_top = (own == first) & (first > second)
    outcomes[unique_top & (first - 1 > second)] = 1.0
    shared_top = (own == first) & (first == second)
    outcomes[shared_top & (second > third)] = 0.0
    outcomes[~has_others] = np.nan
    return outcomes
