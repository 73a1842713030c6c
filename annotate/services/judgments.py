"""Recording judgments: validated against the project's configuration, mapped from screen terms (left,
right) to the pair's own terms (a, b), idempotent, and never lost or duplicated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from annotate.models import Judgment, JudgmentRevision, Project
from annotate.services.assignment import (
    annotator_membership_lock,
    lease_released,
    local_day,
    refusal,
)
from palate.errors import ApplicationError, Conflict

RATIONALE_MAX_LENGTH = 10_000


@dataclass(frozen=True)
class JudgmentInput:
    """What the annotator chose, in screen terms, its shape already checked (the API's serializer)."""

    choice: str
    strength: int | None = None
    criteria: dict[str, str] | None = None
    rationale: str = ""
    duration_ms: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "rationale", (self.rationale or "").strip())


# Which response each screen side shows: (left, right) as the pair's (a, b), by whether B was on the left.
_SIDES = {False: {"left": "a", "right": "b"}, True: {"left": "b", "right": "a"}}


def to_pair_terms(choice: str, *, shown_swapped: bool) -> str:
    return _SIDES[shown_swapped].get(choice, choice)


def to_screen_terms(choice: str, *, shown_swapped: bool) -> str:
    screen = {pair: side for side, pair in _SIDES[shown_swapped].items()}
    return screen.get(choice, choice)


def _stored(data: JudgmentInput, *, shown_swapped: bool) -> tuple[str, dict[str, str]]:
    """The choice and criteria in the pair's terms."""
    criteria = {
        name: to_pair_terms(value, shown_swapped=shown_swapped)
        for name, value in (data.criteria or {}).items()
    }
    return to_pair_terms(data.choice, shown_swapped=shown_swapped), criteria


def _refused(problems: list[list[str]]) -> ApplicationError:
    """The error for what ``palate_judgment_problems`` found, each problem under its field."""
    fields: dict[str, list[str]] = {}
    for field, message in problems:
        fields.setdefault(field, []).append(message)
    field, message = problems[0]
    return ApplicationError(f"{field}: {message}", fields=fields)


def judgment_submit(
    *, assignment_id: int, annotator: AbstractBaseUser, data: JudgmentInput, idempotency_key: str = ""
) -> tuple[Judgment, bool]:
    """Stores the judgment for a lease. Returns (judgment, created).

    One call of ``palate_judgment_submit`` (annotate/sql/workspace_v3.sql): it checks that the caller is an
    annotator of the project now and that the judgment fits the project's configuration, then records it.
    The same idempotency key returns the judgment it stored the first time. An expired lease still counts
    while its pair has room; once others have filled the pair the submit is refused with a Conflict.
    """
    idempotency_key = idempotency_key.strip()[:100]
    now = timezone.now()
    choice, criteria = _stored(data, shown_swapped=False)
    choice_swapped, criteria_swapped = _stored(data, shown_swapped=True)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT * FROM palate_judgment_submit(
                %s::bigint, %s::bigint, %s::text, %s::timestamptz, %s::date, %s::text,
                %s::integer, %s::jsonb, %s::text, %s::integer, %s::text, %s::text, %s::jsonb, %s::jsonb)
            """,
            [
                assignment_id,
                annotator.pk,
                idempotency_key,
                now,
                local_day(now),
                data.choice,
                data.strength,
                json.dumps(data.criteria or {}),
                data.rationale,
                data.duration_ms,
                choice,
                choice_swapped,
                json.dumps(criteria),
                json.dumps(criteria_swapped),
            ],
        )
        outcome, judgment_id, pair_id, shown_swapped, problems = cursor.fetchone()
    if outcome in {"no_assignment", "not_an_annotator"}:
        raise refusal(outcome)
    if outcome == "invalid":
        raise _refused(json.loads(problems) if isinstance(problems, str) else problems)
    if outcome == "created":
        stored_choice, stored_criteria = (
            (choice_swapped, criteria_swapped) if shown_swapped else (choice, criteria)
        )
        judgment = Judgment(
            id=judgment_id,
            pair_id=pair_id,
            annotator_id=annotator.pk,
            origin=Judgment.Origin.HUMAN,
            choice=stored_choice,
            strength=data.strength,
            criteria=stored_criteria,
            rationale=data.rationale,
            duration_ms=data.duration_ms,
            shown_swapped=shown_swapped,
            idempotency_key=idempotency_key,
            assignment_id=assignment_id,
            revision=1,
            created_at=now,
            updated_at=now,
        )
        judgment._state.adding = False
        judgment._state.db = "default"
        return judgment, True
    if outcome == "earlier":
        return Judgment.objects.get(pk=judgment_id), False
    if outcome == "released":
        raise lease_released()
    if outcome == "skipped":
        raise Conflict(
            "this pair was skipped; it can no longer be judged from this assignment", code="skipped"
        )
    if outcome == "key_reused":
        raise Conflict(
            "this Idempotency-Key was already used for another judgment; send a new key with each judgment",
            code="idempotency_key_reused",
        )
    if outcome == "pair_completed":
        raise Conflict(
            "your time on this pair ran out and others have since completed it; your judgment was not needed",
            code="pair_completed",
        )
    raise Conflict("you have already judged this pair; edit that judgment instead", code="already_judged")


def judgment_problems_check(*, project_id: int, data: JudgmentInput) -> None:
    """Refuses (ApplicationError naming each field) a judgment that breaks the project's configuration."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT palate_judgment_problems(%s::bigint, %s::text, %s::integer, %s::jsonb, %s::text)",
            [project_id, data.choice, data.strength, json.dumps(data.criteria or {}), data.rationale],
        )
        problems = cursor.fetchone()[0]
    problems = json.loads(problems) if isinstance(problems, str) else problems
    if problems:
        raise _refused(problems)


def judgment_editable_since(*, project: Project, now: datetime | None = None) -> datetime:
    """The project's edit window, the one rule: a judgment made at this moment or later can still be changed
    by its annotator (none can when the window is 0)."""
    now = now or timezone.now()
    if not project.edit_window_seconds:
        return now + timedelta(seconds=1)
    return now - timedelta(seconds=project.edit_window_seconds)


def judgment_edit(*, judgment_id: int, annotator: AbstractBaseUser, data: JudgmentInput) -> Judgment:
    """Changes a recent judgment. The old version is kept as a JudgmentRevision."""
    now = timezone.now()
    with transaction.atomic():
        judgment = (
            Judgment.objects.select_for_update()
            .select_related("pair__project")
            .filter(pk=judgment_id, annotator=annotator)
            .first()
        )
        if judgment is None:
            raise ApplicationError("no such judgment", code="not_found", http_status=404)
        project = judgment.pair.project
        annotator_membership_lock(project_id=project.pk, user=annotator)
        if judgment.created_at < judgment_editable_since(project=project, now=now):
            minutes = project.edit_window_seconds // 60
            raise Conflict(
                f"judgments can be changed for {minutes} minutes after they are made",
                code="edit_window_closed",
            )
        judgment_problems_check(project_id=project.pk, data=data)
        JudgmentRevision.objects.create(
            judgment=judgment,
            revision=judgment.revision,
            choice=judgment.choice,
            strength=judgment.strength,
            criteria=judgment.criteria,
            rationale=judgment.rationale,
            duration_ms=judgment.duration_ms,
            recorded_at=judgment.updated_at,
        )
        judgment.choice, judgment.criteria = _stored(data, shown_swapped=judgment.shown_swapped)
        judgment.strength = data.strength
        judgment.rationale = data.rationale
        if data.duration_ms is not None and judgment.duration_ms is not None:
            judgment.duration_ms += data.duration_ms  # time spent reconsidering counts too
        else:
            judgment.duration_ms = data.duration_ms
        judgment.revision += 1
        judgment.save()
    return judgment


def judgments_recent(
    *, project: Project, annotator: AbstractBaseUser, now=None, limit: int = 10
) -> list[Judgment]:
    """The annotator's judgments still inside the edit window, newest first."""
    since = judgment_editable_since(project=project, now=now)
    return list(
        Judgment.objects.filter(pair__project=project, annotator=annotator, created_at__gte=since)
        .select_related("pair__prompt", "pair__response_a", "pair__response_b")
        .order_by("-created_at")[:limit]
    )
