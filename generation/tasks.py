"""Celery entry points: they take ids and call a service. Generation jobs run on the ``generate`` queue
(CELERY_TASK_ROUTES); their time limits come with the task (``GENERATION_JOB_TIME_LIMIT_SECONDS``)."""

from __future__ import annotations

from celery import shared_task

from generation.services.jobs import generation_job_execute


# Late acknowledgement and redelivery when the process dies; the claim makes a second delivery harmless.
@shared_task(name="generation.generation_job_run", bind=True, acks_late=True, reject_on_worker_lost=True)
def generation_job_task(self, job_id: int) -> None:
    generation_job_execute(job_id=job_id, worker=self.request.hostname or "worker")


@shared_task(name="generation.audit_run", bind=True, acks_late=True, reject_on_worker_lost=True)
def audit_task(self, audit_id: int) -> None:
    from generation.services.audits import audit_execute

    audit_execute(audit_id=audit_id, worker=self.request.hostname or "worker")
