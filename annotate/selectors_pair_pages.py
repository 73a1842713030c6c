"""One page of the data browser's pairs: keyset pages over the pair id (``after`` / ``before`` an id), never
OFFSET and never a COUNT over the whole project; both grow with the project, and at 1,000,000 pairs they
cost more than the page itself."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Max, Min, QuerySet
from django.db.models.functions import Substr

from annotate.models import Choice, Judgment, Pair, Project
from annotate.selectors_pairs import agreement_expression, pairs_filtered, search_query

PAGE_SIZE = 50
WALK_FIRST_WINDOW = 4_096
WALK_SECONDS = 0.1
PREVIEW_CHARACTERS = 140
PAIR_COLUMNS = (
    "external_id",
    "is_gold",
    "gold_choice",
    "judgment_count",
    "prompt",
    "response_a",
    "response_b",
)


@dataclass
class PairPage:
    """``rows`` in id order. The next page is the pairs after ``after_id``, the previous one those before
    ``before_id``; None at either end. A walk that ran out of time holds fewer rows than a page, and
    ``walked_to`` says how far it looked: its next page goes on from there."""

    rows: list[Pair]
    after_id: int | None
    before_id: int | None
    walked_to: int | None = None


@dataclass(frozen=True)
class _Walk:
    ids: list[int]  # in walking order
    more: bool  # pairs beyond the last one looked at may match
    stopped_at: int | None = None  # the last id looked at, when time ran out before the page filled


def _searched(pairs: QuerySet[Pair], *, query: str, backwards: bool, size: int) -> _Walk:
    """A search is three branches, one per text a pair shows (its prompt, response A, response B), each
    ordered and limited on its own, then merged: with one searched table in a branch PostgreSQL picks for
    each between walking the pairs in order (a common word) and the GIN index (a rare one), where an OR
    across three tables reads every pair for a rare word."""
    matches = search_query(query)
    order = "-pk" if backwards else "pk"
    branches = [
        pairs.filter(**{f"{text}__search_document": matches})
        .order_by(order)
        .values_list("pk", flat=True)[: size + 1]
        for text in ("prompt", "response_a", "response_b")
    ]
    ids = list(branches[0].union(*branches[1:]).order_by(order)[: size + 1])
    return _Walk(ids=ids[:size], more=len(ids) > size)


def _walked(
    pairs: QuerySet[Pair], *, project: Project, after: int | None, before: int | None, size: int
) -> _Walk:
    """Filters alone: the pairs are read in id order a window of ids at a time (each window twice the one
    before) until the page fills, the project's pairs end or ``WALK_SECONDS`` have passed. Within a window
    PostgreSQL can only plan to read that window, where over the whole table a filter whose share it
    misjudges (agreement, a category) sent it reading every match before sorting them."""
    bounds = Pair.objects.filter(project=project).aggregate(low=Min("pk"), high=Max("pk"))
    low, high = bounds["low"], bounds["high"]
    if low is None:
        return _Walk(ids=[], more=False)
    backwards = before is not None
    edge = min(before - 1, high) if backwards else max(after + 1 if after is not None else low, low)
    window, found = WALK_FIRST_WINDOW, []
    deadline = time.monotonic() + WALK_SECONDS
    while low <= edge <= high:
        span = (edge - window + 1, edge) if backwards else (edge, edge + window - 1)
        found += (
            pairs.filter(pk__range=span)
            .order_by("-pk" if backwards else "pk")
            .values_list("pk", flat=True)[: size + 1 - len(found)]
        )
        edge = span[0] - 1 if backwards else span[1] + 1
        if len(found) > size:
            return _Walk(ids=found[:size], more=True)
        if time.monotonic() > deadline and low <= edge <= high:
            return _Walk(ids=found, more=True, stopped_at=edge + 1 if backwards else edge - 1)
        window *= 2
    return _Walk(ids=found, more=False)


def _rows(ids: list[int]) -> list[Pair]:
    """The pairs as the table shows them: the prompt's category and first characters (``prompt_preview``;
    prompts and responses can be long), both systems, the agreement and the human votes per choice
    (``votes``). Two queries."""
    rows = list(
        Pair.objects.filter(pk__in=ids)
        .select_related("prompt", "response_a", "response_b")
        .only(*PAIR_COLUMNS, "prompt__category", "response_a__system", "response_b__system")
        .annotate(
            agreement=agreement_expression(),
            prompt_preview=Substr("prompt__content", 1, PREVIEW_CHARACTERS + 1),
        )
        .order_by("pk")
    )
    votes: dict[int, dict[str, int]] = {pair_id: dict.fromkeys(Choice.values, 0) for pair_id in ids}
    counted = (
        Judgment.objects.filter(pair_id__in=ids, origin="human")
        .values_list("pair_id", "choice")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for pair_id, choice, n in counted:
        votes[pair_id][choice] = n
    for row in rows:
        row.votes = votes[row.pk]
        if len(row.prompt_preview) > PREVIEW_CHARACTERS:
            row.prompt_preview = row.prompt_preview[: PREVIEW_CHARACTERS - 1].rstrip() + "…"
    return rows


def pair_page(
    *,
    project: Project,
    filters: dict[str, Any],
    query: str = "",
    after: int | None = None,
    before: int | None = None,
    size: int = PAGE_SIZE,
) -> PairPage:
    """One page of the project's pairs that pass ``filters`` (see ``PAIR_FILTERS``) and match ``query``
    (web-search syntax over the prompt and both responses): at most ``size``, the first ones after
    ``after`` or the last ones before ``before``. The same few queries whatever the page holds."""
    pairs = pairs_filtered(project=project, filters=filters)
    backwards = before is not None
    with transaction.atomic(), connection.cursor() as cursor:
        # Settings for this transaction only. The agreement filters' per-pair subqueries make PostgreSQL's
        # cost estimates huge: it spent seconds compiling (JIT) or starting parallel workers for queries
        # that run in milliseconds. And a statement run often is prepared: its generic plan, made without
        # the search words, read every match of a common word (20 s, once in ten requests).
        cursor.execute(
            "SELECT set_config('jit', 'off', true), set_config('max_parallel_workers_per_gather', '0', true),"
            " set_config('plan_cache_mode', 'force_custom_plan', true)"
        )
        if query:
            if after is not None:
                pairs = pairs.filter(pk__gt=after)
            if backwards:
                pairs = pairs.filter(pk__lt=before)
            walk = _searched(pairs, query=query, backwards=backwards, size=size)
        else:
            walk = _walked(pairs, project=project, after=after, before=before, size=size)
    ids = sorted(walk.ids)
    far = (
        walk.stopped_at
        if walk.stopped_at is not None
        else (ids[0] if backwards else ids[-1])
        if ids
        else None
    )
    if backwards:
        after_id = ids[-1] if ids else before - 1
        before_id = far if walk.more else None
    else:
        after_id = far if walk.more else None
        before_id = (ids[0] if ids else after + 1) if after is not None else None
    return PairPage(rows=_rows(ids), after_id=after_id, before_id=before_id, walked_to=walk.stopped_at)
