"""Dataset exports (leads and engineers): the form that queues one, and the list of earlier versions."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from annotate.models import Export, Project
from annotate.services.exports import (
    EXPORT_FORMATS,
    OPTIONAL_COLUMNS,
    ExportPolicy,
    export_create,
    export_progress,
)
from annotate.views.access import READER_ROLES, project_for_page
from palate.errors import ApplicationError

EXPORT_CHOICE_FIELDS = ("kind", "label", "tied_vote", "ties", "both_bad", "criterion", "shape", "license")
EXPORT_NUMBER_FIELDS = {
    "min_votes": int,
    "min_agreement": float,
    "min_gold_accuracy": float,
    "split": float,
    "seed": int,
}
EXPORT_FLAG_FIELDS = ("exclude_gold", "exclude_flagged", "include_imported", "use_adjudicated", "stratify")


def _export_policy_from_form(data) -> dict:
    """The form's fields as a policy: blank numbers take their defaults, unticked boxes are false. The
    service validates the result (and names the field of any error)."""
    policy: dict = {key: data[key] for key in EXPORT_CHOICE_FIELDS if key in data}
    for key, kind in EXPORT_NUMBER_FIELDS.items():
        raw = data.get(key, "").strip()
        if raw:
            try:
                policy[key] = kind(raw)
            except ValueError:
                noun = "whole number" if kind is int else "number"
                raise ApplicationError(
                    f"policy.{key}: must be a {noun}, got {raw!r}",
                    fields={f"policy.{key}": [f"must be a {noun}"]},
                ) from None
    for key in EXPORT_FLAG_FIELDS:
        policy[key] = key in data
    policy["columns"] = data.getlist("columns")
    return policy


def _export_rows(project: Project) -> tuple[list[dict], bool]:
    exports = list(
        Export.objects.filter(project=project).select_related("created_by").order_by("-version")[:20]
    )
    rows = []
    for export in exports:
        download = reverse("api-export-download", args=[export.pk])
        files = [
            {
                "name": name,
                "bytes": record["bytes"],
                "rows": record["rows"],
                "sha256": record["sha256"],
                "url": f"{download}?file={name}",
            }
            for name, record in export.files.items()
            if not name.startswith("hf/")
        ]
        has_hf = any(name.startswith("hf/") for name in export.files)
        rows.append(
            {
                "export": export,
                "percent": round(100 * export_progress(export=export)),
                "files": files,
                "hf_url": f"{download}?format=hf" if has_hf else "",
                "policy_json": json.dumps(export.policy, indent=2),
            }
        )
    running = any(export.status in {Export.Status.QUEUED, Export.Status.RUNNING} for export in exports)
    return rows, running


@login_required
def project_exports(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_for_page(request, slug, READER_ROLES)
    latest = Export.objects.filter(project=project).order_by("-version").first()
    # An earlier export's policy, with the options added since at their defaults.
    values = {**ExportPolicy().as_dict(), **(latest.policy if latest else {})}
    formats = list(latest.formats) if latest else ["jsonl", "parquet"]
    failure = None
    if request.method == "POST":
        formats = request.POST.getlist("formats")
        try:
            values = _export_policy_from_form(request.POST)
            export = export_create(project=project, policy=values, formats=formats, created_by=request.user)
        except ApplicationError as error:
            failure = {
                "message": error.message,
                "errors": [f"{key}: {' '.join(value)}" for key, value in error.fields.items()],
            }
            values = {
                **ExportPolicy().as_dict(),
                **{key: request.POST.get(key, "") for key in (*EXPORT_CHOICE_FIELDS, *EXPORT_NUMBER_FIELDS)},
            }
            values.update(
                {key: key in request.POST for key in EXPORT_FLAG_FIELDS},
                columns=request.POST.getlist("columns"),
            )
        else:
            messages.success(
                request, f"Export v{export.version} is queued; it shows below with its progress."
            )
            return redirect("project-exports", slug=project.slug)
    exports, any_running = _export_rows(project)
    return render(
        request,
        "annotate/exports.html",
        {
            "project": project,
            "role": role,
            "values": values,
            "formats": formats,
            "all_formats": EXPORT_FORMATS,
            "all_columns": OPTIONAL_COLUMNS,
            "failure": failure,
            "exports": exports,
            "any_running": any_running,
        },
    )


@login_required
def project_exports_list(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_for_page(request, slug, READER_ROLES)
    exports, any_running = _export_rows(project)
    return render(
        request,
        "annotate/_exports_list.html",
        {"project": project, "exports": exports, "any_running": any_running},
    )
