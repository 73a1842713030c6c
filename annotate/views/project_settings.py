"""Creating a project and changing its settings in the browser. The form's values go through the API's own
input serializers and services, so a page refuses exactly what the API refuses, with the same message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render

from annotate.api.serializers import ProjectCreateInput, ProjectUpdateInput
from annotate.models import Project, ShownChoice
from annotate.selectors import project_change_consequences, user_can_create_projects
from annotate.services.projects import CONFIG_FIELDS, project_create, project_update
from annotate.views.access import LEAD_ROLES, project_for_page
from palate.errors import ApplicationError, validation_error


@dataclass(frozen=True)
class Setting:
    name: str
    label: str
    help: str
    kind: str = "number"  # text, slug, textarea, lines, number, decimal, select, choices
    options: tuple[tuple[str, str], ...] = ()
    step: str = "1"


@dataclass
class Section:
    title: str
    lead: str
    settings: tuple[Setting, ...]
    fields: list[dict[str, Any]] = field(default_factory=list)


NAME = Setting("name", "Name", "What everyone sees in their list of projects.", "text")
SLUG = Setting(
    "slug",
    "Address",
    "The project's part of its web address (/projects/<address>/): lowercase letters, digits and hyphens. "
    "Left empty, it is made from the name. It cannot change later.",
    "slug",
)
SECTIONS = (
    Section(
        "Guidelines",
        "Annotators read these before their first judgment and can open them at any time while they work.",
        (
            Setting(
                "guidelines",
                "Guidelines",
                "Markdown: headings, lists, links, code. What makes a response better, with examples of "
                "hard cases, so that every annotator judges the same way.",
                "textarea",
            ),
        ),
    ),
    Section(
        "What annotators answer",
        "Each judgment compares two responses to one prompt.",
        (
            Setting(
                "criteria",
                "Criteria",
                "One per line, up to 12 (for example helpfulness, harmlessness): annotators answer each "
                "one as well as the overall choice. Empty means one overall judgment.",
                "lines",
            ),
            Setting(
                "allowed_choices",
                "Choices",
                "What an annotator may answer. 'Left is better' and 'Right is better' are always offered.",
                "choices",
                tuple(ShownChoice.choices),
            ),
            Setting(
                "strength_scale",
                "Strength scale",
                "0 turns strength off; N asks how much better on a scale of 1 to N (at most 5).",
            ),
            Setting(
                "rationale",
                "Rationale",
                "Whether annotators write why they chose: off, optional, or required with every judgment.",
                "select",
                tuple(Project.Rationale.choices),
            ),
        ),
    ),
    Section(
        "Assignment",
        "How pairs are handed out to annotators.",
        (
            Setting(
                "overlap",
                "Overlap",
                "Judgments wanted per pair, each by a different annotator (1 to 100). Three or more let "
                "Palate measure agreement.",
            ),
            Setting(
                "gold_rate",
                "Gold rate",
                "Share of assignments that are gold pairs with a known answer, from 0 to 1 (0.1 is one in "
                "ten). Gold answers measure each annotator's accuracy.",
                "decimal",
                step="0.01",
            ),
            Setting(
                "lease_seconds",
                "Lease (seconds)",
                "How long a pair stays reserved for the annotator it was given to (30 seconds to 7 days); "
                "after that it goes to someone else.",
            ),
            Setting(
                "assignment_order",
                "Order",
                "Depth first completes each pair's overlap before starting new pairs; breadth first "
                "spreads the first judgments over every pair.",
                "select",
                tuple(Project.AssignmentOrder.choices),
            ),
            Setting(
                "edit_window_seconds",
                "Edit window (seconds)",
                "How long an annotator may change a judgment after submitting it (0 for never, at most 7 "
                "days).",
            ),
        ),
    ),
    Section(
        "Quality thresholds",
        "The quality page flags annotators and the training gate against these; changing them applies to the "
        "figures already computed.",
        (
            Setting(
                "target_alpha",
                "Target agreement (α)",
                "Krippendorff's alpha the judgments should reach before a model is trained on them, 0 to 1 "
                "(0.667 is the usual lowest acceptable value).",
                "decimal",
                step="0.001",
            ),
            Setting(
                "min_gold_accuracy",
                "Minimum gold accuracy",
                "Annotators who answer fewer gold pairs correctly than this share (0 to 1) are flagged.",
                "decimal",
                step="0.01",
            ),
            Setting(
                "max_position_bias",
                "Maximum position bias",
                "Annotators who choose the same side (left or right) more often than this share (0.5 to 1) "
                "are flagged.",
                "decimal",
                step="0.01",
            ),
        ),
    ),
)


def _form_data(post: QueryDict, *, creating: bool) -> dict[str, Any]:
    """The posted form as the API's JSON body: criteria one per line, the choices as a list (the two that are
    always allowed first); an empty address is left out so that it is made from the name."""
    data: dict[str, Any] = {key: post[key] for key in ("name", *CONFIG_FIELDS) if key in post}
    if "criteria" in post:
        data["criteria"] = [line.strip() for line in post["criteria"].splitlines() if line.strip()]
    data["allowed_choices"] = ["left", "right"] + [
        choice for choice in post.getlist("allowed_choices") if choice not in ("left", "right")
    ]
    if creating and post.get("slug", "").strip():
        data["slug"] = post["slug"].strip()
    return data


def _field_errors(error: ApplicationError | None) -> dict[str, str]:
    """Each field's first message; 'criteria.3' (the fourth criterion) is shown at 'criteria'."""
    by_field: dict[str, str] = {}
    for key, field_messages in (error.fields if error else {}).items():
        by_field.setdefault(key.split(".")[0].split("[")[0], field_messages[0])
    return by_field


def _sections(values: dict[str, Any], by_field: dict[str, str]) -> list[Section]:
    """The form's sections with each field's value and its error, if any."""
    sections = []
    for section in SECTIONS:
        fields = []
        for setting in section.settings:
            value = values.get(setting.name, "")
            if setting.kind == "lines" and isinstance(value, list):
                value = "\n".join(value)
            fields.append({"setting": setting, "value": value, "error": by_field.get(setting.name)})
        sections.append(Section(section.title, section.lead, section.settings, fields))
    return sections


def _project_values(project: Project) -> dict[str, Any]:
    return {key: getattr(project, key) for key in ("name", "slug", *CONFIG_FIELDS)}


def _render(
    request: HttpRequest,
    template: str,
    context: dict[str, Any],
    values: dict[str, Any],
    error: ApplicationError | None = None,
) -> HttpResponse:
    by_field = _field_errors(error)
    return render(
        request,
        template,
        {
            **context,
            "values": values,
            "error": error,
            "name_field": {"setting": NAME, "value": values.get("name", ""), "error": by_field.get("name")},
            "slug_field": {"setting": SLUG, "value": values.get("slug", ""), "error": by_field.get("slug")},
            "sections": _sections(values, by_field),
        },
        status=400 if error else 200,
    )


@login_required
def project_new(request: HttpRequest) -> HttpResponse:
    """A new project, with the API's defaults filled in; its creator becomes its first lead."""
    if not user_can_create_projects(user=request.user):
        raise PermissionDenied
    if request.method != "POST":
        values = _project_values(Project())
        return _render(request, "annotate/project_new.html", {}, values)
    data = _form_data(request.POST, creating=True)
    values = {**data, "slug": request.POST.get("slug", "")}
    serializer = ProjectCreateInput(data=data)
    try:
        if not serializer.is_valid():
            raise validation_error(serializer.errors)
        project = project_create(created_by=request.user, **serializer.validated_data)
    except ApplicationError as error:
        return _render(request, "annotate/project_new.html", {}, values, error)
    messages.success(request, f"Project '{project.name}' created. Import prompts and responses next.")
    return redirect("project-import", slug=project.slug)


@login_required
def project_settings(request: HttpRequest, slug: str) -> HttpResponse:
    """A project's settings. A change that would leave stored judgments with a choice, a criterion or a
    strength the project no longer has is shown with its consequences and saved only when confirmed."""
    project, role = project_for_page(request, slug, LEAD_ROLES)
    context = {"project": project, "role": role}
    if request.method != "POST":
        return _render(request, "annotate/project_settings.html", context, _project_values(project))
    data = _form_data(request.POST, creating=False)
    values = {**data, "slug": project.slug}
    serializer = ProjectUpdateInput(data=data, partial=True)
    try:
        if not serializer.is_valid():
            raise validation_error(serializer.errors)
        consequences = project_change_consequences(project=project, data=serializer.validated_data)
        if consequences and request.POST.get("confirm") != "yes":
            context["consequences"] = consequences
            return _render(request, "annotate/project_settings.html", context, values)
        project_update(project=project, data=serializer.validated_data)
    except ApplicationError as error:
        return _render(request, "annotate/project_settings.html", context, values, error)
    messages.success(request, "Settings saved.")
    return redirect("project-settings", slug=project.slug)
