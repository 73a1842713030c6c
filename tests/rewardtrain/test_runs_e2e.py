"""Training runs end to end through real Celery workers on Redis, on the CPU, with a tiny decoder built from a
config (tests/rewardtrain/conftest.py): judgments → export → run → a reward model that loads with
``pipeline``; cancel; a worker killed mid-run and the next one resuming from the checkpoint."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from annotate.models import Membership
from palate.jobs.services import job_enqueue, jobs_reap
from palate.storage import ARTIFACTS, store_local_path
from rewardtrain.models import RewardModel, TrainingRun
from rewardtrain.services.run_artifacts import run_prefix
from rewardtrain.services.runs import training_run_create
from tests.factories import MembershipFactory
from tests.rewardtrain.conftest import marker_rows
from tests.rewardtrain.runs_data import FAST, judged_project, succeeded_export
from tests.waiting import wait_for

pytestmark = pytest.mark.celery_worker

# Many tiny steps with frequent checkpoints: long enough to interrupt, short enough to finish quickly.
LONG = {**FAST, "batch_size": 1, "num_epochs": 1, "save_steps": 5, "learning_rate": 0.001}


def _run(pk: int) -> TrainingRun:
    return TrainingRun.objects.get(pk=pk)


def _engineer(project) -> APIClient:
    client = APIClient()
    engineer = MembershipFactory(project=project, role=Membership.Role.ENGINEER).user
    client.force_authenticate(engineer)
    return client


def test_a_gpu_worker_stops_a_cancelled_run_within_a_step_and_trains_a_model_that_ranks_held_out_pairs(
    tiny_base_model, celery_worker_process
):
    # One worker for both (a worker start imports torch): first a long run, cancelled while it trains.
    # Ten epochs (480 steps): it is cancelled after a few, and however late this process polls, the run
    # cannot have finished before the cancel lands.
    cancelled_project, _ = judged_project(60)
    cancelled_export = succeeded_export(cancelled_project)
    run = training_run_create(
        project=cancelled_project, base_model=tiny_base_model, hyperparameters={**LONG, "num_epochs": 10}, export=cancelled_export,
        allow_below_target=True,
    )  # fmt: skip
    wait_for(lambda: _run(run.pk).step >= 6, seconds=300)
    response = _engineer(cancelled_project).post(f"/api/training-runs/{run.pk}/cancel/")
    assert response.status_code == 202 and response.json()["cancel_requested"] is True
    run = wait_for(lambda: (r := _run(run.pk)).status == TrainingRun.Status.CANCELLED and r, seconds=15)
    assert run.step < run.total_steps and "cancelled at step" in run.log
    from rewardtrain.training.trainer import latest_checkpoint

    assert latest_checkpoint(store_local_path(ARTIFACTS, run_prefix(run.pk))).name == f"step-{run.step}"
    assert not RewardModel.objects.filter(run=run).exists()
    assert _engineer(cancelled_project).post(f"/api/training-runs/{run.pk}/cancel/").status_code == 409

    # Then a run to the end, through the API.
    project, _ = judged_project(160)
    export = succeeded_export(project)
    client = _engineer(project)
    response = client.post(
        f"/api/projects/{project.pk}/training-runs/",
        {
            "base_model": tiny_base_model,
            "export": export.pk,
            "hyperparameters": FAST,
            "allow_below_target": True,
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
    )
    assert body["status"] == "succeeded", body["error"] + body["traceback"]
    assert body["step"] == body["total_steps"] == 30 and body["attempts"] == 1 and body["worker"]
    assert body["metrics"][-1]["step"] == 30 and "loss" in body["metrics"][0]
    assert body["evaluation"]["accuracy"] > 0.8 and body["evaluation"]["histogram"]["edges"]
    model = RewardModel.objects.get(run_id=run_id)
    assert (model.version, model.is_active) == (1, True)
    directory = store_local_path(ARTIFACTS, model.path)
    assert (directory / "config.json").is_file() and (directory / "model.safetensors").is_file()

    from transformers import pipeline

    scorer = pipeline("text-classification", model=str(directory), device="cpu")
    held_out = marker_rows(60, seed=1234)
    texts = [row["prompt"] + side for row in held_out for side in (row["chosen"], row["rejected"])]
    scores = [item["score"] for item in scorer(texts, function_to_apply="none", batch_size=16)]
    right = sum(scores[2 * i] > scores[2 * i + 1] for i in range(len(held_out)))
    assert right / len(held_out) > 0.8, right


def _start_worker(settings) -> subprocess.Popen:
    from django.db import connection

    database = connection.settings_dict
    environment = {
        **os.environ,
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}/{database['NAME']}",
        "ARTIFACT_ROOT": str(settings.ARTIFACT_ROOT),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "CACHE_URL": "",
        "TRAINING_BASE_MODELS": settings.TRAINING_BASE_MODELS,
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "palate", "worker", "-Q", "gpu", "--concurrency", "1",
         "--prefetch-multiplier", "1", "--pool", "solo", "--loglevel", "WARNING", "--without-heartbeat",
         "--without-gossip", "--without-mingle", "--hostname", f"gpu-{random.randint(0, 10**6)}@test"],
        env=environment, start_new_session=True,
    )  # fmt: skip
    return worker


@pytest.fixture
def start_gpu_worker(transactional_db, settings):
    """Starts gpu-queue workers on demand, so a test can kill one and start the next (as
    ``celery_worker_process`` does for one worker); kills what is left and empties the broker afterwards."""
    workers: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        worker = _start_worker(settings)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=20)
    from palate.celery import app

    with app.connection_for_write() as broker:
        broker.default_channel.client.flushdb()


def test_a_killed_worker_s_run_is_resumed_from_its_checkpoint_by_the_next_worker(
    start_gpu_worker, settings, tiny_base_model
):
    project, _ = judged_project(60)
    export = succeeded_export(project)
    # Three epochs: the kill must land while the run trains, however late this process looks (on a busy
    # machine a poll can come a second late, and one epoch's 48 steps take about a second).
    run = training_run_create(
        project=project, base_model=tiny_base_model, hyperparameters={**LONG, "num_epochs": 3}, export=export,
        allow_below_target=True, enqueue=False,
    )  # fmt: skip
    first = start_gpu_worker()
    from rewardtrain.training.trainer import latest_checkpoint

    job_enqueue(run)
    directory = store_local_path(ARTIFACTS, run_prefix(run.pk))

    def checkpointed_step() -> int:
        # Checkpoints rotate (the newest two are kept): wait for any at step 10 or later, not for one name.
        latest = latest_checkpoint(directory)
        return int(latest.name.removeprefix("step-")) if latest is not None else 0

    wait_for(
        lambda: checkpointed_step() >= 10 and _run(run.pk).status == TrainingRun.Status.RUNNING, seconds=300
    )
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=20)
    killed_at = _run(run.pk)
    assert killed_at.status == TrainingRun.Status.RUNNING and killed_at.step < killed_at.total_steps

    # Time passes: the heartbeat goes stale, and beat's reaper queues the run again (the worker's process
    # record is made foreign, so that only the heartbeat tells: tests/test_job_faults.py covers the rest).
    settings.JOB_HEARTBEAT_TIMEOUT_SECONDS = 60
    TrainingRun.objects.filter(pk=run.pk).update(
        heartbeat_at=timezone.now() - timedelta(minutes=5), worker="gpu pid 1 on elsewhere"
    )
    assert jobs_reap() == {"requeued": 1, "failed": 0, "cancelled": 0, "resent": 0}
    start_gpu_worker()
    run = wait_for(lambda: (r := _run(run.pk)).status in {"succeeded", "failed"} and r, seconds=300)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error + run.traceback
    assert run.attempts == 2 and "resuming from the checkpoint of step" in run.log
    steps = [entry["step"] for entry in run.metrics]
    assert steps == sorted(set(steps)) and steps[-1] == run.total_steps
    assert RewardModel.objects.get(run=run).is_active
