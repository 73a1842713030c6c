"""Per-annotator figures (agreement with the others, gold accuracy, position bias, pace, drift) and agreement
within and between groups of annotators (membership attributes)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from annotate.models import Membership, Project
from annotate.services.agreement.coding import BOTH_BAD, TIE, A, B, number, ratio, significant
from annotate.services.judgment_arrays import JudgmentArrays
from annotate.stats import agreement

DRIFT_WINDOW = 50
# Fewer scored judgments than this and "recent agreement" is noise, so it is left empty.
DRIFT_MIN_OUTCOMES = 10


def annotator_table(
    *,
    rows: JudgmentArrays,
    units: NDArray[np.int64],
    coders: NDArray[np.int64],
    names: list[str],
    annotator_ids: NDArray[np.int64],
    coder_count: int,
) -> list[dict[str, Any]]:
    choice = rows.choice
    judgments = np.bincount(coders, minlength=coder_count)
    # Agreement with the leave-one-out majority, per judgment; summed per annotator here and read in time
    # order for drift.
    outcomes = agreement.majority_agreement_outcomes(units=units, coders=coders, values=choice)
    scored = ~np.isnan(outcomes)
    agreement_scored = np.bincount(coders[scored], minlength=coder_count)
    agreement_share = ratio(
        np.bincount(coders[scored], weights=outcomes[scored], minlength=coder_count), agreement_scored
    )

    on_gold = ~np.isnan(rows.gold)
    gold_judgments = np.bincount(coders[on_gold], minlength=coder_count)
    gold_correct = np.bincount(
        coders[on_gold], weights=choice[on_gold] == rows.gold[on_gold], minlength=coder_count
    )
    gold_accuracy = ratio(gold_correct, gold_judgments)

    # Choices are stored in A/B terms; the left-shown response is A unless the sides were swapped.
    sided = (choice == A) | (choice == B)
    chose_left = (choice[sided] == A) != rows.shown_swapped[sided]
    bias = agreement.position_bias(coders=coders[sided], chose_left=chose_left, coder_count=coder_count)

    ties = np.bincount(coders, weights=choice == TIE, minlength=coder_count)
    both_bad = np.bincount(coders, weights=choice == BOTH_BAD, minlength=coder_count)
    days = np.floor(rows.created / 86400.0).astype(np.int64) if rows.created.size else np.empty(0, np.int64)
    day_span = int(days.max() - days.min() + 1) if days.size else 1
    active_days = np.bincount(
        np.unique(coders * day_span + (days - (days.min() if days.size else 0))) // day_span,
        minlength=coder_count,
    )
    median_seconds, recent = _timing_and_recent_agreement(
        coders=coders,
        outcomes=outcomes,
        duration_ms=rows.duration_ms,
        created=rows.created,
        coder_count=coder_count,
    )

    table = []
    for coder in range(coder_count):
        share = number(agreement_share[coder])
        recent_share = number(recent[coder])
        table.append(
            {
                "id": int(annotator_ids[coder]),
                "username": names[coder],
                "judgments": int(judgments[coder]),
                "agreement": share,
                "agreement_scored": int(agreement_scored[coder]),
                "gold_accuracy": number(gold_accuracy[coder]),
                "gold_judgments": int(gold_judgments[coder]),
                "left_share": number(bias.left_share[coder]),
                "sided_judgments": int(bias.judgments[coder]),
                "position_p_value": significant(bias.p_value[coder]),
                "tie_rate": number(ties[coder] / judgments[coder]),
                "both_bad_rate": number(both_bad[coder] / judgments[coder]),
                "median_seconds": number(median_seconds[coder], 1),
                "active_days": int(active_days[coder]),
                "per_day": number(judgments[coder] / max(int(active_days[coder]), 1), 1),
                "recent_agreement": recent_share,
                "drift": None if recent_share is None or share is None else number(recent_share - share),
            }
        )
    table.sort(key=lambda row: row["username"].lower())
    return table


def _timing_and_recent_agreement(
    *,
    coders: NDArray[np.int64],
    outcomes: NDArray[np.float64],
    duration_ms: NDArray[np.float64],
    created: NDArray[np.float64],
    coder_count: int,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per annotator: median seconds per judgment, and agreement with the others' majority over their last
    ``DRIFT_WINDOW`` scored judgments (NaN with fewer than ``DRIFT_MIN_OUTCOMES``)."""
    order = np.lexsort((created, coders))
    bounds = np.searchsorted(coders[order], np.arange(coder_count + 1))
    ordered_seconds = duration_ms[order] / 1000.0
    ordered_outcomes = outcomes[order]
    median_seconds = np.full(coder_count, np.nan)
    recent = np.full(coder_count, np.nan)
    # A loop over annotators (hundreds at most), never over judgments.
    for coder in range(coder_count):
        seconds = ordered_seconds[bounds[coder] : bounds[coder + 1]]
        seconds = seconds[~np.isnan(seconds)]
        if seconds.size:
            median_seconds[coder] = np.median(seconds)
        own = ordered_outcomes[bounds[coder] : bounds[coder + 1]]
        own = own[~np.isnan(own)]
        if own.size:
            recent[coder] = agreement.rolling_agreement(
                own, window=DRIFT_WINDOW, min_outcomes=min(DRIFT_WINDOW, DRIFT_MIN_OUTCOMES)
            )[-1]
    return median_seconds, recent


def attribute_groups(
    *,
    project: Project,
    units: NDArray[np.int64],
    coders: NDArray[np.int64],
    choice: NDArray[np.float64],
    annotator_ids: NDArray[np.int64],
) -> list[dict[str, Any]]:
    """For each membership attribute with two or more values: alpha within each value's annotators and
    between them. Annotators without the attribute are left out of that attribute's figures."""
    attributes = dict(
        Membership.objects.filter(project=project, user_id__in=annotator_ids.tolist()).values_list(
            "user_id", "attributes"
        )
    )
    keys = sorted({str(key) for values in attributes.values() if isinstance(values, dict) for key in values})
    results = []
    for key in keys:
        value_of_coder = [
            str(attributes.get(int(annotator_id), {}).get(key, "")).strip() for annotator_id in annotator_ids
        ]
        distinct = sorted({value for value in value_of_coder if value})
        if len(distinct) < 2:
            continue
        group_index = {value: index for index, value in enumerate(distinct)}
        coder_groups = np.array([group_index.get(value, -1) for value in value_of_coder], dtype=np.int64)
        member = coder_groups[coders] >= 0
        member_coders = coders[member]
        result = agreement.group_alpha(
            units=units[member],
            coders=member_coders,
            values=choice[member],
            coder_groups=np.maximum(coder_groups, 0),
        )
        judgments = np.bincount(coder_groups[member_coders], minlength=len(distinct))
        members = np.bincount(coder_groups[coder_groups >= 0], minlength=len(distinct))
        results.append(
            {
                "attribute": key,
                "between": number(result.between),
                "groups": [
                    {
                        "value": value,
                        "alpha": number(result.within[index]),
                        "annotators": int(members[index]),
                        "judgments": int(judgments[index]),
                    }
                    for index, value in enumerate(distinct)
                ],
            }
        )
    return results
