"""The leaderboard page (leads, engineers and site admins), its optional public read-only twin, and the
button that turns the public link on or off (leads)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from annotate.api.leaderboard_serializers import LeaderboardOutput, leaderboard_csv_text
from annotate.models import Membership, Project
from annotate.selectors import ADMIN
from annotate.services.leaderboard import (
    leaderboard_filters,
    leaderboard_get,
    leaderboard_public_link_set,
    project_for_public_leaderboard,
)
from annotate.views.access import LEAD_ROLES, READER_ROLES, project_for_page
from palate.errors import ApplicationError
from rewardtrain.selectors import reward_model_active, reward_model_system_means

# What the page's form may set; everything else in the query string is ignored.
PAGE_OPTIONS = ("method", "criterion", "group", "category", "interval", "ties", "anchor", "split_by")
PUBLIC_OPTIONS = ("method", "criterion", "category", "interval", "ties", "anchor")


def _chosen_options(request: HttpRequest, public: bool) -> dict[str, str]:
    names = PUBLIC_OPTIONS if public else PAGE_OPTIONS
    return {name: request.GET[name] for name in names if request.GET.get(name)}


def _download(board: dict[str, Any], kind: str, project: Project) -> HttpResponse:
    if kind == "csv":
        response = HttpResponse(leaderboard_csv_text(board), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{project.slug}-leaderboard.csv"'
        return response
    response = JsonResponse(LeaderboardOutput(board).data)
    response["Content-Disposition"] = f'attachment; filename="{project.slug}-leaderboard.json"'
    return response


def _chart_data(board: dict[str, Any]) -> dict[str, Any]:
    """Only what the charts draw, so the page does not embed the whole board twice."""
    return {
        "systems": board["systems"],
        "rows": board["rows"],
        "observed": board["observed_win_rate"],
        "predicted": board["predicted_win_rate"],
        "battles": board["battle_matrix"],
        "overTime": board["over_time"],
        "method": board["options"]["method"],
    }


def _by_group_table(board: dict[str, Any]) -> dict[str, Any] | None:
    by_group = board.get("by_group")
    if not by_group or not by_group["groups"]:
        return None
    rows = []
    for system in board["systems"]:
        rows.append(
            {"system": system, "cells": [group["ratings"].get(system) for group in by_group["groups"]]}
        )
    groups = [{**group, "label": group["group"].partition("=")[2]} for group in by_group["groups"]]
    return {"key": by_group["key"], "groups": groups, "rows": rows}


def _table_rows(board: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows with where their interval sits on a common scale (percent), for the table's interval bars."""
    rows = board["rows"]
    if not rows:
        return []
    low = min(row["lower"] for row in rows)
    high = max(row["upper"] for row in rows)
    span = (high - low) or 1.0

    def percent(value: float) -> float:
        return round(100 * (value - low) / span, 2)

    return [
        {
            **row,
            "bar_left": percent(row["lower"]),
            "bar_width": max(round(100 * (row["upper"] - row["lower"]) / span, 2), 0.5),
            "bar_dot": percent(row["rating"]),
            "win_rate_percent": round(100 * row["win_rate"], 1),
        }
        for row in rows
    ]


def _reward_model_view(project: Project, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The active model's mean score per system from its stored scores, beside each system's human rank.
    ``rows`` is empty when there is no active model or it has scored nothing yet (the page says how)."""
    model = reward_model_active(project_id=project.pk)
    means = reward_model_system_means(reward_model=model) if model is not None else []
    human_rank = {row["system"]: row["rank"] for row in rows}
    return {
        "model": model,
        "rows": [
            {**row, "model_rank": index, "human_rank": human_rank.get(row["system"])}
            for index, row in enumerate(means, 1)
        ],
    }


def _labels(board: dict[str, Any] | None) -> dict[str, str]:
    if board is None:
        return {"method_label": "", "interval_label": ""}
    options = board["options"]
    if options["method"] == "elo":
        method = "online Elo, order-free"
        interval = f"median and 95% interval over {options['rounds']:,} resampled orderings"
    else:
        method = "Bradley-Terry, Davidson ties" if options["ties"] == "davidson" else "Bradley-Terry"
        interval = (
            f"95% bootstrap interval, {options['rounds']:,} rounds"
            if options["interval"] == "bootstrap"
            else "95% sandwich interval"
        )
    if options["weighting"] == "crowd_bt":
        method += ", reliability-weighted"
    return {"method_label": method, "interval_label": interval}


def _leaderboard_page(
    request: HttpRequest, project: Project, *, role: str | None, public: bool
) -> HttpResponse:
    chosen = _chosen_options(request, public)
    download = request.GET.get("download")
    board = None
    error = None
    try:
        board = leaderboard_get(project=project, public=public, **chosen)
    except ApplicationError as failure:
        error = failure.message
    if board is not None and download in {"csv", "json"}:
        return _download(board, download, project)
    filters = (
        board["filters"] if board is not None else leaderboard_filters(project=project, groups=not public)
    )
    query = urlencode(chosen)
    context = {
        "project": project,
        "role": role,
        "public": public,
        "board": board,
        "rows": _table_rows(board) if board is not None else [],
        **_labels(board),
        "error": error,
        "chosen": chosen,
        "filters": filters,
        "chart_data": _chart_data(board) if board is not None and board["rows"] else None,
        "by_group": _by_group_table(board) if board is not None else None,
        "csv_url": "?" + urlencode({**chosen, "download": "csv"}),
        "json_url": "?" + urlencode({**chosen, "download": "json"}),
        "api_url": None
        if public
        else f"{reverse('api-leaderboard', args=[project.pk])}{'?' + query if query else ''}",
        "can_share": not public and role in (Membership.Role.LEAD, ADMIN),
        "public_url": (
            request.build_absolute_uri(reverse("leaderboard-public", args=[project.leaderboard_public_token]))
            if project.leaderboard_public_token and not public
            else None
        ),
        "reward_view": None if public else _reward_model_view(project, board["rows"] if board else []),
        "advanced_open": any(name in chosen for name in ("interval", "ties", "anchor", "split_by")),
    }
    response = render(request, "annotate/leaderboard.html", context, status=400 if error else 200)
    if public:
        # A shared link is not an invitation to index it, and the token must not leak through referrers.
        response["X-Robots-Tag"] = "noindex, nofollow"
        response["Referrer-Policy"] = "no-referrer"
    return response


@login_required
def project_leaderboard(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_for_page(request, slug, READER_ROLES)
    return _leaderboard_page(request, project, role=role, public=False)


def leaderboard_public(request: HttpRequest, token: str) -> HttpResponse:
    project = project_for_public_leaderboard(token=token)
    if project is None:
        raise Http404("No such leaderboard.")
    return _leaderboard_page(request, project, role=None, public=True)


@login_required
@require_POST
def project_leaderboard_public_link(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_for_page(request, slug, LEAD_ROLES)
    enabled = request.POST.get("action") == "enable"
    leaderboard_public_link_set(project=project, enabled=enabled)
    if enabled:
        messages.success(request, "Anyone with the public link can now view this leaderboard (read-only).")
    else:
        messages.success(request, "The public link is off; the old link no longer works.")
    return redirect("project-leaderboard", slug=project.slug)
