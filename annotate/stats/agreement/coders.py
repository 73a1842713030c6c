"""One coder's habits over their own judgments: preference for the left-shown response, and agreement over
time (drift)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from annotate.stats.agreement.arrays import check_positive_integer, index_array, index_count, is_integer


@dataclass(frozen=True, slots=True, eq=False)
class PositionBias:
    """Per coder: share of non-tie judgments that chose the left-shown response, and a binomial test.

    ``p_value`` is the two-sided exact binomial test of "left is chosen half the time". ``left_share`` and
    ``p_value`` are NaN for a coder with no judgment.
    """

    left_share: NDArray[np.float64]
    judgments: NDArray[np.int64]
    p_value: NDArray[np.float64]


def position_bias(
    *, coders: ArrayLike, chose_left: ArrayLike, coder_count: int | None = None
) -> PositionBias:
    """Per coder, how often the left-shown response was chosen among non-tie judgments.

    ``chose_left[i]`` says whether judgment ``i`` (by ``coders[i]``) picked the response shown on the left;
    pass non-tie judgments only. A fair coder picks left about half the time once sides are randomised.
    """
    coder_array = index_array(coders, "coders")
    left = np.asarray(chose_left)
    if left.ndim != 1:
        raise ValueError("chose_left must be a 1-D array")
    if left.size != coder_array.size:
        raise ValueError(
            f"coders and chose_left must have the same length, got {coder_array.size} and {left.size}"
        )
    if left.size and (left.dtype.kind not in "biuf" or not np.isin(left, (0, 1)).all()):
        raise ValueError("chose_left must hold booleans (or 0/1)")
    size = index_count(coder_array, coder_count)
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
    check_positive_integer(window, "window")
    needed = window if min_outcomes is None else min_outcomes
    if not is_integer(needed) or not 1 <= needed <= window:
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
