"""Reading the project's human judgments as battles between systems, in bulk into integer arrays.

Judgments are read by ``palate.db.read_arrays`` (system names and votes coded as indices on the way), so a
million judgments never become a million Python objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from django.db import connection
from django.db.models import F, QuerySet
from django.db.models.fields.json import KeyTextTransform
from numpy.typing import NDArray

from annotate.models import Judgment, Project
from annotate.services.judgment_arrays import CHOICES
from palate.db import read_arrays

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Battles:
    """Human judgments as battles between systems, in the order they were made (judgment id).

    ``systems`` lists every named system among the project's responses (judged or not); the arrays hold
    indices into it. Judgments that cannot count are left out and counted in ``skipped`` by reason.
    """

    systems: list[str]
    judgment_id: IntArray
    model_a: IntArray
    model_b: IntArray
    outcome: IntArray
    annotator: IntArray
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return int(self.judgment_id.size)

    def subset(self, keep: NDArray[np.bool_]) -> Battles:
        return Battles(
            systems=self.systems,
            judgment_id=self.judgment_id[keep],
            model_a=self.model_a[keep],
            model_b=self.model_b[keep],
            outcome=self.outcome[keep],
            annotator=self.annotator[keep],
            skipped=dict(self.skipped),
        )


def project_systems(*, project: Project) -> list[str]:
    """Every named system among the project's responses, sorted."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT r.system FROM annotate_response r JOIN annotate_prompt q ON q.id = r.prompt_id "
            "WHERE q.project_id = %s AND r.system <> ''",
            [project.pk],
        )
        return sorted(name for (name,) in cursor.fetchall())


def _human_judgments(*, project: Project, criterion: str | None, category: str | None) -> QuerySet:
    """The project's human judgments (of prompts in ``category``, when given), each with its ``vote``: the
    overall choice, or the choice on ``criterion``."""
    judgments = Judgment.objects.filter(pair__project=project, origin=Judgment.Origin.HUMAN)
    if category is not None:
        judgments = judgments.filter(pair__prompt__category=category)
    vote = F("choice") if criterion is None else KeyTextTransform(criterion, "criteria")
    return judgments.annotate(vote=vote).order_by()


def usable(
    model_a: IntArray, model_b: IntArray, outcome: IntArray
) -> tuple[NDArray[np.bool_], dict[str, int]]:
    """Which battles can count, and the masks of those that cannot, by reason."""
    no_system = (model_a < 0) | (model_b < 0)
    same_system = ~no_system & (model_a == model_b)
    no_vote = ~no_system & ~same_system & (outcome < 0)
    masks = (("no_system", no_system), ("same_system", same_system), ("no_vote", no_vote))
    return ~(no_system | same_system | no_vote), dict(masks)


def project_battles(
    *,
    project: Project,
    criterion: str | None = None,
    category: str | None = None,
    systems: list[str] | None = None,
) -> Battles:
    """The project's human judgments as battles, optionally on one criterion (``Judgment.criteria[name]``) and
    for prompts of one category. Imported labels are not votes and are never read."""
    systems = project_systems(project=project) if systems is None else systems
    names = tuple(systems)
    judgments = _human_judgments(project=project, criterion=criterion, category=category).values_list(
        "id", "pair__response_a__system", "pair__response_b__system", "vote", "annotator_id"
    )
    columns = read_arrays(
        judgments,
        {"judgment_id": "int", "model_a": names, "model_b": names, "outcome": CHOICES, "annotator": "int"},
    )
    ids = columns["judgment_id"]
    if ids.size > 1 and np.any(ids[1:] < ids[:-1]):
        order = np.argsort(ids, kind="stable")
        columns = {name: values[order] for name, values in columns.items()}
    judgment_id, model_a, model_b, outcome, annotator = columns.values()
    keep, reasons = usable(model_a, model_b, outcome)
    return Battles(
        systems=systems,
        judgment_id=np.ascontiguousarray(judgment_id[keep]),
        model_a=np.ascontiguousarray(model_a[keep]),
        model_b=np.ascontiguousarray(model_b[keep]),
        outcome=np.ascontiguousarray(outcome[keep]),
        annotator=np.ascontiguousarray(annotator[keep]),
        skipped={reason: int(mask.sum()) for reason, mask in reasons.items() if mask.any()},
    )
