"""Scoring with a project API token (tasks run eagerly here; tests/rewardtrain/test_scoring_e2e.py sends one
through a real worker): its own project's models by id or ``active``, nothing of another project's, and no
other endpoint."""

from __future__ import annotations

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from annotate.models import Membership, ProjectApiToken
from annotate.services.api_tokens import api_token_create
from palate.celery import app
from rewardtrain.models import ScoringJob
from tests.factories import MembershipFactory, ProjectFactory
from tests.rewardtrain.scoring_data import reward_model_row

pytestmark = pytest.mark.django_db

BODY = {
    "prompt": "the river and the stone ",
    "responses": ["excellent morning light", "terrible", "a garden"],
}


@pytest.fixture
def eager():
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


def _bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def _scoring_urls(project, model) -> list[str]:
    return [
        f"/api/reward-models/{model.pk}/score/",
        f"/api/reward-models/{model.pk}/best-of-n/",
        f"/api/projects/{project.pk}/reward-models/active/score/",
        f"/api/projects/{project.pk}/reward-models/active/best-of-n/",
    ]


def test_a_token_scores_and_ranks_with_its_projects_models_as_an_engineer_would(eager, tiny_reward_model):
    project = ProjectFactory()
    model = reward_model_row(project, tiny_reward_model)
    engineer = APIClient()
    engineer.force_authenticate(MembershipFactory(project=project, role=Membership.Role.ENGINEER).user)
    _, secret = api_token_create(project=project, name="sampler", created_by=None)

    for url in _scoring_urls(project, model):
        response = _bearer(secret).post(url, BODY, format="json")
        assert response.status_code == 200, (url, response.content)
        assert response.json() == engineer.post(url, BODY, format="json").json()
    assert ProjectApiToken.objects.get().last_used_at is not None


def test_a_token_gets_404_for_another_projects_models(eager, tiny_reward_model):
    project, other = ProjectFactory(), ProjectFactory()
    reward_model_row(project, tiny_reward_model)
    theirs = reward_model_row(other, tiny_reward_model)
    _, secret = api_token_create(project=project, name="sampler", created_by=None)

    for url in _scoring_urls(other, theirs):
        response = _bearer(secret).post(url, BODY, format="json")
        assert response.status_code == 404, (url, response.content)
        assert response.json()["error"]["code"] == "not_found"
    missing = _bearer(secret).post("/api/reward-models/999999/score/", BODY, format="json")
    assert missing.status_code == 404


def test_a_token_is_refused_by_the_other_reward_model_endpoints(eager, tiny_reward_model):
    project = ProjectFactory()
    model = reward_model_row(project, tiny_reward_model)
    job = ScoringJob.objects.create(project=project, reward_model=model)
    _, secret = api_token_create(project=project, name="sampler", created_by=None)
    client = _bearer(secret)

    for method, url in [
        ("get", f"/api/projects/{project.pk}/reward-models/active/pair-predictions/"),
        ("post", f"/api/reward-models/{model.pk}/scoring-jobs/"),
        ("get", f"/api/scoring-jobs/{job.pk}/"),
        ("get", f"/api/projects/{project.pk}/reward-models/"),
        ("post", f"/api/reward-models/{model.pk}/activate/"),
        ("get", f"/api/projects/{project.pk}/training-runs/"),
        ("post", f"/api/projects/{project.pk}/training-runs/"),
        ("get", f"/api/training-runs/{model.run_id}/"),
        ("get", f"/api/projects/{project.pk}/api-tokens/"),
        ("post", f"/api/projects/{project.pk}/api-tokens/"),
    ]:
        response = getattr(client, method)(url, {}, format="json")
        assert response.status_code == 403, (url, response.content)
        assert response.json()["error"]["code"] == "token_scope"
    assert ScoringJob.objects.count() == 1 and ProjectApiToken.objects.count() == 1


def test_a_revoked_token_no_longer_scores(eager, tiny_reward_model):
    project = ProjectFactory()
    model = reward_model_row(project, tiny_reward_model)
    token, secret = api_token_create(project=project, name="sampler", created_by=None)
    assert _bearer(secret).post(_scoring_urls(project, model)[0], BODY, format="json").status_code == 200

    ProjectApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())

    response = _bearer(secret).post(_scoring_urls(project, model)[0], BODY, format="json")
    assert response.status_code == 401 and "revoked" in response.json()["error"]["message"]


def test_a_token_keeps_working_when_the_lead_who_made_it_leaves(eager, tiny_reward_model):
    """It belongs to the project, not to its creator (who may leave, or lose the lead role)."""
    project = ProjectFactory()
    model = reward_model_row(project, tiny_reward_model)
    membership = MembershipFactory(project=project, role=Membership.Role.LEAD)
    _, secret = api_token_create(project=project, name="sampler", created_by=membership.user)
    membership.delete()
    assert _bearer(secret).post(_scoring_urls(project, model)[1], BODY, format="json").status_code == 200
