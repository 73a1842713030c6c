"""What a leaderboard can be narrowed to (criteria, annotator groups, categories, systems), and options checked
against it."""

from __future__ import annotations

from annotate.models import Project, Prompt
from annotate.services.leaderboard.battles import project_systems
from annotate.services.leaderboard.groups import annotator_groups
from annotate.services.leaderboard.options import LeaderboardOptions
from palate.errors import ApplicationError


def leaderboard_filters(*, project: Project, systems: list[str] | None = None, groups: bool = True) -> dict:
    """What the leaderboard can be narrowed to. ``groups=False`` (the public page) leaves annotator groups out."""
    categories = sorted(
        Prompt.objects.filter(project=project)
        .exclude(category="")
        .order_by()
        .values_list("category", flat=True)
        .distinct()
    )
    group_names = sorted(annotator_groups(project=project)) if groups else []
    return {
        "criteria": [str(name) for name in project.criteria],
        "groups": group_names,
        "group_keys": sorted({name.partition("=")[0] for name in group_names}),
        "categories": categories,
        "systems": project_systems(project=project) if systems is None else systems,
    }


def options_check_against_data(options: LeaderboardOptions, filters: dict) -> None:
    """Raises ApplicationError naming each option that this project's data does not know."""
    problems: dict[str, list[str]] = {}
    checks = (
        ("criterion", options.criterion, filters["criteria"], "criteria"),
        ("group", options.group, filters["groups"], "annotator groups"),
        ("category", options.category, filters["categories"], "categories"),
        ("anchor", options.anchor, filters["systems"], "systems"),
        ("split_by", options.split_by, filters["group_keys"], "annotator attributes"),
    )
    for name, value, known, what in checks:
        if value is not None and value not in known:
            listed = ", ".join(known[:20]) if known else "none"
            problems[name] = [f"unknown {name} {value!r}; this project's {what}: {listed}"]
    if problems:
        raise ApplicationError(next(iter(problems.values()))[0], fields=problems)
