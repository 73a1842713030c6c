"""Handing pairs to annotators: leases that are fair, blind and safe under concurrency.

Every change to a pair's leases or judgments happens with the pair's row locked, and then recomputes the
pair's ``slots_taken`` (judgments plus unexpired leases) from those rows. Finding work is one indexed query
that walks pairs in fill order from the first one with room (``FOR UPDATE SKIP LOCKED``), so its cost does
not grow with the size of the project. Expired leases are reclaimed by claims (every few seconds, and
whenever a claim finds nothing free), so correctness never waits on a background job.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from datetime import date, datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import CharField, Exists, F, Func, OuterRef
from django.utils import timezone

from annotate.models import Assignment, Judgment, Membership, Pair, Project
from annotate.selectors import ADMIN
from palate.errors import ApplicationError, Conflict

# Leases reclaimed per claim at most; the rest wait for the next claim (or the beat task).
EXPIRY_BATCH = 200
REMAINING_CACHE_SECONDS = 30


@dataclass(frozen=True)
class NothingLeft:
    reason: str


def pair_slots_recompute(*, pair_id: int, now: datetime | None = None) -> int:
    """Recomputes a pair's counters from its rows and returns ``slots_taken``. Call with the pair row locked
    (``select_for_update``): every writer of these rows holds that lock, so the counts are exact."""
    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT palate_pair_slots_recompute(%s, %s)", [pair_id, now])
        return cursor.fetchone()[0]


def project_pair_counters_rebuild(*, project: Project, now: datetime | None = None) -> None:
    """Recomputes every pair's counters in one statement, after rows were written in bulk (the demo's
    simulated votes, an admin repair). Normal work keeps them current pair by pair."""
    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE annotate_pair SET
                judgment_count = (SELECT COUNT(*) FROM annotate_judgment j
                                  WHERE j.pair_id = annotate_pair.id AND j.origin = 'human'),
                slots_taken = (SELECT COUNT(*) FROM annotate_judgment j
                               WHERE j.pair_id = annotate_pair.id AND j.origin = 'human')
                            + (SELECT COUNT(*) FROM annotate_assignment a
                               WHERE a.pair_id = annotate_pair.id AND a.status = 'active' AND a.expires_at > %s)
            WHERE project_id = %s
            """,
            [now, project.pk],
        )


def leases_expire(*, project: Project | int, now: datetime | None = None, limit: int = EXPIRY_BATCH) -> int:
    """Marks expired leases as such and frees their slots. Returns how many it reclaimed."""
    now = now or timezone.now()
    expired = list(
        Assignment.objects.filter(project=project, status=Assignment.Status.ACTIVE, expires_at__lte=now)
        .order_by("expires_at")
        .values_list("id", "pair_id")[:limit]
    )
    reclaimed = 0
    for assignment_id, pair_id in expired:
        with transaction.atomic():
            reclaimed += _lease_end(
                assignment_id=assignment_id, pair_id=pair_id, now=now, status=Assignment.Status.EXPIRED
            )
    return reclaimed


def _lease_end(*, assignment_id: int, pair_id: int, now: datetime, status: str) -> bool:
    """Ends a live lease with ``status`` and frees its slot; False when something else closed it first (a
    concurrent submit or reaper). Call inside a transaction."""
    Pair.objects.select_for_update().filter(pk=pair_id).values_list("pk", flat=True).first()
    ended = Assignment.objects.filter(pk=assignment_id, status=Assignment.Status.ACTIVE).update(
        status=status, closed_at=now
    )
    if ended:
        pair_slots_recompute(pair_id=pair_id, now=now)
    return bool(ended)


@transaction.atomic
def leases_release(*, user_id: int, project_id: int | None = None, now: datetime | None = None) -> int:
    """Ends the user's live leases in the project (in every project when None) and frees their pairs'
    slots at once: for a member who was removed, given another role or deactivated. A released lease is
    never judged or skipped from again, even once they are back. Call inside the change's transaction."""
    now = now or timezone.now()
    live = Assignment.objects.filter(annotator_id=user_id, status=Assignment.Status.ACTIVE)
    if project_id is not None:
        live = live.filter(project_id=project_id)
    leases = live.order_by("pair_id").values_list("id", "pair_id")
    return sum(
        _lease_end(assignment_id=lease, pair_id=pair, now=now, status=Assignment.Status.RELEASED)
        for lease, pair in leases
    )


def lease_released() -> ApplicationError:
    """The error for judging or skipping from a lease that ``leases_release`` ended."""
    return Conflict(
        "this pair was taken back when your role in the project changed; ask for a new pair",
        code="lease_released",
    )


@dataclass(frozen=True)
class ShownPair:
    """A lease with what its annotator reads of the pair, left and right already in screen order, and what
    they have submitted in the project (in all, and today)."""

    assignment: Assignment
    prompt: str
    messages: list[dict] | None
    left: str
    right: str
    done_total: int
    done_today: int
    overlap: int  # the project's, for the progress line


def pair_claim_next(
    *,
    project: Project,
    annotator: AbstractBaseUser,
    after: int | None = None,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> Assignment | NothingLeft:
    """The annotator's current lease, or a new one on the next pair they should judge (see ``pair_next_shown``)."""
    shown = pair_next_shown(project_id=project.pk, annotator=annotator, after=after, now=now, rng=rng)
    return shown if isinstance(shown, NothingLeft) else shown.assignment


def pair_next_shown(
    *,
    project_id: int,
    annotator: AbstractBaseUser,
    after: int | None = None,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> ShownPair | NothingLeft:
    """The annotator's current lease, or a new one on the next pair they should judge, with its content.

    A user outside the project gets a 404 error, a member with another role a 403 (site admins pass, and
    then need an annotator's membership like anyone else).

    ``after`` names the lease the annotator is looking at: the answer is then another one, so the page can
    fetch the next pair while the current one is read. An annotator holds at most two live leases.
    Claims for one annotator are serialised on their membership row, so two tabs asking at once still get
    one lease. Pairs are taken in fill order (depth first by default), gold pairs interleaved at the
    project's gold rate; which response goes on the left is drawn per lease. One call of
    ``palate_pair_next`` (annotate/sql/workspace_v3.sql) does all of it.
    """
    explicit_now = now is not None
    now = now or timezone.now()
    rng = rng or random.SystemRandom()
    swept = explicit_now or _expiry_sweep_due(project_id)
    if swept:
        leases_expire(project=project_id, now=now)
    shown = _claim(project_id=project_id, user_id=annotator.pk, after=after, now=now, rng=rng)
    if shown is None and not swept and leases_expire(project=project_id, now=now):
        # Nothing free, but expired leases were holding slots: try again now that they are released.
        shown = _claim(project_id=project_id, user_id=annotator.pk, after=after, now=now, rng=rng)
    if shown is not None:
        return shown
    judged_any = Judgment.objects.filter(pair__project_id=project_id, annotator_id=annotator.pk).exists()
    if judged_any:
        return NothingLeft("You have judged every pair that still needs judgments. Thank you!")
    return NothingLeft("No pairs need judgments in this project right now.")


def refusal(outcome: str, role: str | None = None) -> ApplicationError:
    """The error for a call ``palate_pair_next`` or ``palate_judgment_submit`` refused before it started."""
    if outcome == "no_project":
        return ApplicationError("no such project", code="not_found", http_status=404)
    if outcome == "no_assignment":
        return _no_such_assignment()
    if outcome == "wrong_role":
        return ApplicationError(
            f"your role in this project ({role}) does not allow this",
            code="permission_denied",
            http_status=403,
        )
    return ApplicationError(
        "only annotators of this project get pairs to judge", code="not_an_annotator", http_status=403
    )


def _claim(
    *, project_id: int, user_id: int, after: int | None, now: datetime, rng: random.Random
) -> ShownPair | None:
    """The lease shown, or None when nothing is free: one call of ``palate_pair_next``."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT * FROM palate_pair_next(%s::bigint, %s::bigint, %s::bigint, %s::timestamptz, %s::float8,
                                           %s::float8, %s::date)
            """,
            [project_id, user_id, after or 0, now, rng.random(), rng.random(), local_day(now)],
        )
        outcome, role, overlap, *lease, prompt, messages, left, right, done_total, done_today = (
            cursor.fetchone()
        )
    if outcome not in {"live", "claimed", "none"}:
        raise refusal(outcome, role)
    if outcome == "none":
        return None
    if isinstance(messages, str):  # Django loads jsonb as text; JSONField decodes it
        messages = json.loads(messages)
    return ShownPair(
        assignment=_assignment(project_id, user_id, *lease),
        prompt=prompt,
        messages=messages,
        left=left,
        right=right,
        done_total=done_total,
        done_today=done_today,
        overlap=overlap,
    )


def _assignment(
    project_id: int,
    user_id: int,
    assignment_id: int,
    pair_id: int,
    shown_swapped: bool,
    created_at: datetime,
    expires_at: datetime,
) -> Assignment:
    """The lease as a model instance, from the values the claim already has (no second read)."""
    assignment = Assignment(
        id=assignment_id,
        project_id=project_id,
        pair_id=pair_id,
        annotator_id=user_id,
        shown_swapped=shown_swapped,
        status=Assignment.Status.ACTIVE,
        created_at=created_at,
        expires_at=expires_at,
    )
    assignment._state.adding = False
    assignment._state.db = "default"
    return assignment


# When this process last reclaimed expired leases of each project (time.monotonic()). Claims reclaim them
# lazily, at most every EXPIRY_SWEEP_SECONDS per process: a lease that expired a second ago can wait for
# the next sweep, and the busiest path saves a query.
_expiry_swept_at: dict[int, float] = {}
EXPIRY_SWEEP_SECONDS = 2.0


def _expiry_sweep_due(project_id: int) -> bool:
    moment = time.monotonic()
    if moment - _expiry_swept_at.get(project_id, -EXPIRY_SWEEP_SECONDS) < EXPIRY_SWEEP_SECONDS:
        return False
    _expiry_swept_at[project_id] = moment
    return True


def _no_such_assignment() -> ApplicationError:
    return ApplicationError("no such assignment", code="not_found", http_status=404)


def annotator_membership_lock(*, project_id: int, user: AbstractBaseUser) -> None:
    """Locks the user's annotator membership of the project, or refuses (403) when they are not an
    annotator there now: a member removed, given another role or deactivated keeps no say over leases they
    held. The role is read from the database (``palate_project_role``, which knows deactivations), never
    from the request's user, which a cached token may have kept from before. Call inside a transaction,
    before locking any pair (claims and submits lock in that order too)."""
    role = Func(F("project_id"), F("user_id"), function="palate_project_role", output_field=CharField())
    locked = (
        Membership.objects.select_for_update()
        .annotate(role_now=role)
        .filter(
            project_id=project_id,
            user_id=user.pk,
            role=Membership.Role.ANNOTATOR,
            role_now__in=[Membership.Role.ANNOTATOR, ADMIN],
        )
        .values_list("pk", flat=True)
        .first()
    )
    if locked is None:
        raise refusal("not_an_annotator")


def assignment_skip(*, assignment_id: int, annotator: AbstractBaseUser, reason: str = "") -> Assignment:
    """Releases the lease. The pair is not offered to this annotator again."""
    now = timezone.now()
    with transaction.atomic():
        assignment = Assignment.objects.filter(pk=assignment_id, annotator_id=annotator.pk).first()
        if assignment is None:
            raise _no_such_assignment()
        annotator_membership_lock(project_id=assignment.project_id, user=annotator)
        Pair.objects.select_for_update().filter(pk=assignment.pair_id).values_list("pk", flat=True).first()
        updated = Assignment.objects.filter(
            pk=assignment.pk, status__in=[Assignment.Status.ACTIVE, Assignment.Status.EXPIRED]
        ).update(status=Assignment.Status.SKIPPED, skip_reason=reason[:500], closed_at=now)
        if not updated:
            assignment.refresh_from_db(fields=["status"])
            if assignment.status == Assignment.Status.SKIPPED:
                return assignment  # a retried skip: it already took effect
            if assignment.status == Assignment.Status.RELEASED:
                raise lease_released()
            raise ApplicationError(
                "this pair was already judged from this assignment; undo it instead",
                code="conflict",
                http_status=409,
            )
        pair_slots_recompute(pair_id=assignment.pair_id, now=now)
    assignment.refresh_from_db()
    return assignment


# Per process: project id → (time.monotonic() until which the count holds, pairs that still need judgments).
_remaining: dict[int, tuple[float, int]] = {}


def project_remaining_pairs(*, project_id: int, overlap: int) -> int:
    """Pairs that still need judgments: an estimate for the progress line, counted at most every
    REMAINING_CACHE_SECONDS per process, so that no request counts over the project's pairs (and none
    waits on a shared cache either)."""
    moment = time.monotonic()
    cached = _remaining.get(project_id)
    if cached is not None and cached[0] > moment:
        return cached[1]
    remaining = Pair.objects.filter(project_id=project_id, judgment_count__lt=overlap).count()
    _remaining[project_id] = (moment + REMAINING_CACHE_SECONDS, remaining)
    return remaining


def local_day(now: datetime) -> date:
    """The day a judgment counts for on the progress line: the server's (TIME_ZONE)."""
    return timezone.localtime(now).date()


def leases_expire_all(*, now: datetime | None = None) -> int:
    """For the beat task: reclaims expired leases in every project (claims also do this lazily)."""
    now = now or timezone.now()
    projects = Project.objects.filter(
        Exists(
            Assignment.objects.filter(
                project=OuterRef("pk"), status=Assignment.Status.ACTIVE, expires_at__lte=now
            )
        )
    )
    return sum(leases_expire(project=project, now=now) for project in projects)


__all__ = [
    "NothingLeft",
    "ShownPair",
    "annotator_membership_lock",
    "assignment_skip",
    "lease_released",
    "leases_expire",
    "leases_expire_all",
    "leases_release",
    "local_day",
    "pair_claim_next",
    "pair_next_shown",
    "pair_slots_recompute",
    "project_remaining_pairs",
]
