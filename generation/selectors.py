"""Reads for the generation pages and API."""

from __future__ import annotations

from django.db.models import QuerySet

from annotate.models import Project, Prompt, Response
from generation.models import GenerationJob, System


def systems_of_project(*, project: Project) -> QuerySet[System]:
    return System.objects.filter(project=project).order_by("name", "id")


def generation_jobs_of_project(*, project: Project, limit: int = 20) -> list[GenerationJob]:
    return list(
        GenerationJob.objects.filter(project=project)
        .prefetch_related("systems")
        .defer("prompt_ids", "log")
        .order_by("-created_at", "-id")[:limit]
    )


def prompt_categories(*, project: Project) -> list[str]:
    return list(
        Prompt.objects.filter(project=project)
        .exclude(category="")
        .order_by("category")
        .values_list("category", flat=True)
        .distinct()
    )


def response_systems(*, project: Project) -> list[str]:
    """The system names the project's responses carry (imported or generated)."""
    return list(
        Response.objects.filter(prompt__project=project)
        .exclude(system="")
        .order_by("system")
        .values_list("system", flat=True)
        .distinct()
    )
