"""A search run end to end through two real Celery gpu workers on Redis, on the CPU, with the tiny decoder
(tests/rewardtrain/conftest.py): three trials, two at a time, and the best one's model kept."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
from rest_framework.test import APIClient

from annotate.models import Membership
from palate.celery import app
from palate.storage import ARTIFACTS, store_list
from rewardtrain.models import RewardModel, SearchTrial, TrainingRun
from rewardtrain.services.run_artifacts import trial_prefix
from tests.factories import MembershipFactory
from tests.rewardtrain.runs_data import FAST, judged_project, succeeded_export
from tests.waiting import wait_for
from tests.workers import celery_worker, worker_environment

pytestmark = pytest.mark.celery_worker
WORKERS = ("gpu-a@test", "gpu-b@test")


def _state(run_id: int) -> str:
    run = TrainingRun.objects.get(pk=run_id)
    trials = [
        (trial.number, trial.status, trial.worker, trial.log, trial.error) for trial in run.trials.all()
    ]
    return f"run {run.status}: {run.error}\n{run.log}\ntrials: {trials}"


@pytest.fixture
def two_gpu_workers(transactional_db, settings, tiny_base_model):
    environment = worker_environment(
        media_root=settings.MEDIA_ROOT,
        artifact_root=settings.ARTIFACT_ROOT,
        base_models=settings.TRAINING_BASE_MODELS,
    )
    with ExitStack() as stack:
        for name in WORKERS:
            stack.enter_context(celery_worker(environment, queues="gpu", hostname=name))

        def answering() -> set[str]:
            return {name for reply in app.control.ping(timeout=1) for name in reply}

        wait_for(lambda: answering() >= set(WORKERS), seconds=120, every=1, about=answering)
        yield WORKERS


def test_a_search_of_three_trials_runs_on_two_gpu_workers_and_keeps_the_best_trial(
    two_gpu_workers, tiny_base_model
):
    project, _ = judged_project(60)
    export = succeeded_export(project, split=1)  # no test split: the trials hold out one validation split
    client = APIClient()
    client.force_authenticate(MembershipFactory(project=project, role=Membership.Role.ENGINEER).user)
    response = client.post(
        f"/api/projects/{project.pk}/training-runs/",
        {
            "base_model": tiny_base_model,
            "export": export.pk,
            "allow_below_target": True,
            "hyperparameters": {**FAST, "eval_steps": 2},
            "mode": "search",
            "search": {
                "trials": 3,
                "parallel": 2,
                "space": {"learning_rate": [1e-4, 1e-2], "num_epochs": [1, 2]},
            },
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    run_id = response.json()["id"]

    body = wait_for(
        lambda: (
            (b := client.get(f"/api/training-runs/{run_id}/").json())["status"] in {"succeeded", "failed"}
            and b
        ),
        seconds=300,
        about=lambda: _state(run_id),
    )
    assert body["status"] == "succeeded", body["error"] + body["log"]
    trials = body["trials"]
    assert [trial["number"] for trial in trials] == [0, 1, 2]
    assert all(trial["status"] == "succeeded" for trial in trials), trials
    # Two at a time: each worker trained at least one trial (the run's own worker takes queued ones too).
    assert {trial["worker"].split(" pid ")[0] for trial in trials} == set(two_gpu_workers)
    complete = [trial for trial in trials if trial["outcome"] == "succeeded"]
    best = max(complete, key=lambda trial: (trial["value"], -trial["number"]))
    assert body["evaluation"]["search"]["best_trial"] == best["number"]
    assert body["evaluation"]["accuracy"] == best["validation"]["accuracy"] == best["value"]
    assert all(trial["intermediate"] and trial["intermediate"][0]["step"] == 2 for trial in trials)
    validation = body["evaluation"]["data"]["validation"]
    assert validation["source"] == "held_out" and validation["pairs"] > 0
    splits = [
        trial.result["data"]["validation"]
        for trial in SearchTrial.objects.filter(run_id=run_id)
        if trial.result
    ]
    assert splits and all(split == validation for split in splits)

    model = RewardModel.objects.get(run_id=run_id)
    assert model.is_active and model.metrics["accuracy"] == best["value"]
    assert model.path == f"{trial_prefix(run_id, best['number'])}model" and model.content_hash
    assert "model.safetensors" in store_list(ARTIFACTS, model.path)
    for trial in trials:
        stored = store_list(ARTIFACTS, trial_prefix(run_id, trial["number"]))
        assert any(name.startswith("model/") for name in stored) == (trial["number"] == best["number"])
        assert not any(name.startswith("checkpoints/") for name in stored)
