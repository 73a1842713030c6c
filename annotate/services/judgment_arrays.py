"""A project's judgments as numpy arrays, read in bulk through ``palate.db.read_arrays``.

Choices are coded by their position in ``CHOICES`` (a, b, tie, both_bad as 0..3), the codes of
``annotate.stats.ratings.Outcome`` and ``annotate.stats.aggregation``; the database sends the text and the
reader codes it, so the coding lives here and nowhere in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.db.models.fields.json import KeyTextTransform
from numpy.typing import NDArray

from annotate.models import Choice, Judgment, Project
from palate.db import read_arrays

CHOICES: tuple[str, ...] = tuple(Choice.values)


def as_float(codes: NDArray[np.int64]) -> NDArray[np.float64]:
    """Codes as floats, with NaN for "none" (-1), the form the statistics take."""
    values = codes.astype(np.float64)
    values[codes < 0] = np.nan
    return values


@dataclass(frozen=True, slots=True)
class JudgmentArrays:
    """One entry per human judgment of a project, aligned across fields. NaN means "not given"."""

    pair_ids: NDArray[np.int64]
    annotator_ids: NDArray[np.int64]
    choice: NDArray[np.float64]
    strength: NDArray[np.float64]
    shown_swapped: NDArray[np.bool_]
    duration_ms: NDArray[np.float64]
    created: NDArray[np.float64]
    gold: NDArray[np.float64]
    criteria: dict[str, NDArray[np.float64]]


def judgment_arrays(*, project: Project) -> JudgmentArrays:
    """Every human judgment of the project, in no particular order, with ``created`` in Unix seconds."""
    criteria = [str(name) for name in project.criteria or []]
    criterion_columns = {f"criterion_{index}": name for index, name in enumerate(criteria)}
    queryset = (
        Judgment.objects.filter(pair__project=project, origin=Judgment.Origin.HUMAN)
        .annotate(
            **{column: KeyTextTransform(name, "criteria") for column, name in criterion_columns.items()}
        )
        .order_by()
        .values_list(
            "pair_id",
            "annotator_id",
            "choice",
            "strength",
            "shown_swapped",
            "duration_ms",
            "created_at",
            "pair__gold_choice",
            *criterion_columns,
        )
    )
    columns = read_arrays(
        queryset,
        {
            "pair_id": "int",
            "annotator_id": "int",
            "choice": CHOICES,
            "strength": "float",
            "shown_swapped": "bool",
            "duration_ms": "float",
            "created_at": "seconds",
            "gold": CHOICES,
            **dict.fromkeys(criterion_columns, CHOICES),
        },
    )
    return JudgmentArrays(
        pair_ids=columns["pair_id"],
        annotator_ids=columns["annotator_id"],
        choice=as_float(columns["choice"]),
        strength=columns["strength"],
        shown_swapped=columns["shown_swapped"],
        duration_ms=columns["duration_ms"],
        created=columns["created_at"],
        gold=as_float(columns["gold"]),
        criteria={name: as_float(columns[column]) for column, name in criterion_columns.items()},
    )
