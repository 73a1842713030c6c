"""The job lifecycle (palate.jobs) without a worker: claims, taking over a job whose worker was lost,
giving up on it, the one reaper, the heartbeat thread. Real workers killed mid-job: test_job_faults.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from annotate.models import ImportJob
from palate.errors import ApplicationError
from palate.jobs.services import (
    Restart,
    job_cancel,
    job_claim,
    job_heartbeat,
    job_owned,
    jobs_reap,
    worker_identity,
)
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _worker_of(pid: int, node: str = "w1@host") -> str:
    """How a worker with process ``pid`` on this machine records itself."""
    return worker_identity(node).replace(f" pid {os.getpid()} ", f" pid {pid} ")


def _job(tmp_path: Path, name: str = "upload", **fields) -> ImportJob:
    """An import job whose stored upload is ``tmp_path/<name>.jsonl``."""
    upload = tmp_path / f"{name}.jsonl"
    upload.write_text("{}\n")
    return ImportJob.objects.create(
        project=ProjectFactory(), filename=upload.name, stored_path=str(upload), **fields
    )


def _running(tmp_path: Path, name: str = "upload", *, seconds_ago: float = 0, **fields) -> ImportJob:
    """A running import job whose worker is alive (the parent of this process) unless ``fields`` say."""
    beat = timezone.now() - timedelta(seconds=seconds_ago)
    values = {"attempts": 1, "worker": _worker_of(os.getppid()), **fields}
    return _job(tmp_path, name, status=ImportJob.Status.RUNNING, heartbeat_at=beat, started_at=beat, **values)


def test_a_claim_counts_an_attempt_and_records_the_worker_and_a_second_delivery_gets_nothing(tmp_path):
    job = _job(tmp_path)

    assert job_claim(ImportJob, job_id=job.pk, worker="w1@host") == 1
    assert job_claim(ImportJob, job_id=job.pk, worker="w2@host") is None

    job.refresh_from_db()
    assert (job.status, job.attempts) == (ImportJob.Status.RUNNING, 1)
    assert job.worker == f"w1@host pid {os.getpid()} on {worker_identity('x').split(' on ')[1]}"
    assert job.heartbeat_at is not None and job.started_at is not None


def test_a_running_job_whose_process_is_gone_is_taken_over_at_once_and_a_live_one_is_left_alone(tmp_path):
    lost = _running(tmp_path, worker=_worker_of(_dead_pid()))
    alive = _running(tmp_path)

    assert job_claim(ImportJob, job_id=lost.pk, worker="w2@host") == 2
    assert job_claim(ImportJob, job_id=alive.pk, worker="w2@host") is None

    lost.refresh_from_db()
    assert lost.worker.startswith("w2@host pid ") and lost.status == ImportJob.Status.RUNNING


def test_a_lost_job_with_no_attempt_left_fails_saying_the_worker_was_lost_and_its_upload_goes(
    tmp_path, settings
):
    settings.JOB_HEARTBEAT_TIMEOUT_SECONDS = 60
    job = _running(tmp_path, seconds_ago=300, attempts=3, worker="w1@elsewhere pid 7 on another-machine")
    upload = Path(job.stored_path)

    assert job_claim(ImportJob, job_id=job.pk, worker="w2@host") is None

    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED and job.attempts == 3
    assert (
        job.error.startswith("worker lost (no heartbeat since ") and "all 3 attempts are spent" in job.error
    )
    assert job.errors == [job.error] and job.finished_at is not None
    assert job.stored_path == "" and not upload.exists()


def test_the_reaper_queues_lost_jobs_again_fails_spent_ones_and_leaves_live_ones(
    tmp_path, settings, enqueued, django_capture_on_commit_callbacks
):
    settings.JOB_HEARTBEAT_TIMEOUT_SECONDS = 60
    stale = _running(tmp_path, "stale", seconds_ago=300)
    gone = _running(tmp_path, "gone", worker=_worker_of(_dead_pid()))
    spent = _running(tmp_path, "spent", seconds_ago=300, attempts=3)
    alive = _running(tmp_path, "alive")

    with django_capture_on_commit_callbacks(execute=True):
        counts = jobs_reap()

    assert counts == {"requeued": 2, "failed": 1, "cancelled": 0, "resent": 0}
    assert sorted(enqueued.job_ids) == sorted([stale.pk, gone.pk])
    for job in (stale, gone, spent, alive):
        job.refresh_from_db()
    assert stale.status == gone.status == ImportJob.Status.QUEUED and stale.queued_at is not None
    assert Path(stale.stored_path).exists() and Path(gone.stored_path).exists()  # the next attempt reads it
    assert spent.status == ImportJob.Status.FAILED and spent.error.startswith("worker lost")
    assert alive.status == ImportJob.Status.RUNNING
    assert not (tmp_path / "spent.jsonl").exists()


def test_a_restarted_worker_takes_back_the_jobs_its_dead_predecessor_ran(tmp_path, enqueued):
    started = timezone.now()
    before = _running(tmp_path, seconds_ago=5, worker="w1@host pid 7 on a-gone-container")
    other_node = _running(tmp_path, "other", seconds_ago=5, worker="w9@host pid 7 on a-gone-container")

    counts = jobs_reap(restart=Restart(node="w1@host", at=started))

    assert counts["requeued"] == 1
    before.refresh_from_db()
    other_node.refresh_from_db()
    assert before.status == ImportJob.Status.QUEUED and other_node.status == ImportJob.Status.RUNNING


def test_a_queued_job_is_sent_again_then_failed_when_no_worker_takes_it(
    tmp_path, settings, enqueued, django_capture_on_commit_callbacks
):
    settings.JOB_QUEUED_RESEND_SECONDS = 600
    settings.JOB_QUEUED_TIMEOUT_SECONDS = 3600
    lost = _job(tmp_path)
    ImportJob.objects.filter(pk=lost.pk).update(created_at=timezone.now() - timedelta(minutes=11))
    abandoned = _job(tmp_path, "abandoned")
    ImportJob.objects.filter(pk=abandoned.pk).update(created_at=timezone.now() - timedelta(hours=2))

    with django_capture_on_commit_callbacks(execute=True):
        assert jobs_reap() == {"requeued": 0, "failed": 1, "cancelled": 0, "resent": 1}

    assert enqueued.job_ids == [lost.pk]
    abandoned.refresh_from_db()
    assert abandoned.error == (
        "no worker took the import in 3600 s of waiting in the queue (is a worker listening on the default queue?)"
    )
    assert abandoned.errors == [abandoned.error] and not (tmp_path / "abandoned.jsonl").exists()


def test_a_job_whose_task_was_never_sent_gets_it_sent_at_the_next_round_once_a_moment_old(
    tmp_path, settings, enqueued, django_capture_on_commit_callbacks
):
    settings.JOB_QUEUED_RESEND_SECONDS = 600
    moment_ago = timezone.now() - timedelta(seconds=30)
    unsent = _job(tmp_path)  # enqueued_at empty: the broker could not be reached when it was queued
    ImportJob.objects.filter(pk=unsent.pk).update(created_at=moment_ago)
    _job(tmp_path, "just-made")  # its creator may be sending its task right now
    ImportJob.objects.filter(pk=_job(tmp_path, "sent", enqueued_at=moment_ago).pk).update(
        created_at=moment_ago
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert jobs_reap()["resent"] == 1

    assert enqueued.job_ids == [unsent.pk]
    unsent.refresh_from_db()
    assert unsent.status == ImportJob.Status.QUEUED and unsent.enqueued_at > moment_ago


def test_only_a_type_that_supports_cancel_can_be_cancelled(tmp_path):
    with pytest.raises(ApplicationError) as caught:
        job_cancel(_job(tmp_path))
    assert caught.value.code == "not_cancellable"


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_thread_beats_writes_what_is_reported_and_notices_a_takeover(tmp_path, settings):
    settings.JOB_HEARTBEAT_SECONDS = 0.05
    settings.JOB_PROGRESS_SECONDS = 0
    job = _job(tmp_path)
    attempt = job_claim(ImportJob, job_id=job.pk, worker="w1@host")
    claimed_at = ImportJob.objects.get(pk=job.pk).heartbeat_at

    with job_heartbeat(ImportJob, job_id=job.pk, attempt=attempt) as heartbeat:
        heartbeat.report(rows_done=40, bytes_done=250, progress=0.25)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            job.refresh_from_db()
            if job.rows_done == 40 and job.heartbeat_at > claimed_at:
                break
            time.sleep(0.02)
        assert (job.rows_done, job.bytes_done, job.progress) == (40, 250, 0.25)
        assert job.heartbeat_at > claimed_at and not heartbeat.lost.is_set()

        # Another delivery takes the job over: this attempt's writes no longer land, and it is told.
        job_owned(ImportJob, job.pk, attempt).update(attempts=attempt + 1)
        assert heartbeat.lost.wait(10)
