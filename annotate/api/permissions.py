"""Role checks shared by every project endpoint: outsiders get 404 (a project's existence is private),
members without the role get 403, site admins may do everything."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection
from rest_framework.exceptions import NotFound, PermissionDenied

from annotate.models import Membership, Project
from annotate.selectors import ADMIN, user_is_site_admin
from palate.sql import model_columns, model_from_row

LEADS = (Membership.Role.LEAD,)
READERS = (Membership.Role.LEAD, Membership.Role.ENGINEER)
MEMBERS = (Membership.Role.LEAD, Membership.Role.ENGINEER, Membership.Role.ANNOTATOR)


def project_for_request(request, project_id: int, roles: Iterable[str]) -> tuple[Project, str]:
    """The project and the user's role in it, read in one statement (every project endpoint starts here)."""
    user = request.user
    project = role = None
    if user.is_authenticated and user.pk is not None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                SELECT {model_columns(Project, "p")},
                       (SELECT m.role FROM annotate_membership m WHERE m.project_id = p.id AND m.user_id = %s)
                FROM annotate_project p WHERE p.id = %s
                """,
                [user.pk, project_id],
            )
            row = cursor.fetchone()
        if row is not None:
            project, role = model_from_row(Project, row), row[-1]
            if user_is_site_admin(user):
                role = ADMIN
    if project is None or role is None:
        raise NotFound("no such project")
    if role != ADMIN and role not in roles:
        raise PermissionDenied(f"your role in this project ({role}) does not allow this")
    return project, role
