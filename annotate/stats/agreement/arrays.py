"""Long-form judgments checked and counted: the validation and the units x values tables every statistic
builds on."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

# Count tables are units x distinct values; this keeps them (and values x values matrices) small.
MAX_DISTINCT_VALUES = 256


class LongJudgments(NamedTuple):
    """Aligned long-form arrays, one entry per judgment."""

    units: NDArray[np.int64]
    coders: NDArray[np.int64]
    values: NDArray[np.float64]


def is_integer(value: object) -> bool:
    """An int or a numpy integer, and not a bool (which Python counts as an int)."""
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def check_positive_integer(value: object, name: str) -> None:
    if not is_integer(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def raw_arrays(
    units: ArrayLike, coders: ArrayLike, values: ArrayLike
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    unit_array = index_array(units, "units")
    coder_array = index_array(coders, "coders")
    value_array = _numeric_values(np.asarray(values), "values")
    if value_array.ndim != 1:
        raise ValueError("values must be a 1-D array")
    if not unit_array.size == coder_array.size == value_array.size:
        raise ValueError(
            "units, coders and values must have the same length, got "
            f"{unit_array.size}, {coder_array.size} and {value_array.size}"
        )
    return unit_array, coder_array, value_array


def validated(units: ArrayLike, coders: ArrayLike, values: ArrayLike) -> LongJudgments:
    unit_array, coder_array, value_array = raw_arrays(units, coders, values)
    present = ~np.isnan(value_array)
    if not present.all():
        unit_array, coder_array, value_array = unit_array[present], coder_array[present], value_array[present]
    _reject_repeated_judgments(unit_array, coder_array)
    return LongJudgments(unit_array, coder_array, value_array)


def index_array(data: ArrayLike, name: str) -> NDArray[np.int64]:
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
        unit_codes, _ = dense_codes(units, always=True)
        coder_codes, coder_span = dense_codes(coders, always=True)
    keys = unit_codes * coder_span + coder_codes
    ordered = np.sort(keys)
    repeated = np.flatnonzero(ordered[1:] == ordered[:-1])
    if repeated.size:
        row = np.flatnonzero(keys == ordered[repeated[0]])[0]
        raise ValueError(
            f"{repeated.size} repeated (unit, coder) judgment(s), e.g. coder {coders[row]} on unit "
            f"{units[row]}; each coder may judge a unit once"
        )


def index_count(
    indices: NDArray[np.int64], requested: int | None, *, name: str = "coder_count", what: str = "coder"
) -> int:
    """Length of a result aligned with ``indices``: ``requested`` if given and large enough."""
    needed = int(indices.max()) + 1 if indices.size else 0
    if requested is None:
        return needed
    if not is_integer(requested) or requested < needed:
        raise ValueError(
            f"{name} must be an integer >= {needed} (largest {what} index + 1), got {requested!r}"
        )
    return int(requested)


def dense_codes(indices: NDArray[np.int64], *, always: bool = False) -> tuple[NDArray[np.int64], int]:
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


def unit_value_table(
    judgments: LongJudgments, *, compress_units: bool, unit_count: int | None = None
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]:
    """Units x values count table, the value of each column, and each judgment's row and column.

    With ``compress_units`` sparse unit indices are replaced by ranks so the table stays small (for results
    that do not report per unit); otherwise row ``u`` is unit index ``u``.
    """
    domain, value_codes = _encode_values(judgments.values)
    if compress_units:
        unit_codes, rows = dense_codes(judgments.units)
    else:
        unit_codes = judgments.units
        rows = unit_count if unit_count is not None else (int(unit_codes.max()) + 1 if unit_codes.size else 0)
    flat = np.bincount(unit_codes * domain.size + value_codes, minlength=rows * domain.size)
    return flat.reshape(rows, domain.size), domain, unit_codes, value_codes
