"""A crafted project for the agreement tests, small enough to check its figures by hand."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.utils import timezone

from annotate.models import Judgment, Project
from tests.factories import MembershipFactory, PairFactory, ProjectFactory, UserFactory

ORDINARY_PAIRS = 30
GOLD_PAIRS = 6


@dataclass
class Crafted:
    project: Project
    users: dict[str, Any]
    pairs: list
    gold: list


def truth(index: int) -> tuple[str, int | None]:
    """The agreed answer on ordinary pair ``index``: mostly A or B at varying strength, some ties."""
    if index % 5 == 4:
        return "tie", None
    return ("a" if index % 2 == 0 else "b"), 1 + index % 3


def judge(pair, user, choice: str, strength: int | None, *, swapped: bool, minutes: int, **extra) -> Judgment:
    judgment = Judgment.objects.create(
        pair=pair,
        annotator=user,
        choice=choice,
        strength=strength,
        shown_swapped=swapped,
        duration_ms=extra.pop("duration_ms", 20_000),
        criteria=extra.pop("criteria", {"helpfulness": choice}),
        **extra,
    )
    Judgment.objects.filter(pk=judgment.pk).update(created_at=timezone.now() - timedelta(minutes=minutes))
    return judgment


def crafted_project() -> Crafted:
    """Three careful annotators who agree with the truth, one who always picks the left-shown response, and
    one who agrees on ordinary pairs but gets 4 of 6 gold pairs wrong; plus an imported label on every
    ordinary pair that contradicts everyone."""
    project = ProjectFactory(
        strength_scale=3,
        criteria=["helpfulness"],
        overlap=3,
        target_alpha=0.667,
        min_gold_accuracy=0.8,
        max_position_bias=0.65,
    )
    names = ("ann", "ben", "cat", "lefty", "guesser")
    users = {name: MembershipFactory(project=project, user=UserFactory(username=name)).user for name in names}
    pairs = [PairFactory(prompt__project=project) for _ in range(ORDINARY_PAIRS)]
    gold = [PairFactory(prompt__project=project, is_gold=True, gold_choice="a") for _ in range(GOLD_PAIRS)]
    minute = 0
    for index, pair in enumerate(pairs):
        choice, strength = truth(index)
        for name in ("ann", "ben", "cat", "guesser"):
            minute += 1
            # Sides swap independently of the answer, so careful annotators pick left about half the time.
            judge(pair, users[name], choice, strength, swapped=(index // 2) % 2 == 1, minutes=minute)
        swapped = index % 3 == 0
        judge(pair, users["lefty"], "b" if swapped else "a", 2, swapped=swapped, minutes=minute)
        Judgment.objects.create(
            pair=pair,
            annotator=None,
            origin=Judgment.Origin.IMPORTED,
            choice="both_bad",
            criteria={"helpfulness": "b"},
        )
    for index, pair in enumerate(gold):
        for name in ("ann", "ben", "cat"):
            judge(pair, users[name], "a", 3, swapped=index % 2 == 0, minutes=index)
        judge(pair, users["guesser"], "a" if index < 2 else "b", 3, swapped=False, minutes=index)
    return Crafted(project=project, users=users, pairs=pairs, gold=gold)
