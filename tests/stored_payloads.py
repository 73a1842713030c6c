"""A project whose imported text is hostile in every field the pages show: markup that would run script, call
out or become a link, and cells a spreadsheet would run as formulas. Pages must show it as text, charts
must draw it as text, and CSV files must hand it to spreadsheets as text."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Any

from annotate.models import Judgment, Membership, Project
from annotate.services.agreement import agreement_snapshot_refresh
from tests.factories import (
    MembershipFactory,
    PairFactory,
    ProjectFactory,
    PromptFactory,
    ResponseFactory,
    UserFactory,
)

MARKUP = '<a href="https://example.org">x</a><img src=x onerror=alert(1)>'
# OWASP's formula triggers, one system each: =, +, @ and -.
FORMULAS = ('=HYPERLINK("http://x")', "+cmd|' /C calc'!A0", "@SUM(A1:A2)", "-2+3")
SYSTEMS = (MARKUP, *FORMULAS, "plain")


@dataclass
class Stored:
    project: Project
    lead: Any
    engineer: Any
    annotators: list[Any]


def stored_payload_project(*, prompts_per_match: int = 2, seed: int = 7) -> Stored:
    """Every two systems meet on ``prompts_per_match`` prompts, each judged by both annotators; categories,
    prompts, responses, external ids and annotator attributes carry the markup too. The quality snapshot is
    computed, so the dashboard has figures."""
    project = ProjectFactory(criteria=["helpfulness"], overlap=2)
    annotators = []
    for name in ("annie", "bruno"):
        user = UserFactory(username=name)
        MembershipFactory(
            user=user, project=project, role=Membership.Role.ANNOTATOR, attributes={"locale": MARKUP}
        )
        annotators.append(user)
    lead = MembershipFactory(user=UserFactory(username="leader"), project=project, role=Membership.Role.LEAD)
    engineer = MembershipFactory(
        user=UserFactory(username="engineer"), project=project, role=Membership.Role.ENGINEER
    )
    generator = random.Random(seed)
    judgments = []
    for number, (system_a, system_b) in enumerate(
        itertools.chain.from_iterable(
            [match] * prompts_per_match for match in itertools.combinations(SYSTEMS, 2)
        )
    ):
        prompt = PromptFactory(
            project=project,
            external_id=f"{MARKUP}-{number}",
            category=MARKUP if number % 2 else FORMULAS[0],
            content=f"{MARKUP if number % 2 else FORMULAS[0]} **question** {number}",
        )
        pair = PairFactory(
            prompt=prompt,
            response_a=ResponseFactory(prompt=prompt, system=system_a, content=f"{MARKUP} answer A{number}"),
            response_b=ResponseFactory(prompt=prompt, system=system_b, content=f"{FORMULAS[0]} B{number}"),
        )
        for annotator in annotators:
            choice = generator.choice(["a", "b", "a", "b", "tie"])
            judgments.append(
                Judgment(
                    pair=pair,
                    annotator=annotator,
                    choice=choice,
                    criteria={"helpfulness": choice},
                    rationale=MARKUP,
                    duration_ms=10_000,
                )
            )
    Judgment.objects.bulk_create(judgments)
    agreement_snapshot_refresh(project_id=project.pk)
    return Stored(project=project, lead=lead.user, engineer=engineer.user, annotators=annotators)
