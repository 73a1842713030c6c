"""Beat's backstop: the one reaper of every job type (workers also run it themselves, ``palate.jobs.worker``)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="palate.jobs_reap")
def jobs_reap_task() -> None:
    from palate.jobs.services import jobs_reap

    jobs_reap()
