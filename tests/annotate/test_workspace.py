"""Assignment and submission: leases, fill order, blindness, validation, idempotency, and concurrency on
PostgreSQL."""

from __future__ import annotations

import importlib
import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest
from django.apps import apps as django_apps
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from annotate.models import Assignment, Judgment, JudgmentRevision, Membership, Pair, ProgressDay
from annotate.services.assignment import (
    NothingLeft,
    assignment_skip,
    leases_expire,
    pair_claim_next,
    pair_next_shown,
    pair_slots_recompute,
)
from annotate.services.judgments import JudgmentInput, judgment_edit, judgment_submit
from annotate.services.members import membership_remove, membership_set
from palate.errors import ApplicationError, Conflict
from tests.factories import JudgmentFactory, MembershipFactory, PairFactory, ProjectFactory, UserFactory
from tests.threads import import_with_a_pause, in_thread

pytestmark = pytest.mark.django_db


def _project_with_pairs(count: int, **config):
    project = ProjectFactory(**config)
    pairs = [PairFactory(prompt__project=project) for _ in range(count)]
    return project, pairs


def _annotator(project, name: str | None = None):
    user = UserFactory(**({"username": name} if name else {}))
    MembershipFactory(user=user, project=project, role=Membership.Role.ANNOTATOR)
    return user


def test_asking_again_returns_the_same_lease_so_a_reload_burns_nothing():
    project, _ = _project_with_pairs(3)
    annotator = _annotator(project)
    first = pair_claim_next(project=project, annotator=annotator)
    again = pair_claim_next(project=project, annotator=annotator)
    assert first.pk == again.pk
    assert Assignment.objects.count() == 1


def test_fetching_ahead_gives_a_second_lease_and_never_a_third():
    project, _ = _project_with_pairs(5)
    annotator = _annotator(project)
    current = pair_claim_next(project=project, annotator=annotator)
    ahead = pair_claim_next(project=project, annotator=annotator, after=current.pk)
    assert ahead.pk != current.pk and ahead.pair_id != current.pair_id
    assert pair_claim_next(project=project, annotator=annotator, after=current.pk).pk == ahead.pk
    assert pair_claim_next(project=project, annotator=annotator).pk == current.pk
    assert Assignment.objects.filter(status=Assignment.Status.ACTIVE).count() == 2


def test_depth_first_finishes_a_pair_before_starting_the_next():
    project, pairs = _project_with_pairs(3, overlap=2)
    first_annotator, second_annotator = _annotator(project), _annotator(project)
    first = pair_claim_next(project=project, annotator=first_annotator)
    second = pair_claim_next(project=project, annotator=second_annotator)
    assert first.pair_id == second.pair_id == pairs[0].pk


def test_breadth_first_spreads_annotators_over_pairs():
    project, pairs = _project_with_pairs(3, overlap=2, assignment_order="breadth_first")
    first = pair_claim_next(project=project, annotator=_annotator(project))
    second = pair_claim_next(project=project, annotator=_annotator(project))
    assert {first.pair_id, second.pair_id} == {pairs[0].pk, pairs[1].pk}


def test_a_full_pair_is_not_handed_out_and_an_annotator_never_gets_a_pair_twice():
    project, pairs = _project_with_pairs(1, overlap=2)
    annotators = [_annotator(project) for _ in range(3)]
    for annotator in annotators[:2]:
        assignment = pair_claim_next(project=project, annotator=annotator)
        judgment_submit(assignment_id=assignment.pk, annotator=annotator, data=JudgmentInput(choice="left"))
    assert isinstance(pair_claim_next(project=project, annotator=annotators[2]), NothingLeft)
    assert isinstance(pair_claim_next(project=project, annotator=annotators[0]), NothingLeft)
    pairs[0].refresh_from_db()
    assert (pairs[0].judgment_count, pairs[0].slots_taken) == (2, 2)


CLAIM_WINDOW = 64  # open pairs a claim looks at first (palate_pair_claim)


def test_a_claim_looks_past_pairs_the_annotator_left_open_in_three_reaches():
    project, pairs = _project_with_pairs(CLAIM_WINDOW + 4, overlap=3)
    window, (third, fourth, fifth, sixth) = pairs[:CLAIM_WINDOW], pairs[CLAIM_WINDOW:]
    annotator, other = _annotator(project), _annotator(project)

    def judge_next():
        assignment = pair_claim_next(project=project, annotator=annotator)
        judgment_submit(assignment_id=assignment.pk, annotator=annotator, data=JudgmentInput(choice="left"))
        return assignment.pair_id

    # The window holds the first open pairs; once the annotator has judged them all, a pair nobody started.
    assert [judge_next() for _ in range(CLAIM_WINDOW + 1)] == [pair.pk for pair in [*window, third]]
    # Another annotator's judgment leaves the last pair open and deeper in the order than the unstarted
    # ones, but past the window (the pairs judged first): the annotator gets the unstarted ones first.
    JudgmentFactory(pair=sixth, annotator=other)
    with transaction.atomic():
        Pair.objects.select_for_update().get(pk=sixth.pk)
        pair_slots_recompute(pair_id=sixth.pk)
    assert [judge_next() for _ in range(2)] == [fourth.pk, fifth.pk]
    # None is left unstarted: every open pair is looked at.
    assert judge_next() == sixth.pk
    assert isinstance(pair_claim_next(project=project, annotator=annotator), NothingLeft)
    assert Pair.objects.get(pk=sixth.pk).slots_taken == 2


def test_gold_pairs_are_interleaved_at_the_gold_rate():
    project = ProjectFactory(gold_rate=0.3, overlap=1)
    for index in range(60):
        gold = index < 20
        PairFactory(prompt__project=project, is_gold=gold, gold_choice="a" if gold else "")
    annotator = _annotator(project)
    rng = random.Random(3)
    gold_seen = 0
    for _ in range(30):
        assignment = pair_claim_next(project=project, annotator=annotator, rng=rng)
        gold_seen += assignment.pair.is_gold
        judgment_submit(assignment_id=assignment.pk, annotator=annotator, data=JudgmentInput(choice="tie"))
    assert 4 <= gold_seen <= 16


def test_expired_leases_are_reclaimed_by_the_next_claim_without_a_background_job():
    project, pairs = _project_with_pairs(1, overlap=1)
    holder, other = _annotator(project), _annotator(project)
    held = pair_claim_next(project=project, annotator=holder)
    assert isinstance(pair_claim_next(project=project, annotator=other), NothingLeft)
    Assignment.objects.filter(pk=held.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    claimed = pair_claim_next(project=project, annotator=other)
    assert claimed.pair_id == pairs[0].pk
    assert Assignment.objects.get(pk=held.pk).status == Assignment.Status.EXPIRED


def test_an_expired_lease_is_still_accepted_while_the_pair_has_room():
    project, _ = _project_with_pairs(1, overlap=2)
    annotator = _annotator(project)
    assignment = pair_claim_next(project=project, annotator=annotator)
    Assignment.objects.filter(pk=assignment.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    leases_expire(project=project)
    judgment, created = judgment_submit(
        assignment_id=assignment.pk, annotator=annotator, data=JudgmentInput(choice="right")
    )
    assert created and judgment.choice in {"a", "b"}


def test_an_expired_lease_is_refused_with_409_once_others_completed_the_pair():
    project, _ = _project_with_pairs(1, overlap=1)
    late, quick = _annotator(project), _annotator(project)
    stale = pair_claim_next(project=project, annotator=late)
    Assignment.objects.filter(pk=stale.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    fresh = pair_claim_next(project=project, annotator=quick)
    judgment_submit(assignment_id=fresh.pk, annotator=quick, data=JudgmentInput(choice="left"))
    with pytest.raises(Conflict) as refused:
        judgment_submit(assignment_id=stale.pk, annotator=late, data=JudgmentInput(choice="left"))
    assert refused.value.code == "pair_completed"
    assert Judgment.objects.count() == 1


@pytest.mark.parametrize(
    ("shown_swapped", "screen", "stored"),
    [
        (False, "left", "a"),
        (True, "left", "b"),
        (False, "right", "b"),
        (True, "right", "a"),
        (True, "tie", "tie"),
    ],
)
def test_left_and_right_are_mapped_to_a_and_b_through_shown_swapped(shown_swapped, screen, stored):
    project = ProjectFactory(criteria=["helpfulness"])
    PairFactory(prompt__project=project)
    annotator = _annotator(project)
    assignment = pair_claim_next(project=project, annotator=annotator)
    Assignment.objects.filter(pk=assignment.pk).update(shown_swapped=shown_swapped)
    judgment, _ = judgment_submit(
        assignment_id=assignment.pk,
        annotator=annotator,
        data=JudgmentInput(choice=screen, criteria={"helpfulness": screen}),
    )
    assert (judgment.choice, judgment.criteria["helpfulness"], judgment.shown_swapped) == (
        stored,
        stored,
        shown_swapped,
    )


def test_swaps_are_drawn_per_lease_so_position_bias_cancels_out():
    project, _ = _project_with_pairs(200, overlap=1)
    annotator = _annotator(project)
    swapped = 0
    for _ in range(200):
        assignment = pair_claim_next(project=project, annotator=annotator)
        swapped += assignment.shown_swapped
        judgment_submit(assignment_id=assignment.pk, annotator=annotator, data=JudgmentInput(choice="tie"))
    assert 70 <= swapped <= 130


@pytest.mark.parametrize(
    ("config", "data", "field"),
    [
        ({"allowed_choices": ["left", "right"]}, JudgmentInput(choice="tie"), "choice"),
        ({"strength_scale": 3}, JudgmentInput(choice="left", strength=4), "strength"),
        ({"strength_scale": 3}, JudgmentInput(choice="tie", strength=1), "strength"),
        ({"strength_scale": 0}, JudgmentInput(choice="left", strength=1), "strength"),
        (
            {"criteria": ["helpfulness", "safety"]},
            JudgmentInput(choice="left", criteria={"helpfulness": "left"}),
            "criteria",
        ),
        (
            {"criteria": ["helpfulness"]},
            JudgmentInput(choice="left", criteria={"helpfulness": "sideways"}),
            "criteria.helpfulness",
        ),
        ({"criteria": []}, JudgmentInput(choice="left", criteria={"helpfulness": "left"}), "criteria"),
        ({"rationale": "required"}, JudgmentInput(choice="left", rationale="  "), "rationale"),
        ({"rationale": "off"}, JudgmentInput(choice="left", rationale="because"), "rationale"),
    ],
)
def test_it_refuses_a_judgment_that_breaks_the_project_configuration_naming_the_field(config, data, field):
    project = ProjectFactory(**config)
    PairFactory(prompt__project=project)
    annotator = _annotator(project)
    assignment = pair_claim_next(project=project, annotator=annotator)
    with pytest.raises(ApplicationError) as refused:
        judgment_submit(assignment_id=assignment.pk, annotator=annotator, data=data)
    assert field in refused.value.fields
    assert Judgment.objects.count() == 0


def test_a_retried_submit_with_the_same_key_returns_the_first_judgment_even_after_an_edit():
    project, _ = _project_with_pairs(2, strength_scale=3, rationale="optional")
    annotator = _annotator(project)
    assignment = pair_claim_next(project=project, annotator=annotator)
    body = JudgmentInput(choice="left", strength=2, rationale=" close call ")

    def submit():
        return judgment_submit(
            assignment_id=assignment.pk, annotator=annotator, data=body, idempotency_key="k-1"
        )

    first, created = submit()
    again, created_again = submit()
    assert created and not created_again and first.pk == again.pk
    judgment_edit(judgment_id=first.pk, annotator=annotator, data=JudgmentInput(choice="tie"))
    late, created_late = submit()  # a retry that arrives after the annotator changed their mind
    assert not created_late and late.pk == first.pk and late.revision == 2
    assert Judgment.objects.count() == 1


def test_a_key_reused_for_another_request_is_refused_and_stores_nothing():
    project, _ = _project_with_pairs(3)
    annotator = _annotator(project)
    first_lease = pair_claim_next(project=project, annotator=annotator)
    judgment_submit(
        assignment_id=first_lease.pk,
        annotator=annotator,
        data=JudgmentInput(choice="left"),
        idempotency_key="k",
    )
    second_lease = pair_claim_next(project=project, annotator=annotator)
    for assignment_id, choice in [(second_lease.pk, "left"), (first_lease.pk, "right")]:
        with pytest.raises(Conflict) as refused:
            judgment_submit(
                assignment_id=assignment_id,
                annotator=annotator,
                data=JudgmentInput(choice=choice),
                idempotency_key="k",
            )
        assert refused.value.code == "idempotency_key_reused"
    assert Judgment.objects.count() == 1
    assert Assignment.objects.get(pk=second_lease.pk).status == Assignment.Status.ACTIVE


def test_it_refuses_a_second_judgment_on_the_same_pair():
    project, _ = _project_with_pairs(1, overlap=3)
    annotator = _annotator(project)
    assignment = pair_claim_next(project=project, annotator=annotator)
    judgment_submit(
        assignment_id=assignment.pk,
        annotator=annotator,
        data=JudgmentInput(choice="left"),
        idempotency_key="a",
    )
    with pytest.raises(Conflict):
        judgment_submit(
            assignment_id=assignment.pk,
            annotator=annotator,
            data=JudgmentInput(choice="left"),
            idempotency_key="b",
        )


def test_skip_releases_the_lease_and_the_pair_is_not_handed_straight_back():
    project, pairs = _project_with_pairs(2, overlap=1)
    annotator = _annotator(project)
    first = pair_claim_next(project=project, annotator=annotator)
    assignment_skip(assignment_id=first.pk, annotator=annotator, reason="not my field")
    pairs_by_id = {pair.pk: pair for pair in pairs}
    pairs_by_id[first.pair_id].refresh_from_db()
    assert pairs_by_id[first.pair_id].slots_taken == 0
    following = pair_claim_next(project=project, annotator=annotator)
    assert following.pair_id != first.pair_id
    assert Assignment.objects.get(pk=first.pk).skip_reason == "not my field"
    # Another annotator still gets the skipped pair.
    assert pair_claim_next(project=project, annotator=_annotator(project)).pair_id == first.pair_id


def test_an_edit_inside_the_window_keeps_the_old_version_as_a_revision():
    project, _ = _project_with_pairs(1)
    annotator = _annotator(project)
    assignment = pair_claim_next(project=project, annotator=annotator)
    judgment, _ = judgment_submit(
        assignment_id=assignment.pk, annotator=annotator, data=JudgmentInput(choice="left", rationale="first")
    )
    edited = judgment_edit(
        judgment_id=judgment.pk, annotator=annotator, data=JudgmentInput(choice="tie", rationale="second")
    )
    assert (edited.choice, edited.revision) == ("tie", 2)
    revision = JudgmentRevision.objects.get(judgment=judgment)
    assert (revision.revision, revision.choice, revision.rationale) == (1, judgment.choice, "first")


def test_an_edit_after_the_window_is_refused():
    project, _ = _project_with_pairs(1, edit_window_seconds=60)
    annotator = _annotator(project)
    assignment = pair_claim_next(project=project, annotator=annotator)
    judgment, _ = judgment_submit(
        assignment_id=assignment.pk, annotator=annotator, data=JudgmentInput(choice="left")
    )
    Judgment.objects.filter(pk=judgment.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    with pytest.raises(Conflict):
        judgment_edit(judgment_id=judgment.pk, annotator=annotator, data=JudgmentInput(choice="right"))
    assert Judgment.objects.get(pk=judgment.pk).revision == 1


def test_progress_counts_each_stored_submit_once_and_today_starts_at_the_server_s_midnight(
    settings, monkeypatch
):
    settings.TIME_ZONE = "Asia/Tokyo"  # UTC+9: the day turns at 15:00 UTC
    project, _ = _project_with_pairs(6, overlap=1)
    annotator = _annotator(project)
    clock = [datetime(2026, 5, 1, 14, 30, tzinfo=UTC)]  # 23:30 in Tokyo
    monkeypatch.setattr(timezone, "now", lambda: clock[0])

    def shown():
        return pair_next_shown(project_id=project.pk, annotator=annotator)

    def progress():
        return shown().done_total, shown().done_today

    def submit(assignment_id, key, choice="left"):
        return judgment_submit(
            assignment_id=assignment_id,
            annotator=annotator,
            data=JudgmentInput(choice=choice),
            idempotency_key=key,
        )

    assert progress() == (0, 0)
    first = shown().assignment.pk
    judgment, created = submit(first, "a")
    again, created_again = submit(first, "a")  # a retry
    assert created and not created_again and again.pk == judgment.pk
    with pytest.raises(Conflict):
        submit(first, "b")  # the pair is judged already
    judgment_edit(judgment_id=judgment.pk, annotator=annotator, data=JudgmentInput(choice="tie"))
    assignment_skip(assignment_id=shown().assignment.pk, annotator=annotator)
    assert progress() == (1, 1)
    submit(shown().assignment.pk, "c")
    assert progress() == (2, 2)

    clock[0] += timedelta(hours=1)  # 00:30 in Tokyo, the same day in UTC
    assert progress() == (2, 0)
    submit(shown().assignment.pk, "d")
    assert progress() == (3, 1)
    days = ProgressDay.objects.filter(project=project, annotator=annotator).order_by("day")
    assert [(day.day, day.submitted) for day in days] == [(date(2026, 5, 1), 2), (date(2026, 5, 2), 1)]


def test_a_removed_and_re_added_annotator_keeps_their_progress_and_loses_their_leases():
    project, _ = _project_with_pairs(4, overlap=1)
    annotator = _annotator(project)
    lease = pair_claim_next(project=project, annotator=annotator)
    judgment_submit(assignment_id=lease.pk, annotator=annotator, data=JudgmentInput(choice="left"))
    held = pair_claim_next(project=project, annotator=annotator)
    membership_remove(project=project, username=annotator.username)
    # The lease they held ends with the membership, and its pair is free for others at once.
    assert Assignment.objects.get(pk=held.pk).status == Assignment.Status.RELEASED
    assert Pair.objects.get(pk=held.pair_id).slots_taken == 0
    membership_set(project=project, username=annotator.username, role=Membership.Role.ANNOTATOR)
    shown = pair_next_shown(project_id=project.pk, annotator=annotator)
    assert (shown.done_total, shown.done_today) == (1, 1)


@pytest.mark.parametrize("change", ["removed", "engineer"])
def test_an_annotator_removed_or_given_another_role_can_no_longer_judge_skip_or_edit(change):
    project, _ = _project_with_pairs(3, overlap=1)
    annotator = _annotator(project)
    judged = pair_claim_next(project=project, annotator=annotator)
    judgment, _ = judgment_submit(
        assignment_id=judged.pk, annotator=annotator, data=JudgmentInput(choice="left")
    )
    held = pair_claim_next(project=project, annotator=annotator)
    if change == "removed":
        membership_remove(project=project, username=annotator.username)
    else:
        membership_set(project=project, username=annotator.username, role=change)
    refused = [
        lambda: judgment_submit(
            assignment_id=held.pk, annotator=annotator, data=JudgmentInput(choice="left")
        ),
        lambda: judgment_edit(judgment_id=judgment.pk, annotator=annotator, data=JudgmentInput(choice="tie")),
        lambda: assignment_skip(assignment_id=held.pk, annotator=annotator),
        lambda: pair_next_shown(project_id=project.pk, annotator=annotator),
    ]
    for call in refused:
        with pytest.raises(ApplicationError) as raised:
            call()
        assert raised.value.http_status in {403, 404}
    assert list(Judgment.objects.values_list("choice", "revision")) == [(judgment.choice, 1)]
    assert Assignment.objects.get(pk=held.pk).status == Assignment.Status.RELEASED


def test_the_migration_counts_what_members_submitted_before_the_counters_existed(settings):
    ProgressDay.objects.all().delete()
    settings.TIME_ZONE = "UTC"
    project, pairs = _project_with_pairs(4, overlap=1)
    annotator = _annotator(project)
    _annotator(project)  # a member who submitted nothing gets no rows
    now = timezone.now()
    for pair, closed in zip(pairs, [now, now, now - timedelta(days=2), None], strict=True):
        Assignment.objects.create(
            pair=pair,
            project=project,
            annotator=annotator,
            status=Assignment.Status.SUBMITTED if closed else Assignment.Status.ACTIVE,
            expires_at=now + timedelta(minutes=10),
            closed_at=closed,
        )
    migration = importlib.import_module("annotate.migrations.0002_workspace_functions_and_progress_days")
    migration.count_submitted_days(django_apps, SimpleNamespace(connection=connection))
    counted = {(day.annotator_id, day.day): day.submitted for day in ProgressDay.objects.all()}
    today = timezone.localdate(now)
    assert counted == {(annotator.pk, today): 2, (annotator.pk, today - timedelta(days=2)): 1}
    shown = pair_next_shown(project_id=project.pk, annotator=annotator)
    assert (shown.done_total, shown.done_today) == (3, 2)


def test_the_next_pair_api_is_blind_to_systems_gold_and_other_votes():
    project = ProjectFactory(gold_rate=1.0)
    PairFactory(prompt__project=project, is_gold=True, gold_choice="a", response_a__system="secret-model-x")
    annotator = _annotator(project)
    client = APIClient()
    client.force_authenticate(annotator)
    response = client.get(f"/api/projects/{project.pk}/next/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "secret-model-x" not in body and "gold" not in body and "system" not in body
    assert set(response.json()) == {"assignment", "pair", "prompt", "left", "right", "expires_at", "progress"}


def test_the_next_pair_api_answers_204_with_a_reason_when_nothing_is_left():
    project = ProjectFactory()
    annotator = _annotator(project)
    client = APIClient()
    client.force_authenticate(annotator)
    response = client.get(f"/api/projects/{project.pk}/next/")
    assert response.status_code == 204
    assert "No pairs" in response["Palate-Reason"]


def test_only_annotators_of_the_project_get_pairs():
    project, _ = _project_with_pairs(1)
    lead = UserFactory()
    MembershipFactory(user=lead, project=project, role=Membership.Role.LEAD)
    client = APIClient()
    client.force_authenticate(lead)
    assert client.get(f"/api/projects/{project.pk}/next/").status_code == 403
    client.force_authenticate(UserFactory())
    assert client.get(f"/api/projects/{project.pk}/next/").status_code == 404


def test_the_submit_api_maps_and_stores_once_for_a_repeated_idempotency_key():
    project, _ = _project_with_pairs(1)
    annotator = _annotator(project)
    client = APIClient()
    client.force_authenticate(annotator)
    assignment = client.get(f"/api/projects/{project.pk}/next/").json()["assignment"]
    first = client.post(
        "/api/judgments/",
        {"assignment": assignment, "choice": "left"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="x1",
    )
    second = client.post(
        "/api/judgments/",
        {"assignment": assignment, "choice": "left"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="x1",
    )
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"] and first.json()["choice"] == "left"
    invalid = client.post("/api/judgments/", {"assignment": assignment, "choice": "sideways"}, format="json")
    assert invalid.status_code == 400 and "choice" in invalid.json()["error"]["fields"]


MALFORMED_SUBMITS = [
    ({"choice": "left", "strength": 2**40}, "strength"),
    ({"choice": "left", "assignment": 2**70}, "assignment"),
    ({"choice": "left", "assignment": "seven"}, "assignment"),
    ({"choice": "left", "rationale": "nul \x00 here"}, "rationale"),
    ({"choice": "left", "rationale": "x" * 10_001}, "rationale"),
    ({"choice": "left", "criteria": {"help\x00fulness": "left"}}, "criteria"),
    ({"choice": "left", "criteria": {"helpfulness": "le\x00ft"}}, "criteria.helpfulness"),
    ({"choice": "left", "criteria": ["left"]}, "criteria"),
    ({"choice": "left", "duration_ms": -5}, "duration_ms"),
    ({"choice": "left", "duration_ms": 2**40}, "duration_ms"),
    ({"choice": None}, "choice"),
]


@pytest.mark.parametrize(("body", "field"), MALFORMED_SUBMITS, ids=range(len(MALFORMED_SUBMITS)))
def test_a_malformed_submit_is_a_400_naming_the_field_and_stores_nothing(body, field):
    project, _ = _project_with_pairs(1, criteria=["helpfulness"], rationale="optional")
    annotator = _annotator(project)
    client = APIClient()
    client.force_authenticate(annotator)
    assignment = client.get(f"/api/projects/{project.pk}/next/").json()["assignment"]
    response = client.post("/api/judgments/", {"assignment": assignment, **body}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    assert Judgment.objects.count() == 0


# Concurrency ---------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_many_annotators_claiming_and_submitting_at_once_never_overfill_or_duplicate():
    overlap = 3
    project, pairs = _project_with_pairs(40, overlap=overlap)
    annotators = [_annotator(project, f"worker-{index}") for index in range(36)]
    accepted: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(annotators))

    @in_thread
    def work(annotator):
        barrier.wait()
        rng = random.Random(annotator.pk)
        for _ in range(10):
            claimed = pair_claim_next(project=project, annotator=annotator)
            if isinstance(claimed, NothingLeft):
                return
            judgment, _created = judgment_submit(
                assignment_id=claimed.pk,
                annotator=annotator,
                data=JudgmentInput(choice=rng.choice(["left", "right", "tie"])),
                idempotency_key=f"{annotator.pk}-{claimed.pk}",
            )
            with lock:
                accepted.append(judgment.pk)

    with ThreadPoolExecutor(max_workers=len(annotators)) as pool:
        list(pool.map(work, annotators))

    counts = {pair.pk: Judgment.objects.filter(pair=pair).count() for pair in pairs}
    assert max(counts.values()) <= overlap
    assert sum(counts.values()) == len(accepted) == len(set(accepted))
    assert (
        sum(counts.values()) == len(pairs) * overlap
    )  # 36 annotators × up to 10 is enough to fill every pair
    pairs_and_annotators = list(Judgment.objects.values_list("pair_id", "annotator_id"))
    assert len(pairs_and_annotators) == len(set(pairs_and_annotators))
    for pair in Pair.objects.filter(project=project):
        assert pair.judgment_count == counts[pair.pk]


@pytest.mark.django_db(transaction=True)
def test_the_same_submit_sent_five_times_at_once_stores_one_judgment():
    project, _ = _project_with_pairs(1)
    annotator = _annotator(project)
    assignment = pair_claim_next(project=project, annotator=annotator)
    barrier = threading.Barrier(5)

    @in_thread
    def submit(_):
        barrier.wait()
        judgment, _ = judgment_submit(
            assignment_id=assignment.pk,
            annotator=annotator,
            data=JudgmentInput(choice="left"),
            idempotency_key="same-key",
        )
        return judgment.pk

    with ThreadPoolExecutor(max_workers=5) as pool:
        ids = list(pool.map(submit, range(5)))
    assert len(set(ids)) == 1
    assert Judgment.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_new_lease_commits_without_waiting_for_the_disk_and_a_judgment_waits():
    project, _ = _project_with_pairs(2)
    annotator = _annotator(project)

    def commit_setting() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('synchronous_commit')")
            return cursor.fetchone()[0]

    with transaction.atomic():  # the claim's own transaction, as in a request
        lease = pair_claim_next(project=project, annotator=annotator)
        during_claim = commit_setting()
    after_claim = commit_setting()
    with transaction.atomic():
        judgment_submit(assignment_id=lease.pk, annotator=annotator, data=JudgmentInput(choice="left"))
        during_submit = commit_setting()

    assert (during_claim, after_claim, during_submit) == ("off", "on", "on")
    assert Judgment.objects.filter(assignment=lease).count() == 1


@pytest.mark.django_db(transaction=True)
def test_one_annotator_asking_from_two_tabs_at_once_gets_one_lease():
    project, _ = _project_with_pairs(5)
    annotator = _annotator(project)
    barrier = threading.Barrier(4)

    @in_thread
    def ask(_):
        barrier.wait()
        return pair_claim_next(project=project, annotator=annotator).pk

    with ThreadPoolExecutor(max_workers=4) as pool:
        leases = set(pool.map(ask, range(4)))
    assert len(leases) == 1


def test_the_beat_task_reclaims_expired_leases_in_every_project():
    from annotate.services.assignment import leases_expire_all

    project, pairs = _project_with_pairs(1, overlap=1)
    annotator = _annotator(project)
    held = pair_claim_next(project=project, annotator=annotator)
    Assignment.objects.filter(pk=held.pk).update(expires_at=timezone.now() - timedelta(seconds=5))
    assert leases_expire_all() == 1
    pairs[0].refresh_from_db()
    assert pairs[0].slots_taken == 0


def test_a_retried_skip_is_harmless_and_a_skip_after_submitting_is_refused():
    project, _ = _project_with_pairs(2)
    annotator = _annotator(project)
    first = pair_claim_next(project=project, annotator=annotator)
    assignment_skip(assignment_id=first.pk, annotator=annotator, reason="unsure")
    assert assignment_skip(assignment_id=first.pk, annotator=annotator).status == Assignment.Status.SKIPPED
    second = pair_claim_next(project=project, annotator=annotator)
    judgment_submit(assignment_id=second.pk, annotator=annotator, data=JudgmentInput(choice="left"))
    with pytest.raises(ApplicationError) as refused:
        assignment_skip(assignment_id=second.pk, annotator=annotator)
    assert refused.value.http_status == 409


@pytest.mark.django_db(transaction=True)
def test_annotators_keep_claiming_and_submitting_while_a_large_import_is_running(tmp_path, monkeypatch):
    from annotate.services import imports

    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)
    busy, _ = _project_with_pairs(3)
    annotator = _annotator(busy)
    importing = ProjectFactory()
    source = tmp_path / "pairs.jsonl"
    source.write_text(
        "".join(
            json.dumps({"id": f"p{n}", "prompt": f"q{n}", "response_a": f"a{n}", "response_b": f"b{n}"})
            + "\n"
            for n in range(6)
        )
    )

    def annotate():
        assignment = pair_claim_next(project=busy, annotator=annotator)
        return judgment_submit(
            assignment_id=assignment.pk, annotator=annotator, data=JudgmentInput(choice="left")
        )

    imported, (judgment, created), judged_while_paused = import_with_a_pause(importing, source, annotate)

    assert judged_while_paused  # the import still held its transaction open
    assert imported.pairs_created == 6
    assert created and judgment.pair.project_id == busy.pk
    assert Pair.objects.filter(project=importing).count() == 6
