"""The bulk reader (palate.db.read_arrays): what it returns is what the ORM reads, edge cases included."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import transaction
from django.db.models.fields.json import KeyTextTransform

from annotate.models import Judgment, Pair, Project
from annotate.services.judgment_arrays import CHOICES, judgment_arrays
from annotate.services.leaderboard import project_battles
from palate.db import read_arrays
from tests.factories import JudgmentFactory, PairFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

COLUMNS = {
    "id": "int",
    "annotator": "float",
    "choice": CHOICES,
    "strength": "float",
    "shown_swapped": "bool",
    "created": "seconds",
    "helpfulness": CHOICES,
}


def _judgments(project: Project):
    return (
        Judgment.objects.filter(pair__project=project)
        .order_by("id")
        .values_list("id", "annotator_id", "choice", "strength", "shown_swapped", "created_at", "criteria")
    )


def _read(project: Project) -> dict[str, np.ndarray]:
    queryset = (
        Judgment.objects.filter(pair__project=project)
        .annotate(helpfulness=KeyTextTransform("helpfulness", "criteria"))
        .order_by("id")
        .values_list("id", "annotator_id", "choice", "strength", "shown_swapped", "created_at", "helpfulness")
    )
    return read_arrays(queryset, COLUMNS)


@pytest.fixture
def project() -> Project:
    project = ProjectFactory(criteria=["helpfulness"], strength_scale=3)
    for index, (choice, strength, criteria) in enumerate(
        [
            ("a", 2, {"helpfulness": "b"}),
            ("b", None, {}),  # no strength, no criterion
            ("tie", None, {"helpfulness": "tie"}),
            ("both_bad", 1, {"helpfulness": "not a choice"}),
        ]
    ):
        pair = PairFactory(prompt__project=project, project=project)
        JudgmentFactory(
            pair=pair,
            annotator=UserFactory(),
            choice=choice,
            strength=strength,
            criteria=criteria,
            shown_swapped=bool(index % 2),
        )
    imported = PairFactory(prompt__project=project, project=project)
    JudgmentFactory(pair=imported, annotator=None, origin=Judgment.Origin.IMPORTED, choice="b")
    return project


def test_it_returns_what_the_orm_reads_with_nulls_as_nan_and_unknown_labels_as_minus_one(project):
    columns = _read(project)
    rows = list(_judgments(project))

    def code(value):
        return CHOICES.index(value) if value in CHOICES else -1

    np.testing.assert_array_equal(columns["id"], [row[0] for row in rows])
    np.testing.assert_array_equal(
        columns["annotator"], [np.nan if row[1] is None else row[1] for row in rows]
    )
    np.testing.assert_array_equal(columns["choice"], [code(row[2]) for row in rows])
    np.testing.assert_array_equal(columns["strength"], [np.nan if row[3] is None else row[3] for row in rows])
    np.testing.assert_array_equal(columns["shown_swapped"], [row[4] for row in rows])
    np.testing.assert_allclose(columns["created"], [row[5].timestamp() for row in rows], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(columns["helpfulness"], [code(row[6].get("helpfulness")) for row in rows])
    assert columns["id"].dtype == np.int64 and columns["choice"].dtype == np.int64
    assert columns["shown_swapped"].dtype == np.bool_ and columns["strength"].dtype == np.float64


def test_an_empty_result_gives_empty_arrays_of_the_declared_types():
    columns = read_arrays(
        Judgment.objects.filter(pk__lt=0).values_list("id", "choice", "strength", "created_at"),
        {"id": "int", "choice": CHOICES, "strength": "float", "created": "seconds"},
    )
    assert [array.size for array in columns.values()] == [0, 0, 0, 0]
    assert [array.dtype for array in columns.values()] == [np.int64, np.int64, np.float64, np.float64]


def test_an_empty_project_reads_as_no_judgments_and_no_battles():
    empty = ProjectFactory(criteria=["helpfulness"])
    rows = judgment_arrays(project=empty)
    assert rows.pair_ids.size == 0 and rows.choice.dtype == np.float64
    assert rows.criteria["helpfulness"].size == 0
    battles = project_battles(project=empty)
    assert battles.count == 0 and battles.skipped == {}


def test_a_null_in_a_column_declared_int_is_an_error_not_a_silent_zero(project):
    queryset = Judgment.objects.filter(pair__project=project).values_list("id", "annotator_id")
    with pytest.raises(ValueError, match="annotator"):
        read_arrays(queryset, {"id": "int", "annotator": "int"})


def test_text_that_needs_quoting_is_coded_exactly():
    project = ProjectFactory()
    names = ("comma, inside", 'a "quoted" name', "two\nlines", "")
    pairs = []
    for name in names:
        pair = PairFactory(prompt__project=project, project=project)
        pair.response_a.system = name
        pair.response_a.save(update_fields=["system"])
        pairs.append(pair.pk)
    columns = read_arrays(
        Pair.objects.filter(pk__in=pairs).order_by("id").values_list("id", "response_a__system"),
        {"id": "int", "system": names[:3]},
    )
    np.testing.assert_array_equal(columns["id"], pairs)
    np.testing.assert_array_equal(columns["system"], [0, 1, 2, -1])


def test_it_reads_inside_the_callers_transaction():
    project = ProjectFactory()
    with transaction.atomic():
        JudgmentFactory(pair=PairFactory(prompt__project=project, project=project))
        rows = judgment_arrays(project=project)
    assert rows.pair_ids.size == 1


def test_battles_equal_the_orm_per_criterion_and_leave_out_what_cannot_count(project):
    battles = project_battles(project=project, criterion="helpfulness")
    systems = battles.systems
    expected = []
    for judgment in (
        Judgment.objects.filter(pair__project=project, origin="human")
        .select_related("pair__response_a", "pair__response_b")
        .order_by("id")
    ):
        vote = judgment.criteria.get("helpfulness")
        a, b = judgment.pair.response_a.system, judgment.pair.response_b.system
        if vote in CHOICES and a != b:
            expected.append((judgment.pk, systems.index(a), systems.index(b), CHOICES.index(vote)))
    got = list(
        zip(
            battles.judgment_id.tolist(),
            battles.model_a.tolist(),
            battles.model_b.tolist(),
            battles.outcome.tolist(),
            strict=True,
        )
    )
    assert got == expected
    assert battles.skipped.get("no_vote", 0) + battles.skipped.get("same_system", 0) == 4 - len(expected)
