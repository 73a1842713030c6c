"""Reads. Who sees which project, and in which role."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count, Max, Q, QuerySet

from annotate.models import AgreementSnapshot, Judgment, Membership, Project, ProjectApiToken

ADMIN = "admin"


def user_is_site_admin(user) -> bool:
    return bool(user.is_authenticated and (user.is_superuser or user.is_staff))


def project_list_for_user(*, user) -> QuerySet[Project]:
    if user_is_site_admin(user):
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user).distinct()


def project_role(*, user, project: Project) -> str | None:
    """The user's role in the project: a Membership.Role value, ADMIN for site admins, or None for outsiders."""
    if not user.is_authenticated:
        return None
    if user_is_site_admin(user):
        return ADMIN
    return Membership.objects.filter(user=user, project=project).values_list("role", flat=True).first()


def project_roles_for_user(*, user) -> list[tuple[Project, str]]:
    """Each project the user can open, with their role, for the home page."""
    if user_is_site_admin(user):
        roles = dict(Membership.objects.filter(user=user).values_list("project_id", "role"))
        return [(project, roles.get(project.pk, ADMIN)) for project in Project.objects.all()]
    memberships = Membership.objects.filter(user=user).select_related("project").order_by("project__name")
    return [(membership.project, membership.role) for membership in memberships]


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
