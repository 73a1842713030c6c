"""Reads. Who sees which project, and in which role."""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.db.models import CharField, Count, F, Func, Max, Q, QuerySet, Value

from annotate.models import AgreementSnapshot, Judgment, Membership, Project, ProjectApiToken

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

    The rule is the database function ``palate_project_role`` (annotate/sql/workspace_v2.sql), which the
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
