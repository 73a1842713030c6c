"""Handing pairs to annotators: leases that are fair, blind and safe under concurrency.

Every change to a pair's leases or judgments happens with the pair's row locked, and then recomputes the
pair's ``slots_taken`` (judgments plus unexpired leases) from those rows. Finding work is one indexed query
that walks pairs in fill order from the first one with room (``FOR UPDATE SKIP LOCKED``), so its cost does
not grow with the size of the project. Expired leases are reclaimed by claims (every few seconds, and
whenever a claim finds nothing free), so correctness never waits on a background job.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from annotate.models import Assignment, Judgment, Pair, Project, Prompt, Response
from annotate.selectors import user_is_site_admin
from annotate.services.workspace_sql import (
    CLAIM_REACHES,
    LIVE_LEASE_SQL,
    PROGRESS_SQL,
    PROJECT_ROLE_SQL,
    RECOMPUTE_SQL,
    TOKEN_USER_SQL,
    claim_statement,
    portable,
    workspace_functions_used,
)
from palate.callers import TokenRejected, UncheckedToken
from palate.errors import ApplicationError
from palate.sql import model_columns, model_from_row, model_width

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
        cursor.execute(portable(RECOMPUTE_SQL), {"pair": pair_id, "now": now})
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
            Pair.objects.select_for_update().filter(pk=pair_id).values_list("pk", flat=True).first()
            # A conditional update: a concurrent submit or another reaper may have closed it first.
            if Assignment.objects.filter(pk=assignment_id, status=Assignment.Status.ACTIVE).update(
                status=Assignment.Status.EXPIRED, closed_at=now
            ):
                reclaimed += 1
                pair_slots_recompute(pair_id=pair_id, now=now)
    return reclaimed


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
    annotator: AbstractBaseUser | UncheckedToken,
    after: int | None = None,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> ShownPair | NothingLeft:
    """The annotator's current lease, or a new one on the next pair they should judge, with its content.

    ``annotator`` is a user, or an API token that this call checks itself (``TokenRejected`` when it is
    unknown or its user may not log in). A user outside the project gets a 404 error, a member with
    another role a 403 (site admins pass, and then need an annotator's membership like anyone else).

    ``after`` names the lease the annotator is looking at: the answer is then another one, so the page can
    fetch the next pair while the current one is read. An annotator holds at most two live leases.
    Claims for one annotator are serialised on their membership row, so two tabs asking at once still get
    one lease. Pairs are taken in fill order (depth first by default), gold pairs interleaved at the
    project's gold rate; which response goes on the left is drawn per lease.

    This is the busiest path of the product: on PostgreSQL it is one call of ``palate_pair_next``
    (``workspace_sql.py``), checks included; elsewhere the same statements run one by one in a transaction.
    """
    explicit_now = now is not None
    now = now or timezone.now()
    rng = rng or random.SystemRandom()
    swept = explicit_now or _expiry_sweep_due(project_id)
    if swept:
        leases_expire(project=project_id, now=now)
    shown, user_id = _claim(project_id=project_id, annotator=annotator, after=after, now=now, rng=rng)
    if shown is None and not swept and leases_expire(project=project_id, now=now):
        # Nothing free, but expired leases were holding slots: try again now that they are released.
        shown, user_id = _claim(project_id=project_id, annotator=annotator, after=after, now=now, rng=rng)
    if shown is not None:
        return shown
    judged_any = Judgment.objects.filter(pair__project_id=project_id, annotator_id=user_id).exists()
    if judged_any:
        return NothingLeft("You have judged every pair that still needs judgments. Thank you!")
    return NothingLeft("No pairs need judgments in this project right now.")


def _claim(
    *,
    project_id: int,
    annotator: AbstractBaseUser | UncheckedToken,
    after: int | None,
    now: datetime,
    rng: random.Random,
) -> tuple[ShownPair | None, int]:
    """The lease shown (None when nothing is free) and the annotator's user id."""
    claim = _claim_in_database if workspace_functions_used() else _claim_portable
    return claim(project_id=project_id, caller=caller_arguments(annotator), after=after, now=now, rng=rng)


def caller_arguments(annotator: AbstractBaseUser | UncheckedToken) -> tuple[int, str, bool]:
    """(user id, token key, site admin) as the database functions take them: a token's user is theirs
    to find."""
    if isinstance(annotator, UncheckedToken):
        return 0, annotator.key, False
    return annotator.pk, "", user_is_site_admin(annotator)


def refusal(outcome: str, role: str | None = None) -> ApplicationError:
    """The error for a call refused before it started: an outcome of ``palate_pair_next`` or
    ``palate_judgment_submit``."""
    if outcome == "bad_token":
        return TokenRejected("Invalid token.")
    if outcome == "inactive":
        return TokenRejected("User inactive or deleted.")
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
    return _not_an_annotator()


def _draws(rng: random.Random) -> tuple[float, float]:
    """The random numbers of a claim: one decides whether B is shown on the left, one whether to look for a
    gold pair first (``_decisions``; the database function decides the same way)."""
    return rng.random(), rng.random()


def _decisions(
    swap_draw: float, gold_draw: float, gold_rate: float, lease_seconds: int, now: datetime
) -> tuple[bool, bool, datetime]:
    """Whether to show B on the left, whether to look for a gold pair first, and when the lease expires."""
    return swap_draw < 0.5, gold_rate > 0 and gold_draw < gold_rate, now + timedelta(seconds=lease_seconds)


def _claim_in_database(
    *, project_id: int, caller: tuple[int, str, bool], after: int | None, now: datetime, rng: random.Random
) -> tuple[ShownPair | None, int]:
    swap_draw, gold_draw = _draws(rng)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT * FROM palate_pair_next(%s::bigint, %s::bigint, %s::text, %s::boolean, %s::bigint,
                                           %s::timestamptz, %s::float8, %s::float8, %s::date)
            """,
            [project_id, *caller, after or 0, now, swap_draw, gold_draw, local_day(now)],
        )
        outcome, user_id, role, overlap, *lease, prompt, messages, left, right, done_total, done_today = (
            cursor.fetchone()
        )
    if outcome not in {"live", "claimed", "none"}:
        raise refusal(outcome, role)
    if outcome == "none":
        return None, user_id
    if isinstance(messages, str):  # Django loads jsonb as text; JSONField decodes it
        messages = json.loads(messages)
    shown = ShownPair(
        assignment=_assignment(project_id, user_id, *lease),
        prompt=prompt,
        messages=messages,
        left=left,
        right=right,
        done_total=done_total,
        done_today=done_today,
        overlap=overlap,
    )
    return shown, user_id


def _claim_portable(
    *, project_id: int, caller: tuple[int, str, bool], after: int | None, now: datetime, rng: random.Random
) -> tuple[ShownPair | None, int]:
    """``palate_pair_next`` as separate statements, for databases without stored functions (SQLite). The
    tests also run it on PostgreSQL, where it takes the same locks, so that both paths stay alike."""
    user_id, token, admin = caller
    with transaction.atomic(), connection.cursor() as cursor:
        if token:
            cursor.execute(portable(TOKEN_USER_SQL), {"token": token})
            row = cursor.fetchone()
            if row is None or not row[1]:
                raise refusal("bad_token" if row is None else "inactive")
            user_id, _, admin = row
        cursor.execute(portable(PROJECT_ROLE_SQL), {"user": user_id, "project": project_id})
        row = cursor.fetchone()
        if row is None or (row[4] is None and not admin):
            raise refusal("no_project")
        overlap, gold_rate, lease_seconds, order, role = row
        if role != "annotator" and not admin:
            raise refusal("wrong_role", role)
        # Locks the annotator's membership row: one claim at a time per annotator. The live lease is read by
        # a second statement, whose snapshot is taken after the lock is granted: it sees a lease that a
        # concurrent claim (another tab) committed while this one waited.
        # The same statement reads their progress (see PROGRESS_SQL).
        cursor.execute(
            portable(PROGRESS_SQL) + _locking("FOR UPDATE"),
            {"project": project_id, "user": user_id, "today": local_day(now)},
        )
        progress = cursor.fetchone()
        if progress is None:
            raise _not_an_annotator()
        cursor.execute(
            portable(LIVE_LEASE_SQL),
            {"user": user_id, "project": project_id, "now": now, "after": after or 0},
        )
        live = cursor.fetchone()
        if live is not None:
            assignment = _assignment(project_id, user_id, *live)
        else:
            assignment = None
            shown_swapped, gold_first, expires_at = _decisions(*_draws(rng), gold_rate, lease_seconds, now)
            lock = _locking("FOR UPDATE OF p SKIP LOCKED")
            for gold, reach in itertools.product((gold_first, not gold_first), CLAIM_REACHES):
                cursor.execute(
                    portable(claim_statement(order, reach), lock=lock),
                    {
                        "project": project_id,
                        "user": user_id,
                        "gold": gold,
                        "overlap": overlap,
                        "swapped": shown_swapped,
                        "now": now,
                        "expires": expires_at,
                    },
                )
                claimed = cursor.fetchone()
                if claimed is not None:
                    pair_slots_recompute(pair_id=claimed[1], now=now)
                    assignment = _assignment(project_id, user_id, *claimed, shown_swapped, now, expires_at)
                    break
            if assignment is None:
                return None, user_id
    pair = pair_content(pair_id=assignment.pair_id)
    prompt = pair.prompt
    first, second = (
        (pair.response_b, pair.response_a) if assignment.shown_swapped else (pair.response_a, pair.response_b)
    )
    done_total, done_today = progress
    shown = ShownPair(
        assignment=assignment,
        prompt=prompt.content,
        messages=prompt.messages,
        left=first.content,
        right=second.content,
        done_total=done_total,
        done_today=done_today,
        overlap=overlap,
    )
    return shown, user_id


def _not_an_annotator() -> ApplicationError:
    return ApplicationError(
        "only annotators of this project get pairs to judge", code="not_an_annotator", http_status=403
    )


def _locking(clause: str) -> str:
    """A row-locking clause, or nothing on SQLite (the embedded default), where writers take turns anyway."""
    return clause if connection.features.has_select_for_update else ""


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


def pair_content(*, pair_id: int) -> Pair:
    """The pair with what an annotator reads of it (prompt, messages, both responses), in one statement."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT {model_columns(Pair, "pair")}, {model_columns(Prompt, "prompt")},
                   {model_columns(Response, "a")}, {model_columns(Response, "b")}
            FROM annotate_pair pair
            JOIN annotate_prompt prompt ON prompt.id = pair.prompt_id
            JOIN annotate_response a ON a.id = pair.response_a_id
            JOIN annotate_response b ON b.id = pair.response_b_id
            WHERE pair.id = %s
            """,
            [pair_id],
        )
        row = cursor.fetchone()
    pair = model_from_row(Pair, row)
    offset = model_width(Pair)
    pair.prompt = model_from_row(Prompt, row, offset)
    offset += model_width(Prompt)
    pair.response_a = model_from_row(Response, row, offset)
    pair.response_b = model_from_row(Response, row, offset + model_width(Response))
    return pair


def assignment_for_annotator(
    *, assignment_id: int, annotator: AbstractBaseUser | UncheckedToken
) -> Assignment:
    """The annotator's own assignment with its project, in one statement (every submit starts here). A
    token is checked by the same statement (``TokenRejected``)."""
    if isinstance(annotator, UncheckedToken):
        return _assignment_for_token(assignment_id=assignment_id, token=annotator.key)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT {model_columns(Assignment, "a")}, {model_columns(Project, "p")}
            FROM annotate_assignment a JOIN annotate_project p ON p.id = a.project_id
            WHERE a.id = %s AND a.annotator_id = %s
            """,
            [assignment_id, annotator.pk],
        )
        row = cursor.fetchone()
    if row is None:
        raise _no_such_assignment()
    assignment = model_from_row(Assignment, row)
    assignment.project = model_from_row(Project, row, model_width(Assignment))
    return assignment


def _assignment_for_token(*, assignment_id: int, token: str) -> Assignment:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT u.is_active, {model_columns(Assignment, "a")}, {model_columns(Project, "p")}
            FROM authtoken_token t JOIN auth_user u ON u.id = t.user_id
            LEFT JOIN annotate_assignment a ON a.id = %s AND a.annotator_id = u.id
            LEFT JOIN annotate_project p ON p.id = a.project_id
            WHERE t.key = %s
            """,
            [assignment_id, token],
        )
        row = cursor.fetchone()
    if row is None:
        raise refusal("bad_token")
    if not row[0]:
        raise refusal("inactive")
    if row[1] is None:
        raise _no_such_assignment()
    assignment = model_from_row(Assignment, row, 1)
    assignment.project = model_from_row(Project, row, 1 + model_width(Assignment))
    return assignment


def _no_such_assignment() -> ApplicationError:
    return ApplicationError("no such assignment", code="not_found", http_status=404)


def assignment_skip(*, assignment_id: int, annotator: AbstractBaseUser, reason: str = "") -> Assignment:
    """Releases the lease. The pair is not offered to this annotator again."""
    now = timezone.now()
    assignment = assignment_for_annotator(assignment_id=assignment_id, annotator=annotator)
    with transaction.atomic():
        Pair.objects.select_for_update().filter(pk=assignment.pair_id).values_list("pk", flat=True).first()
        updated = Assignment.objects.filter(
            pk=assignment.pk, status__in=[Assignment.Status.ACTIVE, Assignment.Status.EXPIRED]
        ).update(status=Assignment.Status.SKIPPED, skip_reason=reason[:500], closed_at=now)
        if not updated:
            assignment.refresh_from_db(fields=["status"])
            if assignment.status == Assignment.Status.SKIPPED:
                return assignment  # a retried skip: it already took effect
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
    "assignment_for_annotator",
    "assignment_skip",
    "leases_expire",
    "leases_expire_all",
    "local_day",
    "pair_claim_next",
    "pair_content",
    "pair_next_shown",
    "pair_slots_recompute",
    "project_remaining_pairs",
]
