"""Annotators' reports of a problem with a pair: a flag skips the pair for its annotator (through the one skip
path, ``assignment_skip``) and waits on the lead's list until the pair is settled or the flag dismissed."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from annotate.models import PairFlag, Project
from annotate.services.assignment import assignment_skip
from palate.errors import ApplicationError, Conflict

FLAG_TEXT_MAX_LENGTH = 2000


def flag_input_check(*, category: str, text: str) -> str:
    """The flag's text, stripped; refuses (naming the field) an unknown category, or "other" with no text."""
    text = (text or "").strip()
    if category not in PairFlag.Category.values:
        choices = ", ".join(PairFlag.Category.values)
        raise ApplicationError(
            f"category: must be one of {choices}", fields={"category": [f"must be one of {choices}"]}
        )
    if category == PairFlag.Category.OTHER and not text:
        message = "say what is wrong when the category is 'other'"
        raise ApplicationError(f"text: {message}", fields={"text": [message]})
    if len(text) > FLAG_TEXT_MAX_LENGTH:
        message = f"must be at most {FLAG_TEXT_MAX_LENGTH} characters"
        raise ApplicationError(f"text: {message}", fields={"text": [message]})
    return text


def pair_flag_create(
    *, assignment_id: int, annotator: AbstractBaseUser, category: str, text: str = ""
) -> tuple[PairFlag, bool]:
    """Flags the pair of the annotator's lease and skips it for them. Returns (flag, created): a retried
    request gets the flag it made the first time. The skip's own checks apply (an annotator of the project
    now, a lease of theirs not yet judged from)."""
    text = flag_input_check(category=category, text=text)
    now = timezone.now()
    with transaction.atomic():
        reason = f"flagged as {category}" + (f": {text}" if text else "")
        assignment = assignment_skip(assignment_id=assignment_id, annotator=annotator, reason=reason)
        return PairFlag.objects.get_or_create(
            pair_id=assignment.pair_id,
            annotator=annotator,
            defaults={"category": category, "text": text, "created_at": now},
        )


def pair_flags_resolve(
    *, pair_id: int, resolved_by: AbstractBaseUser, resolution: str, now: datetime | None = None
) -> int:
    """Closes every open flag of the pair with ``resolution`` (settled or dismissed); returns how many."""
    return PairFlag.objects.filter(pair_id=pair_id, resolved_at__isnull=True).update(
        resolution=resolution, resolved_at=now or timezone.now(), resolved_by=resolved_by
    )


def pair_flag_dismiss(*, flag_id: int, project: Project, dismissed_by: AbstractBaseUser) -> PairFlag:
    """A lead closes one flag without settling its pair (nothing was wrong, or it was fixed elsewhere).
    A flag already closed is refused with a Conflict."""
    flag = PairFlag.objects.filter(pk=flag_id, pair__project=project).first()
    if flag is None:
        raise ApplicationError("no such flag in this project", code="not_found", http_status=404)
    now = timezone.now()
    closed = PairFlag.objects.filter(pk=flag.pk, resolved_at__isnull=True).update(
        resolution=PairFlag.Resolution.DISMISSED, resolved_at=now, resolved_by=dismissed_by
    )
    if not closed:
        raise Conflict("this flag is already closed", code="flag_closed")
    flag.refresh_from_db()
    return flag
