"""Role checks shared by every project endpoint: outsiders get 404 (a project's existence is private),
members without the role get 403, site admins may do everything."""

from __future__ import annotations

from collections.abc import Iterable

from rest_framework.exceptions import NotFound, PermissionDenied

from annotate.models import Membership, Project
from annotate.selectors import ADMIN, projects_with_role

LEADS = (Membership.Role.LEAD,)
READERS = (Membership.Role.LEAD, Membership.Role.ENGINEER)
MEMBERS = (Membership.Role.LEAD, Membership.Role.ENGINEER, Membership.Role.ANNOTATOR)


def project_for_request(request, project_id: int, roles: Iterable[str]) -> tuple[Project, str]:
    """The project and the user's role in it (``selectors.project_role``'s rule), read in one statement:
    every project endpoint starts here."""
    user = request.user
    project = projects_with_role(user=user).filter(pk=project_id).first()
    role = project.caller_role if project is not None else None
    if project is None:
        raise NotFound("no such project")
    if role != ADMIN and role not in roles:
        raise PermissionDenied(f"your role in this project ({role}) does not allow this")
    return project, role
