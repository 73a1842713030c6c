"""An annotator's own history: their judgments newest first as they saw them (left/right), never anyone
else's votes or a system's name, changed through the same service and edit window as the workspace's undo."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from annotate.models import Judgment, JudgmentRevision, Membership
from annotate.services.judgments import judgment_editable_since
from tests.factories import JudgmentFactory, MembershipFactory, PairFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def _world(**config):
    project = ProjectFactory(**config)
    annotator, other = UserFactory(username="annie"), UserFactory(username="otto")
    for user in (annotator, other):
        MembershipFactory(user=user, project=project, role=Membership.Role.ANNOTATOR)
    return project, annotator, other


def _judged(project, annotator, *, choice="a", shown_swapped=False, minutes_ago=0, **fields) -> Judgment:
    pair = PairFactory(
        prompt__project=project, response_a__system="secret-model-a", response_b__system="secret-model-b"
    )
    judgment = JudgmentFactory(
        pair=pair, annotator=annotator, choice=choice, shown_swapped=shown_swapped, **fields
    )
    if minutes_ago:
        Judgment.objects.filter(pk=judgment.pk).update(
            created_at=timezone.now() - timedelta(minutes=minutes_ago)
        )
        judgment.refresh_from_db()
    return judgment


def test_the_edit_window_is_one_rule_and_zero_closes_it():
    project, _, _ = _world(edit_window_seconds=600)
    now = timezone.now()
    assert judgment_editable_since(project=project, now=now) == now - timedelta(seconds=600)
    project.edit_window_seconds = 0
    assert judgment_editable_since(project=project, now=now) > now


class TestPage:
    def test_an_annotator_sees_their_own_judgments_as_they_saw_them_newest_first(self, client):
        project, annotator, other = _world()
        older = _judged(project, annotator, choice="a", shown_swapped=True, minutes_ago=60)
        newer = _judged(project, annotator, choice="a", shown_swapped=False)
        JudgmentFactory(pair=newer.pair, annotator=other, choice="b", rationale="otto's reasons")
        client.force_login(annotator)
        page = client.get(reverse("project-history", args=[project.slug])).content.decode()
        # A chosen while B was on the left reads "Right better", as they saw it.
        first, second = page.index(newer.pair.prompt.content), page.index(older.pair.prompt.content)
        assert first < second
        assert page.count("Left better") == 1 and page.count("Right better") == 1
        assert "secret-model" not in page and "otto" not in page
        # Only the recent one can still be changed.
        assert reverse("project-history-edit", args=[project.slug, newer.pk]) in page
        assert reverse("project-history-edit", args=[project.slug, older.pk]) not in page

    def test_the_history_is_paginated(self, client):
        project, annotator, _ = _world()
        for _ in range(27):
            _judged(project, annotator)
        client.force_login(annotator)
        first = client.get(reverse("project-history", args=[project.slug]))
        second = client.get(reverse("project-history", args=[project.slug]), {"page": 2})
        assert len(first.context["rows"]) == 25 and len(second.context["rows"]) == 2
        assert "Page 1 of 2" in first.content.decode()

    def test_a_change_is_saved_through_the_edit_service_and_keeps_the_earlier_answer(self, client):
        project, annotator, _ = _world(strength_scale=3, criteria=["safety"], edit_window_seconds=600)
        judgment = _judged(
            project, annotator, choice="a", shown_swapped=True, strength=2, criteria={"safety": "a"}
        )
        client.force_login(annotator)
        url = reverse("project-history-edit", args=[project.slug, judgment.pk])
        form = client.get(url).content.decode()
        assert 'name="choice" value="right" checked' in form and "secret-model" not in form
        answer = client.post(
            url, {"choice": "left", "strength": "3", "criterion-safety": "left", "rationale": "Left is safer"}
        )
        assert answer.status_code == 302 and answer["Location"] == reverse(
            "project-history", args=[project.slug]
        )
        judgment.refresh_from_db()
        # B was on the left: "left" is B in the pair's terms.
        assert (judgment.choice, judgment.strength, judgment.criteria, judgment.revision) == (
            "b",
            3,
            {"safety": "b"},
            2,
        )
        assert JudgmentRevision.objects.get(judgment=judgment).choice == "a"

    def test_a_change_the_project_refuses_is_shown_in_place(self, client):
        project, annotator, _ = _world(strength_scale=3)
        judgment = _judged(project, annotator, choice="a", strength=1)
        client.force_login(annotator)
        answer = client.post(
            reverse("project-history-edit", args=[project.slug, judgment.pk]),
            {"choice": "tie", "strength": "2"},
        )
        assert answer.status_code == 400
        assert "only a &#x27;left&#x27; or &#x27;right&#x27; choice has a strength" in answer.content.decode()
        for strength in ("99999999999", "-1", "two"):
            odd = client.post(
                reverse("project-history-edit", args=[project.slug, judgment.pk]),
                {"choice": "left", "strength": strength},
            )
            assert odd.status_code == 400 and "strength: must be a whole number" in odd.content.decode()
        judgment.refresh_from_db()
        assert judgment.revision == 1

    def test_a_judgment_outside_the_edit_window_cannot_be_changed(self, client):
        project, annotator, _ = _world(edit_window_seconds=600)
        judgment = _judged(project, annotator, minutes_ago=30)
        client.force_login(annotator)
        url = reverse("project-history-edit", args=[project.slug, judgment.pk])
        assert "can no longer be changed" in client.get(url).content.decode()
        refused = client.post(url, {"choice": "right"})
        assert refused.status_code == 400 and "can be changed for 10 minutes" in refused.content.decode()
        judgment.refresh_from_db()
        assert judgment.choice == "a"

    def test_nobody_opens_another_annotators_judgment_and_only_annotators_have_a_history(self, client):
        project, annotator, other = _world()
        judgment = _judged(project, annotator)
        client.force_login(other)
        assert (
            client.get(reverse("project-history-edit", args=[project.slug, judgment.pk])).status_code == 404
        )
        assert (
            client.post(
                reverse("project-history-edit", args=[project.slug, judgment.pk]), {"choice": "right"}
            ).status_code
            == 404
        )
        for role in (Membership.Role.LEAD, Membership.Role.ENGINEER):
            user = UserFactory()
            MembershipFactory(user=user, project=project, role=role)
            client.force_login(user)
            assert client.get(reverse("project-history", args=[project.slug])).status_code == 403


class TestApi:
    def test_an_annotator_reads_their_own_judgments_in_screen_terms(self):
        project, annotator, other = _world()
        mine = _judged(project, annotator, choice="a", shown_swapped=True)
        _judged(project, other, choice="b")
        old = _judged(project, annotator, choice="b", minutes_ago=60)
        client = APIClient()
        client.force_authenticate(annotator)
        answer = client.get(reverse("api-judgments-mine", args=[project.pk]))
        assert answer.status_code == 200
        body = answer.json()
        assert body["count"] == 2
        rows = {row["id"]: row for row in body["results"]}
        assert set(rows) == {mine.pk, old.pk}
        assert rows[mine.pk]["choice"] == "right" and rows[mine.pk]["editable"] is True
        assert rows[old.pk]["editable"] is False
        assert "secret-model" not in answer.content.decode()

    def test_leads_have_no_history_of_their_own_here(self):
        project, _, _ = _world()
        lead = UserFactory()
        MembershipFactory(user=lead, project=project, role=Membership.Role.LEAD)
        client = APIClient()
        client.force_authenticate(lead)
        assert client.get(reverse("api-judgments-mine", args=[project.pk])).status_code == 403
