"""The reward model on the pages: the leaderboard's reward model view, the quality dashboard's agreement with
the human majority, batch scoring and the reward hacking checks on the run page, and the model's pair
predictions for leads and engineers (never annotators). Scores are stored rows: no model is loaded."""

from __future__ import annotations

import pytest
from django.test import Client

from annotate.models import Membership, Pair
from rewardtrain.models import ResponseScore
from tests.factories import MembershipFactory, UserFactory
from tests.rewardtrain.runs_data import judged_project
from tests.rewardtrain.scoring_data import reward_model_row


def _page_client(project, role) -> Client:
    client = Client()
    user = UserFactory()
    MembershipFactory(user=user, project=project, role=role)
    client.force_login(user)
    return client


def _scored_project(pairs: int = 6):
    """A judged project (humans prefer the 'chosen' system) with v1 and active v2 scores of every response:
    v1 agrees with the humans, v2 too but with a shifted, noisier scale."""
    project, _ = judged_project(pairs)
    first = reward_model_row(project, "unused", version=1, active=False)
    second = reward_model_row(project, "unused", version=2, active=True)
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
    assert agreement["model"] == second
    assert (agreement["count"], agreement["correct"]) == (6, 6)
    assert "reward model v2 agrees with the human majority on 6 of 6" in response.content.decode()


@pytest.mark.django_db
def test_the_quality_dashboard_leaves_the_figure_out_before_scores_and_refuses_annotators():
    project, _ = judged_project(3)
    reward_model_row(project, "unused", version=1, active=True)
    response = _page_client(project, Membership.Role.LEAD).get(f"/projects/{project.slug}/quality/")
    assert response.context["reward_agreement"] is None
    assert "agrees with the human majority" not in response.content.decode()
    assert (
        _page_client(project, Membership.Role.ANNOTATOR).get(f"/projects/{project.slug}/quality/").status_code
        == 403
    )
