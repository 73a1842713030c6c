"""Handing pairs to annotators: leases that are fair, blind and safe under concurrency.

Every change to a pair's leases or judgments happens with the pair's row locked, and then recomputes the
pair's ``slots_taken`` (judgments plus unexpired leases) from those rows. Finding work is one indexed query
that walks pairs in fill order from the first one with room (``FOR UPDATE SKIP LOCKED``), so its cost does
not grow with the size of the project. Expired leases are reclaimed at the start of every claim, so
correctness never waits on a background job.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from annotate.models import Assignment, Judgment, Membership, Pair, Project
from palate.errors import ApplicationError

# Leases reclaimed per claim at most; the rest wait for the next claim (or the beat task).
EXPIRY_BATCH = 200
REMAINING_CACHE_SECONDS = 30


@dataclass(frozen=True)
class NothingLeft:
    reason: str


def pair_slots_recompute(*, pair_id: int, now: datetime | None = None) -> int:
    """Recomputes a pair's counters from its rows and returns ``slots_taken``. Call with the pair row locked
    (``select_for_update``): every writer of these rows holds that lock, so the counts are exact."""
    from django.db import connection

    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE annotate_pair SET judgment_count = counts.judgments, slots_taken = counts.judgments + counts.leases
            FROM (SELECT
                    (SELECT COUNT(*) FROM annotate_judgment WHERE pair_id = %(pair)s AND origin = 'human') AS judgments,
                    (SELECT COUNT(*) FROM annotate_assignment
                     WHERE pair_id = %(pair)s AND status = 'active' AND expires_at > %(now)s) AS leases) AS counts
            WHERE annotate_pair.id = %(pair)s
            RETURNING annotate_pair.slots_taken
            """,
            {"pair": pair_id, "now": now},
        )
        return cursor.fetchone()[0]


def project_pair_counters_rebuild(*, project: Project, now: datetime | None = None) -> None:
    """Recomputes every pair's counters in one statement, after rows were written in bulk (the demo's
    simulated votes, an admin repair). Normal work keeps them current pair by pair."""
    from django.db import connection

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


def leases_expire(*, project: Project, now: datetime | None = None, limit: int = EXPIRY_BATCH) -> int:
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


def pair_claim_next(
    *,
    project: Project,
    annotator: AbstractBaseUser,
    after: int | None = None,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> Assignment | NothingLeft:
    """The annotator's current lease, or a new one on the next pair they should judge.

    ``after`` names the lease the annotator is looking at: the answer is then another one, so the page can
    fetch the next pair while the current one is read. An annotator holds at most two live leases.
    Claims for one annotator are serialised on their membership row, so two tabs asking at once still get
    one lease. Pairs are taken in fill order (depth first by default), gold pairs interleaved at the
    project's gold rate; which response goes on the left is drawn per lease.
    """
    now = now or timezone.now()
    rng = rng or random.SystemRandom()
    leases_expire(project=project, now=now)
    with transaction.atomic():
        # Locks the annotator's membership row: one claim at a time per annotator.
        if (
            not Membership.objects.select_for_update()
            .filter(project=project, user=annotator, role=Membership.Role.ANNOTATOR)
            .values_list("pk", flat=True)
        ):
            raise ApplicationError(
                "only annotators of this project get pairs to judge", code="not_an_annotator", http_status=403
            )
        live = Assignment.objects.filter(
            project=project, annotator=annotator, status=Assignment.Status.ACTIVE, expires_at__gt=now
        ).order_by("created_at", "id")
        if after is not None:
            live = live.exclude(pk=after)
        current = live.first()
        if current is not None:
            return current
        want_gold = project.gold_rate > 0 and rng.random() < project.gold_rate
        for gold in (want_gold, not want_gold):
            pair = _candidate(project=project, annotator=annotator, gold=gold)
            if pair is not None:
                assignment = Assignment.objects.create(
                    project=project,
                    pair=pair,
                    annotator=annotator,
                    shown_swapped=rng.random() < 0.5,
                    expires_at=now + timedelta(seconds=project.lease_seconds),
                )
                pair_slots_recompute(pair_id=pair.pk, now=now)
                return assignment
    judged_any = Judgment.objects.filter(pair__project=project, annotator=annotator).exists()
    if judged_any:
        return NothingLeft("You have judged every pair that still needs judgments. Thank you!")
    return NothingLeft("No pairs need judgments in this project right now.")


def _candidate(*, project: Project, annotator: AbstractBaseUser, gold: bool) -> Pair | None:
    judged = Judgment.objects.filter(pair=OuterRef("pk"), annotator=annotator)
    # Skipped pairs are not offered to the same annotator again; pairs they hold a lease on are theirs already.
    leased_or_skipped = Assignment.objects.filter(
        pair=OuterRef("pk"),
        annotator=annotator,
        status__in=[Assignment.Status.SKIPPED, Assignment.Status.ACTIVE],
    )
    if project.assignment_strategy != "fill":
        # An uncertainty-seeking strategy has ranked the pairs (Pair.priority); fill order breaks ties.
        order = ("-priority", "-slots_taken", "id")
    elif project.assignment_order == Project.AssignmentOrder.BREADTH_FIRST:
        order = ("slots_taken", "id")
    else:
        order = ("-slots_taken", "id")
    return (
        Pair.objects.filter(project=project, is_gold=gold, slots_taken__lt=project.overlap)
        .filter(~Exists(judged), ~Exists(leased_or_skipped))
        .order_by(*order)
        .select_for_update(skip_locked=True, of=("self",))
        .only("id", "project_id")
        .first()
    )


def assignment_for_annotator(*, assignment_id: int, annotator: AbstractBaseUser) -> Assignment:
    assignment = (
        Assignment.objects.select_related("project", "pair")
        .filter(pk=assignment_id, annotator=annotator)
        .first()
    )
    if assignment is None:
        raise ApplicationError("no such assignment", code="not_found", http_status=404)
    return assignment


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


def project_remaining_pairs(*, project: Project) -> int:
    """Pairs that still need judgments. An estimate for the progress line, cached for a few seconds so that
    no request counts over the project's pairs."""
    key = f"palate:remaining:{project.pk}"
    remaining = cache.get(key)
    if remaining is None:
        remaining = Pair.objects.filter(project=project, judgment_count__lt=project.overlap).count()
        cache.set(key, remaining, timeout=REMAINING_CACHE_SECONDS)
    return remaining


def annotator_progress(
    *, project: Project, annotator: AbstractBaseUser, now: datetime | None = None
) -> dict[str, int]:
    now = now or timezone.now()
    start_of_day = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    counts = Judgment.objects.filter(annotator=annotator, pair__project=project).aggregate(
        done_total=Count("id"), done_today=Count("id", filter=Q(created_at__gte=start_of_day))
    )
    return {**counts, "remaining": project_remaining_pairs(project=project)}


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
    "annotator_progress",
    "assignment_for_annotator",
    "assignment_skip",
    "leases_expire",
    "leases_expire_all",
    "pair_claim_next",
    "pair_slots_recompute",
    "project_remaining_pairs",
]
