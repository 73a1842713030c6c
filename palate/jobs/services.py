"""Claim, heartbeat, finish, fail, cancel and reap: the lifecycle every job type shares.

A job type is a model inheriting ``palate.jobs.models.Job`` plus a ``JobKind`` (how to send its task, which
temporary files it leaves), registered in its app's ``ready()``. Its Celery task runs with ``acks_late`` and
``reject_on_worker_lost`` and calls ``job_claim`` first: a conditional UPDATE that makes the job running,
counts an attempt (the attempt number is the claim's token: every later write is guarded on it) and records
the worker (node, process id, machine). So any delivery of the task, first or repeated, is harmless.

How a job whose worker dies is running again, or failed saying "worker lost", within two minutes:

- **A pool process killed** (prefork child, SIGKILL, out of memory): ``reject_on_worker_lost`` puts the
  message back at once; the redelivered task finds the job running under a process that no longer exists on
  this machine and takes it over (attempts + 1), or fails it once ``max_attempts`` are spent.
- **A whole worker killed**: its message stays unacknowledged until the broker's visibility timeout (an hour
  on Redis). A worker that starts reaps at once (``palate.jobs.worker``): jobs whose process is gone from
  this machine, or that ran under its own node name before it started, are queued again and their task sent
  again. Every worker also reaps every ``JOB_REAP_SECONDS``: a job whose heartbeat (written every
  ``JOB_HEARTBEAT_SECONDS`` from a thread) is older than ``JOB_HEARTBEAT_TIMEOUT_SECONDS`` is queued again
  from any machine. Beat runs the same reaper as a backstop.
- The old message, back after the visibility timeout, finds the job claimed or finished and returns; so
  does a copy of a long training task redelivered while the original still beats.

A job's temporary files (``JobKind.temporary_paths``) are removed whenever it ends: succeeded, failed,
cancelled, or given up after its worker was lost. A job queued again keeps them for its next attempt.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet, TextField, Value
from django.db.models.functions import Coalesce, Concat
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnreachable

from palate.errors import ApplicationError, Conflict
from palate.jobs.models import Job, JobStatus
from palate.processes import process_alive, process_space

logger = logging.getLogger(__name__)


def _no_paths(job: Job) -> Iterable[Path]:
    return ()


def _no_fields(message: str) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class JobKind:
    """What the lifecycle needs to know about one job type."""

    model: type[Job]
    send: Callable[[Job], None]  # sends the job's Celery task; called after commit
    noun: str  # "import", "run": messages say "no worker took the import…"
    queue: str = "default"
    temporary_paths: Callable[[Job], Iterable[Path]] = _no_paths
    cleared_on_end: Mapping[str, Any] = field(default_factory=dict)  # fields naming temporary files
    failure_fields: Callable[[str], dict[str, Any]] = _no_fields  # more fields a failure message fills
    log_field: str = ""  # a text field that gets a line per transition
    cancellable: bool = False  # the model has ``cancel_requested`` and its work reads it


_KINDS: dict[type[Job], JobKind] = {}


def job_kind_register(kind: JobKind) -> JobKind:
    _KINDS[kind.model] = kind
    return kind


def job_kind(model: type[Job]) -> JobKind:
    return _KINDS[model]


def _seconds(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def heartbeat_timeout() -> timedelta:
    return timedelta(seconds=_seconds("JOB_HEARTBEAT_TIMEOUT_SECONDS", 60))


# ----------------------------------------------------------------------------------------------------------
# Workers


_WORKER = re.compile(r"^(?P<node>.*) pid (?P<pid>\d+) on (?P<space>\S+)$")


def worker_identity(node: str) -> str:
    """How a job records the process that runs it: "<node> pid <pid> on <machine>"."""
    return f"{node[:120]} pid {os.getpid()} on {process_space()}"


@dataclass(frozen=True)
class Restart:
    """A worker that started at ``at`` under ``node``: jobs that ran under that name before are its dead
    predecessor's."""

    node: str
    at: datetime


def _lost_reason(row: dict[str, Any], now: datetime, restart: Restart | None) -> str:
    """Why a running job's worker is taken for lost, or "" while it looks alive."""
    last = row["heartbeat_at"] or row["started_at"]
    if last is None or last < now - heartbeat_timeout():
        seen = last.strftime("%Y-%m-%d %H:%M:%S") if last else "never"
        return f"no heartbeat since {seen}"
    found = _WORKER.match(row["worker"])
    if found is None:
        return ""
    if (
        found["space"] == process_space()
        and int(found["pid"]) != os.getpid()
        and not process_alive(int(found["pid"]))
    ):
        return f"process {found['pid']} of {found['node']} is gone"
    if restart is not None and found["node"] == restart.node and last < restart.at:
        return f"{found['node']} was restarted"
    return ""


# ----------------------------------------------------------------------------------------------------------
# Transitions


def log_line(message: str, *, now: datetime | None = None) -> str:
    return f"{(now or timezone.now()).strftime('%Y-%m-%d %H:%M:%S')} {message}\n"


def job_noted(model: type[Job], message: str, *, now: datetime | None = None) -> dict[str, Any]:
    """The update that appends ``message`` to the job's log (an expression: no read-modify-write race), or
    nothing for a type without a log."""
    name = job_kind(model).log_field
    if not name or not message:
        return {}
    return {name: Concat(F(name), Value(log_line(message, now=now)), output_field=TextField())}


def job_owned(model: type[Job], job_id: int, attempt: int) -> QuerySet:
    """The job's row while this attempt still owns it (running, attempt unchanged)."""
    return model.objects.filter(pk=job_id, status=JobStatus.RUNNING, attempts=attempt)


def _remove(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _end(
    kind: JobKind, rows: QuerySet, status: str, *, note: str = "", error: str = "", **fields: Any
) -> bool:
    """Ends the job that ``rows`` (one job, guarded on what its caller read) still selects and removes its
    temporary files; False when the job changed meanwhile."""
    job = rows.first()
    if job is None:
        return False
    paths = [Path(path) for path in kind.temporary_paths(job)]
    now = timezone.now()
    if error:
        fields = {**kind.failure_fields(error), **fields}
    ended = rows.update(
        status=status,
        error=error,
        finished_at=now,
        heartbeat_at=now,
        **kind.cleared_on_end,
        **fields,
        **job_noted(kind.model, note or (f"failed: {error}" if error else status), now=now),
    )
    if ended:
        _remove(paths)
    return bool(ended)


def job_finish(
    model: type[Job],
    *,
    job_id: int,
    attempt: int,
    status: str = JobStatus.SUCCEEDED,
    note: str = "",
    **fields: Any,
) -> bool:
    """Ends this attempt's job as ``status`` (succeeded unless said otherwise) with ``fields``; False when the
    attempt no longer owns it."""
    if status == JobStatus.SUCCEEDED:
        fields.setdefault("progress", 1.0)
    return _end(job_kind(model), job_owned(model, job_id, attempt), status, note=note, **fields)


def job_fail(
    model: type[Job], *, job_id: int, attempt: int, error: str, note: str = "", **fields: Any
) -> bool:
    """Fails this attempt's job with ``error``; False when the attempt no longer owns it."""
    return _end(
        job_kind(model), job_owned(model, job_id, attempt), JobStatus.FAILED, error=error, note=note, **fields
    )


def job_requeue(
    model: type[Job], *, job_id: int, attempt: int, note: str, send: bool = True, **fields: Any
) -> bool:
    """Queues this attempt's job again (a crash the next attempt may get past) and, with ``send``, sends its
    task once committed; False when the attempt no longer owns it."""
    now = timezone.now()
    requeued = job_owned(model, job_id, attempt).update(
        status=JobStatus.QUEUED, queued_at=now, **fields, **job_noted(model, note, now=now)
    )
    if requeued and send:
        transaction.on_commit(lambda: job_enqueue(model.objects.get(pk=job_id)))
    return bool(requeued)


def job_enqueue(job: Job, *, note_failure: bool = True) -> bool:
    """Sends the job's task and records when. Call once the row is committed.

    While the broker cannot be reached the send fails at once (settings: CELERY_TASK_PUBLISH_RETRY_POLICY)
    and this returns False: the job stays queued with ``enqueued_at`` empty, with a line in its log unless
    ``note_failure`` is off, and the reaper sends its task once the broker answers (``_reap_queued``). So a
    request that makes a job answers at once, and a broker outage delays jobs but loses none."""
    model, kind = type(job), job_kind(type(job))
    sent_at = timezone.now()
    model.objects.filter(pk=job.pk).update(enqueued_at=sent_at)
    try:
        kind.send(job)
    except BrokerUnreachable as error:
        note = f"its task could not be sent ({error}); it is sent once the broker answers"
        model.objects.filter(pk=job.pk, enqueued_at=sent_at).update(
            enqueued_at=None, **(job_noted(model, note) if note_failure else {})
        )
        logger.warning("%s %s: %s", kind.noun, job.pk, note)
        return False
    return True


def job_cancel(job: Job) -> Job:
    """Cancels a queued job at once; asks a running one to stop (its work reads ``cancel_requested`` and
    ends the job cancelled). Raises Conflict (409) for a finished job."""
    kind = job_kind(type(job))
    if not kind.cancellable:
        raise ApplicationError(f"a {kind.noun} cannot be cancelled", code="not_cancellable")
    rows = type(job).objects.filter(pk=job.pk)
    cancelled = _end(
        kind,
        rows.filter(status=JobStatus.QUEUED),
        JobStatus.CANCELLED,
        note="cancelled before it started",
        cancel_requested=True,
    )
    if not cancelled and not rows.filter(status=JobStatus.RUNNING).update(cancel_requested=True):
        job.refresh_from_db()
        raise Conflict(f"{kind.noun} {job.pk} is already {job.status}")
    job.refresh_from_db()
    return job


_CLAIM_FIELDS = ("pk", "status", "attempts", "max_attempts", "worker", "heartbeat_at", "started_at")


def _row(kind: JobKind, rows: QuerySet) -> list[dict[str, Any]]:
    names = _CLAIM_FIELDS + (("cancel_requested",) if kind.cancellable else ())
    return list(rows.values(*names))


def _unchanged(kind: JobKind, row: dict[str, Any]) -> QuerySet:
    """The job while it is as ``row`` read it: nobody claimed, ended or beat for it since."""
    return kind.model.objects.filter(
        pk=row["pk"], status=row["status"], attempts=row["attempts"], heartbeat_at=row["heartbeat_at"]
    )


def _give_up(kind: JobKind, row: dict[str, Any], reason: str) -> str:
    """Ends a job whose worker was lost and that may not be tried again; returns "cancelled", "failed" or ""
    (the job changed meanwhile)."""
    rows = _unchanged(kind, row)
    if kind.cancellable and row["cancel_requested"]:
        note = f"cancelled (worker lost before it could stop: {reason})"
        return "cancelled" if _end(kind, rows, JobStatus.CANCELLED, note=note) else ""
    message = f"worker lost ({reason}) and all {row['max_attempts']} attempts are spent"
    return "failed" if _end(kind, rows, JobStatus.FAILED, error=message) else ""


def _may_retry(kind: JobKind, row: dict[str, Any]) -> bool:
    return row["attempts"] < row["max_attempts"] and not (kind.cancellable and row["cancel_requested"])


def job_claim(model: type[Job], *, job_id: int, worker: str) -> int | None:
    """Claims the job for this process (``worker`` is the Celery node name) and returns the attempt number,
    or None when there is nothing to run: finished, running under a live worker, or claimed by another
    delivery first. A running job whose worker was lost is taken over, or ended when it may not be tried
    again (failed, "worker lost"; cancelled when a cancel was asked)."""
    kind = job_kind(model)
    rows = _row(kind, model.objects.filter(pk=job_id))
    if not rows:
        return None
    row, now = rows[0], timezone.now()
    note = ""
    if row["status"] == JobStatus.RUNNING:
        reason = _lost_reason(row, now, None)
        if not reason:
            return None
        if not _may_retry(kind, row):
            _give_up(kind, row, reason)
            return None
        note = f"worker lost ({reason}); taken over"
    elif row["status"] != JobStatus.QUEUED:
        return None
    claimed = _unchanged(kind, row).update(
        status=JobStatus.RUNNING,
        worker=worker_identity(worker),
        heartbeat_at=now,
        started_at=Coalesce(F("started_at"), now),
        attempts=F("attempts") + 1,
        **job_noted(model, note, now=now),
    )
    return row["attempts"] + 1 if claimed else None


# ----------------------------------------------------------------------------------------------------------
# Heartbeat


class JobHeartbeat:
    """Keeps a running attempt's heartbeat fresh from a thread (loading a model, a long transaction or a long
    step writes nothing else) and writes the progress ``report``ed to it, at most every
    ``JOB_PROGRESS_SECONDS``. The thread has a connection of its own, so it writes while the job's own work is
    inside a transaction. ``lost`` is set once a write finds the job no longer this attempt's (taken over,
    cancelled and ended, deleted).

    Inside an open transaction (tests) no thread starts: a second connection could not see the row; reports
    are written through the caller's connection."""

    def __init__(self, model: type[Job], job_id: int, attempt: int) -> None:
        self.name = f"{model.__name__} {job_id}"
        self.rows = job_owned(model, job_id, attempt)
        self.interval = _seconds("JOB_HEARTBEAT_SECONDS", 10)
        self.progress_interval = _seconds("JOB_PROGRESS_SECONDS", 1)
        self.pending: dict[str, Any] = {}
        self.guard = threading.Lock()
        self.wake, self.stopped, self.lost = threading.Event(), threading.Event(), threading.Event()
        self.written = 0.0
        self.thread: threading.Thread | None = None

    def __enter__(self) -> JobHeartbeat:
        if not connection.in_atomic_block and self.interval > 0:
            self.thread = threading.Thread(target=self._beat, name=f"heartbeat {self.name}", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stopped.set()
        self.wake.set()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def report(self, **fields: Any) -> None:
        """Progress fields to write with the next beat, which comes early when the last write is
        ``JOB_PROGRESS_SECONDS`` old."""
        with self.guard:
            self.pending.update(fields)
        if time.monotonic() - self.written >= self.progress_interval:
            if self.thread is not None:
                self.wake.set()
            else:
                self._write()

    def _write(self) -> None:
        with self.guard:
            fields, self.pending = self.pending, {}
        self.written = time.monotonic()
        if not self.rows.update(heartbeat_at=timezone.now(), **fields):
            self.lost.set()

    def _beat(self) -> None:
        try:
            while not self.stopped.is_set():
                self.wake.wait(self.interval)
                self.wake.clear()
                if not self.stopped.is_set():
                    self._write()
        except Exception:  # the reaper takes over if the job goes silent
            logger.exception("heartbeat of %s stopped", self.name)
        finally:
            connection.close()


def job_heartbeat(model: type[Job], *, job_id: int, attempt: int) -> JobHeartbeat:
    return JobHeartbeat(model, job_id, attempt)


# ----------------------------------------------------------------------------------------------------------
# Reaping


def jobs_reap(*, now: datetime | None = None, restart: Restart | None = None) -> dict[str, int]:
    """Every job type: running jobs whose worker was lost (stale heartbeat, a process gone from this machine,
    or the predecessor of a ``restart``ed worker) are queued again with their task sent again while attempts
    remain, else failed ("worker lost") or, when a cancel was asked, cancelled. Queued jobs whose task may
    have been lost get it sent again, then fail (``_reap_queued``). Returns counts over all types."""
    now = now or timezone.now()
    counts: Counter[str] = Counter({"requeued": 0, "failed": 0, "cancelled": 0, "resent": 0})
    for kind in _KINDS.values():
        for row in _row(kind, kind.model.objects.filter(status=JobStatus.RUNNING)):
            reason = _lost_reason(row, now, restart)
            if not reason:
                continue
            if not _may_retry(kind, row):
                outcome = _give_up(kind, row, reason)
            elif _unchanged(kind, row).update(
                status=JobStatus.QUEUED,
                queued_at=now,
                **job_noted(kind.model, f"worker lost ({reason}); queued again", now=now),
            ):
                outcome = "requeued"
                transaction.on_commit(functools.partial(_resend, kind, row["pk"]))
            else:
                outcome = ""
            if outcome:
                counts[outcome] += 1
        _reap_queued(kind, now, counts)
    if any(counts.values()):
        logger.warning("jobs reaped: %s", dict(counts))
    return dict(counts)


def _resend(kind: JobKind, job_id: int, note: str = "") -> None:
    """Sends the task of a job still queued; once sent, ``note`` goes to its log. A failed send (the broker is
    still away) is left to the reaper's next round without a line in the log."""
    job = kind.model.objects.filter(pk=job_id, status=JobStatus.QUEUED).first()
    if job is not None and job_enqueue(job, note_failure=False) and note:
        kind.model.objects.filter(pk=job_id).update(**job_noted(kind.model, note))


# A job whose task was never sent may be in the hands of its creator, who sends it once committed.
UNSENT_GRACE = timedelta(seconds=5)


def _reap_queued(kind: JobKind, now: datetime, counts: Counter[str]) -> None:
    """A queued job whose task was never sent (``enqueued_at`` empty: the broker could not be reached when
    it was queued) gets it sent at every round until the broker answers. One whose task message was lost (a
    broker restarted without persistence, a purged queue) would wait for ever: its task is sent again
    ``JOB_QUEUED_RESEND_SECONDS`` after the last send. A job fails once it has waited
    ``JOB_QUEUED_TIMEOUT_SECONDS``. A job that merely waits behind others gets a duplicate message, which
    finds it claimed (or finished) and returns."""
    resend = timedelta(seconds=_seconds("JOB_QUEUED_RESEND_SECONDS", 900))
    timeout = int(_seconds("JOB_QUEUED_TIMEOUT_SECONDS", 24 * 3600))
    waiting = kind.model.objects.filter(status=JobStatus.QUEUED).annotate(
        waiting_since=Coalesce("queued_at", "created_at"),
        sent_at=Coalesce("enqueued_at", "queued_at", "created_at"),
    )
    for job_id, attempts, waiting_since, sent_at, enqueued_at in waiting.filter(
        Q(waiting_since__lt=now - timedelta(seconds=timeout))
        | Q(sent_at__lt=now - resend)
        | Q(enqueued_at__isnull=True, waiting_since__lt=now - UNSENT_GRACE)
    ).values_list("pk", "attempts", "waiting_since", "sent_at", "enqueued_at"):
        # Unchanged since read (not claimed, cancelled or sent by another reaper): the update is the claim.
        same = kind.model.objects.filter(
            pk=job_id, status=JobStatus.QUEUED, attempts=attempts, enqueued_at=enqueued_at
        )
        waited = int((now - sent_at).total_seconds())
        if waiting_since < now - timedelta(seconds=timeout):
            message = (
                f"no worker took the {kind.noun} in {timeout} s of waiting in the queue "
                f"(is a worker listening on the {kind.queue} queue?)"
            )
            counts["failed"] += _end(kind, same, JobStatus.FAILED, error=message)
        elif same.update(enqueued_at=now):
            counts["resent"] += 1
            note = (
                f"its task was not sent when it was queued; sent {waited} s later"
                if enqueued_at is None
                else f"still queued {waited} s after its task was sent; sent again"
            )
            transaction.on_commit(functools.partial(_resend, kind, job_id, note))
