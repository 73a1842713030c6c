"""Recording judgments: validated against the project's configuration, mapped from screen terms (left,
right) to the pair's own terms (a, b), idempotent, and never lost or duplicated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from annotate.models import Assignment, Judgment, JudgmentRevision, Project
from annotate.services.assignment import assignment_for_annotator, pair_slots_recompute
from palate.errors import ApplicationError, Conflict

MAX_DURATION_MS = 24 * 3600 * 1000
MAX_RATIONALE_CHARS = 10_000


@dataclass(frozen=True)
class JudgmentInput:
    """What the annotator chose, in screen terms."""

    choice: str
    strength: int | None = None
    criteria: dict[str, str] | None = None
    rationale: str = ""
    duration_ms: int | None = None


def to_pair_terms(choice: str, *, shown_swapped: bool) -> str:
    if choice == "left":
        return "b" if shown_swapped else "a"
    if choice == "right":
        return "a" if shown_swapped else "b"
    return choice


def to_screen_terms(choice: str, *, shown_swapped: bool) -> str:
    if choice == "a":
        return "right" if shown_swapped else "left"
    if choice == "b":
        return "left" if shown_swapped else "right"
    return choice


def judgment_input_check(*, project: Project, data: JudgmentInput) -> None:
    """Every violation of the project's configuration, each naming its field. Raises ApplicationError."""
    problems: dict[str, list[str]] = {}
    allowed = project.allowed_choices
    if data.choice not in allowed:
        problems["choice"] = [f"must be one of {', '.join(allowed)} in this project, got {data.choice!r}"]
    if project.strength_scale:
        if data.strength is not None:
            if data.choice not in {"left", "right"}:
                problems["strength"] = ["only a 'left' or 'right' choice has a strength"]
            elif not 1 <= data.strength <= project.strength_scale:
                problems["strength"] = [f"must be between 1 and {project.strength_scale}"]
    elif data.strength is not None:
        problems["strength"] = ["this project does not use a strength scale"]
    criteria = data.criteria or {}
    if project.criteria:
        missing = [name for name in project.criteria if name not in criteria]
        if missing:
            problems["criteria"] = [f"answer every criterion: missing {', '.join(missing)}"]
        unknown = [name for name in criteria if name not in project.criteria]
        if unknown:
            problems.setdefault("criteria", []).append(f"unknown criterion {unknown[0]!r}")
        for name, value in criteria.items():
            if name in project.criteria and value not in allowed:
                problems[f"criteria.{name}"] = [f"must be one of {', '.join(allowed)}, got {value!r}"]
    elif criteria:
        problems["criteria"] = ["this project has no criteria; give only the overall choice"]
    rationale = data.rationale or ""
    if project.rationale == Project.Rationale.REQUIRED and not rationale.strip():
        problems["rationale"] = ["a rationale is required in this project"]
    elif project.rationale == Project.Rationale.OFF and rationale.strip():
        problems["rationale"] = ["this project does not collect rationales"]
    elif len(rationale) > MAX_RATIONALE_CHARS:
        problems["rationale"] = [f"at most {MAX_RATIONALE_CHARS:,} characters"]
    if data.duration_ms is not None and not 0 <= data.duration_ms <= MAX_DURATION_MS:
        problems["duration_ms"] = [f"must be between 0 and {MAX_DURATION_MS}"]
    if problems:
        field, messages = next(iter(problems.items()))
        raise ApplicationError(f"{field}: {messages[0]}", fields=problems)


def _pair_values(data: JudgmentInput, *, shown_swapped: bool) -> dict[str, Any]:
    return {
        "choice": to_pair_terms(data.choice, shown_swapped=shown_swapped),
        "strength": data.strength if data.choice in {"left", "right"} else None,
        "criteria": {
            name: to_pair_terms(value, shown_swapped=shown_swapped)
            for name, value in (data.criteria or {}).items()
        },
        "rationale": (data.rationale or "").strip(),
        "duration_ms": data.duration_ms,
    }


def judgment_submit(
    *, assignment_id: int, annotator: AbstractBaseUser, data: JudgmentInput, idempotency_key: str = ""
) -> tuple[Judgment, bool]:
    """Stores the judgment for a lease. Returns (judgment, created).

    The same idempotency key returns the judgment it stored the first time. An expired lease still counts
    while its pair has room; once others have filled the pair the submit is refused with a Conflict.
    """
    idempotency_key = idempotency_key.strip()[:100]
    assignment = assignment_for_annotator(assignment_id=assignment_id, annotator=annotator)
    project = assignment.project
    judgment_input_check(project=project, data=data)
    now = timezone.now()
    try:
        with transaction.atomic():
            status, expires_at, earlier_id = _lease_state(
                pair_id=assignment.pair_id,
                assignment_id=assignment.pk,
                annotator=annotator,
                key=idempotency_key,
            )
            if earlier_id is not None:
                return Judgment.objects.get(pk=earlier_id), False
            assignment.status, assignment.expires_at = status, expires_at
            if assignment.status == Assignment.Status.SKIPPED:
                raise Conflict(
                    "this pair was skipped; it can no longer be judged from this assignment", code="skipped"
                )
            lease_live = assignment.status == Assignment.Status.ACTIVE and assignment.expires_at > now
            if (
                not lease_live
                and pair_slots_recompute(pair_id=assignment.pair_id, now=now) >= project.overlap
            ):
                raise Conflict(
                    "your time on this pair ran out and others have since completed it; your judgment was not needed",
                    code="pair_completed",
                )
            judgment = Judgment.objects.create(
                pair_id=assignment.pair_id,
                annotator=annotator,
                shown_swapped=assignment.shown_swapped,
                idempotency_key=idempotency_key,
                assignment=assignment,
                **_pair_values(data, shown_swapped=assignment.shown_swapped),
            )
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE annotate_assignment SET status = 'submitted', closed_at = %s WHERE id = %s",
                    [now, assignment.pk],
                )
            pair_slots_recompute(pair_id=assignment.pair_id, now=now)
    except IntegrityError:
        # Two submits with the same key raced past the first check; the database kept exactly one.
        if idempotency_key:
            earlier = Judgment.objects.filter(annotator=annotator, idempotency_key=idempotency_key).first()
            if earlier is not None:
                return earlier, False
        raise Conflict(
            "you have already judged this pair; edit that judgment instead", code="already_judged"
        ) from None
    return judgment, True


def _lease_state(
    *, pair_id: int, assignment_id: int, annotator: AbstractBaseUser, key: str
) -> tuple[str, datetime, int | None]:
    """Locks the pair, then reads the lease's status and expiry and the judgment this idempotency key
    already stored (if any). Two statements: the read's snapshot is taken after the lock is granted, so it
    sees what a concurrent submit committed while this one waited."""
    with connection.cursor() as cursor:
        lock = "FOR UPDATE" if connection.features.has_select_for_update else ""
        cursor.execute(f"SELECT id FROM annotate_pair WHERE id = %s {lock}", [pair_id])
        cursor.execute(
            """
            SELECT a.status, a.expires_at,
                   (SELECT j.id FROM annotate_judgment j
                    WHERE %(key)s <> '' AND j.annotator_id = %(user)s AND j.idempotency_key = %(key)s)
            FROM annotate_assignment a WHERE a.id = %(assignment)s
            """,
            {"key": key, "user": annotator.pk, "assignment": assignment_id},
        )
        return cursor.fetchone()


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
        if judgment.created_at < now - timedelta(seconds=project.edit_window_seconds):
            minutes = project.edit_window_seconds // 60
            raise Conflict(
                f"judgments can be changed for {minutes} minutes after they are made",
                code="edit_window_closed",
            )
        judgment_input_check(project=project, data=data)
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
        values = _pair_values(data, shown_swapped=judgment.shown_swapped)
        if data.duration_ms is not None and judgment.duration_ms is not None:
            values["duration_ms"] = (
                judgment.duration_ms + data.duration_ms
            )  # time spent reconsidering counts too
        for field, value in values.items():
            setattr(judgment, field, value)
        judgment.revision += 1
        judgment.save()
    return judgment


def judgments_recent(
    *, project: Project, annotator: AbstractBaseUser, now=None, limit: int = 10
) -> list[Judgment]:
    """The annotator's judgments still inside the edit window, newest first."""
    now = now or timezone.now()
    since = now - timedelta(seconds=project.edit_window_seconds)
    return list(
        Judgment.objects.filter(pair__project=project, annotator=annotator, created_at__gte=since)
        .select_related("pair__prompt", "pair__response_a", "pair__response_b")
        .order_by("-created_at")[:limit]
    )
