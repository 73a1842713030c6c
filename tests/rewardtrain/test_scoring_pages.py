"""The reward model on the pages: the leaderboard's reward model view, the quality dashboard's agreement with
the human majority, batch scoring and the reward hacking checks on the run page, and the model's pair
predictions for leads and engineers (never annotators). Scores are stored rows: no model is loaded."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from annotate.models import Membership, Pair
from rewardtrain.models import ResponseScore, ScoringJob
from tests.factories import MembershipFactory, PairFactory, UserFactory
from tests.rewardtrain.runs_data import judged_project, succeeded_export
from tests.rewardtrain.scoring_data import reward_model_row


def _page_client(project, role) -> Client:
    client = Client()
    user = UserFactory()
    MembershipFactory(user=user, project=project, role=role)
    client.force_login(user)
    return client


def _api_client(project, role) -> APIClient:
    client = APIClient()
    user = UserFactory()
    MembershipFactory(user=user, project=project, role=role)
    client.force_authenticate(user)
    return client


def _scored_project(pairs: int = 6):
    """A judged project (humans prefer the 'chosen' system) with v1 and active v2 scores of every response:
    v1 agrees with the humans, v2 too but with a shifted, noisier scale. Both trained on one export, half of
    whose prompts were held out."""
    project, _ = judged_project(pairs)
    export = succeeded_export(project, split=0.5)
    first = reward_model_row(project, "unused", version=1, active=False, export=export)
    second = reward_model_row(project, "unused", version=2, active=True, export=export)
    for pair in Pair.objects.filter(project=project).select_related("response_a", "response_b"):
        for response in (pair.response_a, pair.response_b):
            good = 1.0 if response.system == "chosen" else -1.0
            ResponseScore.objects.create(response=response, reward_model=first, score=good)
            ResponseScore.objects.create(
                response=response, reward_model=second, score=2 * good + 0.05 * (response.pk % 7)
            )
    return project, first, second


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Membership.Role.LEAD, Membership.Role.ENGINEER])
def test_the_leaderboard_shows_the_active_models_mean_score_per_system(role):
    project, _, second = _scored_project()
    response = _page_client(project, role).get(f"/projects/{project.slug}/leaderboard/")
    assert response.status_code == 200
    view = response.context["reward_view"]
    assert view["model"] == second
    assert [row["system"] for row in view["rows"]] == ["chosen", "rejected"]
    assert view["rows"][0]["human_rank"] == 1
    text = response.content.decode()
    assert "Reward model view" in text and "active model v2" in text


@pytest.mark.django_db
def test_the_leaderboard_says_how_to_get_a_reward_model_view_without_scores():
    project, _ = judged_project(4)
    reward_model_row(project, "unused", version=1, active=True)
    text = _page_client(project, Membership.Role.LEAD).get(f"/projects/{project.slug}/leaderboard/").content
    assert "Start batch scoring" in text.decode() and "Model rank" not in text.decode()


@pytest.mark.django_db
def test_annotators_get_403_on_the_leaderboard():
    project, _, _ = _scored_project(2)
    assert (
        _page_client(project, Membership.Role.ANNOTATOR)
        .get(f"/projects/{project.slug}/leaderboard/")
        .status_code
        == 403
    )


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Membership.Role.LEAD, Membership.Role.ENGINEER])
def test_the_quality_dashboard_shows_the_active_models_agreement_with_the_human_majority(role):
    project, _, second = _scored_project(6)
    response = _page_client(project, role).get(f"/projects/{project.slug}/quality/")
    assert response.status_code == 200
    agreement = response.context["reward_agreement"]
    held_out = agreement["held_out"]
    assert agreement["model"] == second and 0 < held_out < 6
    assert (agreement["count"], agreement["correct"]) == (held_out, held_out)
    text = response.content.decode()
    assert f"reward model v2 agrees on {held_out} of {held_out} decided pair" in text
    assert "held out from its training run" in text


@pytest.mark.django_db
def test_the_quality_dashboard_says_when_the_active_model_has_no_recorded_split():
    project, _ = judged_project(4)
    model = reward_model_row(project, "unused", version=1, active=True, export=None)
    for pair in Pair.objects.filter(project=project).select_related("response_a", "response_b"):
        ResponseScore.objects.create(response=pair.response_a, reward_model=model, score=1.0)
        ResponseScore.objects.create(response=pair.response_b, reward_model=model, score=0.0)
    response = _page_client(project, Membership.Role.LEAD).get(f"/projects/{project.slug}/quality/")
    assert response.context["reward_agreement"]["held_out"] is None
    text = response.content.decode()
    assert "No held-out figure." in text and "has no recorded split" in text
    assert "agreement with the held-out human majority" not in text


@pytest.mark.django_db
def test_the_quality_dashboard_leaves_the_figure_out_before_scores_and_refuses_annotators():
    project, _ = judged_project(3)
    reward_model_row(project, "unused", version=1, active=True)
    response = _page_client(project, Membership.Role.LEAD).get(f"/projects/{project.slug}/quality/")
    assert response.context["reward_agreement"] is None
    assert "Active reward model" not in response.content.decode()
    assert (
        _page_client(project, Membership.Role.ANNOTATOR).get(f"/projects/{project.slug}/quality/").status_code
        == 403
    )


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Membership.Role.LEAD, Membership.Role.ENGINEER])
def test_the_run_page_shows_the_reward_hacking_checks_beside_the_previous_version(role):
    project, first, second = _scored_project(6)
    response = _page_client(project, role).get(f"/projects/{project.slug}/training/{second.run_id}/")
    assert response.status_code == 200
    scoring = response.context["scoring"]
    assert scoring["previous"] == first
    assert scoring["length_bias"]["responses"] == 12
    assert scoring["drift"]["count"] == 12 and scoring["drift"]["histogram"]["edges"]
    text = response.content.decode()
    assert "Reward hacking checks" in text and "chart-check-drift" in text and "chart-check-length" in text
    assert "vendor/plotly.min.js" in text and "reward-checks-data" in text
    first_page = _page_client(project, role).get(f"/projects/{project.slug}/training/{first.run_id}/")
    assert first_page.context["scoring"]["drift"] is None
    assert "first reward model" in first_page.content.decode()


@pytest.mark.django_db
def test_start_batch_scoring_queues_a_job_and_its_card_polls_until_it_finishes(
    django_capture_on_commit_callbacks,
):
    project, _ = judged_project(3)
    model = reward_model_row(project, "unused", version=1, active=True)
    client = _page_client(project, Membership.Role.ENGINEER)
    page = client.get(f"/projects/{project.slug}/training/{model.run_id}/").content.decode()
    assert "Start batch scoring" in page and "appear once this model has scored" in page
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(f"/projects/{project.slug}/training/models/{model.pk}/score/")
    assert response.status_code == 302 and response["Location"].endswith(f"/training/{model.run_id}/#scoring")
    job = ScoringJob.objects.get(reward_model=model)
    assert (job.status, job.total, len(callbacks)) == (ScoringJob.Status.QUEUED, 6, 1)
    live = client.get(f"/projects/{project.slug}/training/models/{model.pk}/scoring/").content.decode()
    assert "hx-get" in live and "0 of 6 responses scored" in live
    with django_capture_on_commit_callbacks(execute=False):
        client.post(f"/projects/{project.slug}/training/models/{model.pk}/score/")
    assert ScoringJob.objects.filter(reward_model=model).count() == 1  # a second press while pending
    ScoringJob.objects.filter(pk=job.pk).update(status=ScoringJob.Status.SUCCEEDED, scored=6)
    live = client.get(f"/projects/{project.slug}/training/models/{model.pk}/scoring/").content.decode()
    assert "hx-get" not in live and "6 of 6 responses scored" in live


@pytest.mark.django_db
def test_annotators_cannot_start_batch_scoring_or_see_the_run_page():
    project, _, second = _scored_project(2)
    annotator = _page_client(project, Membership.Role.ANNOTATOR)
    assert annotator.get(f"/projects/{project.slug}/training/{second.run_id}/").status_code == 403
    assert annotator.post(f"/projects/{project.slug}/training/models/{second.pk}/score/").status_code == 403
    assert annotator.get(f"/projects/{project.slug}/training/models/{second.pk}/scoring/").status_code == 403
    assert not ScoringJob.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Membership.Role.LEAD, Membership.Role.ENGINEER])
def test_leads_and_engineers_see_the_active_models_prediction_for_each_pair(role):
    project, _, second = _scored_project(3)
    unscored = PairFactory(project=project, prompt__project=project)
    response = _api_client(project, role).get(f"/api/projects/{project.pk}/pairs/")
    assert response.status_code == 200
    pairs = {row["id"]: row for row in response.json()["results"]}
    assert pairs[unscored.pk]["model_prediction"] is None
    for pair in Pair.objects.filter(project=project).exclude(pk=unscored.pk).select_related("response_a"):
        prediction = pairs[pair.pk]["model_prediction"]
        assert set(prediction) == {"reward_model_version", "score_a", "score_b", "prefers"}
        assert prediction["reward_model_version"] == second.version
        assert prediction["prefers"] == ("a" if pair.response_a.system == "chosen" else "b")


@pytest.mark.django_db
def test_annotators_get_no_model_predictions_from_the_pairs_list_or_the_next_pair():
    project, _, _ = _scored_project(3)
    annotator = _api_client(project, Membership.Role.ANNOTATOR)
    listed = annotator.get(f"/api/projects/{project.pk}/pairs/")
    assert listed.status_code == 403 and "model_prediction" not in listed.content.decode()
    claimed = annotator.get(f"/api/projects/{project.pk}/next/")
    assert claimed.status_code == 200, claimed.content
    text = claimed.content.decode()
    assert "model_prediction" not in text and "score" not in text and "prefers" not in text
