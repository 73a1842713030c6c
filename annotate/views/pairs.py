"""The data browser (leads, engineers and site admins; annotators get 403): a project's pairs in a table with
filters and full-text search, and one pair's page with every judgment."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.http import urlencode

from annotate.api.pair_serializers import PairFilterInput
from annotate.selectors_pair_pages import PAGE_SIZE, pair_page
from annotate.selectors_pairs import AGREEMENTS, STATUSES, pair_filter_options, pair_for_browser
from annotate.services.search_documents import PENDING_COUNT_LIMIT, search_documents_pending
from annotate.views.access import READER_ROLES, project_for_page
from annotate.views.quality import pair_detail_context
from palate.errors import validation_error


def _place(query: dict[str, str], **place: int) -> str:
    """The query string of another page of the same filters and search."""
    kept = {name: value for name, value in query.items() if value and name not in ("after", "before")}
    return "?" + urlencode({**kept, **place})


@login_required
def project_pairs(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_for_page(request, slug, READER_ROLES)
    query = {name: value.strip() for name, value in request.GET.items()}
    form = PairFilterInput(data=query)
    context = {
        "project": project,
        "role": role,
        "query": query,
        "options": pair_filter_options(project=project),
        "statuses": STATUSES,
        "agreements": AGREEMENTS,
        "page_size": PAGE_SIZE,
    }
    if not form.is_valid():
        context["error"] = validation_error(form.errors)
        return render(request, "annotate/pairs.html", context, status=400)
    data = form.validated_data
    page = pair_page(
        project=project,
        filters=form.filters,
        query=data.get("q", ""),
        after=data.get("after"),
        before=data.get("before"),
    )
    # Only a search misses rows whose document is not built yet; the count reads the pending rows' index.
    unindexed = search_documents_pending(project=project) if data.get("q") else 0
    context.update(
        page=page,
        unindexed=unindexed,
        unindexed_at_least=unindexed >= PENDING_COUNT_LIMIT,
        filtered=any(query.get(name) for name in (*form.filters, "q")),
        first_url=_place(query),
        before_url=None if page.before_id is None else _place(query, before=page.before_id),
        after_url=None if page.after_id is None else _place(query, after=page.after_id),
    )
    return render(request, "annotate/pairs.html", context)


@login_required
def project_pair(request: HttpRequest, slug: str, pair_id: int) -> HttpResponse:
    project, role = project_for_page(request, slug, READER_ROLES)
    pair = pair_for_browser(project=project, pair_id=pair_id)
    if pair is None:
        raise Http404("No such pair in this project.")
    back = request.GET.get("back", "")
    return render(
        request,
        "annotate/pair_detail.html",
        {
            "role": role,
            # The list's own query string, put after the list's address: never an address of its own.
            "back_query": f"?{back}" if back else "",
            **pair_detail_context(project=project, pair=pair),
        },
    )
