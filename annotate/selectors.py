"""Reads. Who sees which project, and in which role."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import CharField, Count, Exists, F, Func, Max, OuterRef, Q, QuerySet, Sum, Value
from django.template.defaultfilters import pluralize

from annotate.models import (
    Adjudication,
    AgreementSnapshot,
    Assignment,
    Judgment,
    Membership,
    Pair,
    PairFlag,
    ProgressDay,
    Project,
    ProjectApiToken,
)
from palate.errors import ApplicationError

ADMIN = "admin"


def projects_with_role(*, user) -> QuerySet[Project]:
    """The projects the user may open, each with their role in it as ``caller_role`` (``project_role``'s
    rule, in the same statement)."""
    if not user.is_authenticated:
        return Project.objects.none()
    role = Func(F("pk"), Value(user.pk), function="palate_project_role", output_field=CharField())
    return Project.objects.annotate(caller_role=role).filter(caller_role__isnull=False)


def project_role(*, user, project: Project | int) -> str | None:
    """The user's role in the project: a Membership.Role value, ADMIN for site admins, or None for outsiders.

    The rule is the database function ``palate_project_role`` (annotate/sql/workspace_v3.sql), which the
    annotators' busiest calls read in their own statement."""
    if not user.is_authenticated:
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT palate_project_role(%s, %s)", [getattr(project, "pk", project), user.pk])
        return cursor.fetchone()[0]


def project_roles_for_user(*, user) -> list[tuple[Project, str]]:
    """Each project the user can open, with their role, for the home page: a site admin's own memberships
    show as such, the other projects as ADMIN."""
    memberships = dict(Membership.objects.filter(user=user).values_list("project_id", "role"))
    projects = projects_with_role(user=user).order_by("name")
    return [(project, memberships.get(project.pk, project.caller_role)) for project in projects]


def user_can_create_projects(*, user) -> bool:
    """Creating a project needs Django's 'add project' permission (site admins have every permission)."""
    return user.is_authenticated and user.has_perm("annotate.add_project")


def project_change_consequences(*, project: Project, data: dict[str, Any]) -> list[str]:
    """What a settings change would do to the judgments already stored: one sentence per choice or criterion
    removed, or strength scale shortened, that stored judgments use. Empty when the change is harmless."""
    judgments = Judgment.objects.filter(pair__project=project)
    consequences = []
    # Left and right are always allowed, so only the choices named alike in screen and A/B terms can go.
    removed = [
        (
            Q(choice=choice),
            f"chose '{choice}'",
            "leaves them standing with a choice annotators can no longer make",
        )
        for choice in project.allowed_choices
        if choice not in data.get("allowed_choices", [choice])
    ] + [
        (
            Q(criteria__has_key=criterion),
            f"answered the criterion '{criterion}'",
            "leaves those answers out of exports, which carry only the project's criteria",
        )
        for criterion in project.criteria
        if criterion not in data.get("criteria", [criterion])
    ]
    for used, what, outcome in removed:
        count = judgments.filter(used).count()
        if count:
            consequences.append(f"{count} judgment{pluralize(count)} {what}; removing it {outcome}.")
    scale = data.get("strength_scale", project.strength_scale)
    if scale < project.strength_scale:
        count = judgments.filter(strength__gt=scale).count()
        if count:
            limit = f"above {scale}" if scale else "at all"
            consequences.append(
                f"{count} judgment{pluralize(count)} gave a strength {limit}; the new scale cannot express it."
            )
    return consequences


def member_removal_consequences(*, membership: Membership) -> dict[str, int]:
    """What removing the member touches: their judgments in the project (kept) and the pairs they hold now
    (handed back to the pool)."""
    return {
        "judgments": Judgment.objects.filter(
            pair__project_id=membership.project_id, annotator_id=membership.user_id
        ).count(),
        "leases": Assignment.objects.filter(
            project_id=membership.project_id,
            annotator_id=membership.user_id,
            status=Assignment.Status.ACTIVE,
        ).count(),
    }


def membership_list(*, project: Project) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(project=project).select_related("user").order_by("role", "user__username")
    )


def agreement_snapshot_latest(*, project: Project) -> AgreementSnapshot | None:
    """The project's most recent agreement snapshot, or None before the first one."""
    return AgreementSnapshot.objects.filter(project=project).order_by("-created_at", "-id").first()


def project_judgment_state(*, project: Project) -> tuple[int, datetime | None]:
    """How many human judgments the project has and when the latest of them last changed: what an
    agreement snapshot records, to tell whether it is still current."""
    state = Judgment.objects.filter(pair__project=project, origin=Judgment.Origin.HUMAN).aggregate(
        total=Count("id"), last=Max("updated_at")
    )
    return state["total"], state["last"]


def agreement_projects_changed() -> list[int]:
    """Ids of projects whose human judgments changed since their latest agreement snapshot, or that have
    judgments and no snapshot yet."""
    human = Q(pairs__judgments__origin=Judgment.Origin.HUMAN)
    states = Project.objects.annotate(
        judgment_total=Count("pairs__judgments", filter=human),
        judgment_last=Max("pairs__judgments__updated_at", filter=human),
    ).values_list("pk", "judgment_total", "judgment_last")
    latest: dict[int, tuple[int, datetime | None]] = {}
    snapshots = AgreementSnapshot.objects.order_by("project_id", "-created_at", "-id").values_list(
        "project_id", "judgment_count", "last_judgment_at"
    )
    for project_id, count, last in snapshots:
        latest.setdefault(project_id, (count, last))
    return [
        project_id
        for project_id, total, last in states
        if (project_id in latest and latest[project_id] != (total, last))
        or (project_id not in latest and total)
    ]


def api_token_list(*, project: Project) -> QuerySet[ProjectApiToken]:
    """The project's API tokens, newest first, revoked ones included (their history matters)."""
    return (
        ProjectApiToken.objects.filter(project=project)
        .select_related("created_by", "revoked_by")
        .order_by("-created_at", "-id")
    )


def pair_for_lead(*, project: Project, pair_id: int) -> Pair:
    """The project's pair with its prompt, responses and adjudication, or a 404 error."""
    pair = (
        Pair.objects.filter(project=project, pk=pair_id)
        .select_related("prompt", "response_a", "response_b", "adjudication__decided_by")
        .first()
    )
    if pair is None:
        raise ApplicationError("no such pair in this project", code="not_found", http_status=404)
    return pair


def pair_flag_list(*, project: Project, state: str = "open") -> QuerySet[PairFlag]:
    """The project's flags, newest first: ``open`` ones, ``closed`` ones or ``all``."""
    flags = PairFlag.objects.filter(pair__project=project)
    if state == "open":
        flags = flags.filter(resolved_at__isnull=True)
    elif state == "closed":
        flags = flags.filter(resolved_at__isnull=False)
    return flags.select_related("pair__prompt", "annotator", "resolved_by").order_by("-created_at", "-id")


def adjudication_summary(*, project: Project) -> dict[str, int]:
    """How many of the project's pairs a lead settled, and how many flags are still open."""
    return {
        "pairs": Adjudication.objects.filter(pair__project=project).count(),
        "open_flags": PairFlag.objects.filter(pair__project=project, resolved_at__isnull=True).count(),
    }


def judgment_history(*, project: Project, annotator) -> QuerySet[Judgment]:
    """The annotator's own judgments in the project, newest first, with the prompt (never anyone else's)."""
    return (
        Judgment.objects.filter(pair__project=project, annotator=annotator)
        .select_related("pair__prompt")
        .order_by("-created_at", "-id")
    )


def annotator_progress(*, project: Project, annotator) -> dict[str, int]:
    """What is left for this annotator: the pairs that still need judgments and that they have neither judged
    nor skipped, with what they have submitted so far. One count over the project's open pairs, so the
    annotate page asks for it once when it opens, never on the next/submit path."""
    touched = Assignment.objects.filter(
        pair=OuterRef("pk"),
        annotator=annotator,
        status__in=[Assignment.Status.SUBMITTED, Assignment.Status.SKIPPED],
    )
    left = (
        Pair.objects.filter(project=project, judgment_count__lt=project.overlap)
        .exclude(Exists(touched))
        .count()
    )
    done = ProgressDay.objects.filter(project=project, annotator=annotator).aggregate(total=Sum("submitted"))
    return {"remaining_for_you": left, "done_total": done["total"] or 0}
