"""The generation page: register systems (model endpoints), start generation jobs, follow and cancel them.
Leads, engineers and site admins. The services do the work (generation/services/)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from annotate.views.access import READER_ROLES, project_for_page
from generation.models import GenerationJob, System
from generation.selectors import (
    audits_of_project,
    generation_jobs_of_project,
    prompt_categories,
    response_systems,
    systems_of_project,
)
from generation.services.jobs import generation_job_cancel, generation_job_create, generation_job_rerun
from generation.services.systems import system_create, system_delete, system_update
from palate.errors import ApplicationError
from rewardtrain.models import RewardModel

NUMBERS = {
    "temperature": float,
    "top_p": float,
    "max_tokens": int,
    "seed": int,
    "max_concurrency": int,
    "timeout_seconds": float,
    "max_retries": int,
}
TEXTS = ("name", "base_url", "model", "system_prompt", "api_key_env")
PENDING = {GenerationJob.Status.QUEUED, GenerationJob.Status.RUNNING}


def _system_values(data) -> tuple[dict[str, Any], dict[str, str]]:
    """The form's values for the service; blank numbers are left out (defaults), a blank seed is none."""
    values: dict[str, Any] = {name: data.get(name, "").strip() for name in TEXTS if name in data}
    if "system_prompt" in data:
        values["system_prompt"] = data["system_prompt"]
    problems: dict[str, str] = {}
    for name, kind in NUMBERS.items():
        raw = data.get(name, "").strip()
        if raw == "":
            if name == "seed" and name in data:
                values["seed"] = None
            continue
        try:
            values[name] = kind(raw)
        except ValueError:
            problems[name] = f"must be a {'whole ' if kind is int else ''}number, got {raw!r}"
    return values, problems


def _job_values(data) -> dict[str, Any]:
    def number(name: str, default: int) -> int:
        raw = data.get(name, "").strip()
        return int(raw) if raw.lstrip("-").isdigit() else default

    scope = data.get("scope", GenerationJob.Scope.ALL)
    scope_value = data.get(f"scope_value_{scope}", "").strip() if scope != GenerationJob.Scope.ALL else ""
    return {
        "samples": number("samples", 0),
        "scope": scope,
        "scope_value": scope_value,
        "pairing": {
            "pairing": data.get("pairing", "all"),
            "pairs_per_prompt": number("pairs_per_prompt", 0),
            "cross_system_only": "cross_system_only" in data,
            "seed": number("pairing_seed", 0),
        },
    }


def _jobs_context(project) -> dict[str, Any]:
    jobs = generation_jobs_of_project(project=project)
    return {"jobs": jobs, "jobs_pending": any(job.status in PENDING for job in jobs)}


def _page(request: HttpRequest, project, role: str, **extra: Any) -> HttpResponse:
    context = {
        "project": project,
        "role": role,
        "systems": list(systems_of_project(project=project)),
        "categories": prompt_categories(project=project),
        "response_systems": response_systems(project=project),
        "scopes": GenerationJob.Scope.choices,
        "system_form": {},
        "system_errors": {},
        "job_form": {"samples": 2, "scope": "all", "pairing": "all", "chosen": []},
        "job_errors": {},
        "reward_models": list(RewardModel.objects.filter(project=project).order_by("-version")[:50]),
        "audits": audits_of_project(project=project),
        **_jobs_context(project),
        **extra,
    }
    return render(request, "generation/generation.html", context, status=400 if extra.get("failure") else 200)


@login_required
def project_generation(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_for_page(request, slug, READER_ROLES)
    if request.method != "POST":
        return _page(request, project, role)
    if request.POST.get("action") == "system":
        values, problems = _system_values(request.POST)
        try:
            if problems:
                raise ApplicationError(
                    next(iter(problems.values())), fields={k: [v] for k, v in problems.items()}
                )
            system = system_create(project=project, created_by=request.user, **values)
        except ApplicationError as error:
            errors = {name: messages_[0] for name, messages_ in error.fields.items()}
            return _page(
                request, project, role, failure=error.message, system_form=request.POST, system_errors=errors
            )
        messages.success(request, f"System '{system.name}' registered.")
        return redirect("project-generation", slug=project.slug)
    chosen = [int(pk) for pk in request.POST.getlist("systems") if pk.isdigit()]
    values = _job_values(request.POST)
    try:
        job = generation_job_create(
            project=project,
            systems=list(System.objects.filter(project=project, pk__in=chosen)),
            created_by=request.user,
            **values,
        )
    except ApplicationError as error:
        form = {**request.POST.dict(), "chosen": chosen}
        errors = {name.split(".")[-1]: messages_[0] for name, messages_ in error.fields.items()}
        return _page(request, project, role, failure=error.message, job_form=form, job_errors=errors)
    messages.success(
        request,
        f"Generation job {job.pk} is queued: {job.total} responses for a worker on the generate queue.",
    )
    return redirect("project-generation", slug=project.slug)


@login_required
def project_generation_system(request: HttpRequest, slug: str, system_id: int) -> HttpResponse:
    project, role = project_for_page(request, slug, READER_ROLES)
    system = get_object_or_404(System, pk=system_id, project=project)
    form: Any = {name: getattr(system, name) for name in (*TEXTS, *NUMBERS)}
    errors: dict[str, str] = {}
    failure = ""
    if request.method == "POST":
        values, problems = _system_values(request.POST)
        try:
            if problems:
                raise ApplicationError(
                    next(iter(problems.values())), fields={k: [v] for k, v in problems.items()}
                )
            system_update(system=system, **values)
        except ApplicationError as error:
            failure, form = error.message, request.POST
            errors = {name: messages_[0] for name, messages_ in error.fields.items()}
            system.refresh_from_db()
        else:
            messages.success(request, f"System '{system.name}' saved.")
            return redirect("project-generation", slug=project.slug)
    context = {
        "project": project,
        "role": role,
        "system": system,
        "form": form,
        "errors": errors,
        "failure": failure,
    }
    return render(request, "generation/system.html", context, status=400 if failure else 200)


@login_required
@require_POST
def project_generation_system_delete(request: HttpRequest, slug: str, system_id: int) -> HttpResponse:
    project, _ = project_for_page(request, slug, READER_ROLES)
    system = get_object_or_404(System, pk=system_id, project=project)
    system_delete(system=system)
    messages.success(request, f"System '{system.name}' removed; the responses it generated stay.")
    return redirect("project-generation", slug=project.slug)


@login_required
def project_generation_jobs_live(request: HttpRequest, slug: str) -> HttpResponse:
    """The jobs card (an htmx partial, polled while a job is pending)."""
    project, _ = project_for_page(request, slug, READER_ROLES)
    return render(request, "generation/_jobs.html", {"project": project, **_jobs_context(project)})


@login_required
@require_POST
def project_generation_job_cancel(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
    project, _ = project_for_page(request, slug, READER_ROLES)
    job = get_object_or_404(GenerationJob, pk=job_id, project=project)
    try:
        job = generation_job_cancel(job=job)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        done = job.status == GenerationJob.Status.CANCELLED
        messages.success(
            request,
            f"Job {job.pk} cancelled." if done else f"Stopping job {job.pk}: it keeps what it stored.",
        )
    return redirect("project-generation", slug=project.slug)


@login_required
@require_POST
def project_generation_job_rerun(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
    project, _ = project_for_page(request, slug, READER_ROLES)
    job = get_object_or_404(GenerationJob, pk=job_id, project=project)
    try:
        again = generation_job_rerun(job=job, created_by=request.user)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(
            request, f"Job {again.pk} is queued: it generates only what job {job.pk} did not store."
        )
    return redirect("project-generation", slug=project.slug)
