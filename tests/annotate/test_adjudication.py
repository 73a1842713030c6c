"""A lead settles a pair: the service and its constraint, who may settle (page and API), flags closed by it,
exports that honour ``use_adjudicated`` (and say so in the card), and agreement figures that count settled
pairs. The pure rule is tested in tests/annotate/stats/test_aggregation.py."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from annotate.models import Adjudication, Export, Membership, PairFlag
from annotate.services.adjudication import pair_adjudicate
from annotate.services.agreement import agreement_figures, agreement_snapshot_current
from annotate.services.assignment import pair_claim_next
from annotate.services.flags import pair_flag_create
from annotate.stats import aggregation
from palate.errors import ApplicationError
from tests.annotate.test_exports import Crafted, by_pair, path_of, run
from tests.factories import JudgmentFactory, MembershipFactory, PairFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def _member(project, role):
    user = UserFactory()
    MembershipFactory(user=user, project=project, role=role)
    return user


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


# The service ------------------------------------------------------------------------------------------------


def test_settling_records_the_label_and_settling_again_replaces_it():
    pair = PairFactory()
    lead = _member(pair.project, Membership.Role.LEAD)
    first = pair_adjudicate(pair=pair, label="a", note="  A cites its source. ", decided_by=lead)
    assert (first.label, first.note, first.decided_by) == ("a", "A cites its source.", lead)
    second = pair_adjudicate(pair=pair, label="both_bad", note="", decided_by=lead)
    assert second.pk == first.pk and Adjudication.objects.get().label == "both_bad"


@pytest.mark.parametrize(
    ("label", "note", "field"), [("left", "", "label"), ("", "", "label"), ("a", "x" * 10_001, "note")]
)
def test_a_bad_label_or_a_long_note_is_refused_naming_the_field(label, note, field):
    pair = PairFactory()
    with pytest.raises(ApplicationError) as refused:
        pair_adjudicate(pair=pair, label=label, note=note, decided_by=_member(pair.project, "lead"))
    assert list(refused.value.fields) == [field] and not Adjudication.objects.exists()


def test_the_database_refuses_a_label_outside_the_four():
    pair = PairFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Adjudication.objects.create(pair=pair, label="left", decided_at=timezone.now())


def test_settling_a_flagged_pair_closes_its_open_flags_only():
    project = ProjectFactory(overlap=1)
    pair = PairFactory(prompt__project=project)
    annotator = _member(project, Membership.Role.ANNOTATOR)
    lead = _member(project, Membership.Role.LEAD)
    lease = pair_claim_next(project=project, annotator=annotator)
    assert lease.pair_id == pair.pk
    flag, _ = pair_flag_create(assignment_id=lease.pk, annotator=annotator, category="harmful")
    other_flag = PairFlag.objects.create(
        pair=PairFactory(prompt__project=project),
        annotator=annotator,
        category="broken",
        created_at=timezone.now(),
    )
    pair_adjudicate(pair=pair, label="both_bad", note="Unsafe advice in both", decided_by=lead)
    flag.refresh_from_db()
    other_flag.refresh_from_db()
    assert (flag.resolution, flag.resolved_by) == ("settled", lead) and flag.resolved_at is not None
    assert other_flag.resolved_at is None


# Who may settle ------------------------------------------------------------------------------------------------


class TestApi:
    def test_a_lead_settles_through_the_api_and_reads_it_back(self):
        pair = PairFactory()
        lead = _member(pair.project, Membership.Role.LEAD)
        url = reverse("api-pair-adjudication", args=[pair.project_id, pair.pk])
        assert _client(lead).get(url).status_code == 404
        answer = _client(lead).put(url, {"label": "tie", "note": "Equally right"}, format="json")
        assert answer.status_code == 200, answer.content
        assert answer.json()["label"] == "tie" and answer.json()["decided_by"] == lead.username
        assert _client(lead).get(url).json()["note"] == "Equally right"

    @pytest.mark.parametrize(("role", "status"), [("annotator", 403), ("engineer", 403), (None, 404)])
    def test_annotators_engineers_and_outsiders_cannot_settle(self, role, status):
        pair = PairFactory()
        user = _member(pair.project, role) if role else UserFactory()
        url = reverse("api-pair-adjudication", args=[pair.project_id, pair.pk])
        assert _client(user).put(url, {"label": "a"}, format="json").status_code == status
        assert not Adjudication.objects.exists()

    def test_a_pair_of_another_project_is_a_404_and_a_bad_label_a_400(self):
        pair = PairFactory()
        lead = _member(pair.project, Membership.Role.LEAD)
        elsewhere = PairFactory()
        url = reverse("api-pair-adjudication", args=[pair.project_id, elsewhere.pk])
        assert _client(lead).put(url, {"label": "a"}, format="json").status_code == 404
        url = reverse("api-pair-adjudication", args=[pair.project_id, pair.pk])
        bad = _client(lead).put(url, {"label": "left"}, format="json")
        assert bad.status_code == 400 and "label" in bad.json()["error"]["fields"]


class TestPage:
    def test_the_lead_sees_the_votes_and_settles_the_pair(self, client):
        pair = PairFactory(response_a__system="alpha", response_b__system="beta")
        lead = _member(pair.project, Membership.Role.LEAD)
        voter = _member(pair.project, Membership.Role.ANNOTATOR)
        JudgmentFactory(pair=pair, annotator=voter, choice="b", rationale="B is kinder")
        url = reverse("project-pair-settle", args=[pair.project.slug, pair.pk])
        client.force_login(lead)
        page = client.get(url).content.decode()
        assert "B is kinder" in page and voter.username in page and "alpha" in page
        answer = client.post(url, {"label": "a", "note": "A is the only correct one"}, follow=True)
        assert answer.redirect_chain[-1][0] == url
        assert "settled: A is better" in answer.content.decode()
        assert Adjudication.objects.get(pair=pair).note == "A is the only correct one"

    def test_the_settle_page_goes_back_to_a_page_of_this_site_only(self, client):
        pair = PairFactory()
        client.force_login(_member(pair.project, Membership.Role.LEAD))
        url = reverse("project-pair-settle", args=[pair.project.slug, pair.pk])
        flags = reverse("project-flags", args=[pair.project.slug])
        assert client.post(url, {"label": "a", "next": flags})["Location"] == flags
        assert client.post(url, {"label": "b", "next": "https://evil.example/"})["Location"] == url

    def test_a_missing_label_is_shown_in_place(self, client):
        pair = PairFactory()
        client.force_login(_member(pair.project, Membership.Role.LEAD))
        answer = client.post(
            reverse("project-pair-settle", args=[pair.project.slug, pair.pk]), {"note": "kept"}
        )
        assert answer.status_code == 400 and "label: must be one of" in answer.content.decode()
        assert "kept" in answer.content.decode() and not Adjudication.objects.exists()

    @pytest.mark.parametrize(("role", "status"), [("annotator", 403), ("engineer", 403), (None, 404)])
    def test_only_leads_open_the_settle_page(self, client, role, status):
        pair = PairFactory()
        client.force_login(_member(pair.project, role) if role else UserFactory())
        url = reverse("project-pair-settle", args=[pair.project.slug, pair.pk])
        assert client.get(url).status_code == status
        assert client.post(url, {"label": "a"}).status_code == status
        assert not Adjudication.objects.exists()


# Exports --------------------------------------------------------------------------------------------------------


@pytest.fixture
def crafted() -> Crafted:
    """A project whose export rows can be checked by hand (as in test_exports), with five annotators."""
    project = ProjectFactory(slug="crafted", strength_scale=3, criteria=["helpfulness", "safety"])
    annotators = {
        f"ann{index}": MembershipFactory(project=project, user=UserFactory(username=f"ann{index}")).user
        for index in range(5)
    }
    return Crafted(project=project, annotators=annotators)


def _settled_world(crafted: Crafted) -> Crafted:
    """p1: the votes say A, the lead B; p2: a tied vote the lead settles as A; p3: no votes, settled both bad;
    p4: votes only."""
    lead = UserFactory(username="the-lead")
    crafted.pair("p1")
    crafted.pair("p2")
    crafted.pair("p3")
    crafted.pair("p4")
    crafted.votes("p1", "a", "a", "b", strengths=[2, 1, 3])
    crafted.votes("p2", "a", "b")
    crafted.votes("p4", "b", "b")
    pair_adjudicate(pair=crafted.pairs["p1"], label="b", note="A is wrong", decided_by=lead)
    pair_adjudicate(pair=crafted.pairs["p2"], label="a", decided_by=lead)
    pair_adjudicate(pair=crafted.pairs["p3"], label="both_bad", decided_by=lead)
    return crafted


def test_exports_use_the_settled_labels_by_default_and_the_card_says_how_many(crafted):
    world = _settled_world(crafted)
    export = run(world.project, split=1.0, columns=["vote_share", "agreement", "margin", "n_votes", "ids"])
    assert export.status == Export.Status.SUCCEEDED, export.error
    rows = by_pair(export)
    assert sorted(rows) == ["p1", "p2", "p4"]
    assert rows["p1"]["chosen_id"] == "p1-b" and rows["p1"]["vote_share"] == 1.0
    assert rows["p1"]["agreement"] == pytest.approx(1 / 3, abs=1e-6)
    assert rows["p1"]["margin"] == 0.0  # the votes' mean strength favours A, the lead's label B
    assert rows["p1"]["n_votes"] == 3
    assert rows["p2"]["chosen_id"] == "p2-a" and rows["p2"]["agreement"] == 0.5
    assert rows["p4"]["chosen_id"] == "p4-b"
    assert export.policy["use_adjudicated"] is True
    assert export.counts["adjudicated"] == {"pairs": 3, "used": True, "exported": 2, "changed": 2}
    assert export.counts["dropped"] == {"both_bad_dropped": 1}
    card = path_of(export, "README.md").read_text()
    assert "Settled by a lead: 3 pairs; their labels replace the votes' (2 exported, 2 differing" in card


def test_a_settled_both_bad_is_kept_as_a_tie_row_when_the_policy_keeps_them(crafted):
    world = _settled_world(crafted)
    export = run(world.project, split=1.0, both_bad="keep", ties="keep", columns=["vote_share", "ids"])
    rows = by_pair(export)
    assert rows["p3"]["tie"] is True and rows["p3"]["vote_share"] == 0.5


def test_exports_can_ignore_settled_labels(crafted):
    world = _settled_world(crafted)
    export = run(world.project, split=1.0, use_adjudicated=False, columns=["ids"])
    rows = by_pair(export)
    assert sorted(rows) == ["p1", "p4"] and rows["p1"]["chosen_id"] == "p1-a"
    assert export.counts["adjudicated"] == {"pairs": 3, "used": False, "exported": 0, "changed": 0}
    assert "this export labels them by their votes instead" in path_of(export, "README.md").read_text()


def test_labels_by_a_criterion_never_take_the_overall_settled_label(crafted):
    crafted.pair("p1")
    crafted.votes("p1", "a", "a", criteria=[{"safety": "a"}, {"safety": "a"}])
    pair_adjudicate(pair=crafted.pairs["p1"], label="b", decided_by=UserFactory())
    export = run(crafted.project, split=1.0, criterion="safety", columns=["ids"])
    assert by_pair(export)["p1"]["chosen_id"] == "p1-a"
    assert export.counts["adjudicated"]["used"] is False


def test_the_export_option_is_validated_and_offered_on_the_page(crafted, client):
    with pytest.raises(ApplicationError) as refused:
        run(crafted.project, use_adjudicated="yes")
    assert "policy.use_adjudicated" in refused.value.fields
    lead = _member(crafted.project, Membership.Role.LEAD)
    client.force_login(lead)
    page = client.get(reverse("project-exports", args=[crafted.project.slug])).content.decode()
    assert 'name="use_adjudicated" value="true" checked' in page


# Agreement figures ------------------------------------------------------------------------------------------------


def test_agreement_figures_count_settled_pairs_and_mark_settled_contested_ones():
    project = ProjectFactory()
    pairs = [PairFactory(prompt__project=project) for _ in range(3)]
    voters = [_member(project, Membership.Role.ANNOTATOR) for _ in range(3)]
    for pair in pairs:
        for voter, choice in zip(voters, ("a", "b", "a"), strict=True):
            JudgmentFactory(pair=pair, annotator=voter, choice=choice)
    lead = _member(project, Membership.Role.LEAD)
    pair_adjudicate(pair=pairs[0], label="b", decided_by=lead)
    PairFlag.objects.create(
        pair=pairs[1], annotator=voters[0], category="duplicate", created_at=timezone.now()
    )

    figures = agreement_figures(snapshot=agreement_snapshot_current(project=project), project=project)
    assert figures["adjudication"] == {"pairs": 1, "open_flags": 1}
    settled = {row["pair_id"]: row["adjudicated"] for row in figures["contested"]}
    assert settled == {pairs[0].pk: "b", pairs[1].pk: None, pairs[2].pk: None}

    api = _client(lead).get(reverse("api-agreement", args=[project.pk])).json()
    assert api["adjudication"] == {"pairs": 1, "open_flags": 1}
    client_page = APIClient()
    client_page.force_login(lead)
    page = client_page.get(reverse("project-quality", args=[project.slug])).content.decode()
    assert "; 1 pair settled by a lead, <a href" in page and "Settled: B is better" in page
    assert reverse("project-pair-settle", args=[project.slug, pairs[1].pk]) in page


def test_the_pure_rule_agrees_with_the_export_on_a_lone_settled_pair():
    votes = aggregation.vote_table(units=[0, 0], choices=[aggregation.A, aggregation.A], pair_count=1)
    labels = aggregation.label_pairs(votes)
    settled = aggregation.settle_labels(labels, votes, settled=[0], outcomes=[aggregation.B])
    assert settled.label.tolist() == [aggregation.B] and np.isclose(settled.agreement[0], 0.0)
