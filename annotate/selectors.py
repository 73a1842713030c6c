"""Reads. Who sees which project, and in which role."""

from __future__ import annotations

from django.db.models import QuerySet

from annotate.models import Membership, Project

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
    return Membership.objects.filter(project=project).select_related("user").order_by("role", "user__username")
