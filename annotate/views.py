"""HTML pages. Like the API views, they check the role, call a service or selector, and render."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from annotate.models import Export, ImportJob, Judgment, Membership, Pair, Project, ProjectApiToken, Prompt
from annotate.selectors import ADMIN, api_token_list, membership_list, project_role, project_roles_for_user
from annotate.services.api_tokens import api_token_create, api_token_revoke
from annotate.services.exports import (
    EXPORT_FORMATS,
    OPTIONAL_COLUMNS,
    ExportPolicy,
    export_create,
    export_progress,
)
from annotate.services.import_rows import ImportOptions
from annotate.services.imports import import_job_create, import_job_progress, import_run_now
from annotate.services.members import membership_remove, membership_set
from palate.errors import ApplicationError
from palate.login_throttle import (
    blocked_message,
    client_address,
    login_blocked,
    login_failed,
    login_succeeded,
)

LEAD_ROLES = (Membership.Role.LEAD,)


class ThrottledAuthenticationForm(AuthenticationForm):
    """Refuses further attempts after repeated failures for a username or from an address."""

    def clean(self):
        username = self.data.get("username", "")
        address = client_address(self.request) if self.request else "unknown"
        if login_blocked(username=username, address=address):
            raise ValidationError(blocked_message(), code="throttled")
        try:
            cleaned = super().clean()
        except ValidationError:
            login_failed(username=username, address=address)
            raise
        login_succeeded(username=username)
        return cleaned


class PalateLoginView(LoginView):
    form_class = ThrottledAuthenticationForm
    redirect_authenticated_user = True


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
            "can_create": request.user.has_perm("annotate.add_project") and request.user.is_staff,
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


def _parse_attributes(text: str) -> dict[str, str]:
    attributes = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, separator, value = item.partition("=")
        if not separator or not key.strip():
            raise ApplicationError(
                f"attribute {item!r} must look like key=value", fields={"attributes": ["key=value"]}
            )
        attributes[key.strip()] = value.strip()
    return attributes


@login_required
def project_members(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_for_page(request, slug, LEAD_ROLES)
    form_values: dict[str, str] = {"role": Membership.Role.ANNOTATOR}
    if request.method == "POST":
        form_values = {key: request.POST.get(key, "") for key in ("username", "role", "attributes")}
        try:
            membership, created = membership_set(
                project=project,
                username=form_values["username"].strip(),
                role=form_values["role"],
                attributes=_parse_attributes(form_values["attributes"]),
            )
        except ApplicationError as error:
            messages.error(request, error.message)
        else:
            verb = "added as" if created else "is now"
            messages.success(
                request, f"{membership.user.username} {verb} {membership.get_role_display().lower()}."
            )
            return redirect("project-members", slug=project.slug)
    return _members_page(request, project, role, form_values=form_values)


# The expiry choices of the token form, in days ("" for never).
API_TOKEN_EXPIRY_DAYS = (("", "Never"), ("30", "In 30 days"), ("90", "In 90 days"), ("365", "In a year"))


def _members_page(
    request: HttpRequest,
    project: Project,
    role: str,
    *,
    form_values: dict[str, str] | None = None,
    token_values: dict[str, str] | None = None,
    new_token: tuple[ProjectApiToken, str] | None = None,
) -> HttpResponse:
    now = timezone.now()
    tokens = [(token, token.state(now)) for token in api_token_list(project=project)]
    response = render(
        request,
        "annotate/members.html",
        {
            "project": project,
            "role": role,
            "memberships": membership_list(project=project),
            "roles": Membership.Role.choices,
            "form_values": form_values or {"role": Membership.Role.ANNOTATOR},
            "api_tokens": tokens,
            "token_values": token_values or {"expires": ""},
            "token_expiry_days": API_TOKEN_EXPIRY_DAYS,
            "new_token": new_token,
        },
    )
    if new_token is not None:
        # The secret is in this page and nowhere else: no cache may keep it.
        response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def project_api_token_create(request: HttpRequest, slug: str) -> HttpResponse:
    """Makes a token and shows its secret on this response only (a reload asks to send the form again)."""
    project, role = project_for_page(request, slug, LEAD_ROLES)
    values = {key: request.POST.get(key, "") for key in ("name", "expires")}
    try:
        if values["expires"] not in dict(API_TOKEN_EXPIRY_DAYS):
            raise ApplicationError("expires: choose one of the listed expiries")
        days = int(values["expires"] or 0)
        expires_at = timezone.now() + timedelta(days=days) if days else None
        token, secret = api_token_create(
            project=project, name=values["name"], expires_at=expires_at, created_by=request.user
        )
    except ApplicationError as error:
        messages.error(request, error.message)
        return _members_page(request, project, role, token_values=values)
    return _members_page(request, project, role, new_token=(token, secret))


@login_required
@require_POST
def project_api_token_revoke(request: HttpRequest, slug: str, token_id: int) -> HttpResponse:
    project, _ = project_for_page(request, slug, LEAD_ROLES)
    token = ProjectApiToken.objects.filter(pk=token_id, project=project).first()
    if token is None:
        raise Http404("No such API token.")
    api_token_revoke(token=token, revoked_by=request.user)
    messages.success(request, f"The API token '{token.name}' ({token.prefix}…) is revoked.")
    return redirect("project-members", slug=project.slug)


@login_required
@require_POST
def project_member_remove(request: HttpRequest, slug: str, username: str) -> HttpResponse:
    project, _ = project_for_page(request, slug, LEAD_ROLES)
    try:
        membership_remove(project=project, username=username)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"{username} was removed from the project.")
    return redirect("project-members", slug=project.slug)


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


@login_required
def project_import(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_for_page(request, slug, LEAD_ROLES)
    failure = None
    if request.method == "POST":
        form = ImportForm(request.POST, request.FILES)
        if not form.is_valid():
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
                if upload.size > settings.IMPORT_ASYNC_THRESHOLD_BYTES:
                    import_job_create(
                        project=project,
                        upload=upload,
                        filename=upload.name,
                        size=upload.size,
                        options=options,
                        created_by=request.user,
                    )
                    messages.success(request, f"{upload.name} is being imported; progress shows below.")
                    return redirect("project-import", slug=project.slug)
                _job, result, import_failure = import_run_now(
                    project=project,
                    upload=upload,
                    filename=upload.name,
                    options=options,
                    created_by=request.user,
                )
            except ApplicationError as error:
                failure = {
                    "message": error.message,
                    "errors": [f"{key}: {' '.join(value)}" for key, value in error.fields.items()],
                }
            else:
                if import_failure is not None:
                    failure = {"message": import_failure.message, "errors": import_failure.errors}
                else:
                    messages.success(
                        request,
                        f"Imported {upload.name}: {result.pairs_created} new pairs, {result.prompts_created} new prompts, "
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


ANNOTATOR_ROLES = (Membership.Role.ANNOTATOR,)
SCREEN_CHOICE_ORDER = ("left", "right", "tie", "both_bad")  # the order of the buttons and of keys 1-4
# Defence in depth for the workspace: the sanitiser already strips scripts and remote content, and this
# header would stop anything it missed from running or calling out.
WORKSPACE_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'none'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


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
            "edit": edit_placeholder.replace("/0/", "/{id}/"),
            "recent": reverse("api-judgments-recent", args=[project.pk]),
        },
    }
    response = render(request, "annotate/annotate.html", {"project": project, "workspace": workspace})
    response["Content-Security-Policy"] = WORKSPACE_CONTENT_SECURITY_POLICY
    return response


# Dataset exports --------------------------------------------------------------------------------------------

EXPORT_ROLES = (Membership.Role.LEAD, Membership.Role.ENGINEER)
EXPORT_CHOICE_FIELDS = ("kind", "label", "tied_vote", "ties", "both_bad", "criterion", "shape", "license")
EXPORT_NUMBER_FIELDS = {
    "min_votes": int,
    "min_agreement": float,
    "min_gold_accuracy": float,
    "split": float,
    "seed": int,
}
EXPORT_FLAG_FIELDS = ("exclude_gold", "exclude_flagged", "include_imported", "stratify")


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
    project, role = project_for_page(request, slug, EXPORT_ROLES)
    latest = Export.objects.filter(project=project).order_by("-version").first()
    values = dict(latest.policy) if latest else ExportPolicy().as_dict()
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
    project, _ = project_for_page(request, slug, EXPORT_ROLES)
    exports, any_running = _export_rows(project)
    return render(
        request,
        "annotate/_exports_list.html",
        {"project": project, "exports": exports, "any_running": any_running},
    )
