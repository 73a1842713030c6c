"""A Celery worker takes over the jobs of dead workers itself, without waiting for beat.

When it starts (``worker_ready``) it removes the scratch folders its killed predecessors left on this machine
(``palate.scratch.scratch_reap``) and reaps at once: a worker restarted after a SIGKILL finds its
predecessor's jobs (their process gone from this machine, or run under its own node name) and queues them
again. Then it reaps every ``JOB_REAP_SECONDS`` from a thread of its main process, so a job whose worker
died on another machine is queued again once its heartbeat is ``JOB_HEARTBEAT_TIMEOUT_SECONDS`` old.
Connected by ``palate.celery``; nothing here touches the database at import time.
"""

from __future__ import annotations

import logging
import threading

from celery.signals import worker_init, worker_ready, worker_shutting_down

logger = logging.getLogger(__name__)

_started: dict[str, object] = {}
_stopping = threading.Event()


@worker_init.connect
def _remember_start(**kwargs: object) -> None:
    from django.utils import timezone

    # Before the pool takes tasks: a job claimed by this worker always beats later than this.
    _started["at"] = timezone.now()


@worker_ready.connect
def _start_reaping(sender: object, **kwargs: object) -> None:
    from django.utils import timezone

    from palate.jobs.services import Restart
    from palate.scratch import scratch_reap

    restart = Restart(node=getattr(sender, "hostname", "") or "", at=_started.get("at") or timezone.now())
    # The scratch folders of a worker killed on this machine: every file they held is in the stores.
    for folder in scratch_reap():
        logger.warning("removed the scratch folder %s of a process that no longer runs", folder)
    threading.Thread(target=_reap_forever, args=(restart,), name="jobs-reaper", daemon=True).start()


@worker_shutting_down.connect
def _stop_reaping(**kwargs: object) -> None:
    _stopping.set()


def _reap_forever(restart: object) -> None:
    from django.conf import settings
    from django.db import close_old_connections, connection

    from palate.jobs.services import jobs_reap

    interval = float(getattr(settings, "JOB_REAP_SECONDS", 30))
    try:
        while not _stopping.is_set():
            try:
                close_old_connections()
                jobs_reap(restart=restart)
            except Exception:  # a database outage must not end the loop; the next round tries again
                logger.exception("reaping jobs failed")
            if interval <= 0 or _stopping.wait(interval):
                return
    finally:
        connection.close()
