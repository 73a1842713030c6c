"""The quality dashboard (leads, engineers and site admins): agreement figures from the latest snapshot, a
drill-down into contested pairs, CSV downloads of every table, and a button that asks for a refresh."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from annotate.models import Judgment, Pair, Project
from annotate.services.agreement import (
    CHOICES,
    agreement_figures,
    agreement_refresh_request,
    agreement_snapshot_current,
)
from annotate.views.access import READER_ROLES, project_for_page
from palate.safe_csv import csv_text
from rewardtrain.selectors import reward_model_active, reward_model_agreement, reward_model_has_scores

ANNOTATOR_COLUMNS = (
    "username",
    "judgments",
    "agreement",
    "agreement_scored",
    "gold_accuracy",
    "gold_judgments",
    "left_share",
    "sided_judgments",
    "position_p_value",
    "tie_rate",
    "both_bad_rate",
    "median_seconds",
    "active_days",
    "per_day",
    "recent_agreement",
    "drift",
)


def _figures(project: Project) -> dict[str, Any]:
    return agreement_figures(snapshot=agreement_snapshot_current(project=project), project=project)


def _reward_model_agreement(project: Project) -> dict[str, Any] | None:
    """The active model's agreement with the human majority over the scored pairs its training run held out
    (``held_out`` None: the run recorded no split, and the page says so); None before it has scores."""
    model = reward_model_active(project_id=project.pk)
    if model is None or not reward_model_has_scores(reward_model=model):
        return None
    return {"model": model, **reward_model_agreement(reward_model=model)}


@login_required
def project_quality(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_for_page(request, slug, READER_ROLES)
    figures = _figures(project)
    chart_data = {
        "overTime": figures["over_time"],
        "targetAlpha": figures["thresholds"]["target_alpha"],
        "maxPositionBias": figures["thresholds"]["max_position_bias"],
        "kappa": figures["kappa"],
        "annotators": [
            {
                "username": row["username"],
                "leftShare": row["left_share"],
                "sided": row["sided_judgments"],
                "pValue": row["position_p_value"],
                "flagged": "position_bias" in row["flags"],
            }
            for row in figures["annotators"]
        ],
    }
    return render(
        request,
        "annotate/quality.html",
        {
            "project": project,
            "role": role,
            "figures": figures,
            "chart_data": chart_data,
            "alpha_levels": [
                (level, label, figures["alpha"][level])
                for level, label in (("ordinal", "ordinal"), ("interval", "interval"))
                if figures["alpha"][level]
            ],
            "csv_tables": CSV_TABLES,
            "reward_agreement": _reward_model_agreement(project),
            "flagged_annotators": [row["username"] for row in figures["annotators"] if row["flags"]],
        },
    )


@login_required
@require_POST
def project_quality_refresh(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_for_page(request, slug, READER_ROLES)
    if agreement_refresh_request(project=project):
        messages.success(request, "A refresh is queued; reload this page in a moment to see the new figures.")
    else:
        messages.info(request, "The figures already cover every judgment.")
    return redirect("project-quality", slug=project.slug)


def pair_detail_context(*, project: Project, pair: Pair) -> dict[str, Any]:
    """What ``_quality_pair.html`` shows of a pair (with its prompt and responses loaded): the prompt, both
    responses and every vote, for leads and engineers only (it names systems and annotators)."""
    votes = list(
        Judgment.objects.filter(pair=pair).select_related("annotator").order_by("origin", "created_at")
    )
    messages_of_prompt = [
        {"role": str(turn.get("role", "")), "content": str(turn.get("content", ""))}
        for turn in (pair.prompt.messages or [])
        if isinstance(turn, dict)
    ]
    counts = {choice: sum(vote.choice == choice for vote in votes if vote.annotator_id) for choice in CHOICES}
    criteria = [str(name) for name in project.criteria or []]
    rows = [
        {
            "vote": vote,
            "criteria": [
                (name, vote.criteria[name])
                for name in criteria
                if isinstance(vote.criteria, dict) and name in vote.criteria
            ],
        }
        for vote in votes
    ]
    return {
        "project": project,
        "pair": pair,
        "conversation": messages_of_prompt,
        "rows": rows,
        "counts": counts,
        "criteria": criteria,
    }


@login_required
def project_quality_pair(request: HttpRequest, slug: str, pair_id: int) -> HttpResponse:
    """The drill-down into one pair (an htmx partial): the prompt, both responses and every vote."""
    project, role = project_for_page(request, slug, READER_ROLES)
    pair = (
        Pair.objects.filter(project=project, pk=pair_id)
        .select_related("prompt", "response_a", "response_b", "adjudication")
        .first()
    )
    if pair is None:
        raise Http404("No such pair in this project.")
    return render(
        request,
        "annotate/_quality_pair.html",
        {**pair_detail_context(project=project, pair=pair), "role": role},
    )


# CSV downloads ---------------------------------------------------------------------------------------------


def _alpha_rows(figures: dict[str, Any]) -> Iterable[list]:
    yield ["level", "estimate", "low", "high", "confidence", "rounds", "judgments", "target"]
    for level, alpha in figures["alpha"].items():
        if alpha:
            values = (alpha[key] for key in ("estimate", "low", "high", "confidence", "rounds", "judgments"))
            yield [level, *values, figures["thresholds"]["target_alpha"]]
    yield ["fleiss_kappa", figures["fleiss"]["kappa"], "", "", "", "", figures["fleiss"]["pairs"], ""]
    yield [
        "percent_agreement",
        figures["percent_agreement"],
        "",
        "",
        "",
        "",
        figures["summary"]["judgments"],
        "",
    ]


def _annotator_rows(figures: dict[str, Any]) -> Iterable[list]:
    yield [*ANNOTATOR_COLUMNS, "flags"]
    for row in figures["annotators"]:
        yield [*(row[column] for column in ANNOTATOR_COLUMNS), " ".join(row["flags"])]


def _kappa_rows(figures: dict[str, Any]) -> Iterable[list]:
    kappa = figures["kappa"]
    yield ["annotator", *kappa["annotators"]]
    for name, values in zip(kappa["annotators"], kappa["matrix"], strict=True):
        yield [name, *values]


def _criteria_rows(figures: dict[str, Any]) -> Iterable[list]:
    yield ["criterion", "alpha", "judgments"]
    for row in figures["criteria"]:
        yield [row["name"], row["alpha"], row["judgments"]]


def _group_rows(figures: dict[str, Any]) -> Iterable[list]:
    yield ["attribute", "value", "alpha_within", "annotators", "judgments", "alpha_between"]
    for group in figures["groups"]:
        for row in group["groups"]:
            yield [
                group["attribute"],
                row["value"],
                row["alpha"],
                row["annotators"],
                row["judgments"],
                group["between"],
            ]


def _contested_rows(figures: dict[str, Any]) -> Iterable[list]:
    yield ["pair_id", "external_id", "entropy", "votes", *CHOICES, "settled", "prompt"]
    for row in figures["contested"]:
        yield [
            row["pair_id"],
            row["external_id"],
            row["entropy"],
            row["votes"],
            *(row["counts"][choice] for choice in CHOICES),
            row.get("adjudicated") or "",
            row["prompt"],
        ]


def _over_time_rows(figures: dict[str, Any]) -> Iterable[list]:
    yield ["period", "alpha", "judgments"]
    for point in figures["over_time"]["points"]:
        yield [point["period"], point["alpha"], point["judgments"]]


CSV_TABLES: dict[str, Callable[[dict[str, Any]], Iterable[list]]] = {
    "alpha": _alpha_rows,
    "annotators": _annotator_rows,
    "kappa": _kappa_rows,
    "criteria": _criteria_rows,
    "groups": _group_rows,
    "contested": _contested_rows,
    "over-time": _over_time_rows,
}


@login_required
def project_quality_csv(request: HttpRequest, slug: str, table: str) -> HttpResponse:
    project, _ = project_for_page(request, slug, READER_ROLES)
    rows = CSV_TABLES.get(table)
    if rows is None:
        raise Http404("No such table.")
    response = HttpResponse(csv_text(rows(_figures(project))), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{project.slug}-quality-{table}.csv"'
    return response
