"""The reward-model audit pages: start an audit from the generation page, follow it, read its figures.
Leads, engineers and site admins. The services do the work (generation/services/audits.py)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from annotate.views.access import READER_ROLES, project_for_page
from generation.models import ModelAudit, System
from generation.selectors import audit_figures
from generation.services.audits import audit_cancel, audit_create, audit_report_write
from palate.errors import ApplicationError
from rewardtrain.models import RewardModel


def _n_values(raw: str) -> list[int]:
    values = [part.strip() for part in raw.replace(" ", ",").split(",") if part.strip()]
    if not values or not all(value.isdigit() for value in values):
        raise ApplicationError(
            f"N values: whole numbers separated by commas, e.g. 1, 2, 4, 8; got {raw!r}",
            fields={"n_values": ["whole numbers separated by commas"]},
        )
    return [int(value) for value in values]


@login_required
@require_POST
def project_audit_start(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_for_page(request, slug, READER_ROLES)
    model = RewardModel.objects.filter(project=project, pk=request.POST.get("reward_model") or 0).first()
    system = System.objects.filter(project=project, pk=request.POST.get("system") or 0).first()
    try:
        if model is None or system is None:
            raise ApplicationError("choose a reward model and a system")
        scope = request.POST.get("scope", "all")
        audit = audit_create(
            reward_model=model,
            system=system,
            n_values=_n_values(request.POST.get("n_values", "")),
            scope=scope,
            scope_value=request.POST.get("scope_value", "").strip() if scope != "all" else "",
            created_by=request.user,
        )
    except ApplicationError as error:
        messages.error(request, f"The audit was not started: {error.message}")
        return redirect("project-generation", slug=project.slug)
    messages.success(request, f"Audit {audit.pk} is queued on the generate queue.")
    return redirect("project-audit", slug=project.slug, audit_id=audit.pk)


def _audit_context(project, audit: ModelAudit) -> dict:
    figures = audit_figures(audit=audit)
    pending = audit.status in (ModelAudit.Status.QUEUED, ModelAudit.Status.RUNNING)
    return {"project": project, "audit": audit, "figures": figures, "pending": pending, "chart": figures}


@login_required
def project_audit(request: HttpRequest, slug: str, audit_id: int) -> HttpResponse:
    project, role = project_for_page(request, slug, READER_ROLES)
    audit = get_object_or_404(
        ModelAudit.objects.select_related("reward_model", "system", "generation_job"),
        pk=audit_id,
        project=project,
    )
    return render(request, "generation/audit.html", {**_audit_context(project, audit), "role": role})


@login_required
def project_audit_live(request: HttpRequest, slug: str, audit_id: int) -> HttpResponse:
    """The audit's status and figures (an htmx partial, polled while it runs)."""
    project, _ = project_for_page(request, slug, READER_ROLES)
    audit = get_object_or_404(
        ModelAudit.objects.select_related("reward_model", "system", "generation_job"),
        pk=audit_id,
        project=project,
    )
    return render(request, "generation/_audit_live.html", _audit_context(project, audit))


@login_required
@require_POST
def project_audit_cancel(request: HttpRequest, slug: str, audit_id: int) -> HttpResponse:
    project, _ = project_for_page(request, slug, READER_ROLES)
    audit = get_object_or_404(ModelAudit, pk=audit_id, project=project)
    try:
        audit_cancel(audit=audit)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"Audit {audit.pk}: cancelling; what it stored stays.")
    return redirect("project-audit", slug=project.slug, audit_id=audit.pk)


@login_required
@require_POST
def project_audit_report(request: HttpRequest, slug: str, audit_id: int) -> HttpResponse:
    project, _ = project_for_page(request, slug, READER_ROLES)
    audit = get_object_or_404(
        ModelAudit.objects.select_related("reward_model", "system"), pk=audit_id, project=project
    )
    try:
        path = audit_report_write(audit=audit)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(
            request, f"The figures are saved with reward model v{audit.reward_model.version} ({path})."
        )
    return redirect("project-audit", slug=project.slug, audit_id=audit.pk)
