"""Reads for the generation pages and API."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from annotate.models import Choice, Judgment, Pair, Project, Prompt, Response
from generation.models import GenerationJob, ModelAudit, System
from generation.stats import best_of_n_kl_bound, rising_until, wilson_interval


def systems_of_project(*, project: Project) -> QuerySet[System]:
    return System.objects.filter(project=project).order_by("name", "id")


def generation_jobs_of_project(*, project: Project, limit: int = 20) -> list[GenerationJob]:
    return list(
        GenerationJob.objects.filter(project=project)
        .prefetch_related("systems")
        .defer("prompt_ids", "log")
        .order_by("-created_at", "-id")[:limit]
    )


def prompt_categories(*, project: Project) -> list[str]:
    return list(
        Prompt.objects.filter(project=project)
        .exclude(category="")
        .order_by("category")
        .values_list("category", flat=True)
        .distinct()
    )


def response_systems(*, project: Project) -> list[str]:
    """The system names the project's responses carry (imported or generated)."""
    return list(
        Response.objects.filter(prompt__project=project)
        .exclude(system="")
        .order_by("system")
        .values_list("system", flat=True)
        .distinct()
    )


def audit_figures(*, audit: ModelAudit) -> dict[str, Any]:
    """Per N: the bound on best-of-N's KL divergence, the reward model's mean score of its choices, and the
    human win rate of its choices against the independent sample with a 95% Wilson interval (a tie or
    "both bad" counts half), from the annotators' judgments so far; and the N past which the win rate stops
    rising (``rising_until``)."""
    comparisons = list(audit.comparisons.values("n", "pair_id", "chosen_id", "chosen_score"))
    pair_ids = {row["pair_id"] for row in comparisons}
    sides = {pk: a for pk, a in Pair.objects.filter(id__in=pair_ids).values_list("id", "response_a_id")}
    votes: dict[int, list[str]] = {}
    for pair_id, choice in Judgment.objects.filter(
        pair_id__in=pair_ids, origin=Judgment.Origin.HUMAN
    ).values_list("pair_id", "choice"):
        votes.setdefault(pair_id, []).append(choice)
    rows = []
    for n in audit.n_values:
        mine = [row for row in comparisons if row["n"] == n]
        wins = judged = 0.0
        for row in mine:
            chosen_is_a = sides.get(row["pair_id"]) == row["chosen_id"]
            for choice in votes.get(row["pair_id"], []):
                judged += 1
                if choice in (Choice.TIE, Choice.BOTH_BAD):
                    wins += 0.5
                elif (choice == Choice.A) == chosen_is_a:
                    wins += 1
        low, high = wilson_interval(wins, judged)
        rows.append(
            {
                "n": n,
                "kl_bound": best_of_n_kl_bound(n),
                "prompts": len(mine),
                "mean_score": sum(row["chosen_score"] for row in mine) / len(mine) if mine else None,
                "judgments": int(judged),
                "win_rate": wins / judged if judged else None,
                "low": low if judged else None,
                "high": high if judged else None,
            }
        )
    return {
        "rows": rows,
        "rising_until": rising_until([row["n"] for row in rows], [row["win_rate"] for row in rows]),
    }


def audits_of_project(*, project: Project, limit: int = 20) -> list[ModelAudit]:
    return list(
        ModelAudit.objects.filter(project=project)
        .select_related("reward_model", "system")
        .defer("log")
        .order_by("-created_at", "-id")[:limit]
    )
