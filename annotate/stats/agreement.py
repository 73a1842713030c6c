"""Inter-annotator agreement for pairwise preference judgments.

Pure numpy (scipy for sparse products and the binomial test), no Django: services turn judgment rows into
arrays and call in, so every number here can be checked against reference libraries and benchmarked alone.

Most functions take the "long" form, one row per judgment, as three aligned keyword-only arrays (keyword-only
because ``units`` and ``coders`` are both integer arrays and swapping them would silently give wrong numbers):

- ``units``: the unit of agreement, which in Palate is always the pair being judged, as an index >= 0;
- ``coders``: the annotator who judged it, as an index >= 0;
- ``values``: the judgment, a number: a category code for nominal data, a point on a scale otherwise.

Conventions shared by every function:

- NaN in ``values`` means "no judgment" and the row is ignored, like the NaN cells of a reliability matrix.
- A coder judges a unit at most once (the database enforces unique (pair, annotator)); a repeat raises
  ValueError because it would silently double that coder's weight.
- Results indexed by unit or coder are aligned with the indices: entry ``i`` belongs to index ``i``, so map
  database ids to dense indices first.
- At most ``MAX_DISTINCT_VALUES`` distinct values: the statistics are built on units x values count tables and
  values x values coincidence matrices, which suit category codes and rating scales. Bin continuous scores.
- Degenerate input returns NaN, never an obscure numpy error, and each function documents when; malformed
  input (mismatched lengths, negative or non-integer indices, infinite values) raises ValueError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import sparse, special, stats

Level = Literal["nominal", "ordinal", "interval", "ratio"]

LEVELS: tuple[Level, ...] = ("nominal", "ordinal", "interval", "ratio")

# Count tables are units x distinct values; this keeps them (and values x values matrices) small.
MAX_DISTINCT_VALUES = 256

# Upper bound on the cells of one bootstrap weight block, so memory stays flat however many rounds are asked.
_BOOTSTRAP_BLOCK_CELLS = 1 << 22


class LongJudgments(NamedTuple):
    """Aligned long-form arrays, one entry per judgment."""

    units: NDArray[np.int64]
    coders: NDArray[np.int64]
    values: NDArray[np.float64]


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


@dataclass(frozen=True, slots=True, eq=False)
class PositionBias:
    """Per coder: share of non-tie judgments that chose the left-shown response, and a binomial test.

    ``p_value`` is the two-sided exact binomial test of "left is chosen half the time". ``left_share`` and
    ``p_value`` are NaN for a coder with no judgment.
    """

    left_share: NDArray[np.float64]
    judgments: NDArray[np.int64]
    p_value: NDArray[np.float64]


@dataclass(frozen=True, slots=True, eq=False)
class GroupAlpha:
    """Krippendorff's alpha inside each coder group and across groups (see ``group_alpha``)."""

    within: NDArray[np.float64]
    between: float


# ----------------------------------------------------------------------------------------------------------
# Krippendorff's alpha


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
    judgments = _validated(units, coders, values)
    _check_level(level, judgments.values)
    matrix, domain = _coincidences(judgments)
    return _alpha_from_coincidences(matrix, domain, level)


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
    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    judgments = _validated(units, coders, values)
    _check_level(level, judgments.values)
    table, domain, _, _ = _unit_value_table(judgments, compress_units=True)
    matrix = _coincidences_from_table(table)
    estimate = _alpha_from_coincidences(matrix, domain, level)
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
    judgments = _validated(units, coders, values)
    _check_level(level, judgments.values)
    group_of_coder = _index_array(coder_groups, "coder_groups")
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
        within[group] = _alpha_from_coincidences(*_coincidences(subset), level)

    table, domain, unit_codes, value_codes = _unit_value_table(judgments, compress_units=True)
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
    return GroupAlpha(within, _alpha_from_coincidences(matrix, domain, level))


# ----------------------------------------------------------------------------------------------------------
# Kappas and simple agreement


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
    judgments = _validated(units, coders, values)
    if raters is not None and (isinstance(raters, bool) or not isinstance(raters, (int, np.integer))):
        raise ValueError(f"raters must be an integer, got {raters!r}")
    if raters is not None and raters < 2:
        raise ValueError(f"raters must be at least 2, got {raters}")
    table, domain, unit_codes, _ = _unit_value_table(judgments, compress_units=True)
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
    if isinstance(min_shared, bool) or not isinstance(min_shared, (int, np.integer)) or min_shared < 1:
        raise ValueError(f"min_shared must be a positive integer, got {min_shared!r}")
    judgments = _validated(units, coders, values)
    size = _index_count(judgments.coders, coder_count)
    table, domain, unit_codes, value_codes = _unit_value_table(judgments, compress_units=True)
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


def percent_agreement(*, units: ArrayLike, coders: ArrayLike, values: ArrayLike) -> float:
    """Raw pairwise agreement: per unit, the share of coder pairs giving the same value, averaged over units.

    Units with fewer than two judgments are ignored and every other unit weighs the same, so with a fixed
    number of coders per unit this is Fleiss' P-bar. Values are compared exactly (nominal). Returns NaN when
    no unit has two judgments.
    """
    table, _, _, _ = _unit_value_table(_validated(units, coders, values), compress_units=True)
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
    unit_array, coder_array, value_array = _raw_arrays(units, coders, values)
    outcomes = np.full(value_array.size, np.nan)
    present = ~np.isnan(value_array)
    judgments = _validated(unit_array[present], coder_array[present], value_array[present])
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
    judgments = _validated(units, coders, values)
    size = _index_count(judgments.units, unit_count, name="unit_count", what="unit")
    table, _, _, _ = _unit_value_table(judgments, compress_units=False, unit_count=size)
    per_unit = table.sum(axis=1, keepdims=True).astype(np.float64)
    shares = np.divide(table, per_unit, out=np.zeros(table.shape), where=per_unit > 0)
    # entr(p) = -p log p with entr(0) = 0, the limit, so values nobody chose add nothing.
    entropy = special.entr(shares).sum(axis=1) / np.log(base)
    entropy[per_unit[:, 0] == 0] = np.nan
    return entropy


def position_bias(
    *, coders: ArrayLike, chose_left: ArrayLike, coder_count: int | None = None
) -> PositionBias:
    """Per coder, how often the left-shown response was chosen among non-tie judgments.

    ``chose_left[i]`` says whether judgment ``i`` (by ``coders[i]``) picked the response shown on the left;
    pass non-tie judgments only. A fair coder picks left about half the time once sides are randomised.
    """
    coder_array = _index_array(coders, "coders")
    left = np.asarray(chose_left)
    if left.ndim != 1:
        raise ValueError("chose_left must be a 1-D array")
    if left.size != coder_array.size:
        raise ValueError(
            f"coders and chose_left must have the same length, got {coder_array.size} and {left.size}"
        )
    if left.size and (left.dtype.kind not in "biuf" or not np.isin(left, (0, 1)).all()):
        raise ValueError("chose_left must hold booleans (or 0/1)")
    size = _index_count(coder_array, coder_count)
    judgments = np.bincount(coder_array, minlength=size)
    left_count = np.bincount(coder_array, weights=left.astype(np.float64), minlength=size)
    left_share = np.divide(left_count, judgments, out=np.full(size, np.nan), where=judgments > 0)
    p_value = np.full(size, np.nan)
    # binomtest is scalar; this loops over coders (hundreds), never over judgments.
    for coder in np.flatnonzero(judgments):
        p_value[coder] = stats.binomtest(int(left_count[coder]), int(judgments[coder]), 0.5).pvalue
    return PositionBias(left_share, judgments.astype(np.int64), p_value)


def rolling_agreement(
    outcomes: ArrayLike, *, window: int, min_outcomes: int | None = None
) -> NDArray[np.float64]:
    """Rolling mean of one coder's 0/1 agreement outcomes over the last ``window`` outcomes, for drift.

    ``outcomes`` is in the coder's judgment order; drop unscored (NaN) outcomes first. Entry ``i`` averages
    outcomes ``i - window + 1 .. i`` that exist and is NaN while fewer than ``min_outcomes`` (default:
    ``window``) are available, so early noise is not mistaken for drift.
    """
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    needed = window if min_outcomes is None else min_outcomes
    if isinstance(needed, bool) or not isinstance(needed, (int, np.integer)) or not 1 <= needed <= window:
        raise ValueError(
            f"min_outcomes must be an integer between 1 and window ({window}), got {min_outcomes!r}"
        )
    sequence = np.asarray(outcomes)
    if sequence.ndim != 1:
        raise ValueError("outcomes must be a 1-D array")
    if sequence.size and (sequence.dtype.kind not in "biuf" or not np.isin(sequence, (0, 1)).all()):
        raise ValueError("outcomes must be 0/1 (drop unscored NaN outcomes before computing drift)")
    running = np.concatenate([[0], np.cumsum(sequence.astype(np.int64))])
    position = np.arange(1, sequence.size + 1)
    available = np.minimum(position, window)
    sums = running[position] - running[position - available]
    return np.where(available >= needed, sums / available, np.nan)


# ----------------------------------------------------------------------------------------------------------
# Internals


def _raw_arrays(
    units: ArrayLike, coders: ArrayLike, values: ArrayLike
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    unit_array = _index_array(units, "units")
    coder_array = _index_array(coders, "coders")
    value_array = _numeric_values(np.asarray(values), "values")
    if value_array.ndim != 1:
        raise ValueError("values must be a 1-D array")
    if not unit_array.size == coder_array.size == value_array.size:
        raise ValueError(
            "units, coders and values must have the same length, got "
            f"{unit_array.size}, {coder_array.size} and {value_array.size}"
        )
    return unit_array, coder_array, value_array


def _validated(units: ArrayLike, coders: ArrayLike, values: ArrayLike) -> LongJudgments:
    unit_array, coder_array, value_array = _raw_arrays(units, coders, values)
    present = ~np.isnan(value_array)
    if not present.all():
        unit_array, coder_array, value_array = unit_array[present], coder_array[present], value_array[present]
    _reject_repeated_judgments(unit_array, coder_array)
    return LongJudgments(unit_array, coder_array, value_array)


def _index_array(data: ArrayLike, name: str) -> NDArray[np.int64]:
    array = np.asarray(data)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of indices")
    if array.size == 0:
        return array.astype(np.int64)
    if array.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integer indices, got dtype {array.dtype}")
    if array.dtype.kind == "u" and array.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} has an index too large for int64")
    array = array.astype(np.int64, copy=False)
    smallest = array.min()
    if smallest < 0:
        raise ValueError(f"{name} must be non-negative indices, found {smallest}")
    return array


def _numeric_values(array: NDArray, name: str) -> NDArray[np.float64]:
    if array.size == 0:
        return array.astype(np.float64)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric (codes or scale points), got dtype {array.dtype}")
    array = array.astype(np.float64, copy=False)
    if np.isinf(array).any():
        raise ValueError(f"{name} contains infinite values; use NaN for a missing judgment")
    return array


def _reject_repeated_judgments(units: NDArray[np.int64], coders: NDArray[np.int64]) -> None:
    if units.size < 2:
        return
    unit_codes, coder_codes = units, coders
    coder_span = int(coders.max()) + 1
    if (int(units.max()) + 1) * coder_span >= 2**63:
        unit_codes, _ = _dense_codes(units, always=True)
        coder_codes, coder_span = _dense_codes(coders, always=True)
    keys = unit_codes * coder_span + coder_codes
    ordered = np.sort(keys)
    repeated = np.flatnonzero(ordered[1:] == ordered[:-1])
    if repeated.size:
        row = np.flatnonzero(keys == ordered[repeated[0]])[0]
        raise ValueError(
            f"{repeated.size} repeated (unit, coder) judgment(s), e.g. coder {coders[row]} on unit "
            f"{units[row]}; each coder may judge a unit once"
        )


def _check_level(level: str, values: NDArray[np.float64]) -> None:
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}; got {level!r}")
    if level == "ratio" and values.size and values.min() < 0:
        raise ValueError("ratio level needs values >= 0 (a ratio scale has an absolute zero)")


def _check_count_table(table: NDArray, name: str) -> None:
    if table.size and table.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric counts, got dtype {table.dtype}")
    if not np.isfinite(table).all() or (table < 0).any():
        raise ValueError(f"{name} must hold finite, non-negative counts")
    if not np.array_equal(table, np.round(table)):
        raise ValueError(f"{name} must hold whole-number counts")


def _index_count(
    indices: NDArray[np.int64], requested: int | None, *, name: str = "coder_count", what: str = "coder"
) -> int:
    """Length of a result aligned with ``indices``: ``requested`` if given and large enough."""
    needed = int(indices.max()) + 1 if indices.size else 0
    if requested is None:
        return needed
    if isinstance(requested, bool) or not isinstance(requested, (int, np.integer)) or requested < needed:
        raise ValueError(
            f"{name} must be an integer >= {needed} (largest {what} index + 1), got {requested!r}"
        )
    return int(requested)


def _dense_codes(indices: NDArray[np.int64], *, always: bool = False) -> tuple[NDArray[np.int64], int]:
    """Codes 0..k-1 for the indices: the indices themselves when they are dense enough, else their ranks."""
    if indices.size == 0:
        return indices, 0
    span = int(indices.max()) + 1
    if not always and span <= 2 * indices.size + 1024:
        return indices, span
    distinct, codes = np.unique(indices, return_inverse=True)
    return codes.astype(np.int64), distinct.size


def _encode_values(values: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    domain, codes = np.unique(values, return_inverse=True)
    if domain.size > MAX_DISTINCT_VALUES:
        raise ValueError(
            f"{domain.size} distinct values, more than {MAX_DISTINCT_VALUES}: agreement here is for category "
            "codes and rating scales; bin continuous scores first"
        )
    return domain, codes.astype(np.int64)


def _unit_value_table(
    judgments: LongJudgments, *, compress_units: bool, unit_count: int | None = None
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]:
    """Units x values count table, the value of each column, and each judgment's row and column.

    With ``compress_units`` sparse unit indices are replaced by ranks so the table stays small (for results
    that do not report per unit); otherwise row ``u`` is unit index ``u``.
    """
    domain, value_codes = _encode_values(judgments.values)
    if compress_units:
        unit_codes, rows = _dense_codes(judgments.units)
    else:
        unit_codes = judgments.units
        rows = unit_count if unit_count is not None else (int(unit_codes.max()) + 1 if unit_codes.size else 0)
    flat = np.bincount(unit_codes * domain.size + value_codes, minlength=rows * domain.size)
    return flat.reshape(rows, domain.size), domain, unit_codes, value_codes


def _coincidences(judgments: LongJudgments) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    table, domain, _, _ = _unit_value_table(judgments, compress_units=True)
    return _coincidences_from_table(table), domain


def _coincidences_from_table(table: NDArray[np.int64]) -> NDArray[np.float64]:
    per_unit = table.sum(axis=1)
    pairable = per_unit >= 2
    counts = table[pairable].astype(np.float64)
    weighted = counts / (per_unit[pairable, None] - 1.0)
    matrix = weighted.T @ counts
    matrix[np.diag_indices_from(matrix)] -= weighted.sum(axis=0)
    return matrix


def _distances(domain: NDArray[np.float64], level: Level) -> NDArray[np.float64]:
    """Krippendorff's difference function delta^2(c, k) for the levels where it is fixed (not ordinal)."""
    difference = domain[:, None] - domain[None, :]
    if level == "nominal":
        return (difference != 0).astype(np.float64)
    if level == "interval":
        return difference**2
    total = domain[:, None] + domain[None, :]
    return np.divide(difference, total, out=np.zeros_like(difference), where=total != 0) ** 2


def _ordinal_positions(marginals: NDArray[np.float64]) -> NDArray[np.float64]:
    """Mid-ranks of each value: Krippendorff's ordinal difference between c and k is (rank_c - rank_k)^2."""
    return np.cumsum(marginals, axis=-1) - marginals / 2.0


def _alpha_from_coincidences(matrix: NDArray[np.float64], domain: NDArray[np.float64], level: Level) -> float:
    marginals = matrix.sum(axis=1)
    total = marginals.sum()
    if level == "ordinal":
        positions = _ordinal_positions(marginals)
        distances = (positions[:, None] - positions[None, :]) ** 2
    else:
        distances = _distances(domain, level)
    observed = float((matrix * distances).sum())
    expected = float(marginals @ distances @ marginals)
    if not expected > 0.0:
        return float("nan")
    return float(1.0 - (total - 1.0) * observed / expected)


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
        positions = _ordinal_positions(marginals)
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
        distances = _distances(domain, level)
        per_profile = np.einsum("pc,ck,pk->p", counts, distances, counts) * unit_weight
        observed = weights @ per_profile
        expected = np.einsum("rc,ck,rk->r", marginals, distances, marginals)
    alpha = np.full(weights.shape[0], np.nan)
    defined = expected > 0.0
    alpha[defined] = 1.0 - (total[defined] - 1.0) * observed[defined] / expected[defined]
    return alpha


def _majority_outcomes(judgments: LongJudgments) -> NDArray[np.float64]:
    """Leave-one-out majority agreement per judgment, from each unit's three largest value counts.

    Removing one judgment of value x only lowers x's count by one, so the others' majority follows from the
    unit's top counts: if x was below the top, the top value wins unless it is tied; if x was the unique top,
    x still wins when it led by at least two and ties when it led by one; if x shared the top, the other top
    value wins unless a third value shared it too.
    """
    table, _, unit_codes, value_codes = _unit_value_table(judgments, compress_units=True)
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
