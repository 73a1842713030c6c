"""When the maximum likelihood ratings do not exist, say why, and choose the regularisation that keeps them
finite."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from annotate.stats.ratings.outcomes import FloatArray, OutcomeTable

# Gaussian prior precision on log-strengths used only when the data cannot identify them (see the package docstring).
SEPARATION_L2 = 0.01


def _describe(systems: Sequence[Hashable], mask: NDArray[np.bool_], limit: int = 8) -> str:
    names = [str(systems[index]) for index in np.flatnonzero(mask)]
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def identifiability_problems(
    table: OutcomeTable, systems: Sequence[Hashable], ties_score_half: bool = True
) -> list[str]:
    """Reasons the maximum likelihood estimate does not exist (empty when it does).

    Under the half-win convention it exists exactly when the directed graph "i scored against j" (won or
    tied) is strongly connected (Ford, 1957). Davidson's model needs that of decisive wins alone: a tie
    scores nothing there, so a system with wins and ties but no loss runs off to infinity (and the tie
    parameter with it). Otherwise either the comparison graph is disconnected, or some group of systems won
    every battle against the rest; the messages name the simplest culprits.
    """
    scored = "lost or tied" if ties_score_half else "lost"
    score = table.wins + 0.5 * table.ties
    met = (score + score.T) > 0
    played = met.any(axis=1)
    problems = []
    if not played.all():
        problems.append(
            f"no battles for {_describe(systems, ~played)}: their ratings come from the regularisation alone"
        )
    if played.sum() < 2:
        return problems
    _, component = connected_components(csr_matrix(met), directed=False)
    groups = np.unique(component[played])
    if groups.size > 1:
        sizes = sorted((int(np.sum(component[played] == group)) for group in groups), reverse=True)
        problems.append(
            f"the comparison graph is disconnected: {groups.size} groups of systems (sizes {sizes}) were "
            "never compared with each other, so ratings across groups are not comparable"
        )
    beat = score if ties_score_half else table.wins
    _, strong_component = connected_components(csr_matrix(beat > 0), directed=True, connection="strong")
    if np.unique(strong_component[played]).size > groups.size:
        never_lost = played & (beat.sum(axis=0) == 0)
        never_won = played & (beat.sum(axis=1) == 0)
        if never_lost.any():
            problems.append(f"undefeated (never {scored}): {_describe(systems, never_lost)}")
        if never_won.any():
            won = "won or tied" if ties_score_half else "won"
            problems.append(f"never {won}: {_describe(systems, never_won)}")
        if not (never_lost.any() or never_won.any()):
            problems.append(
                "the outcomes are separable: a group of systems won every battle against the others"
            )
    return problems


def identified(score: FloatArray) -> bool:
    """Whether a score matrix (wins plus half ties) has a finite maximum likelihood estimate: every system
    played, and "scored against" is strongly connected (Ford, 1957)."""
    if not np.all((score + score.T).sum(axis=1) > 0):
        return False
    components, _ = connected_components(csr_matrix(score > 0), directed=True, connection="strong")
    return components == 1


def resolve_l2(l2: float | None, problems: list[str]) -> float:
    """The L2 strength to fit with; says in ``problems`` when regularisation had to be added."""
    if l2 is not None and l2 < 0:
        raise ValueError("l2 must be non-negative")
    if not problems:
        return float(l2 or 0.0)
    if l2:
        return float(l2)
    if l2 == 0:
        problems.append("l2=0 was requested, but the ratings are not identified without regularisation")
    problems.append(
        f"applied L2 regularisation of strength {SEPARATION_L2} (a Gaussian prior with standard deviation "
        f"{1 / math.sqrt(SEPARATION_L2):g} on log-strengths) to keep every rating finite"
    )
    return SEPARATION_L2
