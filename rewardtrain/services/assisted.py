"""Reward-model-assisted annotation: the "uncertain_model" assignment strategy, and the model's predictions
for leads.

``model_pair_priorities_refresh`` reads the active model's stored scores (batch scoring) and writes
``Pair.priority`` through ``annotate.services.selection.pair_priorities_write``, the writer of the
"uncertain_systems" strategy too: -|r_a - r_b| so the least certain pairs are handed out first (for an
ensemble, the margin in units of its members' disagreement and the calibrated temperature, so pairs the
members disagree on come first), and pairs whose first human votes go against the model at the top. Pairs with an unscored response come after every
scored one; full pairs last. Annotators never see scores: only this module and the lead/engineer API read them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from django.db.models import Count, Q

from annotate.models import Judgment, Pair, Project
from annotate.services.selection import pair_priorities_write
from rewardtrain.models import ResponseScore, RewardModel
from rewardtrain.stats import model_uncertainty_priorities, preference_probability

STRATEGY = "uncertain_model"
UNSCORED_PRIORITY = -1e6
FULL_PRIORITY = -1e9


def _pair_rows(project: Project, reward_model: RewardModel):
    stored = ResponseScore.objects.filter(reward_model=reward_model).values_list(
        "response_id", "score", "uncertainty"
    )
    scores, uncertainties = {}, {}
    for response_id, score, uncertainty in stored:
        scores[response_id] = score
        uncertainties[response_id] = np.nan if uncertainty is None else uncertainty
    votes = (
        Judgment.objects.filter(pair__project=project, origin=Judgment.Origin.HUMAN)
        .values("pair_id")
        .annotate(a=Count("id", filter=Q(choice="a")), b=Count("id", filter=Q(choice="b")))
    )
    balance = {row["pair_id"]: row["a"] - row["b"] for row in votes}
    pairs = list(
        Pair.objects.filter(project=project)
        .order_by("id")
        .values_list("id", "response_a_id", "response_b_id", "slots_taken")
    )
    pair_id = np.array([p[0] for p in pairs], dtype=np.int64)
    score_a = np.array([scores.get(p[1], np.nan) for p in pairs], dtype=np.float64)
    score_b = np.array([scores.get(p[2], np.nan) for p in pairs], dtype=np.float64)
    vote_balance = np.array([balance.get(p[0], 0) for p in pairs], dtype=np.float64)
    slots = np.array([p[3] for p in pairs], dtype=np.int64)
    uncertainty_a = np.array([uncertainties.get(p[1], np.nan) for p in pairs], dtype=np.float64)
    uncertainty_b = np.array([uncertainties.get(p[2], np.nan) for p in pairs], dtype=np.float64)
    return pair_id, score_a, score_b, vote_balance, slots, uncertainty_a, uncertainty_b


def _temperature(reward_model: RewardModel) -> float:
    return float((reward_model.metrics or {}).get("temperature") or 1.0)


def model_pair_priorities_refresh(*, project: Project) -> int:
    """Recompute ``Pair.priority`` of a project whose strategy is "uncertain_model" from its active model's
    stored scores (others, and projects without an active model, are left alone). Returns the pairs changed."""
    if project.assignment_strategy != STRATEGY:
        return 0
    reward_model = RewardModel.objects.filter(project=project, is_active=True).first()
    if reward_model is None:
        return 0
    pair_id, score_a, score_b, balance, slots, uncertainty_a, uncertainty_b = _pair_rows(
        project, reward_model
    )
    if not pair_id.size:
        return 0
    ensemble = not (np.isnan(uncertainty_a).all() and np.isnan(uncertainty_b).all())
    priority = model_uncertainty_priorities(
        score_a,
        score_b,
        balance,
        uncertainty_a=uncertainty_a if ensemble else None,
        uncertainty_b=uncertainty_b if ensemble else None,
        temperature=_temperature(reward_model),
    )
    priority = np.where(np.isnan(priority), UNSCORED_PRIORITY, priority)
    priority = np.where(slots >= project.overlap, FULL_PRIORITY, priority)
    return pair_priorities_write(pair_ids=pair_id, priorities=priority)


def model_priorities_refresh_due() -> list[int]:
    """For the beat task: refresh every "uncertain_model" project (cheap: one pass over its pairs)."""
    changed = []
    for project in Project.objects.filter(assignment_strategy=STRATEGY):
        if model_pair_priorities_refresh(project=project):
            changed.append(project.pk)
    return changed


def pair_predictions(
    *, project: Project, reward_model: RewardModel, limit: int = 200
) -> list[dict[str, Any]]:
    """For leads and engineers only: the model's view of the pairs, least certain first — scores, the
    calibrated probability that A is preferred (the model's temperature), the human vote balance and whether
    they disagree."""
    pair_id, score_a, score_b, balance, _slots, _uncertainty_a, _uncertainty_b = _pair_rows(
        project, reward_model
    )
    temperature = _temperature(reward_model)
    scored = ~(np.isnan(score_a) | np.isnan(score_b))
    order = np.flatnonzero(scored)[np.argsort(np.abs(score_a - score_b)[scored], kind="stable")][:limit]
    rows = []
    for index in order:
        difference = score_a[index] - score_b[index]
        rows.append(
            {
                "pair": int(pair_id[index]),
                "score_a": float(score_a[index]),
                "score_b": float(score_b[index]),
                "probability_a": float(preference_probability(difference, temperature)),
                "vote_balance": int(balance[index]),
                "disagrees": bool(balance[index] != 0 and np.sign(balance[index]) != np.sign(difference)),
            }
        )
    return rows
