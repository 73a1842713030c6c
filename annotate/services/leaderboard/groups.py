"""Annotator groups (membership attributes such as ``locale=fr-FR``): who is in which, and one leaderboard per
group."""

from __future__ import annotations

from typing import Any

import numpy as np

from annotate.models import Membership, Project
from annotate.services.leaderboard.battles import Battles
from annotate.stats.ratings import ratings_by_group


def annotator_groups(*, project: Project) -> dict[str, set[int]]:
    """``"key=value"`` -> the ids of members whose attributes say so (e.g. ``"locale=fr-FR"``)."""
    groups: dict[str, set[int]] = {}
    for user_id, attributes in Membership.objects.filter(project=project).values_list(
        "user_id", "attributes"
    ):
        if isinstance(attributes, dict):
            for key, value in attributes.items():
                groups.setdefault(f"{key}={value}", set()).add(user_id)
    return groups


def boards_by_group(
    battles: Battles,
    names: list[str],
    key: str,
    groups: dict[str, set[int]],
    anchor: int | None,
    project: Project,
) -> dict:
    """One Bradley-Terry leaderboard per value of the annotator attribute ``key``, fitted independently, so
    leaderboards side by side show whose preferences a ranking reflects."""
    label_of_annotator: dict[int, str] = {}
    for name, members in groups.items():
        attribute, _, value = name.partition("=")
        if attribute == key:
            for user_id in members:
                label_of_annotator[user_id] = value
    labels = np.array(
        [label_of_annotator.get(int(user), "") for user in battles.annotator.tolist()], dtype=object
    )
    labelled = labels != ""
    result: dict[str, Any] = {"key": key, "groups": []}
    if not labelled.any():
        return result
    fits = ratings_by_group(
        labels[labelled].astype(str),
        battles.model_a[labelled],
        battles.model_b[labelled],
        battles.outcome[labelled],
        len(names),
        systems=names,
        both_bad_as_tie=project.both_bad_as_tie,
        anchor=anchor,
        interval="sandwich",
    )
    for value, fit in fits.items():
        in_group = labelled & (labels == value)
        result["groups"].append(
            {
                "group": f"{key}={value}",
                "judgments": int(in_group.sum()),
                "annotators": len(set(battles.annotator[in_group].tolist())),
                "ratings": {
                    str(system): {
                        "rating": round(float(fit.rating[index]), 2),
                        "lower": round(float(fit.lower[index]), 2),
                        "upper": round(float(fit.upper[index]), 2),
                        "rank": int(fit.rank[index]),
                        "battles": int(fit.battles[index]),
                    }
                    for index, system in enumerate(fit.systems)
                },
                "warnings": list(fit.warnings),
            }
        )
    return result
