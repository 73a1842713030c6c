"""The list of the user's projects, grouped by their role, and a project's overview."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from annotate.models import Judgment, Membership, Pair, Prompt
from annotate.selectors import ADMIN, project_roles_for_user, user_can_create_projects
from annotate.views.access import project_for_page

ROLE_GROUPS = [
    {"key": Membership.Role.LEAD.value, "label": "Leading", "label_singular": "lead"},
    {"key": Membership.Role.ENGINEER.value, "label": "Engineering", "label_singular": "engineer"},
    {"key": Membership.Role.ANNOTATOR.value, "label": "Annotating", "label_singular": "annotator"},
    {"key": ADMIN, "label": "Every other project (site admin)", "label_singular": "admin"},
]


@login_required
def home(request: HttpRequest) -> HttpResponse:
    rows = project_roles_for_user(user=request.user)
    project_ids = [project.pk for project, _ in rows]
    pair_counts = dict(
        Pair.objects.filter(project_id__in=project_ids)
        .values_list("project_id")
        .annotate(total=Count("id"))
        .values_list("project_id", "total")
    )
    judgment_counts = dict(
        Judgment.objects.filter(pair__project_id__in=project_ids)
        .values_list("pair__project_id")
        .annotate(total=Count("id"))
        .values_list("pair__project_id", "total")
    )
    groups = []
    for group in ROLE_GROUPS:
        projects = [
            {
                "project": project,
                "pairs": pair_counts.get(project.pk, 0),
                "judgments": judgment_counts.get(project.pk, 0),
            }
            for project, role in rows
            if role == group["key"]
        ]
        if projects:
            groups.append((group, projects))
    return render(
        request,
        "annotate/home.html",
        {
            "rows": rows,
            "groups": groups,
            "can_create": user_can_create_projects(user=request.user),
        },
    )


@login_required
def project_detail(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_for_page(request, slug)
    pair_counts = Pair.objects.filter(project=project).aggregate(
        total=Count("id"), gold=Count("id", filter=Q(is_gold=True))
    )
    counts = {
        "prompts": Prompt.objects.filter(project=project).count(),
        "pairs": pair_counts["total"],
        "gold": pair_counts["gold"],
        "judgments": Judgment.objects.filter(pair__project=project).count(),
    }
    return render(
        request, "annotate/project_detail.html", {"project": project, "role": role, "counts": counts}
    )
