"""Fleiss' kappa over all coders and Cohen's kappa for every pair of coders."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import sparse

from annotate.stats.agreement.arrays import (
    check_positive_integer,
    index_count,
    is_integer,
    unit_value_table,
    validated,
)


@dataclass(frozen=True, slots=True, eq=False)
class FleissTable:
    """Subjects x categories counts for Fleiss' kappa.

    ``units[i]`` is the unit index of row ``i`` and ``categories[j]`` the value counted in column ``j``.
    """

    counts: NDArray[np.int64]
    categories: NDArray[np.float64]
    units: NDArray[np.int64]


@dataclass(frozen=True, slots=True, eq=False)
class PairwiseKappa:
    """Cohen's kappa for every pair of coders, indexed [coder, coder].

    ``kappa`` is NaN on the diagonal (a coder is not compared with themselves), where two coders share fewer
    than ``min_shared`` units, and where their shared labels all fall in one category (kappa undefined).
    ``shared_units`` counts the units both coders judged.
    """

    kappa: NDArray[np.float64]
    shared_units: NDArray[np.int64]


def fleiss_kappa(counts: ArrayLike) -> float:
    """Fleiss' kappa (Fleiss 1971) from a subjects x categories table of rater counts.

    Every subject must be rated by the same number of raters (>= 2), though not by the same raters. Returns
    NaN when there is no subject or all ratings fall in one category (chance agreement is 1, kappa 0/0).
    """
    table = np.asarray(counts)
    if table.ndim != 2:
        raise ValueError(f"counts must be a 2-D subjects x categories table, got {table.ndim} dimensions")
    if table.shape[0] == 0:
        return float("nan")
    _check_count_table(table, "counts")
    table = table.astype(np.float64)
    raters = table.sum(axis=1)
    if not np.all(raters == raters[0]):
        raise ValueError("every subject must be rated by the same number of raters (row sums differ)")
    rater_count = raters[0]
    if rater_count < 2:
        raise ValueError(f"Fleiss' kappa needs at least 2 raters per subject, got {rater_count:g}")
    subject_agreement = ((table**2).sum(axis=1) - rater_count) / (rater_count * (rater_count - 1))
    category_share = table.sum(axis=0) / table.sum()
    chance = float((category_share**2).sum())
    if chance >= 1.0:
        return float("nan")
    return float((subject_agreement.mean() - chance) / (1.0 - chance))


def fleiss_count_table(
    *, units: ArrayLike, coders: ArrayLike, values: ArrayLike, raters: int | None = None
) -> FleissTable:
    """Subjects x categories table for ``fleiss_kappa``, keeping units judged by exactly ``raters`` coders.

    ``raters`` defaults to the largest number of judgments on any unit, so only fully judged units are kept;
    the table is empty (and ``fleiss_kappa`` NaN) when no unit has two judgments.
    Columns cover every value in the input, so the layout does not depend on which units are complete.
    """
    judgments = validated(units, coders, values)
    if raters is not None and not is_integer(raters):
        raise ValueError(f"raters must be an integer, got {raters!r}")
    if raters is not None and raters < 2:
        raise ValueError(f"raters must be at least 2, got {raters}")
    table, domain, unit_codes, _ = unit_value_table(judgments, compress_units=True)
    unit_of_row = np.zeros(table.shape[0], dtype=np.int64)
    unit_of_row[unit_codes] = judgments.units
    per_unit = table.sum(axis=1)
    # With no unit judged twice the default keeps nothing, so fleiss_kappa reports NaN rather than failing.
    wanted = max(int(per_unit.max()), 2) if raters is None and per_unit.size else raters
    kept = np.flatnonzero(per_unit == wanted) if wanted is not None else np.empty(0, np.int64)
    return FleissTable(table[kept].astype(np.int64), domain, unit_of_row[kept])


def cohen_kappa_matrix(
    *,
    units: ArrayLike,
    coders: ArrayLike,
    values: ArrayLike,
    min_shared: int = 10,
    coder_count: int | None = None,
) -> PairwiseKappa:
    """Cohen's kappa for every pair of coders on the units both judged (see ``PairwiseKappa``).

    Computed for all pairs at once with sparse coder x unit products: with n shared units, a agreements and
    r_x(a, b) the number of shared units where a said x, kappa = (n a - E) / (n^2 - E) with
    E = sum_x r_x(a, b) r_x(b, a). Cost grows with the sum over units of (coders on the unit)^2.
    ``coder_count`` sets the matrix size (default: largest coder index + 1).
    """
    check_positive_integer(min_shared, "min_shared")
    judgments = validated(units, coders, values)
    size = index_count(judgments.coders, coder_count)
    table, domain, unit_codes, value_codes = unit_value_table(judgments, compress_units=True)
    unit_total = table.shape[0]
    # Integer products keep the counts exact; kappa itself is formed in floating point below.
    ones = np.ones(judgments.coders.size, dtype=np.int64)

    judged = sparse.csr_array((ones, (judgments.coders, unit_codes)), shape=(size, unit_total))
    shared = (judged @ judged.T).toarray()
    said = sparse.csr_array(
        (ones, (judgments.coders, unit_codes * domain.size + value_codes)),
        shape=(size, unit_total * domain.size),
    )
    agreements = (said @ said.T).toarray()
    chance_numerator = np.zeros((size, size), dtype=np.int64)
    # A loop over categories, not units: each pass is one sparse product.
    for value_code in range(domain.size):
        chose = value_codes == value_code
        said_value = sparse.csr_array(
            (ones[chose], (judgments.coders[chose], unit_codes[chose])), shape=(size, unit_total)
        )
        chose_count = (said_value @ judged.T).toarray()
        chance_numerator += chose_count * chose_count.T

    denominator = shared**2 - chance_numerator
    defined = (shared >= min_shared) & (denominator > 0)
    np.fill_diagonal(defined, False)
    numerator = shared * agreements - chance_numerator
    kappa = np.full((size, size), np.nan)
    kappa[defined] = numerator[defined] / denominator[defined]
    return PairwiseKappa(kappa, shared)


def _check_count_table(table: NDArray, name: str) -> None:
    if table.size and table.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric counts, got dtype {table.dtype}")
    if not np.isfinite(table).all() or (table < 0).any():
        raise ValueError(f"{name} must hold finite, non-negative counts")
    if not np.array_equal(table, np.round(table)):
        raise ValueError(f"{name} must hold whole-number counts")
