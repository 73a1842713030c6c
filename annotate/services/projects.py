"""Creating and configuring projects."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils.text import slugify

from annotate.models import Membership, Project, ShownChoice
from palate.errors import ApplicationError

CONFIG_FIELDS = (
    "guidelines",
    "criteria",
    "allowed_choices",
    "strength_scale",
    "rationale",
    "overlap",
    "gold_rate",
    "lease_seconds",
    "assignment_order",
    "edit_window_seconds",
    "target_alpha",
    "min_gold_accuracy",
    "max_position_bias",
)


def project_config_check(config: dict[str, Any]) -> None:
    """Cross-field rules that the per-field serializer cannot see. Raises ApplicationError naming the field."""
    problems: dict[str, list[str]] = {}
    criteria = config.get("criteria")
    if criteria is not None:
        names = (
            [name.strip() for name in criteria] if all(isinstance(name, str) for name in criteria) else None
        )
        if names is None or any(not name or len(name) > 50 for name in names):
            problems["criteria"] = ["each criterion is a name of 1 to 50 characters"]
        elif len(set(names)) != len(names):
            problems["criteria"] = ["criterion names must be different"]
        elif len(names) > 12:
            problems["criteria"] = ["at most 12 criteria"]
    choices = config.get("allowed_choices")
    if choices is not None:
        unknown = [choice for choice in choices if choice not in ShownChoice.values]
        if unknown:
            problems["allowed_choices"] = [
                f"unknown choice {unknown[0]!r}: use {', '.join(ShownChoice.values)}"
            ]
        elif not {"left", "right"} <= set(choices):
            problems["allowed_choices"] = ["'left' and 'right' are always allowed"]
        elif len(set(choices)) != len(choices):
            problems["allowed_choices"] = ["each choice once"]
    if problems:
        first_field, messages = next(iter(problems.items()))
        raise ApplicationError(f"{first_field}: {messages[0]}", fields=problems)


def _unique_slug(name: str) -> str:
    base = slugify(name)[:70] or "project"
    slug, number = base, 2
    while Project.objects.filter(slug=slug).exists():
        slug, number = f"{base}-{number}", number + 1
    return slug


@transaction.atomic
def project_create(*, name: str, created_by, slug: str = "", **config: Any) -> Project:
    """Creates a project; its creator becomes its first lead."""
    project_config_check(config)
    if slug and Project.objects.filter(slug=slug).exists():
        raise ApplicationError(
            f"a project with slug '{slug}' exists",
            fields={"slug": ["already taken"]},
            code="conflict",
            http_status=409,
        )
    project = Project.objects.create(
        name=name,
        slug=slug or _unique_slug(name),
        created_by=created_by,
        **{key: value for key, value in config.items() if key in CONFIG_FIELDS},
    )
    if created_by is not None:
        Membership.objects.create(user=created_by, project=project, role=Membership.Role.LEAD)
    return project


@transaction.atomic
def project_update(*, project: Project, data: dict[str, Any]) -> Project:
    project_config_check(data)
    fields = [key for key in data if key in (*CONFIG_FIELDS, "name")]
    for key in fields:
        setattr(project, key, data[key])
    project.save(update_fields=[*fields, "updated_at"])
    return project
