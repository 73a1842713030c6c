"""The audit's arithmetic, on plain numbers (no database): the best-of-N KL bound, win rates with Wilson
intervals, and where the win rate stops rising."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence


def best_of_n_kl_bound(n: int) -> float:
    """The KL divergence of best-of-N sampling from the base policy is at most log N − (N − 1)/N
    (Stiennon et al. 2020; Beirami et al. 2024 show it is an upper bound)."""
    return math.log(n) - (n - 1) / n


def wilson_interval(wins: float, total: float, *, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default); ``wins`` may be fractional (a tie counts
    half). (0, 1) when ``total`` is 0."""
    if total <= 0:
        return 0.0, 1.0
    share = wins / total
    denominator = 1 + z * z / total
    centre = (share + z * z / (2 * total)) / denominator
    half = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / denominator
    # Rounding must not put the share outside its own interval (at 0 of n the lower bound is exactly 0).
    return max(0.0, min(share, centre - half)), min(1.0, max(share, centre + half))


def rising_until(ns: Sequence[int], win_rates: Sequence[float | None]) -> int | None:
    """The N past which the human win rate stops rising: the first N whose next win rate is no higher;
    the largest N when it rises throughout; None without figures."""
    known = [(n, rate) for n, rate in zip(ns, win_rates, strict=True) if rate is not None]
    if not known:
        return None
    for (n, rate), (_, following) in itertools.pairwise(known):
        if following <= rate:
            return n
    return known[-1][0]
