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
    """A worker on the generate queue and one on the gpu queue (an audit waits on the scoring worker)."""
    environment = worker_environment(
        media_root=settings.MEDIA_ROOT,
        artifact_root=settings.ARTIFACT_ROOT,
        base_models=settings.TRAINING_BASE_MODELS,
    )
    with (
        celery_worker(environment, queues="generate", hostname="generate@%h") as broker_url,
        celery_worker(environment, queues="gpu", hostname="gpu@%h"),
    ):
        yield broker_url


def _wait(client, url: str, seconds: float = 240) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = client.get(url).json()
        if body["status"] in ("succeeded", "failed", "cancelled"):
            return body
        time.sleep(0.5)
    return body


def _client(project, role) -> APIClient:
    client = APIClient()
    client.force_authenticate(MembershipFactory(project=project, role=role).user)
    return client


def _audited(client, model: int, system: int) -> dict:
    """Starts an audit of ``model`` against ``system`` at N = 1, 2, 4 on the held-out category and waits for
    it to succeed."""
    started = client.post(
        f"/api/reward-models/{model}/audits/",
        {"system": system, "n_values": [1, 2, 4], "scope": "category", "scope_value": "held-out"},
        format="json",
    )
    assert started.status_code == 202, started.content
    audit = _wait(client, f"/api/audits/{started.json()['id']}/")
    assert audit["status"] == "succeeded", audit
    return audit


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
    job = _wait(engineer, f"/api/generation-jobs/{started.json()['id']}/")
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


def _annotate_everything(client, project) -> int:
    """A simulated annotator who prefers the longer response, through the API; returns how many it judged."""
    judged = 0
    while True:
        shown = client.get(f"/api/projects/{project.pk}/next/")
        if shown.status_code == 204:
            return judged
        assert shown.status_code == 200, shown.content
        body = shown.json()
        choice = "left" if len(body["left"]["content"]) >= len(body["right"]["content"]) else "right"
        submitted = client.post(
            "/api/judgments/", {"assignment": body["assignment"], "choice": choice}, format="json"
        )
        assert submitted.status_code in (200, 201), submitted.content
        judged += 1


def test_an_audit_compares_the_models_best_of_n_with_an_independent_sample_and_reads_the_judgments(
    generate_worker, llama_server, tiny_reward_model, settings
):
    settings.SCORING_TIMEOUT_SECONDS = 90
    project = ProjectFactory(overlap=2)
    PromptFactory.create_batch(3, project=project, category="held-out")
    PromptFactory(project=project, category="trained-on")
    model = reward_model_row(project, tiny_reward_model)
    engineer = _client(project, Membership.Role.ENGINEER)
    system = _system(
        engineer, project, name="smol", base_url=llama_server.base_url, model=llama_server.model,
        temperature=1.0, seed=2, max_tokens=6,
    )  # fmt: skip
    audit = _audited(engineer, model.pk, system)
    assert audit["scored"] == 15 and audit["comparisons_made"] == 9
    pairs = Pair.objects.filter(project=project).count()
    assert 3 <= pairs <= 9  # a pair serves every N whose best is the same response
    assert all(row["judgments"] == 0 and row["win_rate"] is None for row in audit["figures"]["rows"])
    judged = sum(_annotate_everything(_client(project, Membership.Role.ANNOTATOR), project) for _ in range(2))
    assert judged == 2 * pairs
    figures = engineer.get(f"/api/audits/{audit['id']}/").json()["figures"]
    assert [row["n"] for row in figures["rows"]] == [1, 2, 4]
    for row in figures["rows"]:
        assert row["prompts"] == 3 and row["judgments"] == 6
        assert 0 <= row["low"] <= row["win_rate"] <= row["high"] <= 1
        assert row["mean_score"] is not None
    scores = [row["mean_score"] for row in figures["rows"]]
    assert scores == sorted(scores)  # the best of more samples never scores lower
    assert figures["rising_until"] in (1, 2, 4)


@pytest.fixture
def loop_workers(transactional_db, settings, llama_server, tiny_base_model):
    """A generate worker, and a worker on the default and gpu queues (exports, training, scoring), with the
    tiny decoder installed as a base model."""
    environment = worker_environment(
        media_root=settings.MEDIA_ROOT,
        artifact_root=settings.ARTIFACT_ROOT,
        base_models=settings.TRAINING_BASE_MODELS,
    )
    with (
        celery_worker(environment, queues="generate", hostname="generate@%h"),
        celery_worker(environment, queues="default,gpu", hostname="gpu@%h"),
    ):
        yield tiny_base_model


def test_the_whole_loop_generate_annotate_train_then_sample_and_audit_with_the_trained_model(
    loop_workers, llama_server, settings
):
    """The issue's loop in one run: two systems with different sampling settings answer 20 prompts twice,
    simulated annotators judge the pairs through the API, a tiny reward model is trained on their export, and
    that model picks best-of-N samples and is audited (N = 1, 2, 4)."""
    from tests.rewardtrain.runs_data import FAST

    settings.SCORING_TIMEOUT_SECONDS = 90
    project = ProjectFactory(overlap=1)
    PromptFactory.create_batch(20, project=project, category="trained-on")
    PromptFactory.create_batch(2, project=project, category="held-out")
    engineer = _client(project, Membership.Role.ENGINEER)
    common = {"base_url": llama_server.base_url, "model": llama_server.model, "max_tokens": 6}
    careful = _system(engineer, project, name="careful", temperature=0.2, seed=11, **common)
    wild = _system(engineer, project, name="wild", temperature=1.4, top_p=0.9, **common)
    started = engineer.post(
        f"/api/projects/{project.pk}/generation-jobs/",
        {"systems": [careful, wild], "samples": 1, "scope": "category", "scope_value": "trained-on",
         "pairing": {"pairing": "all", "cross_system_only": True}},
        format="json",
    )  # fmt: skip
    assert started.status_code == 202, started.content
    job = _wait(engineer, f"/api/generation-jobs/{started.json()['id']}/")
    assert job["status"] == "succeeded" and job["generated"] == 40, job
    judged = _annotate_everything(_client(project, Membership.Role.ANNOTATOR), project)
    assert judged == Pair.objects.filter(project=project).count() == 20

    trained = engineer.post(
        f"/api/projects/{project.pk}/training-runs/",
        {"base_model": loop_workers, "policy": {"split": 0.8}, "hyperparameters": FAST,
         "allow_below_target": True},
        format="json",
    )  # fmt: skip
    assert trained.status_code == 202, trained.content
    run = _wait(engineer, f"/api/training-runs/{trained.json()['id']}/")
    assert run["status"] == "succeeded", run
    model = run["reward_model"]

    answer = engineer.post(
        f"/api/reward-models/{model}/sample-best-of-n/",
        {"prompt": "Name a quiet place.", "system": careful, "n": 3},
        format="json",
    )
    assert answer.status_code == 200, answer.content
    assert sorted(sample["rank"] for sample in answer.json()["samples"]) == [1, 2, 3]
    audit = _audited(engineer, model, wild)
    _annotate_everything(_client(project, Membership.Role.ANNOTATOR), project)
    figures = engineer.get(f"/api/audits/{audit['id']}/").json()["figures"]
    assert [row["n"] for row in figures["rows"]] == [1, 2, 4]
    assert all(row["prompts"] == 2 and row["judgments"] == 2 for row in figures["rows"])
    assert all(0 <= row["low"] <= row["win_rate"] <= row["high"] <= 1 for row in figures["rows"])
