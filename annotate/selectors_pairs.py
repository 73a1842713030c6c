"""Reads for the data browser: a project's pairs filtered, searched and paged, and one pair with every
judgment. For leads, engineers and site admins only (annotators stay blind to others' votes).

Pages of them are in annotate/selectors_pair_pages.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.postgres.search import SearchQuery
from django.core.cache import cache
from django.db.models import (
    Case,
    CharField,
    Count,
    Exists,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)

from annotate.models import (
    SEARCH_CONFIG,
    Judgment,
    Membership,
    Pair,
    Project,
    Prompt,
)
from annotate.services.leaderboard.battles import project_systems

OPTIONS_CACHE_SECONDS = 600

STATUSES = {
    "unjudged": "No judgment yet",
    "in_progress": "Judged, fewer times than the overlap",
    "open": "Still wanted (fewer judgments than the overlap)",
    "complete": "Judged as often as the overlap asks",
}
AGREEMENTS = {
    "unanimous": "Unanimous (two or more judgments, all alike)",
    "majority": "Majority (one choice has more than half)",
    "split": "Split (no choice has more than half)",
}
CONTESTED = ("majority", "split")


def _human_votes(*, pair: Any = None) -> QuerySet[Judgment]:
    return Judgment.objects.filter(pair=pair if pair is not None else OuterRef("pk"), origin="human")


def agreement_expression() -> Case:
    """A pair's agreement from its human judgments: '' with fewer than two, else a key of AGREEMENTS. The
    one definition of 'contested' (majority or split: the judgments disagree), as the quality page's
    contested pairs are those with two or more votes that are not all alike."""
    top = Subquery(
        _human_votes().order_by().values("choice").annotate(n=Count("pk")).order_by("-n").values("n")[:1],
        output_field=IntegerField(),
    )
    return Case(
        When(judgment_count__lt=2, then=Value("")),
        When(Q(judgment_count=top), then=Value("unanimous")),
        When(Q(judgment_count__lt=top * 2), then=Value("majority")),
        default=Value("split"),
        output_field=CharField(),
    )


# The filters: each takes the project and a validated value and narrows the pairs. A new filter (such as
# "flagged") is a function and an entry here, a field of the same name in PairFilterInput
# (annotate/api/pair_serializers.py) and its control in templates/annotate/pairs.html.
PairFilter = Callable[[QuerySet[Pair], Project, Any], QuerySet[Pair]]


def _status(pairs: QuerySet[Pair], project: Project, value: str) -> QuerySet[Pair]:
    condition = {
        "unjudged": Q(judgment_count=0),
        "in_progress": Q(judgment_count__gt=0, judgment_count__lt=project.overlap),
        "open": Q(judgment_count__lt=project.overlap),
        "complete": Q(judgment_count__gte=project.overlap),
    }[value]
    return pairs.filter(condition)


def _system(pairs: QuerySet[Pair], project: Project, value: str) -> QuerySet[Pair]:
    return pairs.filter(Q(response_a__system=value) | Q(response_b__system=value))


def _category(pairs: QuerySet[Pair], project: Project, value: str) -> QuerySet[Pair]:
    return pairs.filter(prompt__category=value)


def _gold(pairs: QuerySet[Pair], project: Project, value: bool) -> QuerySet[Pair]:
    return pairs.filter(is_gold=value)


def _agreement(pairs: QuerySet[Pair], project: Project, value: str) -> QuerySet[Pair]:
    return pairs.filter(judgment_count__gte=2, agreement=value)


def _contested(pairs: QuerySet[Pair], project: Project, value: bool) -> QuerySet[Pair]:
    if value:
        return pairs.filter(judgment_count__gte=2, agreement__in=CONTESTED)
    return pairs.exclude(judgment_count__gte=2, agreement__in=CONTESTED)


def _annotator(pairs: QuerySet[Pair], project: Project, value: int) -> QuerySet[Pair]:
    return pairs.filter(Exists(Judgment.objects.filter(pair=OuterRef("pk"), annotator_id=value)))


PAIR_FILTERS: dict[str, PairFilter] = {
    "status": _status,
    "system": _system,
    "category": _category,
    "gold": _gold,
    "agreement": _agreement,
    "contested": _contested,
    "annotator": _annotator,
}


def search_query(text: str) -> SearchQuery:
    """Web-search syntax: words (all of them), "a phrase", OR, -excluded."""
    return SearchQuery(text, search_type="websearch", config=SEARCH_CONFIG)


def pairs_filtered(*, project: Project, filters: dict[str, Any]) -> QuerySet[Pair]:
    """The project's pairs narrowed by ``filters`` (keys of PAIR_FILTERS; empty values are ignored), with
    their ``agreement``; without search (see ``pair_page``)."""
    pairs = Pair.objects.filter(project=project).alias(agreement=agreement_expression())
    for name, narrow in PAIR_FILTERS.items():
        value = filters.get(name)
        if value not in (None, ""):
            pairs = narrow(pairs, project, value)
    return pairs


def pair_filter_options(*, project: Project) -> dict[str, list[str]]:
    """What the filters suggest in this project: its systems and categories, and its annotators. The first
    two are cached for ``OPTIONS_CACHE_SECONDS``: listing them reads every response (a second at a million
    pairs), and the page suggests them only (its system and category fields take any value)."""
    key = f"palate:pair-filter-options:{project.pk}:{project.created_at.timestamp()}"
    options = cache.get(key)
    if options is None:
        options = {
            "systems": project_systems(project=project),
            "categories": list(
                Prompt.objects.filter(project=project)
                .exclude(category="")
                .values_list("category", flat=True)
                .distinct()
                .order_by("category")
            ),
        }
        cache.set(key, options, timeout=OPTIONS_CACHE_SECONDS)
    annotators = (
        get_user_model()
        .objects.filter(memberships__project=project, memberships__role=Membership.Role.ANNOTATOR)
        .values_list("username", flat=True)
        .order_by("username")
    )
    return {**options, "annotators": list(annotators)}


def pair_for_browser(*, project: Project, pair_id: int) -> Pair | None:
    """One pair of the project with its prompt, responses, settled label (if any) and ``agreement``; None
    when the project has no such pair. Its judgments are read by ``pair_detail_context``."""
    return (
        Pair.objects.filter(project=project, pk=pair_id)
        .select_related("prompt", "response_a", "response_b", "adjudication")
        .annotate(agreement=agreement_expression())
        .first()
    )
