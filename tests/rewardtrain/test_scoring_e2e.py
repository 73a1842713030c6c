"""Scoring through a real Celery worker on Redis (the web side waits on the task's result in Redis): score,
best-of-N and a batch scoring job, with the tiny reward model saved as a RewardModel artifact; and score and
best-of-N with a project API token."""

from __future__ import annotations

import time

import numpy as np
import pytest
from rest_framework.test import APIClient

from annotate.models import Membership, Response
from annotate.services.api_tokens import api_token_create
from rewardtrain.models import ResponseScore, ScoringJob
from rewardtrain.scoring.engine import ScoringRequest, load_model, score_requests
from tests.factories import MembershipFactory
from tests.rewardtrain.runs_data import judged_project
from tests.rewardtrain.scoring_data import REWARD_MEAN, REWARD_STD, reward_model_row

pytestmark = pytest.mark.celery_worker

PROMPT = "a letter by the window "
RESPONSES = ["the excellent kettle", "terrible rain on the road", "cold"]


def test_score_best_of_n_and_batch_scoring_through_a_worker(
    celery_worker_process, tiny_reward_model, settings
):
    settings.SCORING_TIMEOUT_SECONDS = 60  # the worker's first request loads torch and the model
    project, _ = judged_project(5)
    model = reward_model_row(project, tiny_reward_model)
    client = APIClient()
    client.force_authenticate(MembershipFactory(project=project, role=Membership.Role.ENGINEER).user)
    expected = score_requests(
        load_model(tiny_reward_model, device="cpu"), [ScoringRequest(PROMPT, tuple(RESPONSES))]
    )[0]

    scored = client.post(
        f"/api/reward-models/{model.pk}/score/", {"prompt": PROMPT, "responses": RESPONSES}, format="json"
    )
    assert scored.status_code == 200, scored.content
    raw = np.array([row["raw"] for row in scored.json()["scores"]])
    np.testing.assert_allclose(raw, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        [row["normalised"] for row in scored.json()["scores"]], (raw - REWARD_MEAN) / REWARD_STD, rtol=1e-6
    )
    ranked = client.post(
        f"/api/projects/{project.pk}/reward-models/active/best-of-n/",
        {"messages": [{"role": "user", "content": PROMPT}], "responses": RESPONSES},
        format="json",
    )
    assert ranked.status_code == 200, ranked.content
    scores = [row["raw"] for row in ranked.json()["ranking"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 3

    started = client.post(f"/api/reward-models/{model.pk}/scoring-jobs/")
    assert started.status_code == 202, started.content
    job_id = started.json()["id"]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        job = client.get(f"/api/scoring-jobs/{job_id}/").json()
        if job["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.3)
    assert job["status"] == ScoringJob.Status.SUCCEEDED, job
    responses = Response.objects.filter(prompt__project=project).count()
    assert job["scored"] == job["total"] == responses == 10
    assert ResponseScore.objects.filter(reward_model=model).count() == responses


def test_a_project_api_token_scores_through_a_worker(celery_worker_process, tiny_reward_model, settings):
    settings.SCORING_TIMEOUT_SECONDS = 60
    project, _ = judged_project(2)
    model = reward_model_row(project, tiny_reward_model)
    _, secret = api_token_create(project=project, name="sampler", created_by=None)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    expected = score_requests(
        load_model(tiny_reward_model, device="cpu"), [ScoringRequest(PROMPT, tuple(RESPONSES))]
    )[0]

    scored = client.post(
        f"/api/reward-models/{model.pk}/score/", {"prompt": PROMPT, "responses": RESPONSES}, format="json"
    )
    assert scored.status_code == 200, scored.content
    np.testing.assert_allclose(
        [row["raw"] for row in scored.json()["scores"]], expected, rtol=1e-4, atol=1e-6
    )
    ranked = client.post(
        f"/api/projects/{project.pk}/reward-models/active/best-of-n/",
        {"prompt": PROMPT, "responses": RESPONSES},
        format="json",
    )
    assert ranked.status_code == 200, ranked.content
    assert ranked.json()["best"] == int(np.argmax(expected))
    assert client.post(f"/api/reward-models/{model.pk}/scoring-jobs/").status_code == 403
