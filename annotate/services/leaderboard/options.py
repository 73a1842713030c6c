"""A leaderboard's options, checked before any data is read (``filters`` checks them against the data)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from palate.errors import ApplicationError

METHODS = ("bt", "elo")
INTERVALS = ("sandwich", "bootstrap")
TIE_MODELS = ("half", "davidson")
WEIGHTINGS = ("none", "crowd_bt")
CONFIDENCE = 0.95
DEFAULT_BOOTSTRAP_ROUNDS = 1000
DEFAULT_ELO_ROUNDS = 100
MAX_ROUNDS = 10_000


@dataclass(frozen=True)
class LeaderboardOptions:
    method: str = "bt"
    criterion: str | None = None
    group: str | None = None
    category: str | None = None
    interval: str = "sandwich"
    rounds: int = DEFAULT_BOOTSTRAP_ROUNDS
    ties: str = "half"
    anchor: str | None = None
    weighting: str = "none"
    split_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "criterion": self.criterion,
            "group": self.group,
            "category": self.category,
            "interval": self.interval,
            "rounds": self.rounds,
            "ties": self.ties,
            "anchor": self.anchor,
            "weighting": self.weighting,
            "split_by": self.split_by,
            "confidence": CONFIDENCE,
        }


def _blank_to_none(value: str | None) -> str | None:
    return value if value not in (None, "") else None


def leaderboard_options(
    *,
    method: str = "bt",
    criterion: str | None = None,
    group: str | None = None,
    category: str | None = None,
    interval: str | None = None,
    rounds: int | None = None,
    ties: str = "half",
    anchor: str | None = None,
    weighting: str = "none",
    split_by: str | None = None,
) -> LeaderboardOptions:
    """Checks the options that do not depend on the data. Raises ApplicationError naming each bad field.

    ``interval`` defaults to the sandwich for Bradley-Terry and to the bootstrap for Elo (which has no
    sandwich); ``rounds`` to 1,000 bootstrap rounds for Bradley-Terry and 100 orderings for Elo.
    """
    problems: dict[str, list[str]] = {}
    method = method or "bt"
    ties = ties or "half"
    weighting = weighting or "none"
    interval = _blank_to_none(interval)
    for name, value, allowed in (
        ("method", method, METHODS),
        ("ties", ties, TIE_MODELS),
        ("weighting", weighting, WEIGHTINGS),
        ("interval", interval or INTERVALS[0], INTERVALS),
    ):
        if value not in allowed:
            problems[name] = [f"must be one of {', '.join(allowed)}, got {value!r}"]
    if interval is None:
        interval = "bootstrap" if method == "elo" else "sandwich"
    if method == "elo" and interval == "sandwich":
        problems["interval"] = ["Elo ratings have bootstrap intervals only: use interval=bootstrap"]
    if method == "elo" and ties == "davidson":
        problems["ties"] = ["the Davidson tie model applies to Bradley-Terry only (method=bt)"]
    if weighting == "crowd_bt" and (method != "bt" or interval != "sandwich" or ties != "half"):
        problems["weighting"] = ["crowd_bt weighting needs method=bt, interval=sandwich and ties=half"]
    if rounds is None:
        rounds = DEFAULT_ELO_ROUNDS if method == "elo" else DEFAULT_BOOTSTRAP_ROUNDS
    elif not 1 <= rounds <= MAX_ROUNDS:
        problems["rounds"] = [f"must lie between 1 and {MAX_ROUNDS:,}"]
    group = _blank_to_none(group)
    if group is not None and "=" not in group:
        problems["group"] = ["must look like key=value, e.g. locale=fr-FR"]
    if problems:
        first_field, messages = next(iter(problems.items()))
        raise ApplicationError(f"{first_field}: {messages[0]}", fields=problems)
    return LeaderboardOptions(
        method=method,
        criterion=_blank_to_none(criterion),
        group=group,
        category=_blank_to_none(category),
        interval=interval,
        rounds=rounds,
        ties=ties,
        anchor=_blank_to_none(anchor),
        weighting=weighting,
        split_by=_blank_to_none(split_by),
    )
