"""Project membership: who may annotate, lead or engineer a project."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction

from annotate.models import Membership, Project
from annotate.services.assignment import leases_release
from palate.errors import ApplicationError


def _validate_attributes(attributes: Any) -> dict[str, str]:
    if not isinstance(attributes, dict):
        raise ApplicationError(
            "attributes must be an object of key/value pairs", fields={"attributes": ["must be an object"]}
        )
    clean: dict[str, str] = {}
    for key, value in attributes.items():
        if not isinstance(key, str) or not key.strip() or len(key) > 50:
            raise ApplicationError(
                f"attribute name {key!r} must be text of 1 to 50 characters",
                fields={"attributes": ["bad name"]},
            )
        if not isinstance(value, str | int | float | bool) or len(str(value)) > 200:
            raise ApplicationError(
                f"attribute '{key}' must be a short text or number",
                fields={f"attributes.{key}": ["must be a short text or number"]},
            )
        clean[key.strip()] = str(value)
    return clean


@transaction.atomic
def membership_set(
    *, project: Project, username: str, role: str, attributes: dict[str, Any] | None = None
) -> tuple[Membership, bool]:
    """Adds the user to the project, or changes their role and attributes. Returns (membership, created)."""
    if role not in Membership.Role.values:
        raise ApplicationError(
            f"role must be one of {', '.join(Membership.Role.values)}, got {role!r}",
            fields={"role": ["invalid role"]},
        )
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise ApplicationError(
            f"no user named '{username}'",
            code="unknown_user",
            fields={"username": [f"no user named '{username}'"]},
        )
    clean = _validate_attributes(attributes or {})
    _lock_project(project)
    membership, created = Membership.objects.select_for_update().get_or_create(
        user=user, project=project, defaults={"role": role, "attributes": clean}
    )
    if not created:
        was_lead = membership.role == Membership.Role.LEAD
        membership.role = role
        if attributes is not None:
            membership.attributes = clean
        membership.save(update_fields=["role", "attributes"])
        if role != Membership.Role.ANNOTATOR:
            leases_release(project_id=project.pk, user_id=user.pk)
        if was_lead:
            _check_project_has_a_lead(project)
    return membership, created


@transaction.atomic
def membership_remove(*, project: Project, username: str) -> None:
    """Removes the user from the project. Their judgments stay: they are the project's data."""
    _lock_project(project)
    membership = Membership.objects.filter(project=project, user__username=username).first()
    if membership is None:
        raise ApplicationError(
            f"'{username}' is not a member of this project", code="not_found", http_status=404
        )
    membership.delete()
    leases_release(project_id=project.pk, user_id=membership.user_id)
    if membership.role == Membership.Role.LEAD:
        _check_project_has_a_lead(project)


def _lock_project(project: Project) -> None:
    """Serialises membership changes per project, so two leads removing each other cannot both succeed."""
    Project.objects.select_for_update().filter(pk=project.pk).values_list("pk", flat=True).first()


def _check_project_has_a_lead(project: Project) -> None:
    """Call after a change, inside its transaction: raising undoes the change."""
    if not Membership.objects.filter(project=project, role=Membership.Role.LEAD).exists():
        raise ApplicationError(
            "a project needs at least one lead: make someone else lead first",
            code="last_lead",
            http_status=409,
        )
