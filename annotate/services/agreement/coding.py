"""How the agreement figures code choices and store numbers."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from annotate.services.judgment_arrays import CHOICES

CHOICE_CODE = {choice: float(code) for code, choice in enumerate(CHOICES)}
A, B, TIE, BOTH_BAD = (CHOICE_CODE[choice] for choice in CHOICES)


def signed_strength(*, choice: NDArray[np.float64], strength: NDArray[np.float64]) -> NDArray[np.float64]:
    """The preference on one scale -N..+N in A/B terms: A by s is +s, B by s is -s, a tie is 0.

    "Both bad" says nothing about which response is better and is left out (NaN), as is a sided choice
    without a strength.
    """
    signed = np.full(choice.shape, np.nan)
    signed[choice == A] = strength[choice == A]
    signed[choice == B] = -strength[choice == B]
    signed[choice == TIE] = 0.0
    return signed


def number(value: float, digits: int = 6) -> float | None:
    """A finite float rounded for storage, or None (JSON has no NaN)."""
    value = float(value)
    return round(value, digits) if np.isfinite(value) else None


def significant(value: float, digits: int = 3) -> float | None:
    """A finite float to ``digits`` significant digits (p-values can be tiny), or None."""
    value = float(value)
    return float(f"{value:.{digits}g}") if np.isfinite(value) else None


def ratio(numerator: NDArray[np.float64], denominator: NDArray[np.int64]) -> NDArray[np.float64]:
    """Element by element, NaN where the denominator is 0."""
    return np.divide(numerator, denominator, out=np.full(denominator.shape, np.nan), where=denominator > 0)
