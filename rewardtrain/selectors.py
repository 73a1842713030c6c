"""Reads over stored reward-model scores for the pages: the leaderboard's reward model view, the active model's
agreement with the human majority on the pairs its training run held out, the length-bias report and the drift
between model versions. The math is in ``rewardtrain.stats``; these only turn rows into arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
from django.db.models import Avg, Count, Q
from numpy.typing import NDArray

from annotate.models import Judgment, Pair
from annotate.services.exports import export_split_pair_ids
from rewardtrain.models import ResponseScore, RewardModel, SearchTrial, TrainingRun
from rewardtrain.stats import length_bias, majority_agreement, score_drift
from rewardtrain.training.search import SearchConfig


def reward_model_system_means(*, reward_model: RewardModel) -> list[dict[str, Any]]:
    """Mean raw score per system (the leaderboard's reward model view), best first."""
    rows = (
        ResponseScore.objects.filter(reward_model=reward_model)
        .values("response__system")
        .annotate(mean=Avg("score"), count=Count("id"))
        .order_by("-mean")
    )
    return [{"system": row["response__system"], "mean": row["mean"], "count": row["count"]} for row in rows]


def _decided_pairs(
    reward_model: RewardModel, only: NDArray[np.int64] | None = None
) -> list[tuple[int, int, int]]:
    """(response_a, response_b, majority) of the project's pairs with a strict human majority (+1 A, -1 B);
    of the pairs in ``only`` (sorted ids) when given."""
    votes = (
        Judgment.objects.filter(pair__project_id=reward_model.project_id, origin=Judgment.Origin.HUMAN)
        .values("pair_id")
        .annotate(a=Count("id", filter=Q(choice="a")), b=Count("id", filter=Q(choice="b")))
    )
    majority = {row["pair_id"]: (1 if row["a"] > row["b"] else -1) for row in votes if row["a"] != row["b"]}
    if only is not None:
        decided = np.fromiter(majority, dtype=np.int64, count=len(majority))
        kept = decided[np.isin(decided, only, assume_unique=True)].tolist()
        majority = {pair: majority[pair] for pair in kept}
    pairs = Pair.objects.filter(pk__in=list(majority)).values_list("id", "response_a_id", "response_b_id")
    return [(a, b, majority[pair]) for pair, a, b in pairs]


def reward_model_held_out_pairs(*, reward_model: RewardModel) -> NDArray[np.int64] | None:
    """Ids of the pairs held out from the model's training run: the test split of the export it trained on.
    None when the run recorded no split (no export, or one that cannot say which pairs it held out)."""
    run = TrainingRun.objects.select_related("export").get(pk=reward_model.run_id)
    if run.export is None:
        return None
    return export_split_pair_ids(export=run.export, split="test")


def reward_model_agreement(*, reward_model: RewardModel) -> dict[str, Any]:
    """Share of the pairs held out from the model's training run whose human majority (today's votes) the
    model's score difference agrees with: pairs with a strict majority whose two responses it scored.

    ``held_out`` is how many pairs the run held out, or None when it recorded no split: then nothing is
    counted, since any other pair may be one it trained on."""
    held_out = reward_model_held_out_pairs(reward_model=reward_model)
    if held_out is None or not held_out.size:
        return {"count": 0, "correct": 0, "accuracy": None, "held_out": None if held_out is None else 0}
    scores = dict(ResponseScore.objects.filter(reward_model=reward_model).values_list("response_id", "score"))
    rows = [
        (scores[a], scores[b], m)
        for a, b, m in _decided_pairs(reward_model, only=held_out)
        if a in scores and b in scores
    ]
    if not rows:
        return {"count": 0, "correct": 0, "accuracy": None, "held_out": int(held_out.size)}
    a, b, m = (np.array(column) for column in zip(*rows, strict=True))
    return {**majority_agreement(a, b, m), "held_out": int(held_out.size)}


def reward_model_length_bias(*, reward_model: RewardModel) -> dict[str, Any]:
    rows = list(
        ResponseScore.objects.filter(reward_model=reward_model).values_list(
            "response_id", "score", "response__content"
        )
    )
    scores = {response: score for response, score, _ in rows}
    lengths = {response: len(content) for response, _, content in rows}
    chosen, rejected = [], []
    for a, b, m in _decided_pairs(reward_model):
        if a in scores and b in scores:
            chosen.append(a if m > 0 else b)
            rejected.append(b if m > 0 else a)
    return length_bias(
        np.array([score for _, score, _ in rows]),
        np.array([lengths[r] for r, _, _ in rows]),
        np.array([scores[r] for r in chosen]),
        np.array([scores[r] for r in rejected]),
        np.array([lengths[r] for r in chosen]),
        np.array([lengths[r] for r in rejected]),
    )


def reward_model_drift(*, before: RewardModel, after: RewardModel) -> dict[str, Any]:
    """Drift between two versions over the responses both scored."""
    first = dict(ResponseScore.objects.filter(reward_model=before).values_list("response_id", "score"))
    second = dict(ResponseScore.objects.filter(reward_model=after).values_list("response_id", "score"))
    shared = sorted(set(first) & set(second))
    return score_drift(np.array([first[r] for r in shared]), np.array([second[r] for r in shared]))


def reward_model_active(*, project_id: int) -> RewardModel | None:
    return RewardModel.objects.filter(project_id=project_id, is_active=True).first()


def reward_model_previous(*, reward_model: RewardModel) -> RewardModel | None:
    """The project's latest version before this one (what the drift report compares with)."""
    return (
        RewardModel.objects.filter(project_id=reward_model.project_id, version__lt=reward_model.version)
        .order_by("-version")
        .first()
    )


def reward_model_has_scores(*, reward_model: RewardModel) -> bool:
    return ResponseScore.objects.filter(reward_model=reward_model).exists()


def pair_model_predictions(*, reward_model: RewardModel, pairs: list[Pair]) -> dict[int, dict[str, Any]]:
    """For leads and engineers only: ``{pair id: {score_a, score_b, prefers}}`` of the pairs whose two
    responses the model scored; ``prefers`` is "a", "b" or "tie"."""
    responses = {pair.response_a_id for pair in pairs} | {pair.response_b_id for pair in pairs}
    scores = dict(
        ResponseScore.objects.filter(reward_model=reward_model, response_id__in=responses).values_list(
            "response_id", "score"
        )
    )
    predictions = {}
    for pair in pairs:
        if pair.response_a_id in scores and pair.response_b_id in scores:
            score_a, score_b = scores[pair.response_a_id], scores[pair.response_b_id]
            prefers = "a" if score_a > score_b else "b" if score_b > score_a else "tie"
            predictions[pair.pk] = {"score_a": score_a, "score_b": score_b, "prefers": prefers}
    return predictions


SEARCH_LABELS = {
    "learning_rate": "Learning rate",
    "num_epochs": "Epochs",
    "warmup_ratio": "Warm-up",
    "weight_decay": "Weight decay",
    "center_rewards_coefficient": "Centring",
    "lora_r": "LoRA rank",
}


def _shown(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _trial_figure(trial: SearchTrial, key: str) -> float | None:
    """The trial's final validation figure, or its latest evaluation's when it did not finish."""
    final = ((trial.result or {}).get("evaluation") or {}).get(key)
    if final is not None:
        return final
    figures = [entry[key] for entry in trial.intermediate if entry.get(key) is not None]
    return figures[-1] if figures else None


def training_run_trials(*, run: TrainingRun) -> dict[str, Any] | None:
    """A search run's trials for its page: the searched dimensions (in the space's order), a row per trial,
    the best complete one and the ensemble's members (``ensemble_top_k``); None for a run that is not a
    search."""
    if run.mode != TrainingRun.Mode.SEARCH:
        return None
    search = SearchConfig.from_dict(run.search)
    dimensions = [
        {"name": dimension.name, "label": SEARCH_LABELS[dimension.name], "log": dimension.log}
        for dimension in search.dimensions(use_lora=bool(run.hyperparameters.get("use_lora")))
    ]
    trials = list(SearchTrial.objects.filter(run=run).order_by("number"))
    best = (run.evaluation or {}).get("search", {}).get("best_trial")
    members = (run.evaluation or {}).get("search", {}).get("ensemble_trials") or []
    rows = [
        {
            "number": trial.number,
            "status": trial.status,
            "outcome": trial.outcome,
            "params": {dimension["name"]: trial.params.get(dimension["name"]) for dimension in dimensions},
            "cells": [
                {"label": dimension["label"], "shown": _shown(trial.params.get(dimension["name"]))}
                for dimension in dimensions
            ],
            "accuracy": _trial_figure(trial, "accuracy"),
            "loss": _trial_figure(trial, "loss"),
            "step": trial.step,
            "total_steps": trial.total_steps,
            "pruned_at_step": trial.pruned_at_step,
            "worker": trial.worker.split(" pid ")[0],
            "error": trial.error,
            "best": trial.number == best,
            "member": trial.number in members,
        }
        for trial in trials
    ]
    finished = sum(trial.is_finished for trial in trials)
    return {
        "search": search.to_dict(),
        "dimensions": dimensions,
        "trials": rows,
        "finished": finished,
        "percent": round(100 * finished / search.trials) if search.trials else 0,
        "best": best,
        "members": members,
    }
