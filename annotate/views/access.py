"""Which project a page shows, and who may see it: outsiders get 404 (a project's existence is private),
members without the role 403, site admins may see everything."""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest

from annotate.models import Membership, Project
from annotate.selectors import ADMIN, project_role

LEAD_ROLES = (Membership.Role.LEAD,)
READER_ROLES = (Membership.Role.LEAD, Membership.Role.ENGINEER)
ANNOTATOR_ROLES = (Membership.Role.ANNOTATOR,)


def project_for_page(
    request: HttpRequest, slug: str, roles: Iterable[str] | None = None
) -> tuple[Project, str]:
    project = Project.objects.filter(slug=slug).first()
    role = project_role(user=request.user, project=project) if project else None
    if project is None or role is None:
        raise Http404("No such project.")
    if roles is not None and role != ADMIN and role not in roles:
        raise PermissionDenied
    return project, role
