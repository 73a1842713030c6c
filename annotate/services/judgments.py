"""Recording judgments: validated against the project's configuration, mapped from screen terms (left,
right) to the pair's own terms (a, b), idempotent, and never lost or duplicated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from annotate.models import Assignment, Judgment, JudgmentRevision, Project
from annotate.services.assignment import (
    assignment_for_annotator,
    caller_arguments,
    local_day,
    pair_slots_recompute,
    refusal,
)
from annotate.services.workspace_sql import (
    COUNTED_SQL,
    EARLIER_SQL,
    JUDGMENT_INSERT_SQL,
    LEASE_STATE_SQL,
    SUBMITTED_SQL,
    portable,
    workspace_functions_used,
)
from palate.callers import UncheckedToken
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
    *,
    assignment_id: int,
    annotator: AbstractBaseUser | UncheckedToken,
    data: JudgmentInput,
    idempotency_key: str = "",
) -> tuple[Judgment, bool]:
    """Stores the judgment for a lease. Returns (judgment, created). ``annotator`` is a user, or an API
    token that this call checks (``TokenRejected``).

    The same idempotency key returns the judgment it stored the first time. An expired lease still counts
    while its pair has room; once others have filled the pair the submit is refused with a Conflict.
    On PostgreSQL the whole submit is one call of ``palate_judgment_submit`` (``workspace_sql.py``), which
    also checks the judgment against the project's configuration; elsewhere the same statements run one by
    one in a transaction.
    """
    idempotency_key = idempotency_key.strip()[:100]
    now = timezone.now()
    if workspace_functions_used() and not _problems_under_any_configuration(data):
        recorded = _submit_in_database(
            assignment_id=assignment_id,
            annotator=annotator,
            data=data,
            idempotency_key=idempotency_key,
            now=now,
        )
        if recorded is not None:
            return recorded
        # The function found that the judgment breaks the project's configuration: the check below says
        # how, in the words of every other path. (Should the two checks ever disagree, this one decides.)
    assignment = assignment_for_annotator(assignment_id=assignment_id, annotator=annotator)
    project = assignment.project
    judgment_input_check(project=project, data=data)
    values = _pair_values(data, shown_swapped=assignment.shown_swapped)
    outcome, judgment_id = _submit_portable(
        {
            "assignment": assignment.pk,
            "project": project.pk,
            "pair": assignment.pair_id,
            "user": assignment.annotator_id,
            "key": idempotency_key,
            "now": now,
            "today": local_day(now),
            "overlap": project.overlap,
            "shown_swapped": assignment.shown_swapped,
            **values,
            "criteria": json.dumps(values["criteria"]),
        }
    )
    return _recorded(
        outcome,
        judgment_id,
        assignment_id=assignment.pk,
        pair_id=assignment.pair_id,
        user_id=assignment.annotator_id,
        shown_swapped=assignment.shown_swapped,
        values=values,
        idempotency_key=idempotency_key,
        now=now,
    )


def _problems_under_any_configuration(data: JudgmentInput) -> bool:
    """Whether the judgment breaks a rule that does not depend on the project (then every path refuses it,
    and ``judgment_input_check`` says why)."""
    too_long = len(data.rationale or "") > MAX_RATIONALE_CHARS
    return too_long or (data.duration_ms is not None and not 0 <= data.duration_ms <= MAX_DURATION_MS)


def _submit_in_database(
    *,
    assignment_id: int,
    annotator: AbstractBaseUser | UncheckedToken,
    data: JudgmentInput,
    idempotency_key: str,
    now: datetime,
) -> tuple[Judgment, bool] | None:
    """One call of ``palate_judgment_submit``; None when the judgment breaks the project's configuration."""
    user_id, token, _ = caller_arguments(annotator)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT * FROM palate_judgment_submit(%s::bigint, %s::bigint, %s::text, %s::text, %s::timestamptz,
                                                 %s::text, %s::integer, %s::jsonb, %s::text, %s::integer,
                                                 %s::date)
            """,
            [
                assignment_id,
                user_id,
                token,
                idempotency_key,
                now,
                data.choice,
                data.strength,
                json.dumps(data.criteria or {}),
                (data.rationale or "").strip(),
                data.duration_ms,
                local_day(now),
            ],
        )
        outcome, judgment_id, user_id, pair_id, shown_swapped = cursor.fetchone()
    if outcome == "invalid":
        return None
    if outcome in {"bad_token", "inactive", "no_assignment"}:
        raise refusal(outcome)
    return _recorded(
        outcome,
        judgment_id,
        assignment_id=assignment_id,
        pair_id=pair_id,
        user_id=user_id,
        shown_swapped=shown_swapped,
        values=_pair_values(data, shown_swapped=shown_swapped),
        idempotency_key=idempotency_key,
        now=now,
    )


def _recorded(
    outcome: str,
    judgment_id: int | None,
    *,
    assignment_id: int,
    pair_id: int,
    user_id: int,
    shown_swapped: bool,
    values: dict[str, Any],
    idempotency_key: str,
    now: datetime,
) -> tuple[Judgment, bool]:
    """The submit's answer for the outcome of the recording (both paths name outcomes alike)."""
    if outcome == "created":
        judgment = Judgment(
            id=judgment_id,
            pair_id=pair_id,
            annotator_id=user_id,
            origin=Judgment.Origin.HUMAN,
            shown_swapped=shown_swapped,
            idempotency_key=idempotency_key,
            assignment_id=assignment_id,
            revision=1,
            created_at=now,
            updated_at=now,
            **values,
        )
        judgment._state.adding = False
        judgment._state.db = "default"
        return judgment, True
    if outcome == "earlier":
        return Judgment.objects.get(pk=judgment_id), False
    if outcome == "skipped":
        raise Conflict(
            "this pair was skipped; it can no longer be judged from this assignment", code="skipped"
        )
    if outcome == "pair_completed":
        raise Conflict(
            "your time on this pair ran out and others have since completed it; your judgment was not needed",
            code="pair_completed",
        )
    raise Conflict("you have already judged this pair; edit that judgment instead", code="already_judged")


def _submit_portable(parameters: dict[str, Any]) -> tuple[str, int | None]:
    """``palate_judgment_submit`` as separate statements, for databases without stored functions (SQLite).
    Returns the outcome and the judgment's id. The pair's row is locked first where the database can (the
    tests run this path on PostgreSQL too); the lease is then read by a statement of its own, whose
    snapshot sees what a concurrent submit committed meanwhile."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.features.has_select_for_update:
            cursor.execute("SELECT id FROM annotate_pair WHERE id = %(pair)s FOR UPDATE", parameters)
        cursor.execute(portable(LEASE_STATE_SQL), parameters)
        status, expires_at, earlier_id = cursor.fetchone()
        if earlier_id is not None:
            return "earlier", earlier_id
        if status == Assignment.Status.SKIPPED:
            return "skipped", None
        now = parameters["now"]
        lease_live = status == Assignment.Status.ACTIVE and _aware(expires_at) > now
        if (
            not lease_live
            and pair_slots_recompute(pair_id=parameters["pair"], now=now) >= parameters["overlap"]
        ):
            return "pair_completed", None
        cursor.execute(portable(JUDGMENT_INSERT_SQL), parameters)
        inserted = cursor.fetchone()
        if inserted is None:
            cursor.execute(portable(EARLIER_SQL), parameters)
            earlier = cursor.fetchone()
            return ("earlier", earlier[0]) if earlier else ("already_judged", None)
        cursor.execute(portable(SUBMITTED_SQL), parameters)
        cursor.execute(portable(COUNTED_SQL), parameters)
        pair_slots_recompute(pair_id=parameters["pair"], now=now)
        return "created", inserted[0]


def _aware(moment: datetime | str) -> datetime:
    """A timestamp read with a raw cursor, as an aware datetime (SQLite hands back text)."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, UTC)


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
