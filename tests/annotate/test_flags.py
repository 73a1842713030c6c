"""Annotators flag a pair: it is skipped for them through the one skip path and waits on the lead's list until
it is settled or dismissed. The API twins, their roles and their answers."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from annotate.models import Assignment, Membership, Pair, PairFlag
from annotate.services.assignment import pair_claim_next
from annotate.services.flags import pair_flag_create, pair_flag_dismiss
from annotate.services.judgments import JudgmentInput, judgment_submit
from palate.errors import ApplicationError, Conflict
from tests.factories import MembershipFactory, PairFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def _project(pairs: int = 3):
    project = ProjectFactory(overlap=1)
    for _ in range(pairs):
        PairFactory(prompt__project=project)
    annotator = UserFactory()
    MembershipFactory(user=annotator, project=project, role=Membership.Role.ANNOTATOR)
    lead = UserFactory()
    MembershipFactory(user=lead, project=project, role=Membership.Role.LEAD)
    return project, annotator, lead


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_a_flag_skips_the_pair_for_its_annotator_and_records_what_is_wrong():
    project, annotator, _ = _project()
    lease = pair_claim_next(project=project, annotator=annotator)
    flag, created = pair_flag_create(
        assignment_id=lease.pk, annotator=annotator, category="broken", text="  the answer stops mid-word "
    )
    assert created and flag.pair_id == lease.pair_id and flag.text == "the answer stops mid-word"
    assert flag.resolved_at is None and flag.resolution == ""
    lease.refresh_from_db()
    assert lease.status == Assignment.Status.SKIPPED
    assert lease.skip_reason == "flagged as broken: the answer stops mid-word"
    # The pair never comes back to them, and its slot went back to the pool.
    offered = {pair_claim_next(project=project, annotator=annotator).pair_id}
    assert lease.pair_id not in offered
    assert Pair.objects.get(pk=lease.pair_id).slots_taken == 0


def test_a_retried_flag_returns_the_first_one():
    project, annotator, _ = _project()
    lease = pair_claim_next(project=project, annotator=annotator)
    first, _ = pair_flag_create(assignment_id=lease.pk, annotator=annotator, category="duplicate")
    again, created = pair_flag_create(assignment_id=lease.pk, annotator=annotator, category="duplicate")
    assert not created and again.pk == first.pk
    assert PairFlag.objects.count() == 1


@pytest.mark.parametrize(
    ("category", "text", "field"),
    [
        ("other", "", "text"),
        ("other", "   ", "text"),
        ("boring", "", "category"),
        ("broken", "x" * 2001, "text"),
    ],
)
def test_a_flag_needs_a_known_category_and_words_for_other(category, text, field):
    project, annotator, _ = _project()
    lease = pair_claim_next(project=project, annotator=annotator)
    with pytest.raises(ApplicationError) as refused:
        pair_flag_create(assignment_id=lease.pk, annotator=annotator, category=category, text=text)
    assert list(refused.value.fields) == [field]
    lease.refresh_from_db()
    assert lease.status == Assignment.Status.ACTIVE and not PairFlag.objects.exists()


def test_a_pair_already_judged_from_the_lease_cannot_be_flagged_from_it():
    project, annotator, _ = _project()
    lease = pair_claim_next(project=project, annotator=annotator)
    judgment_submit(assignment_id=lease.pk, annotator=annotator, data=JudgmentInput(choice="left"))
    with pytest.raises(ApplicationError) as refused:
        pair_flag_create(assignment_id=lease.pk, annotator=annotator, category="harmful")
    assert refused.value.http_status == 409 and not PairFlag.objects.exists()


def test_only_the_lease_holder_flags_it():
    project, annotator, _ = _project()
    other = UserFactory()
    MembershipFactory(user=other, project=project, role=Membership.Role.ANNOTATOR)
    lease = pair_claim_next(project=project, annotator=annotator)
    with pytest.raises(ApplicationError) as refused:
        pair_flag_create(assignment_id=lease.pk, annotator=other, category="broken")
    assert refused.value.http_status == 404


def test_a_lead_dismisses_a_flag_once():
    project, annotator, lead = _project()
    lease = pair_claim_next(project=project, annotator=annotator)
    flag, _ = pair_flag_create(assignment_id=lease.pk, annotator=annotator, category="harmful")
    dismissed = pair_flag_dismiss(flag_id=flag.pk, project=project, dismissed_by=lead)
    assert dismissed.resolution == "dismissed" and dismissed.resolved_by == lead
    with pytest.raises(Conflict):
        pair_flag_dismiss(flag_id=flag.pk, project=project, dismissed_by=lead)
    with pytest.raises(ApplicationError) as elsewhere:
        pair_flag_dismiss(flag_id=flag.pk, project=ProjectFactory(), dismissed_by=lead)
    assert elsewhere.value.http_status == 404


def test_the_database_refuses_other_without_words_and_a_second_flag():
    project, annotator, _ = _project()
    pair = project.pairs.first()
    with pytest.raises(IntegrityError), transaction.atomic():
        PairFlag.objects.create(pair=pair, annotator=annotator, category="other", created_at=timezone.now())
    PairFlag.objects.create(pair=pair, annotator=annotator, category="broken", created_at=timezone.now())
    with pytest.raises(IntegrityError), transaction.atomic():
        PairFlag.objects.create(pair=pair, annotator=annotator, category="harmful", created_at=timezone.now())


class TestApi:
    def test_an_annotator_flags_through_the_api_and_a_retry_answers_200(self):
        project, annotator, _ = _project()
        lease = pair_claim_next(project=project, annotator=annotator)
        url = reverse("api-assignment-flag", args=[lease.pk])
        client = _client(annotator)
        first = client.post(url, {"category": "other", "text": "The prompt is in Welsh"}, format="json")
        assert first.status_code == 201, first.content
        assert first.json()["category"] == "other" and first.json()["pair"] == lease.pair_id
        assert client.post(url, {"category": "other", "text": "again"}, format="json").status_code == 200

    def test_other_without_text_is_a_400_naming_the_field(self):
        project, annotator, _ = _project()
        lease = pair_claim_next(project=project, annotator=annotator)
        answer = _client(annotator).post(
            reverse("api-assignment-flag", args=[lease.pk]), {"category": "other"}, format="json"
        )
        assert answer.status_code == 400 and "text" in answer.json()["error"]["fields"]

    def test_leads_list_and_dismiss_flags_and_annotators_cannot(self):
        project, annotator, lead = _project()
        lease = pair_claim_next(project=project, annotator=annotator)
        flag, _ = pair_flag_create(assignment_id=lease.pk, annotator=annotator, category="broken")
        listing = _client(lead).get(reverse("api-flags", args=[project.pk]))
        assert listing.status_code == 200
        [row] = listing.json()["results"]
        assert row["id"] == flag.pk and row["annotator"] == annotator.username and row["prompt"]
        assert _client(annotator).get(reverse("api-flags", args=[project.pk])).status_code == 403
        dismiss = reverse("api-flag-dismiss", args=[project.pk, flag.pk])
        assert _client(annotator).post(dismiss).status_code == 403
        assert _client(lead).post(dismiss).json()["resolution"] == "dismissed"
        assert _client(lead).post(dismiss).status_code == 409
        assert _client(lead).get(reverse("api-flags", args=[project.pk])).json()["results"] == []
        closed = _client(lead).get(reverse("api-flags", args=[project.pk]), {"state": "closed"})
        assert [row["id"] for row in closed.json()["results"]] == [flag.pk]
        bad = _client(lead).get(reverse("api-flags", args=[project.pk]), {"state": "maybe"})
        assert bad.status_code == 400 and "state" in bad.json()["error"]["fields"]


class TestPages:
    def test_the_lead_sees_open_flags_linking_to_the_settle_page_and_dismisses_one(self, client):
        project, annotator, lead = _project()
        lease = pair_claim_next(project=project, annotator=annotator)
        flag, _ = pair_flag_create(
            assignment_id=lease.pk, annotator=annotator, category="other", text="Two prompts in one"
        )
        client.force_login(lead)
        page = client.get(reverse("project-flags", args=[project.slug]))
        body = page.content.decode()
        assert page.status_code == 200 and "Two prompts in one" in body
        assert reverse("project-pair-settle", args=[project.slug, lease.pair_id]) in body
        answer = client.post(reverse("project-flag-dismiss", args=[project.slug, flag.pk]), follow=True)
        assert "Flag dismissed" in answer.content.decode()
        flag.refresh_from_db()
        assert flag.resolution == "dismissed"

    def test_annotators_and_engineers_do_not_see_the_flags_page(self, client):
        project, annotator, _ = _project()
        engineer = UserFactory()
        MembershipFactory(user=engineer, project=project, role=Membership.Role.ENGINEER)
        for user in (annotator, engineer):
            client.force_login(user)
            assert client.get(reverse("project-flags", args=[project.slug])).status_code == 403
        client.force_login(UserFactory())
        assert client.get(reverse("project-flags", args=[project.slug])).status_code == 404
