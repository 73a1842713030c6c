"""SIGKILL the worker in the middle of a job: each job type is running again (and then succeeds), or fails
saying the worker was lost, within two minutes and with no beat, and leaves no temporary file.

Real prefork workers on Redis. Two ways to die: a pool process killed (its message is put back at once and
the redelivered task takes the job over) and the whole worker killed (a fresh worker, starting, takes over
the jobs of the dead one). A job is caught mid-way by holding a lock that its writes wait for: the job is
claimed, beating and inside its transaction when the kill lands, whatever the speed of the machine."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from django.db import connection, transaction
from psycopg import sql

from annotate.models import Export, ImportJob, Pair, Response
from annotate.services.import_rows import ImportOptions
from annotate.services.imports import import_job_create
from palate.jobs.services import job_enqueue
from palate.storage import ARTIFACTS, store_local_path
from rewardtrain.models import ResponseScore, RewardModel, ScoringJob, TrainingRun
from rewardtrain.services.run_artifacts import checkpoints_stored, run_prefix
from rewardtrain.services.runs import training_run_create
from rewardtrain.services.scoring import scoring_job_create
from tests.factories import ProjectFactory
from tests.rewardtrain import conftest as rewardtrain_fixtures
from tests.rewardtrain.runs_data import FAST, judged_project, succeeded_export
from tests.rewardtrain.scoring_data import reward_model_row
from tests.waiting import wait_for

pytestmark = pytest.mark.celery_worker

TWO_MINUTES = 120.0

# The training tests' tiny models (pytest finds fixtures by name in this module).
tiny_decoder = rewardtrain_fixtures.tiny_decoder
tiny_base_model = rewardtrain_fixtures.tiny_base_model
tiny_reward_model = rewardtrain_fixtures.tiny_reward_model


def _wait_for(job, condition, seconds: float = TWO_MINUTES, every: float = 0.2):
    """``wait_for`` on a job: on a timeout, the job's state says where it stopped."""
    fields = ("status", "attempts", "worker", "heartbeat_at", "error")
    return wait_for(
        condition,
        seconds=seconds,
        every=every,
        about=lambda: list(type(job).objects.filter(pk=job.pk).values(*fields)),
    )


class Workers:
    """Prefork workers (one pool process each) on both queues, against this test's database and folders."""

    def __init__(self, settings) -> None:
        database = connection.settings_dict
        self.environment = {
            **os.environ,
            "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}/{database['NAME']}",
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "ARTIFACT_ROOT": str(settings.ARTIFACT_ROOT),
            "CACHE_URL": "",
            "PALATE_DEVICE": "cpu",
            "TRAINING_SCRATCH_DIR": str(Path(settings.ARTIFACT_ROOT).parent / "scratch"),
        }
        self.started: list[subprocess.Popen] = []

    def start(self) -> subprocess.Popen:
        from django.conf import settings

        # The base models a test installed (TRAINING_BASE_MODELS) are the worker's too.
        environment = {**self.environment, "TRAINING_BASE_MODELS": settings.TRAINING_BASE_MODELS}
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "palate", "worker", "-Q", "default,gpu", "--pool", "prefork",
             "--concurrency", "1", "--prefetch-multiplier", "1", "--loglevel", "WARNING", "--without-heartbeat",
             "--without-gossip", "--without-mingle", "--hostname", f"faults-{random.randint(0, 10**6)}@test"],
            env=environment, start_new_session=True,
        )  # fmt: skip
        self.started.append(worker)
        return worker

    @staticmethod
    def kill_pool_process(job) -> int:
        """SIGKILLs the process running ``job`` (a pool process: its worker lives on)."""
        job.refresh_from_db()
        pid = int(job.worker.split(" pid ")[1].split()[0])
        os.kill(pid, signal.SIGKILL)
        return pid

    @staticmethod
    def kill(worker: subprocess.Popen) -> None:
        """SIGKILLs a whole worker, its pool processes with it."""
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=20)

    def stop_all(self) -> None:
        for worker in self.started:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(timeout=20)


@pytest.fixture
def workers(transactional_db, settings):
    from palate.celery import app

    started = Workers(settings)
    yield started
    started.stop_all()
    with app.connection_for_write() as broker:
        broker.default_channel.client.flushdb()


@contextmanager
def writes_held(model):
    """Holds ``model``'s table in SHARE mode from another connection: a job reads it, but its inserts wait."""
    with psycopg.connect(**connection.get_connection_params()) as blocker:
        blocker.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(sql.Identifier(model._meta.db_table)))
        yield
        blocker.rollback()


def _running(job, attempt: int):
    job.refresh_from_db()
    return job.status == job.Status.RUNNING and job.attempts == attempt and job.heartbeat_at is not None


def _ended(job):
    job.refresh_from_db()
    return job.status in {job.Status.SUCCEEDED, job.Status.FAILED} and job


def _import(project, rows: int, prefix: str, **fields) -> ImportJob:
    """Queues the import of ``rows`` new pairs, with ``fields`` set on the job before its task is sent."""
    content = "".join(
        json.dumps(
            {"id": f"{prefix}{n}", "prompt": f"{prefix} {n}?", "response_a": "yes", "response_b": "no"}
        )
        + "\n"
        for n in range(rows)
    ).encode()
    with transaction.atomic():
        job = import_job_create(
            project=project,
            upload=io.BytesIO(content),
            filename="pairs.jsonl",
            size=len(content),
            options=ImportOptions(),
            created_by=None,
        )
        ImportJob.objects.filter(pk=job.pk).update(**fields)
    return job


def test_an_import_whose_pool_process_is_killed_runs_again_or_fails_saying_the_worker_was_lost(
    workers, settings
):
    project = ProjectFactory()
    uploads = Path(settings.MEDIA_ROOT) / "imports"
    workers.start()
    with writes_held(Pair):
        job = _import(project, 50, "first")
        _wait_for(job, lambda: _running(job, 1))
        workers.kill_pool_process(job)
        killed_at = time.monotonic()
        _wait_for(job, lambda: _running(job, 2))
        assert time.monotonic() - killed_at < TWO_MINUTES
    job = _wait_for(job, lambda: _ended(job))
    assert job.status == ImportJob.Status.SUCCEEDED, job.errors
    assert (job.attempts, job.counts["pairs_created"], job.progress) == (2, 50, 1.0)
    assert Pair.objects.filter(project=project).count() == 50

    # With no attempt left, the redelivered task fails the job and its upload goes.
    with writes_held(Pair):
        spent = _import(project, 20, "second", max_attempts=1)
        _wait_for(spent, lambda: _running(spent, 1))
        workers.kill_pool_process(spent)
        spent = _wait_for(spent, lambda: _ended(spent))
    assert spent.status == ImportJob.Status.FAILED and spent.error.startswith("worker lost (process ")
    assert spent.errors == [spent.error] and "all 1 attempts are spent" in spent.error
    assert Pair.objects.filter(project=project).count() == 50
    assert spent.stored_path == "" and list(uploads.iterdir()) == []


def test_a_training_run_whose_pool_process_is_killed_resumes_from_its_checkpoint(
    workers, tiny_base_model, settings
):
    from rewardtrain.training.trainer import latest_checkpoint

    project, _ = judged_project(40)
    export = succeeded_export(project)
    run = training_run_create(
        project=project, base_model=tiny_base_model, export=export, allow_below_target=True, enqueue=False,
        hyperparameters={**FAST, "batch_size": 1, "num_epochs": 3, "save_steps": 3, "learning_rate": 0.001},
    )  # fmt: skip
    workers.start()
    job_enqueue(run)
    directory = store_local_path(ARTIFACTS, run_prefix(run.pk))
    _wait_for(run, lambda: latest_checkpoint(directory) is not None and _running(run, 1), every=0.05)
    # Held, the run cannot record its end (nor its next progress): the kill lands while it trains.
    with writes_held(TrainingRun):
        assert _running(run, 1) and run.step < run.total_steps
        workers.kill_pool_process(run)
        killed_at = time.monotonic()
    _wait_for(run, lambda: _running(run, 2))
    assert time.monotonic() - killed_at < TWO_MINUTES
    run = _wait_for(run, lambda: _ended(run))
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error + run.traceback
    assert "worker lost (process " in run.log and "resuming from the checkpoint of step" in run.log
    assert RewardModel.objects.filter(run=run).exists() and run.progress == 1.0
    assert all(checkpoints_stored(run_id=run.pk).values())  # no checkpoint left half uploaded
    # The killed attempt's scratch folder was removed when the next attempt began, the next one's as it ends
    # (just after it recorded the run's end).
    scratch = Path(settings.ARTIFACT_ROOT).parent / "scratch"
    wait_for(lambda: not list(scratch.iterdir()), seconds=10, about=lambda: list(scratch.iterdir()))


def test_a_scoring_job_whose_whole_worker_is_killed_is_taken_over_by_the_next_worker(
    workers, tiny_reward_model
):
    project, _ = judged_project(6)
    model = reward_model_row(project, tiny_reward_model, active=False)
    first = workers.start()
    with writes_held(ResponseScore):
        job = scoring_job_create(reward_model=model)
        job_enqueue(job)
        _wait_for(job, lambda: _running(job, 1))
        workers.kill(first)
        killed_at = time.monotonic()
        workers.start()  # its message stays unacknowledged in Redis for an hour: the new worker reaps
        _wait_for(job, lambda: _running(job, 2))
        assert time.monotonic() - killed_at < TWO_MINUTES
    job = _wait_for(job, lambda: _ended(job))
    assert job.status == ScoringJob.Status.SUCCEEDED, job.error
    total = Response.objects.filter(prompt__project=project).count()
    assert (job.scored, job.total, job.attempts) == (total, total, 2)
    assert ResponseScore.objects.filter(reward_model=model).count() == total


def test_an_export_whose_pool_process_is_killed_runs_again_and_leaves_no_partial_file(workers, settings):
    from annotate.models import Prompt
    from annotate.services.exports import export_create

    project, _ = judged_project(30)
    workers.start()
    # A conversational export reads the prompts' texts only after its label pass (an "auto" one
    # reads them earlier, to choose its shape): held there, the kill lands mid-build.
    with psycopg.connect(**connection.get_connection_params()) as blocker:
        blocker.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(Prompt._meta.db_table))
        )
        export = export_create(
            project=project,
            policy={"split": 0.75, "shape": "conversational"},
            formats=["jsonl"],
            created_by=None,
        )
        folder = Path(settings.ARTIFACT_ROOT) / "exports" / str(export.pk)
        _wait_for(export, lambda: _running(export, 1) and export.progress > 0)
        workers.kill_pool_process(export)
        killed_at = time.monotonic()
        _wait_for(export, lambda: _running(export, 2))
        assert time.monotonic() - killed_at < TWO_MINUTES
        blocker.rollback()
    export = _wait_for(export, lambda: _ended(export))
    assert export.status == Export.Status.SUCCEEDED, export.error
    assert (export.attempts, export.progress, export.counts["pairs_exported"]) == (2, 1.0, 30)
    assert sorted(path.name for path in folder.iterdir()) == sorted(export.files)
