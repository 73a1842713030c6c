"""Importing prompts, responses and pairs from a file (leads), and the progress of running imports."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from annotate.models import ImportJob, Project
from annotate.services.import_rows import ImportOptions
from annotate.services.imports import import_job_progress, import_start
from annotate.views.access import LEAD_ROLES, project_for_page
from palate.errors import ApplicationError
from palate.uploads import upload_refusal


class ImportForm(forms.Form):
    file = forms.FileField()
    pairing = forms.ChoiceField(choices=[("all", "all"), ("random", "random")], initial="all")
    pairs_per_prompt = forms.IntegerField(min_value=0, initial=0, required=False)
    seed = forms.IntegerField(initial=0, required=False)
    label_as = forms.ChoiceField(
        choices=[("gold", "gold"), ("judgment", "judgment"), ("none", "none")], initial="gold"
    )
    cross_system_only = forms.BooleanField(required=False)


def _job_rows(project: Project) -> tuple[list[dict], bool]:
    jobs = list(ImportJob.objects.filter(project=project).select_related("created_by")[:10])
    rows = []
    for job in jobs:
        live = (
            import_job_progress(job=job)
            if job.status == ImportJob.Status.RUNNING
            else {"rows": job.rows_done, "bytes": 0}
        )
        percent = round(100 * live["bytes"] / job.bytes_total) if job.bytes_total else 0
        rows.append({"job": job, "rows": live["rows"], "percent": min(percent, 100)})
    running = any(job.status in {ImportJob.Status.QUEUED, ImportJob.Status.RUNNING} for job in jobs)
    return rows, running


def _failure(error: ApplicationError) -> dict:
    return {
        "message": error.message,
        "errors": [f"{key}: {' '.join(value)}" for key, value in error.fields.items()],
    }


@login_required
def project_import(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_for_page(request, slug, LEAD_ROLES)
    failure = None
    if request.method == "POST":
        form = ImportForm(request.POST, request.FILES)
        refusal = upload_refusal(request)
        if refusal is not None:
            failure = _failure(refusal)
        elif not form.is_valid():
            failure = {
                "message": "The form is incomplete.",
                "errors": [f"{field}: {' '.join(errors)}" for field, errors in form.errors.items()],
            }
        else:
            data = form.cleaned_data
            upload = data["file"]
            options = ImportOptions(
                pairing=data["pairing"],
                pairs_per_prompt=data["pairs_per_prompt"] or 0,
                seed=data["seed"] or 0,
                label_as=data["label_as"],
                cross_system_only=data["cross_system_only"],
            )
            try:
                started = import_start(
                    project=project,
                    upload=upload,
                    filename=upload.name,
                    size=upload.size,
                    options=options,
                    created_by=request.user,
                )
            except ApplicationError as error:
                failure = _failure(error)
            else:
                if started.failure is not None:
                    failure = {"message": started.failure.message, "errors": started.failure.errors}
                else:
                    result = started.result
                    messages.success(
                        request,
                        f"{upload.name} is being imported; progress shows below."
                        if started.queued
                        else f"Imported {upload.name}: {result.pairs_created} new pairs, {result.prompts_created} new prompts, "
                        f"{result.responses_created} new responses ({result.pairs_existing} pairs were already there).",
                    )
                    return redirect("project-import", slug=project.slug)
    jobs, any_running = _job_rows(project)
    return render(
        request,
        "annotate/import.html",
        {"project": project, "role": role, "failure": failure, "jobs": jobs, "any_running": any_running},
    )


@login_required
def project_import_jobs(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_for_page(request, slug, LEAD_ROLES)
    jobs, any_running = _job_rows(project)
    return render(
        request, "annotate/_import_jobs.html", {"project": project, "jobs": jobs, "any_running": any_running}
    )
