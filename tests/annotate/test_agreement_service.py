"""The agreement service on a crafted project whose figures can be checked by hand, snapshot refreshes and
the Celery tasks that drive them."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from annotate.models import AgreementSnapshot, Judgment, Project
from annotate.selectors import agreement_projects_changed, agreement_snapshot_latest
from annotate.services.agreement import (
    agreement_figures,
    agreement_snapshot_compute,
    agreement_snapshot_refresh,
    agreement_training_gate,
    judgment_arrays,
    signed_strength,
    timeline,
)
from annotate.stats import agreement
from annotate.tasks import agreement_refresh_all, agreement_refresh_project
from palate.celery import app
from tests.annotate.quality_data import GOLD_PAIRS, ORDINARY_PAIRS, Crafted, crafted_project, judge
from tests.factories import PairFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

CODES = {"a": 0.0, "b": 1.0, "tie": 2.0, "both_bad": 3.0}


@pytest.fixture
def crafted() -> Crafted:
    return crafted_project()


def long_form(project: Project) -> tuple[np.ndarray, np.ndarray, list[tuple]]:
    """Units and coders built independently of the service, from ORM rows, plus the rows."""
    rows = list(
        Judgment.objects.filter(pair__project=project, origin="human")
        .order_by("id")
        .values_list("pair_id", "annotator_id", "choice", "strength", "criteria")
    )
    _, units = np.unique([row[0] for row in rows], return_inverse=True)
    _, coders = np.unique([row[1] for row in rows], return_inverse=True)
    return units, coders, rows


def by_name(data: dict, name: str) -> dict:
    return next(row for row in data["annotators"] if row["username"] == name)


# The figures -------------------------------------------------------------------------------------------


def test_alpha_equals_the_math_module_on_the_same_arrays(crafted):
    units, coders, rows = long_form(crafted.project)
    nominal = np.array([CODES[row[2]] for row in rows])
    signed = np.array(
        [{"a": strength, "b": -(strength or 0), "tie": 0}[choice] for _, _, choice, strength, _ in rows]
    )
    helpfulness = np.array([CODES[row[4]["helpfulness"]] for row in rows])

    data = agreement_snapshot_compute(project=crafted.project)

    for level, values in (("nominal", nominal), ("ordinal", signed), ("interval", signed)):
        expected = agreement.krippendorff_alpha(units=units, coders=coders, values=values, level=level)
        assert data["alpha"][level]["estimate"] == pytest.approx(expected, abs=1e-6), level
        assert data["alpha"][level]["low"] <= data["alpha"][level]["estimate"] <= data["alpha"][level]["high"]
    assert data["criteria"] == [
        {
            "name": "helpfulness",
            "alpha": pytest.approx(
                agreement.krippendorff_alpha(units=units, coders=coders, values=helpfulness), abs=1e-6
            ),
            "judgments": len(rows),
        }
    ]
    assert data["percent_agreement"] == pytest.approx(
        agreement.percent_agreement(units=units, coders=coders, values=nominal), abs=1e-6
    )
    # Overlap 3 is "full": no crafted pair has exactly three judgments, so Fleiss' kappa has no pairs.
    assert data["fleiss"] == {"kappa": None, "pairs": 0, "raters": 3}


def test_signed_strength_maps_a_to_plus_b_to_minus_tie_to_zero_and_drops_both_bad():
    choice = np.array([0.0, 1.0, 2.0, 3.0, 0.0])
    strength = np.array([2.0, 3.0, np.nan, np.nan, np.nan])

    signed = signed_strength(choice=choice, strength=strength)

    np.testing.assert_array_equal(signed, [2.0, -3.0, 0.0, np.nan, np.nan])


def test_imported_labels_are_left_out(crafted):
    before = agreement_snapshot_compute(project=crafted.project)
    Judgment.objects.filter(origin=Judgment.Origin.IMPORTED).delete()

    after = agreement_snapshot_compute(project=crafted.project)

    assert (
        before["summary"]["judgments"] == after["summary"]["judgments"] == 5 * ORDINARY_PAIRS + 4 * GOLD_PAIRS
    )
    assert before["summary"]["annotators"] == 5
    for section in ("alpha", "criteria", "annotators", "kappa", "contested", "percent_agreement"):
        assert before[section] == after[section], section


def test_a_position_biased_annotator_is_flagged_and_sides_are_de_swapped(crafted):
    data = agreement_figures(
        snapshot=AgreementSnapshot(
            project=crafted.project,
            judgment_count=0,
            data=agreement_snapshot_compute(project=crafted.project),
        ),
        project=crafted.project,
    )

    lefty = by_name(data, "lefty")
    # In A/B terms lefty is half A, half B; de-swapped, every choice was the left-shown response.
    assert lefty["left_share"] == 1.0
    assert lefty["sided_judgments"] == ORDINARY_PAIRS
    assert lefty["position_p_value"] < 1e-6
    assert lefty["flags"] == ["position_bias"]
    for name in ("ann", "ben", "cat"):
        assert 0.3 < by_name(data, name)["left_share"] < 0.7
        assert by_name(data, name)["flags"] == []
    assert any(flag["kind"] == "position_bias" and flag["annotator"] == "lefty" for flag in data["flags"])


def test_de_swapping_counts_the_response_shown_on_the_left():
    project = ProjectFactory()
    user = UserFactory(username="solo")
    layout = [
        ("a", False),
        ("a", True),
        ("b", True),
        ("b", False),
        ("b", True),
        ("tie", True),
        ("both_bad", False),
    ]
    for choice, swapped in layout:
        judge(PairFactory(prompt__project=project), user, choice, None, swapped=swapped, minutes=1)

    row = by_name(agreement_snapshot_compute(project=project), "solo")

    # Left was chosen by (a, not swapped), (b, swapped) and (b, swapped): 3 of the 5 sided choices.
    assert row["sided_judgments"] == 5
    assert row["left_share"] == pytest.approx(0.6)
    assert row["tie_rate"] == pytest.approx(1 / 7, abs=1e-6)
    assert row["both_bad_rate"] == pytest.approx(1 / 7, abs=1e-6)


def test_a_gold_accuracy_breach_is_flagged(crafted):
    data = agreement_snapshot_compute(project=crafted.project)

    guesser = by_name(data, "guesser")
    assert guesser["gold_judgments"] == GOLD_PAIRS
    assert guesser["gold_accuracy"] == pytest.approx(2 / 6, abs=1e-6)
    assert by_name(data, "ann")["gold_accuracy"] == 1.0
    gold_flags = [flag for flag in data["flags"] if flag["kind"] == "gold_accuracy"]
    assert [flag["annotator"] for flag in gold_flags] == ["guesser"]
    assert "33%" in gold_flags[0]["message"]
    assert data["training_gate"]["ok"] is False
    assert len(data["training_gate"]["reasons"]) == len(data["flags"])


def test_the_annotator_table_has_agreement_timing_and_drift(crafted):
    data = agreement_snapshot_compute(project=crafted.project)

    ann = by_name(data, "ann")
    assert ann["judgments"] == ORDINARY_PAIRS + GOLD_PAIRS
    # The careful annotators agree with the majority of the others everywhere it is defined.
    assert ann["agreement"] == 1.0
    assert ann["median_seconds"] == 20.0
    assert ann["active_days"] >= 1
    assert ann["per_day"] == pytest.approx(ann["judgments"] / ann["active_days"], abs=0.1)
    assert ann["recent_agreement"] == 1.0
    assert ann["drift"] == 0.0
    assert by_name(data, "lefty")["agreement"] < 0.7
    assert [row["username"] for row in data["annotators"]] == ["ann", "ben", "cat", "guesser", "lefty"]


def test_contested_pairs_are_those_with_split_votes(crafted):
    data = agreement_snapshot_compute(project=crafted.project)

    contested = data["contested"]
    # Ties (every fifth pair) split the careful annotators from lefty; gold pairs split on the guesser.
    assert contested
    top = contested[0]
    assert top["votes"] == sum(top["counts"].values())
    assert top["entropy"] == max(row["entropy"] for row in contested)
    tie_pair_ids = {pair.pk for index, pair in enumerate(crafted.pairs) if index % 5 == 4}
    assert tie_pair_ids <= {row["pair_id"] for row in contested}
    assert all(row["entropy"] > 0 for row in contested)


def test_kappa_matrix_covers_annotator_pairs_with_ten_shared_pairs(crafted):
    data = agreement_snapshot_compute(project=crafted.project)

    kappa = data["kappa"]
    assert kappa["annotators"] == ["ann", "ben", "cat", "guesser", "lefty"]
    assert kappa["matrix"][0][0] is None
    assert kappa["matrix"][0][1] == 1.0  # ann and ben agree on everything
    assert kappa["shared"][0][1] == ORDINARY_PAIRS + GOLD_PAIRS
    assert kappa["shared"][0][4] == ORDINARY_PAIRS


def test_groups_get_alpha_within_and_between(crafted):
    for name, locale in (("ann", "en"), ("ben", "en"), ("cat", "fr"), ("lefty", "fr")):
        crafted.project.memberships.filter(user__username=name).update(attributes={"locale": locale})

    data = agreement_snapshot_compute(project=crafted.project)

    (group,) = data["groups"]
    assert group["attribute"] == "locale"
    assert [(row["value"], row["annotators"]) for row in group["groups"]] == [("en", 2), ("fr", 2)]
    assert group["groups"][0]["alpha"] == 1.0  # ann and ben agree on everything
    assert group["groups"][1]["alpha"] < 1.0
    assert group["between"] is not None


def test_alpha_over_time_is_cumulative_by_day(crafted):
    early = timezone.now().replace(year=2024, month=1, day=1, hour=12)
    Judgment.objects.update(created_at=early + timedelta(days=3))
    Judgment.objects.filter(pair__in=crafted.pairs[:10]).update(created_at=early)

    over_time = agreement_snapshot_compute(project=crafted.project)["over_time"]

    assert over_time["granularity"] == "day"
    points = over_time["points"]
    assert len(points) == 2
    assert points[-1]["judgments"] == 5 * ORDINARY_PAIRS + 4 * GOLD_PAIRS
    assert points[0]["judgments"] == 5 * 10
    assert (
        points[-1]["alpha"]
        == agreement_snapshot_compute(project=crafted.project)["alpha"]["nominal"]["estimate"]
    )


def test_a_long_timeline_is_thinned_to_evenly_spread_points_ending_with_the_last(crafted, monkeypatch):
    monkeypatch.setattr(timeline, "TIMELINE_MAX_POINTS", 5)
    early = timezone.now().replace(year=2024, month=3, day=1, hour=12)
    for offset, judgment in enumerate(Judgment.objects.filter(origin="human").order_by("id")):
        Judgment.objects.filter(pk=judgment.pk).update(created_at=early + timedelta(days=offset % 40))

    over_time = agreement_snapshot_compute(project=crafted.project)["over_time"]

    assert over_time["granularity"] == "day"
    periods = [point["period"] for point in over_time["points"]]
    assert len(periods) == 5 and periods == sorted(periods)
    assert periods[0] == "2024-03-01" and periods[-1] == "2024-04-09"
    assert over_time["points"][-1]["judgments"] == 5 * ORDINARY_PAIRS + 4 * GOLD_PAIRS


def test_flags_follow_the_current_thresholds(crafted):
    snapshot = agreement_snapshot_refresh(project_id=crafted.project.pk)
    crafted.project.max_position_bias = 1.0
    crafted.project.min_gold_accuracy = 0.3
    crafted.project.target_alpha = 0.0

    figures = agreement_figures(snapshot=snapshot, project=crafted.project)

    assert figures["flags"] == []
    assert figures["training_gate"] == {"ok": True, "reasons": []}
    assert figures["thresholds"]["max_position_bias"] == 1.0


def test_an_empty_project_gives_empty_figures_and_a_closed_gate():
    project = ProjectFactory(strength_scale=2)

    data = agreement_snapshot_compute(project=project)

    assert agreement_snapshot_compute(project=ProjectFactory(strength_scale=0))["alpha"]["interval"] is None

    assert data["summary"]["judgments"] == 0
    assert data["alpha"]["nominal"]["estimate"] is None
    assert data["annotators"] == [] and data["contested"] == [] and data["over_time"]["points"] == []
    assert data["training_gate"]["ok"] is False
    assert [flag["kind"] for flag in data["flags"]] == ["alpha_undefined"]


def test_the_computation_reads_judgments_in_a_fixed_number_of_queries(crafted, django_assert_max_num_queries):
    with django_assert_max_num_queries(6):
        agreement_snapshot_compute(project=crafted.project)


def test_judgment_arrays_equal_what_the_orm_reads(crafted):
    Judgment.objects.filter(annotator=crafted.users["ann"]).update(duration_ms=None)
    rows = judgment_arrays(project=crafted.project)
    judgments = list(
        Judgment.objects.filter(pair__project=crafted.project, origin="human")
        .select_related("pair")
        .order_by("pair_id", "annotator_id")
    )
    order = np.lexsort((rows.annotator_ids, rows.pair_ids))
    codes = {"a": 0.0, "b": 1.0, "tie": 2.0, "both_bad": 3.0}

    def expected(values: list) -> np.ndarray:
        return np.array([np.nan if value is None else value for value in values], dtype=np.float64)

    np.testing.assert_array_equal(rows.pair_ids[order], [judgment.pair_id for judgment in judgments])
    np.testing.assert_array_equal(
        rows.annotator_ids[order], [judgment.annotator_id for judgment in judgments]
    )
    np.testing.assert_array_equal(rows.choice[order], [codes[judgment.choice] for judgment in judgments])
    np.testing.assert_array_equal(
        rows.strength[order], expected([judgment.strength for judgment in judgments])
    )
    np.testing.assert_array_equal(
        rows.shown_swapped[order], [judgment.shown_swapped for judgment in judgments]
    )
    np.testing.assert_array_equal(
        rows.duration_ms[order], expected([judgment.duration_ms for judgment in judgments])
    )
    np.testing.assert_array_equal(
        rows.gold[order], expected([codes.get(judgment.pair.gold_choice) for judgment in judgments])
    )
    np.testing.assert_array_equal(
        rows.criteria["helpfulness"][order],
        expected([codes.get(judgment.criteria.get("helpfulness")) for judgment in judgments]),
    )
    np.testing.assert_allclose(
        rows.created[order], [judgment.created_at.timestamp() for judgment in judgments], rtol=0, atol=1e-6
    )
    assert np.isnan(rows.duration_ms).sum() == ORDINARY_PAIRS + GOLD_PAIRS


def test_judgment_arrays_reads_numbers_only(crafted):
    rows = judgment_arrays(project=crafted.project)

    assert rows.choice.dtype == np.float64 and rows.pair_ids.dtype == np.int64
    assert set(np.unique(rows.choice)) <= {0.0, 1.0, 2.0}
    assert np.count_nonzero(~np.isnan(rows.gold)) == 4 * GOLD_PAIRS
    assert np.isnan(rows.strength[rows.choice == 2.0]).all()
    assert rows.criteria["helpfulness"].size == rows.choice.size


# Snapshots and the training gate -------------------------------------------------------------------------


def test_a_snapshot_is_stored_only_when_judgments_changed(crafted):
    first = agreement_snapshot_refresh(project_id=crafted.project.pk)
    assert first is not None
    assert first.judgment_count == 5 * ORDINARY_PAIRS + 4 * GOLD_PAIRS
    assert agreement_snapshot_refresh(project_id=crafted.project.pk) is None

    # An imported label is not a human judgment: nothing to refresh.
    Judgment.objects.create(pair=crafted.gold[0], annotator=None, origin="imported", choice="a")
    assert agreement_snapshot_refresh(project_id=crafted.project.pk) is None

    # An edit changes updated_at.
    edited = Judgment.objects.filter(annotator=crafted.users["lefty"]).first()
    edited.choice = "tie"
    edited.strength = None
    edited.save()
    second = agreement_snapshot_refresh(project_id=crafted.project.pk)
    assert second is not None and second.judgment_count == first.judgment_count

    # A deletion changes the count.
    Judgment.objects.filter(pk=edited.pk).delete()
    third = agreement_snapshot_refresh(project_id=crafted.project.pk)
    assert third is not None and third.judgment_count == first.judgment_count - 1
    assert agreement_snapshot_latest(project=crafted.project) == third
    assert third.seconds > 0


def test_only_the_latest_snapshots_are_kept(crafted, monkeypatch):
    monkeypatch.setattr("annotate.services.agreement.snapshots.SNAPSHOTS_KEPT", 2)
    for _ in range(4):
        agreement_snapshot_refresh(project_id=crafted.project.pk, force=True)

    assert AgreementSnapshot.objects.filter(project=crafted.project).count() == 2


def test_a_refresh_of_a_missing_project_does_nothing():
    assert agreement_snapshot_refresh(project_id=987654) is None


def test_the_training_gate_refreshes_and_reports_the_breaches(crafted):
    gate = agreement_training_gate(project=crafted.project)

    assert gate["ok"] is False
    assert any("lefty" in reason for reason in gate["reasons"])
    assert any("guesser" in reason for reason in gate["reasons"])
    assert AgreementSnapshot.objects.filter(project=crafted.project).count() == 1


# Tasks -------------------------------------------------------------------------------------------------


@pytest.fixture
def eager_celery():
    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


def test_the_beat_task_refreshes_only_projects_whose_judgments_changed(
    crafted, eager_celery, django_capture_on_commit_callbacks
):
    quiet = ProjectFactory()  # no judgments: nothing to show, nothing to compute
    other = ProjectFactory()
    judge(PairFactory(prompt__project=other), UserFactory(), "a", None, swapped=False, minutes=1)
    assert set(agreement_projects_changed()) == {crafted.project.pk, other.pk}

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        agreement_refresh_all()

    assert len(callbacks) == 2
    assert AgreementSnapshot.objects.filter(project=crafted.project).count() == 1
    assert AgreementSnapshot.objects.filter(project=other).count() == 1
    assert not AgreementSnapshot.objects.filter(project=quiet).exists()
    assert agreement_projects_changed() == []

    judge(crafted.gold[0], crafted.users["lefty"], "b", 1, swapped=False, minutes=0)
    assert agreement_projects_changed() == [crafted.project.pk]


def test_the_project_task_takes_an_id_and_refreshes(crafted):
    agreement_refresh_project(crafted.project.pk)

    assert (
        agreement_snapshot_latest(project=crafted.project).judgment_count
        == 5 * ORDINARY_PAIRS + 4 * GOLD_PAIRS
    )


def test_the_beat_schedule_runs_the_refresh_every_five_minutes(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["agreement-refresh-all"]

    assert entry["task"] == agreement_refresh_all.name == "annotate.agreement_refresh_all"
    assert entry["schedule"] == 300.0
