"""The annotator's workspace: the page only; the pairs come and go through the API."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import reverse

from annotate.models import Membership, PairFlag
from annotate.views.access import ANNOTATOR_ROLES, project_for_page

SCREEN_CHOICE_ORDER = ("left", "right", "tie", "both_bad")  # the order of the buttons and of keys 1-4


@login_required
def project_annotate(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_for_page(request, slug, ANNOTATOR_ROLES)
    # Site admins pass project_for_page, but only annotators are handed pairs.
    if not project.memberships.filter(user=request.user, role=Membership.Role.ANNOTATOR).exists():
        raise PermissionDenied
    skip_placeholder = reverse("api-assignment-skip", args=[0])
    edit_placeholder = reverse("api-judgment", args=[0])
    workspace = {
        "project": project.pk,
        "user": request.user.pk,
        "allowedChoices": [choice for choice in SCREEN_CHOICE_ORDER if choice in project.allowed_choices],
        "strengthScale": project.strength_scale,
        "criteria": project.criteria,
        "rationale": project.rationale,
        "editWindowMinutes": project.edit_window_seconds // 60,
        "csrfToken": get_token(request),
        "urls": {
            "next": reverse("api-next", args=[project.pk]),
            "submit": reverse("api-judgments"),
            "skip": skip_placeholder.replace("/0/", "/{id}/"),
            "flag": reverse("api-assignment-flag", args=[0]).replace("/0/", "/{id}/"),
            "edit": edit_placeholder.replace("/0/", "/{id}/"),
            "recent": reverse("api-judgments-recent", args=[project.pk]),
            "progress": reverse("api-progress", args=[project.pk]),
        },
    }
    return render(
        request,
        "annotate/annotate.html",
        {"project": project, "workspace": workspace, "flag_categories": PairFlag.Category.choices},
    )
