"""End to end through real Celery workers: systems registered over the API on llama.cpp's server, a job
on the generate queue, pairs made and served to annotators; best-of-N sampling with the tiny reward model
scored on the gpu queue."""

from __future__ import annotations

import time

import pytest
from rest_framework.test import APIClient

from annotate.models import Membership, Pair
from tests.factories import MembershipFactory, ProjectFactory, PromptFactory
from tests.rewardtrain.scoring_data import reward_model_row
from tests.workers import celery_worker, worker_environment

pytestmark = pytest.mark.celery_worker


@pytest.fixture
def generate_worker(transactional_db, settings, llama_server):
    environment = worker_environment(
        media_root=settings.MEDIA_ROOT,
        artifact_root=settings.ARTIFACT_ROOT,
        base_models=settings.TRAINING_BASE_MODELS,
    )
    with celery_worker(environment, queues="generate,gpu") as broker_url:
        yield broker_url


def _client(project, role) -> APIClient:
    client = APIClient()
    client.force_authenticate(MembershipFactory(project=project, role=role).user)
    return client


def _system(client, project, **values) -> int:
    answer = client.post(f"/api/projects/{project.pk}/systems/", values, format="json")
    assert answer.status_code == 201, answer.content
    return answer.json()["id"]


def test_two_systems_generate_two_responses_per_prompt_on_the_generate_queue_and_pairs_are_made(
    generate_worker, llama_server
):
    project = ProjectFactory(overlap=1)
    PromptFactory.create_batch(3, project=project)
    engineer = _client(project, Membership.Role.ENGINEER)
    common = {"base_url": llama_server.base_url, "model": llama_server.model, "max_tokens": 6}
    careful = _system(engineer, project, name="careful", temperature=0.2, seed=11, **common)
    wild = _system(engineer, project, name="wild", temperature=1.4, top_p=0.9, **common)
    started = engineer.post(
        f"/api/projects/{project.pk}/generation-jobs/",
        {"systems": [careful, wild], "samples": 2, "pairing": {"pairing": "all", "cross_system_only": True}},
        format="json",
    )
    assert started.status_code == 202, started.content
    job_id = started.json()["id"]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        job = engineer.get(f"/api/generation-jobs/{job_id}/").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.5)
    assert job["status"] == "succeeded", job
    assert (job["generated"], job["total"], job["pairs_created"]) == (12, 12, 12)
    assert set(job["usage"]) == {"careful", "wild"}
    assert all(row["responses"] == 6 and row["completion_tokens"] > 0 for row in job["usage"].values())
    assert Pair.objects.filter(project=project).count() == 12
    # The generated pairs are served to annotators like imported ones.
    annotator = _client(project, Membership.Role.ANNOTATOR)
    served = annotator.get(f"/api/projects/{project.pk}/next/")
    assert served.status_code == 200, served.content


def test_best_of_n_sampling_generates_n_scores_them_on_the_worker_and_returns_the_choice(
    generate_worker, llama_server, tiny_reward_model, settings
):
    settings.SCORING_TIMEOUT_SECONDS = 90  # the worker's first request loads torch and the model
    project = ProjectFactory()
    model = reward_model_row(project, tiny_reward_model)
    engineer = _client(project, Membership.Role.ENGINEER)
    system = _system(
        engineer, project, name="smol", base_url=llama_server.base_url, model=llama_server.model,
        temperature=1.0, seed=5, max_tokens=8,
    )  # fmt: skip
    answer = engineer.post(
        f"/api/reward-models/{model.pk}/sample-best-of-n/",
        {"messages": [{"role": "user", "content": "Name a quiet place."}], "system": system, "n": 3},
        format="json",
    )
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert [sample["index"] for sample in body["samples"]] == [0, 1, 2]
    best = max(body["samples"], key=lambda sample: (sample["raw"], -sample["index"]))
    assert body["best"] == best["index"] and body["chosen"] == best and best["rank"] == 1
    assert sorted(sample["rank"] for sample in body["samples"]) == [1, 2, 3]
    refused = engineer.post(
        f"/api/reward-models/{model.pk}/sample-best-of-n/",
        {"prompt": "x", "system": system, "n": settings.GENERATION_BEST_OF_N_MAX + 1},
        format="json",
    )
    assert refused.status_code == 400 and "n" in refused.json()["error"]["fields"]
